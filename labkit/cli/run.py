"""`labkit run [OPTIONS] IMAGE [CMD…]` — the docker CLI's run flow (chapter 10 is about it).

    1. POST /containers/create            the flags become one JSON body (container_config);
                                          404 "No such image"? then print "Unable to find
                                          image 'x:latest' locally", pull (progress on
                                          stderr), and create again (create)
    2. POST /containers/{id}/attach       (not with -d) upgraded to a raw socket; registered
                                          before start so that no output is lost
    3. POST /containers/{id}/wait         condition=next-exit (removed with --rm); the
                                          daemon sends the headers at once, the body at exit
    4. POST /containers/{id}/start        -d: print the ID and stop here
       POST /containers/{id}/resize       -t: the terminal's size (again on SIGWINCH)
                                          (2-4 are attach_wait_start)
    5. copy stdin to the socket (-i; EOF = half-close) and the socket to stdout/stderr until
       the daemon closes it (copy_output splits the multiplexed stream with labkit.stdcopy),
       then read the wait body and exit with the container's status

With -t the container has a terminal: output is raw bytes (no frames), and our own terminal
is put in raw mode so that every key (ctrl-c too) goes to the container. ctrl-p ctrl-q
detaches: we leave, the container keeps running (the client detects these keys, not the
daemon).

Exit statuses follow docker's (start_error_status): 125 when the daemon refused
(create/start failed), 126 when the command cannot be executed ("permission denied"), 127
when it was not found, otherwise the container's own status.

The flags (docker's names, docker's meaning; parse_* below turn each into its JSON):
-e/--env, -v/--volume, -m/--memory, --pids-limit, -p/--publish, --network, -w/--workdir,
-u/--user, --entrypoint, -h/--hostname, --name, --rm, -d, -i, -t.
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
from dataclasses import dataclass

from labkit.cli.pull import pull_image
from labkit.client import APIError, Attachment, Client, Waiter, streams
from labkit.distribution.reference import DEFAULT_TAG, Reference, parse_reference
from labkit.units import ram_in_bytes

EXIT_DAEMON_ERROR = 125
EXIT_CANNOT_INVOKE = 126
EXIT_NOT_FOUND = 127
DETACH_KEYS = b"\x10\x11"  # ctrl-p ctrl-q, docker's default --detach-keys


def add_parser(sub) -> None:
    # add_help=False: -h is --hostname here, as in docker run; --help stays
    p = sub.add_parser("run", help="create and start a container from an image", add_help=False)
    p.add_argument("--help", action="help", help="show this help message and exit")
    add_container_flags(p)
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    p.add_argument("-d", "--detach", action="store_true", help="print the ID, do not wait")
    p.add_argument("image")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="command and arguments")
    p.set_defaults(func=command, error_status=EXIT_DAEMON_ERROR)


def add_container_flags(p: argparse.ArgumentParser) -> None:
    """The flags that describe a container (docker's `create` shares them with `run`)."""
    p.add_argument("-i", "--interactive", action="store_true", help="send our stdin to the container")
    p.add_argument("-t", "--tty", action="store_true", help="give the container a terminal")
    p.add_argument("--name", help="container name")
    p.add_argument("-e", "--env", action="append", default=[], metavar="KEY[=VALUE]",
                   help="set an environment variable (KEY alone: take it from ours)")
    p.add_argument("-v", "--volume", action="append", default=[],
                   metavar="[SRC:]DEST[:ro]", help="bind a host path or a named volume; DEST "
                   "alone is an anonymous volume")
    p.add_argument("-m", "--memory", help="memory limit, e.g. 64m (binary units)")
    p.add_argument("--pids-limit", type=int, help="at most this many processes")
    p.add_argument("-p", "--publish", action="append", default=[],
                   metavar="[IP:][HOSTPORT:]PORT[/PROTO]", help="publish a container's port")
    p.add_argument("--network", help="none, host, bridge, container:NAME or a network's name")
    p.add_argument("-w", "--workdir", help="working directory inside the container")
    p.add_argument("-u", "--user", help="user[:group] to run as")
    p.add_argument("--entrypoint", help="replace the image's ENTRYPOINT")
    p.add_argument("-h", "--hostname", help="the container's hostname")


# -- flags -> the create request ---------------------------------------------------------

def parse_env(items: list[str], environ: dict[str, str] | None = None) -> list[str] | None:
    """-e KEY=VALUE as it is; -e KEY takes our own value, or is dropped if we have none
    (docker's opts.ValidateEnv)."""
    environ = os.environ if environ is None else environ
    out = []
    for item in items:
        if "=" in item:
            if item.startswith("="):
                raise ValueError(f"invalid environment variable: {item}")
            out.append(item)
        elif item in environ:
            out.append(f"{item}={environ[item]}")
    return out or None


def parse_volumes(items: list[str]) -> tuple[list[str], dict[str, dict]]:
    """-v SRC:DEST[:MODE] -> HostConfig.Binds (SRC a host path or a volume's name);
    -v DEST -> Config.Volumes {DEST: {}}, an anonymous volume the daemon makes."""
    binds, volumes = [], {}
    for item in items:
        parts = item.split(":")
        if len(parts) == 1:
            if not item.startswith("/"):
                raise ValueError(f"invalid volume specification: '{item}': "
                                 "a container path must be absolute")
            volumes[item] = {}
        elif len(parts) in (2, 3) and parts[0] and parts[1].startswith("/"):
            binds.append(item)
        else:
            raise ValueError(f"invalid volume specification: '{item}'")
    return binds, volumes


def parse_ports(items: list[str]) -> tuple[dict[str, dict], dict[str, list[dict]]]:
    """-p [IP:][HOSTPORT:]PORT[/PROTO] -> (Config.ExposedPorts, HostConfig.PortBindings),
    e.g. "127.0.0.1:8080:80" -> {"80/tcp": {}}, {"80/tcp": [{"HostIp": "127.0.0.1",
    "HostPort": "8080"}]}. A missing HOSTPORT ("" in the binding) lets the daemon choose."""
    exposed: dict[str, dict] = {}
    bindings: dict[str, list[dict]] = {}
    for item in items:
        spec, _, proto = item.partition("/")
        proto = proto or "tcp"
        parts = spec.rsplit(":", 2)
        host_ip, host_port = "", ""
        if len(parts) == 3:
            host_ip, host_port, port = parts
        elif len(parts) == 2:
            host_port, port = parts
        else:
            port = parts[0]
        host_ip = host_ip.strip("[]")  # [::1]:8080:80
        if not port.isdigit() or (host_port and not host_port.isdigit()) or \
                proto not in ("tcp", "udp", "sctp"):
            raise ValueError(f"invalid port specification: {item!r}")
        key = f"{port}/{proto}"
        exposed[key] = {}
        bindings.setdefault(key, []).append({"HostIp": host_ip, "HostPort": host_port})
    return exposed, bindings


def container_config(args: argparse.Namespace) -> dict:
    """The body of POST /containers/create: a Config with HostConfig and NetworkingConfig
    nested, built from the flags as the docker CLI builds it (cli/command/container/opts.go).

    What each flag becomes, and why some fields depend on -d:
        IMAGE, CMD          Image (as typed: the daemon normalizes it), Cmd (None = the image's)
        -i / -t             OpenStdin / Tty; attached and interactive: AttachStdin, StdinOnce
        not -d              AttachStdout, AttachStderr (a detached run attaches nothing)
        -e, -w, -u, -h      Env, WorkingDir, User, Hostname
        --entrypoint X      Entrypoint [X] ("" = no entrypoint at all: [""])
        -v, -p              Binds / Volumes, PortBindings / ExposedPorts (parse_volumes, …)
        -m, --pids-limit    HostConfig.Memory (bytes), HostConfig.PidsLimit
        --rm, --network     HostConfig.AutoRemove, HostConfig.NetworkMode ("default")
    """
    # BEGIN SOLUTION chapter="10" hint="docker run --help names every flag; INTERFACES.md §1.3 shows the body the docker CLI sends for hello-world and for -it"
    # TODO: build the create request's JSON body from the parsed flags (args.image, args.cmd,
    # TODO: args.interactive, args.tty, args.detach, args.rm, args.env, args.volume, …)
    # HINT: parse_env, parse_volumes and parse_ports (above) do the fiddly parts
    # HINT: attached = not args.detach; AttachStdin and StdinOnce only when interactive and attached
    attached = not args.detach
    binds, volumes = parse_volumes(args.volume)
    exposed, port_bindings = parse_ports(args.publish)
    host_config: dict = {
        "AutoRemove": args.rm,
        "NetworkMode": args.network or "default",
        "Binds": binds or None,
        "PortBindings": port_bindings or None,
    }
    if args.memory:
        host_config["Memory"] = ram_in_bytes(args.memory)
    if args.pids_limit is not None:
        host_config["PidsLimit"] = args.pids_limit
    return {
        "Image": args.image,
        "Cmd": args.cmd or None,
        "Entrypoint": None if args.entrypoint is None else [args.entrypoint],
        "Env": parse_env(args.env),
        "WorkingDir": args.workdir or "",
        "User": args.user or "",
        "Hostname": args.hostname or "",
        "AttachStdin": args.interactive and attached,
        "AttachStdout": attached,
        "AttachStderr": attached,
        "Tty": args.tty,
        "OpenStdin": args.interactive,
        "StdinOnce": args.interactive and attached,
        "Volumes": volumes or None,
        "ExposedPorts": exposed or None,
        "Labels": {},
        "HostConfig": host_config,
        "NetworkingConfig": {"EndpointsConfig": {}},
    }
    # END SOLUTION


def create(client: Client, config: dict, name: str | None, ref: Reference) -> str:
    """POST /containers/create; on 404 (the daemon lacks the image) pull it and create again,
    exactly once, as the docker CLI does. Returns the new container's ID."""
    # BEGIN SOLUTION chapter="10" hint="the daemon never pulls by itself on create: a 404 APIError is the CLI's cue"
    # TODO: create the container; if the daemon answers 404, say
    # TODO: "Unable to find image '<ref.familiar()>' locally" on stderr, pull, and create again
    # HINT: client.create_container(config, name); pull_image(client, ref, sys.stderr)
    # HINT: print the daemon's Warnings as "WARNING: …" lines on stderr
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
    # END SOLUTION


# -- the attached session ----------------------------------------------------------------

def start_error_status(message: str) -> int:
    """docker's mapping of a failed start to an exit status (cli/command/container/run.go):
    127 for a command that is not there, 126 for one that cannot be executed, 125 else."""
    # BEGIN SOLUTION chapter="10" hint="the runtime's error text travels up unchanged: look for its words"
    # TODO: 127 if the message says "executable file not found" or "no such file or directory",
    # TODO: 126 if it says "permission denied", else 125 (EXIT_DAEMON_ERROR)
    if "executable file not found" in message or "no such file or directory" in message:
        return EXIT_NOT_FOUND
    if "permission denied" in message:
        return EXIT_CANNOT_INVOKE
    return EXIT_DAEMON_ERROR
    # END SOLUTION


@dataclass
class Session:
    """A started, attached container: its output socket and the pending wait."""

    attachment: Attachment
    waiter: Waiter


def attach_wait_start(client: Client, cid: str, *, stdin: bool, tty: bool,
                      condition: str = "next-exit") -> Session:
    """Attach, register the wait, then start — in this order, as the docker CLI does.

    Attach before start: output written before we listen would be lost (hello-world prints
    and exits within milliseconds). Wait before start: a container that exits at once must
    still have its exit status reported. If start fails, both connections are closed and the
    APIError goes up (the caller turns it into 125/126/127)."""
    # BEGIN SOLUTION chapter="10" hint="INTERFACES.md §1.3 steps 6-8: attach, wait, start"
    # TODO: client.attach(...), then client.wait(cid, condition), then client.start(cid);
    # TODO: close what you opened if start fails, and re-raise
    attachment = client.attach(cid, stdin=stdin, tty=tty)
    try:
        waiter = client.wait(cid, condition)
    except BaseException:
        attachment.close()
        raise
    try:
        client.start(cid)
    except BaseException:
        waiter.close()
        attachment.close()
        raise
    return Session(attachment, waiter)
    # END SOLUTION


def copy_output(frames, out, err, failures: list[str]) -> None:
    """Write each frame of the attach stream where it belongs: stream 1 to `out`, 2 to `err`
    (binary files, flushed at once: the user watches), 3 — the daemon's own error — into
    `failures`. `frames` is Attachment.frames(): labkit.stdcopy's decoder has already split
    the multiplexed bytes (with a TTY, everything arrives as stdout)."""
    try:
        # BEGIN SOLUTION chapter="10" hint="labkit/stdcopy.py: STDOUT=1, STDERR=2, SYSTEMERR=3"
        # TODO: for each frame (frame.stream, frame.data): route it to out, err or failures
        for frame in frames:
            if frame.stream == streams.SYSTEMERR:
                failures.append(frame.data.decode(errors="replace").strip())
                continue
            target = err if frame.stream == streams.STDERR else out
            target.write(frame.data)
            target.flush()
        # END SOLUTION
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


def terminal_size() -> tuple[int, int] | None:
    """(rows, columns) of our terminal; None when stdout is none or its size is unknown (0x0,
    a fresh pty): the docker CLI sends no resize then."""
    try:
        size = os.get_terminal_size(sys.stdout.fileno())
    except OSError:
        return None
    return (size.lines, size.columns) if size.lines and size.columns else None


def resize(client: Client, cid: str) -> None:
    size = terminal_size()
    if size:
        try:
            client.resize(cid, *size)
        except APIError:
            pass  # the container has already gone: nothing to resize


def pump(attachment: Attachment, *, interactive: bool, tty: bool,
         on_started=None) -> tuple[bool, list[str]]:
    """Copy stdin to the attachment (-i) and its output to ours until the daemon closes it.
    Returns (detached by ctrl-p ctrl-q, failures). Shared by run, start -a and exec."""
    detached = threading.Event()
    if interactive:
        threading.Thread(target=copy_input, args=(attachment, tty, detached), daemon=True).start()
    else:
        attachment.close_stdin()  # as the CLI does: the output direction stays open
    failures: list[str] = []
    reader = threading.Thread(target=copy_output, daemon=True,
                              args=(attachment.frames(), sys.stdout.buffer, sys.stderr.buffer,
                                    failures))
    with raw_terminal(tty and interactive):
        reader.start()
        if on_started:
            on_started()
        reader.join()
    return detached.is_set(), failures


def attached(client: Client, cid: str, *, interactive: bool, tty: bool,
             condition: str = "next-exit") -> int:
    """Steps 2-5 for a created container: the run (and `start -a`) session; the exit status."""
    try:
        session = attach_wait_start(client, cid, stdin=interactive, tty=tty, condition=condition)
    except APIError as e:
        print(f"labkit: Error response from daemon: {e.message}", file=sys.stderr)
        return start_error_status(e.message)

    def started() -> None:
        if tty:
            resize(client, cid)
            signal.signal(signal.SIGWINCH, lambda *_: resize(client, cid))

    try:
        detached, failures = pump(session.attachment, interactive=interactive, tty=tty,
                                  on_started=started)
        if detached:
            print("\nread escape sequence", file=sys.stderr)
            return 0
        result = session.waiter.result()
    finally:
        session.waiter.close()
        session.attachment.close()
    for failure in failures:
        print(f"labkit: {failure}", file=sys.stderr)
    error = (result.get("Error") or {}).get("Message")
    if error:
        print(f"labkit: {error}", file=sys.stderr)
    return int(result.get("StatusCode", EXIT_DAEMON_ERROR))


def command(client: Client, args: argparse.Namespace) -> int:
    if args.tty and args.interactive and not sys.stdin.isatty():
        print("labkit: the input device is not a TTY", file=sys.stderr)
        return 1
    ref = parse_reference(args.image)
    if not ref.tag and not ref.digest:
        ref = Reference(ref.domain, ref.path, DEFAULT_TAG)
    config = container_config(args)
    if args.tty and not args.detach and (size := terminal_size()):
        config["HostConfig"]["ConsoleSize"] = list(size)
    cid = create(client, config, args.name, ref)

    if args.detach:
        try:
            client.start(cid)
        except APIError as e:
            print(f"labkit: Error response from daemon: {e.message}", file=sys.stderr)
            return start_error_status(e.message)
        print(cid)
        return 0
    return attached(client, cid, interactive=args.interactive, tty=args.tty,
                    condition="removed" if args.rm else "next-exit")
