"""`labkit-runc exec [--process P.json] [--detach] [--pid-file F] [--console-socket S]
                    [--tty] [--cwd D] [--env K=V]... [--user UID[:GID]] ID [COMMAND ARG...]`

Run one more process inside a running container (`docker exec`). Nothing is built: the
process JOINS what init already has, through the nsfs files /proc/<init>/ns/<type>
(man 2 setns), and init's cgroup. Like create, it takes two forks, because joining a pid
namespace also only applies to the children of the caller:

    R: labkit-runc exec            E1                              E2 (in the container)
    fork ------------------------> join the cgroup, setns() each
                                   namespace (mount last)
                                   fork ------------------------> cwd, console, rlimits,
    <---- {"type": "pid", pid} --- exit(0)                         find the executable,
                                                                   user and capabilities
    <------------------------------------------ {"type": "ready"} - execve(args)
    write --pid-file; with --detach exit 0, else wait for E2 (we are its subreaper)

The process is described by an OCI `process` object: --process gives one (that is what
the shim sends); otherwise it is the container's own process with the COMMAND, --env,
--cwd, --tty and --user given here.
"""

from __future__ import annotations

import argparse
import json
import os
import socket

import prctl

from labkit import namespaces, syscalls as sc   # namespaces: chapter 01's code
from labkit.namespaces import NAMESPACES
from labkit.runc import cgroups, config, console, log, process as proc, seccomp
from labkit.runc.container import Container
from labkit.runc.create import _kill_quietly, _write_pid_file
from labkit.runc.init import JOIN_ORDER, SyncChannel, _send_error, become_root, become_user, \
    find_program, reset_signals
from labkit.runc.log import ContainerError
from labkit.runc.run import ConsoleListener, attach_terminal, wait_forwarding_signals, \
    window_size


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--process", "-p", help="a JSON file holding an OCI process object")
    p.add_argument("--detach", "-d", action="store_true", help="do not wait for the process")
    p.add_argument("--pid-file", help="write the process's host pid here")
    p.add_argument("--console-socket", help="unix socket to send the pty master to")
    p.add_argument("--tty", "-t", action="store_true", help="allocate a pseudo-terminal")
    p.add_argument("--cwd", help="working directory inside the container")
    p.add_argument("--env", "-e", action="append", default=[], help="KEY=value, repeatable")
    p.add_argument("--user", "-u", help="UID[:GID]")
    p.add_argument("--preserve-fds", type=int, default=0, help="accepted, ignored")
    p.add_argument("--pidfd-socket", help="accepted, ignored")
    p.add_argument("id")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="COMMAND")


def build_process(c: Container, args: argparse.Namespace) -> dict:
    if args.process:
        try:
            with open(args.process) as f:
                process = json.load(f)
        except (OSError, ValueError) as e:
            raise ContainerError(f"cannot read process {args.process}: {e}") from None
    else:
        if not args.cmd:
            raise ContainerError("exec: no command given (and no --process)")
        process = json.loads(json.dumps(c.config.get("process") or {}))
        process["args"] = args.cmd
        process["env"] = (process.get("env") or []) + args.env
        if args.cwd:
            process["cwd"] = args.cwd
        if args.tty:
            process["terminal"] = True
        if args.user:
            uid, _, gid = args.user.partition(":")
            if not uid.isdigit() or (gid and not gid.isdigit()):
                raise ContainerError(f"exec: --user {args.user!r}: want UID[:GID] (numbers)")
            process["user"] = {"uid": int(uid), "gid": int(gid or 0)}
    if not isinstance(process, dict):
        raise ContainerError("exec: the process must be a JSON object")
    config.check_process(process, "exec")
    return process


def run(args: argparse.Namespace) -> int:
    c = Container.load(args.root, args.id)
    status = c.status()
    if status in ("stopped", "paused"):                 # runc's wording
        raise ContainerError(f"cannot exec in a {status} state")
    process = build_process(c, args)
    if process.get("terminal") and not args.console_socket and args.detach:
        raise ContainerError("cannot allocate tty if runc will detach without setting "
                             "console socket")
    own_terminal = bool(process.get("terminal")) and not args.console_socket
    if own_terminal and not process.get("consoleSize"):
        # our terminal's size, set on the pty BEFORE the program runs (console.setup)
        size = window_size()
        if size:
            process["consoleSize"] = size
    if not args.detach:
        prctl.set_child_subreaper(True)
    profile = (c.config.get("linux") or {}).get("seccomp") if seccomp.available() else None
    master = None
    with ConsoleListener(own_terminal) as console:
        pid = spawn(c, process, console.path or args.console_socket, profile)
        if console.path:
            master = console.receive()
    if args.pid_file:
        _write_pid_file(args.pid_file, pid)
    if args.detach:
        return 0
    if master is not None:
        return attach_terminal(pid, master)
    return wait_forwarding_signals(pid)


