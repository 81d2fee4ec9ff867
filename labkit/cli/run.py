"""`labkit run [--rm] [-d] [-i] [-t] [--name N] IMAGE [CMD…]` — the docker CLI's run flow.

    1. POST /containers/create            404 "No such image"? then:
         print "Unable to find image 'x:latest' locally", pull (progress on stderr),
         and create again
    2. POST /containers/{id}/attach       (not with -d) upgraded to a raw socket; registered
                                          before start so that no output is lost
    3. POST /containers/{id}/wait         condition=next-exit (removed with --rm); the
                                          daemon sends the headers at once, the body at exit
    4. POST /containers/{id}/start        -d: print the ID and stop here
       POST /containers/{id}/resize       -t: the terminal's size (again on SIGWINCH)
    5. copy stdin to the socket (-i; EOF = half-close) and the socket to stdout/stderr until
       the daemon closes it, then read the wait body and exit with the container's status

With -t the container has a terminal: output is raw bytes (no frames), and our own terminal
is put in raw mode so that every key (ctrl-c too) goes to the container. ctrl-p ctrl-q
detaches: we leave, the container keeps running (the client detects these keys, not the
daemon).

Exit statuses follow docker's: 125 when the daemon refused (create/start failed), 126 when
the command cannot be executed ("permission denied"), 127 when it was not found, otherwise
the container's own status.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import termios
import threading
import tty as ttymode

from labkit.cli.pull import pull_image
from labkit.client import APIError, Attachment, Client, streams
from labkit.distribution.reference import DEFAULT_TAG, Reference, parse_reference

EXIT_DAEMON_ERROR = 125
EXIT_CANNOT_INVOKE = 126
EXIT_NOT_FOUND = 127
DETACH_KEYS = b"\x10\x11"  # ctrl-p ctrl-q, docker's default --detach-keys


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="create and start a container from an image")
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    p.add_argument("-d", "--detach", action="store_true", help="print the ID, do not wait")
    p.add_argument("-i", "--interactive", action="store_true", help="send our stdin to the container")
    p.add_argument("-t", "--tty", action="store_true", help="give the container a terminal")
    p.add_argument("--name", help="container name")
    p.add_argument("image")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="command and arguments")
    p.set_defaults(func=command, error_status=EXIT_DAEMON_ERROR)


def start_error_status(message: str) -> int:
    """docker's mapping of a failed start to an exit status (cli/command/container/run.go)."""
    if "executable file not found" in message or "no such file or directory" in message:
        return EXIT_NOT_FOUND
    if "permission denied" in message:
        return EXIT_CANNOT_INVOKE
    return EXIT_DAEMON_ERROR


def container_config(image: str, cmd: list[str], *, rm: bool, detach: bool,
                     interactive: bool = False, tty: bool = False) -> dict:
    """The create body: a Config with HostConfig nested, as the CLI sends it (abridged)."""
    return {
        "Image": image,            # as typed: the daemon normalizes it
        "Cmd": cmd or None,        # None = the image's CMD
        "AttachStdin": interactive and not detach,
        "AttachStdout": not detach, "AttachStderr": not detach,
        "Tty": tty, "OpenStdin": interactive, "StdinOnce": interactive and not detach,
        "Env": None, "Entrypoint": None, "Labels": {},
        "HostConfig": {"AutoRemove": rm, "NetworkMode": "default"},
        "NetworkingConfig": {"EndpointsConfig": {}},
    }


def create(client: Client, config: dict, name: str | None, ref: Reference) -> str:
    try:
        created = client.create_container(config, name)
    except APIError as e:
        if e.status != 404:
            raise
        # The daemon does not have the image: pull it, as the CLI does, then try again.
        print(f"Unable to find image '{ref.familiar()}' locally", file=sys.stderr, flush=True)
        pull_image(client, ref, sys.stderr)
        created = client.create_container(config, name)
    for warning in created.get("Warnings") or []:
        print(f"WARNING: {warning}", file=sys.stderr)
    return created["Id"]


def copy_output(attachment: Attachment, failures: list[str]) -> None:
    out, err = sys.stdout.buffer, sys.stderr.buffer
    try:
        for frame in attachment.frames():
            if frame.stream == streams.SYSTEMERR:
                failures.append(frame.data.decode(errors="replace").strip())
                continue
            target = err if frame.stream == streams.STDERR else out
            target.write(frame.data)
            target.flush()
    except (OSError, ValueError, APIError) as e:
        failures.append(f"error reading output: {e}")


def copy_input(attachment: Attachment, detect_detach: bool, detached: threading.Event) -> None:
    """Our stdin to the container; at EOF half-close, so the container sees EOF too."""
    fd = sys.stdin.fileno()
    previous = b""
    try:
        while data := os.read(fd, 4096):
            if detect_detach and DETACH_KEYS in previous[-1:] + data:
                detached.set()
                attachment.sock.shutdown(2)  # both directions: the output copy ends too
                return
            previous = data
            attachment.send(data)
    except OSError:
        return
    attachment.close_stdin()


@contextlib.contextmanager
def raw_terminal(enabled: bool):
    """Our terminal in raw mode: keys go to the container unprocessed (termios(3))."""
    if not enabled:
        yield
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        ttymode.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def resize(client: Client, cid: str) -> None:
    try:
        size = os.get_terminal_size(sys.stdout.fileno())
        client.resize(cid, size.lines, size.columns)
    except (OSError, APIError):
        pass  # not a terminal, or the container has already gone: nothing to resize


def command(client: Client, args: argparse.Namespace) -> int:
    if args.tty and args.interactive and not sys.stdin.isatty():
        print("labkit: the input device is not a TTY", file=sys.stderr)
        return 1
    ref = parse_reference(args.image)
    if not ref.tag and not ref.digest:
        ref = Reference(ref.domain, ref.path, DEFAULT_TAG)
    config = container_config(args.image, args.cmd, rm=args.rm, detach=args.detach,
                              interactive=args.interactive, tty=args.tty)
    cid = create(client, config, args.name, ref)

    if args.detach:
        try:
            client.start(cid)
        except APIError as e:
            print(f"labkit: Error response from daemon: {e.message}", file=sys.stderr)
            return start_error_status(e.message)
        print(cid)
        return 0

    attachment = client.attach(cid, stdin=args.interactive, tty=args.tty)
    detached = threading.Event()
    if args.interactive:
        threading.Thread(target=copy_input, args=(attachment, args.tty, detached),
                         daemon=True).start()
    else:
        attachment.close_stdin()  # as the CLI does: the output direction stays open
    failures: list[str] = []
    reader = threading.Thread(target=copy_output, args=(attachment, failures), daemon=True)
    reader.start()
    waiter = client.wait(cid, "removed" if args.rm else "next-exit")
    try:
        with raw_terminal(args.tty and args.interactive):
            try:
                client.start(cid)
            except APIError as e:
                print(f"labkit: Error response from daemon: {e.message}", file=sys.stderr)
                return start_error_status(e.message)
            if args.tty:
                resize(client, cid)
                signal.signal(signal.SIGWINCH, lambda *_: resize(client, cid))
            reader.join()
        if detached.is_set():
            print("\nread escape sequence", file=sys.stderr)
            return 0
        result = waiter.result()
    finally:
        waiter.close()
        attachment.close()
    for failure in failures:
        print(f"labkit: {failure}", file=sys.stderr)
    error = (result.get("Error") or {}).get("Message")
    if error:
        print(f"labkit: {error}", file=sys.stderr)
    return int(result.get("StatusCode", EXIT_DAEMON_ERROR))