def spawn(c: Container, process: dict, console_socket: str | None,
          profile: dict | None = None) -> int:
    """Fork E1/E2 and follow the sync channel; return E2's host pid once it is ready."""
    console_sock = None
    if process.get("terminal"):
        if not console_socket:
            raise ContainerError("exec: process.terminal needs --console-socket")
        console_sock = console.connect(console_socket)
    # the namespaces the container has (new or joined): reach them through init
    ns_fds = [(kind, os.open(f"/proc/{c.pid}/ns/{NAMESPACES[kind].file}", os.O_RDONLY))
              for kind in config.namespaces(c.config)]
    parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    child = os.fork()
    if child == 0:
        parent_end.close()
        _bootstrap(c, process, ns_fds, console_sock, SyncChannel(child_end), profile)
    child_end.close()
    for _kind, fd in ns_fds:
        os.close(fd)
    if console_sock is not None:
        console_sock.close()
    sync = SyncChannel(parent_end)
    pid = 0
    try:
        while True:
            msg = sync.recv()
            if msg is None:
                raise ContainerError("exec failed: unable to start container process: "
                                     "the process exited before it was ready")
            if msg["type"] == "pid":
                pid = msg["pid"]
            elif msg["type"] == "warning":
                log.warning(msg["msg"])
            elif msg["type"] == "error":
                stage = "" if msg.get("stage") == "exec" else "error executing setns process: "
                raise ContainerError(f"exec failed: unable to start container process: "
                                     f"{stage}{msg['msg']}")
            elif msg["type"] == "ready" and pid:
                return pid
            elif msg["type"] == "ready":
                # E2 can be quicker than E1's report: wait for the pid, it is on its way
                msg = sync.recv()
                if msg and msg.get("type") == "pid":
                    return msg["pid"]
    except BaseException:
        if pid:
            _kill_quietly(pid)
        raise
    finally:
        sync.close()
        os.waitpid(child, 0)


def _bootstrap(c: Container, process: dict, ns_fds: list[tuple[str, int]],
               console_sock: socket.socket | None, sync: SyncChannel, profile: dict | None):
    """E1: join the cgroup and the namespaces, fork E2, report its pid, exit."""
    try:
        cgroups.join(c.cgroup_paths, os.getpid())
        for kind, fd in sorted(ns_fds, key=lambda item: JOIN_ORDER.get(item[0], 1)):
            namespaces.join_namespace(kind, fd)              # chapter 01: setns(2)
            os.close(fd)
            if kind == "user":
                become_root()
        pid = os.fork()
        if pid == 0:
            _exec_process(process, console_sock, sync, profile)
        sync.send({"type": "pid", "pid": pid})
        os._exit(0)
    except BaseException as e:
        _send_error(sync, e)
        os._exit(1)


def _exec_process(process: dict, console_sock: socket.socket | None, sync: SyncChannel,
                  profile: dict | None):
    """E2: the same last steps as init's (init.py steps 8, 12-14, 18), then execve. The
    process gets the container's seccomp filter too."""
    try:
        reset_signals()

        def warn(msg: str) -> None:
            sync.send({"type": "warning", "msg": msg})

        # joining the mount namespace put us at its root; our cwd must be set again
        os.chdir("/")
        if process.get("terminal"):
            console.setup(console_sock, process.get("consoleSize"), console=False)
        proc.apply_rlimits(process.get("rlimits") or [], warn)
        program, env = find_program(process)
        become_user(process, profile, warn)
        sync.send({"type": "ready"})
        sync.close()
        if profile and process.get("noNewPrivileges"):
            seccomp.load(profile)
        os.execve(program, process["args"], env)
    except BaseException as e:
        _send_error(sync, e)
        os._exit(1)
