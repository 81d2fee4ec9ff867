"""`labkit-shim`: the command line containerd uses for every shim, and the shim daemon.

The command line is containerd-shim-runc-v2's (Go flag syntax: one dash, long names), always
run with the bundle as the working directory::

    labkit-shim -namespace NS -address CONTAINERD_SOCK -publish-binary BIN -id ID [-debug] start
    labkit-shim -namespace NS -address CONTAINERD_SOCK -publish-binary BIN -id ID delete
    labkit-shim -namespace NS -address CONTAINERD_SOCK -id ID [-debug]        (the daemon itself)

`start` is the handshake, and why it looks the way it does::

    containerd ──runs──▶ labkit-shim … start            (cwd = bundle)
                           1. socket = /run/labkit/s/<sha256(address/ns/id)>, listen on it
                           2. re-exec itself without the verb, in a new session (setsid),
                              the listening socket as fd 3 ──▶ the daemon (lives on)
                           3. write <bundle>/address
                           4. print "unix:///run/labkit/s/<hex>", exit 0
    containerd ◀──reads the address; dials it; Task.Create, Task.Start …

- The socket is listening *before* the daemon exists, so containerd can dial as soon as it
  reads the address: connections wait in the listen backlog until the daemon accepts.
- The daemon is in its own session and, once `start` exits, has no parent but init (or
  containerd, if that is a subreaper): killing containerd, or its process group, leaves the shim
  and the container running. That is the point of the shim.
- The socket's name is derived from (containerd address, namespace, id), so a restarted
  containerd can recompute it; it is also in <bundle>/address, which is what containerd reads.

`delete` is the clean-up containerd runs when a shim is dead: `runtime delete --force`, unmount
the rootfs, and print a protobuf DeleteResponse on stdout.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import socket
import stat
import sys
import threading
from datetime import datetime, timezone

from labkit.shim import log as shim_log
from labkit.shim.log import getLogger

# `start` runs once per container and must be quick: containerd waits for it. It imports only
# what the handshake needs; the daemon's modules (the task service, ttrpc, protobuf) and
# `delete`'s are imported where those are run.

log = getLogger("labkit.shim")

LISTEN_FD = 3   # where the daemon finds its listening socket, as containerd's shims do


def socket_address(containerd_address: str, namespace: str, id: str) -> str:
    """unix:///run/labkit/s/<sha256hex(address/ns/id)>: short enough for sun_path (108 bytes)."""
    import hashlib   # here: `start` and `delete` need it, the daemon does not (OpenSSL is ~3 MB)

    from labkit import paths

    digest = hashlib.sha256(f"{containerd_address}/{namespace}/{id}".encode()).hexdigest()
    return f"unix://{paths.SHIM_SOCKETS / digest}"


def socket_path(address: str) -> str:
    return address[len("unix://"):] if address.startswith("unix://") else address


def can_connect(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        try:
            s.connect(path)
            return True
        except OSError:
            return False


def listen(path: str) -> socket.socket | None:
    """Listen on `path`; None if a live shim already answers there."""
    if len(os.fsencode(path)) > 107:
        # sun_path in struct sockaddr_un holds 108 bytes, NUL included (man 7 unix)
        raise OSError(errno.ENAMETOOLONG, f"shim socket path {path} is {len(os.fsencode(path))} bytes, "
                      "over the 107 a unix socket allows (use a shorter LABKIT_RUN_DIR)")
    os.makedirs(os.path.dirname(path), mode=0o711, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
    except OSError as e:
        if e.errno != errno.EADDRINUSE:
            sock.close()
            raise
        if can_connect(path):
            sock.close()
            return None
        os.unlink(path)           # a dead shim's socket: take the name over
        sock.bind(path)
    os.chmod(path, 0o600)
    sock.listen(128)
    return sock


def _open_log(bundle: str) -> int:
    """The daemon's stderr: the bundle's `log` fifo if containerd reads it, else a file."""
    log_path = os.path.join(bundle, "log")
    try:
        if stat.S_ISFIFO(os.stat(log_path).st_mode):
            # O_NONBLOCK so that the open fails (ENXIO) instead of hanging when nobody reads.
            fd = os.open(log_path, os.O_WRONLY | os.O_NONBLOCK)
            os.set_blocking(fd, True)
            return fd
    except FileNotFoundError:
        pass
    except OSError:
        log_path = os.path.join(bundle, "shim.log")
    return os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)


# ------------------------------------------------------------------ start

def _daemon_environment(module: str) -> dict[str, str]:
    """The daemon's environment: ours, with the import path this process found spelled out.

    The daemon lives as long as its container, so it is started lean: `python -S` skips the
    `site` module, whose start-up work (the virtualenv's .pth files, among them the finder of
    an editable install) costs every Python process ~3 MB. Without `site`, the daemon finds
    its modules through PYTHONPATH: where this process found labkit (the package this module
    belongs to, and labkit's reference) and then this process's sys.path (site-packages: prctl,
    protobuf). The programs the daemon runs (the runtime) get back the PYTHONPATH its caller gave."""
    import labkit

    def root_of(package) -> str:        # the directory that holds the package's directory
        return os.path.dirname(os.path.dirname(os.path.realpath(package.__file__)))

    # labkit, or a workspace's labkit_student, then labkit's reference
    roots = [root_of(sys.modules[module.partition(".")[0]]), root_of(labkit)]
    search = list(dict.fromkeys(roots + [p for p in sys.path if p]))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(search))
    env[_CALLER_PYTHONPATH] = os.environ.get("PYTHONPATH", "")
    return env


_CALLER_PYTHONPATH = "LABKIT_SHIM_CALLER_PYTHONPATH"

def cmd_start(args: Options) -> int:
    bundle = os.getcwd()
    address = socket_address(args.address, args.namespace, args.id)
    listener = listen(socket_path(address))
    if listener is not None:
        with listener:
            # Re-exec this very module (a student's workspace runs labkit_student.shim.main).
            module = __spec__.name if __spec__ else "labkit.shim.main"
            argv = [sys.executable, "-S", "-m", module, "-namespace", args.namespace,
                    "-id", args.id, "-address", args.address]
            if args.publish_binary:
                argv += ["-publish-binary", args.publish_binary]
            if args.debug:
                argv.append("-debug")
            devnull = os.open(os.devnull, os.O_RDWR)
            logfd = _open_log(bundle)
            if listener.fileno() == LISTEN_FD:
                listener.set_inheritable(True)
            try:
                # posix_spawn can place the socket on fd 3 and call setsid() in the child, the
                # two things the shim protocol asks of the re-exec.
                os.posix_spawn(argv[0], argv, _daemon_environment(module), setsid=True, file_actions=[
                    (os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1),
                    (os.POSIX_SPAWN_DUP2, logfd, 2),
                    (os.POSIX_SPAWN_DUP2, listener.fileno(), LISTEN_FD)])
            finally:
                os.close(devnull)
                os.close(logfd)
    with open(os.path.join(bundle, "address"), "w") as f:
        f.write(address)
    print(address)
    return 0


# ------------------------------------------------------------------ delete

def cmd_delete(args: Options) -> int:
    from labkit.shim.rootfs import unmount_rootfs
    from labkit.shim.runtime import OCIRuntimeError, RuntimeOptions, open_runtime
    from labkit.wire.shim import messages

    bundle = os.getcwd()
    try:
        options = RuntimeOptions.load(bundle)
    except ValueError as e:
        print(f"labkit-shim: {e}; using the default runtime", file=sys.stderr)
        options = RuntimeOptions()
    try:
        open_runtime(options, args.namespace, bundle).delete(args.id, force=True)
    except (OCIRuntimeError, ValueError) as e:
        if "does not exist" not in str(e):
            print(f"labkit-shim: runtime delete --force {args.id}: {e}", file=sys.stderr)
    unmount_rootfs(os.path.join(bundle, "rootfs"))
    # The dead shim's socket, unless a shim still answers on it.
    path = socket_path(socket_address(args.address, args.namespace, args.id))
    if os.path.exists(path) and not can_connect(path):
        os.unlink(path)
    try:
        with open(os.path.join(bundle, "init.pid")) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        pid = 0
    # As containerd's runc shim: the task is reported killed (128 + SIGKILL).
    resp = messages.DeleteResponse(pid=pid, exit_status=128 + signal.SIGKILL)
    resp.exited_at.FromDatetime(datetime.now(timezone.utc))
    sys.stdout.buffer.write(resp.SerializeToString())
    sys.stdout.flush()
    return 0


# ------------------------------------------------------------------ the daemon

def run_daemon(args: Options) -> int:
    from labkit.shim.events import Publisher
    from labkit.shim.service import TaskService
    from labkit.wire.ttrpc import Server

    # The runtime (and any program the shim runs) sees the PYTHONPATH its caller had, not
    # the one `start` composed for this process (see _daemon_environment).
    if _CALLER_PYTHONPATH in os.environ:
        caller = os.environ.pop(_CALLER_PYTHONPATH)
        if caller:
            os.environ["PYTHONPATH"] = caller
        else:
            os.environ.pop("PYTHONPATH", None)
    shim_log.configure(shim_log.DEBUG if args.debug else shim_log.INFO, f"shim[{os.getpid()}] {args.id}")
    try:
        listener = socket.socket(fileno=LISTEN_FD)
    except OSError as e:
        print(f"labkit-shim: no listening socket on fd {LISTEN_FD} ({e.strerror}); "
              "run `labkit-shim … start` instead", file=sys.stderr)
        return 1
    # Events go back to containerd's ttrpc socket, which it names in our environment.
    service = TaskService(args.namespace,
                          publisher=Publisher(os.environ.get("TTRPC_ADDRESS", ""), args.namespace))
    # SIGCHLD wakes the main thread through a pipe (signal.set_wakeup_fd); a Python handler
    # must be installed for the wake-up byte to be written, even one that does nothing.
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    # SIGTERM stops the shim cleanly (socket removed); its containers keep running, orphaned.
    signal.signal(signal.SIGTERM, lambda signum, frame: service.shutdown_requested.set())

    def after_response() -> None:
        if service.shutdown_requested.is_set():
            os.write(wake_w, b"\0")   # the Shutdown answer is sent: now the main loop may exit

    server = Server(listener, service.handlers(), after_response=after_response)
    threading.Thread(target=server.serve_forever, daemon=True, name="ttrpc-accept").start()
    log.info("serving on %s (namespace %s)", listener.getsockname(), args.namespace)

    last_failure = ""
    while not service.shutdown_requested.is_set():
        select.select([wake_r], [], [], 1.0)
        try:
            os.read(wake_r, 512)
        except BlockingIOError:
            pass
        try:
            service.reaper.sweep()
        except Exception as e:
            # The shim must outlive a bug in its reaper: its container still needs it. The
            # same failure reaches containerd as the answer to the next Create or Exec.
            if str(e) != last_failure:
                log.error("reaping failed: %s", e)
                last_failure = str(e)

    path = listener.getsockname()
    server.close()
    service.events.flush(2.0)   # the last events (/tasks/delete) on their way to containerd
    try:
        os.unlink(path)
    except OSError:
        pass
    log.info("shut down")
    return 0


# ------------------------------------------------------------------ command line

class Options:
    """The parsed command line: one attribute per flag, `action` the verb ("" = the daemon)."""

    def __init__(self) -> None:
        self.namespace = ""      # "" until parsed: then the flag, or labkit.paths' default
        self.address = ""
        self.publish_binary = ""
        self.id = ""
        self.bundle = ""
        self.socket = ""
        self.debug = False
        self.version = False
        self.action = ""


# Go's flag syntax, as containerd's shims take it: -name value, -name=value, --name the same;
# a bool flag alone is true. Parsing stops at the first argument that is not a flag (the verb).
# (Hand-written rather than argparse: every shim, one per container, would carry argparse's
# ~1.7 MB of imports for the life of its container.)
_VALUE_FLAGS = {"namespace": "namespace", "address": "address", "publish-binary": "publish_binary",
                "id": "id", "bundle": "bundle", "socket": "socket"}
_BOOL_FLAGS = {"debug": "debug", "v": "version", "version": "version"}
USAGE = """usage: labkit-shim [-namespace NS] [-address CONTAINERD_SOCK] [-publish-binary BIN]
                   -id ID [-bundle DIR] [-debug] [start | delete]
       labkit-shim -v

labkit's containerd shim (shim v2 protocol over ttrpc), run in the bundle directory:
  start    launch the shim daemon for container ID and print its socket address
  delete   clean up after a dead shim: runtime delete --force, unmount the rootfs
  (none)   the daemon itself, as `start` runs it (its listening socket on fd 3)

  -namespace NS        containerd namespace (default %s)
  -address SOCK        containerd's socket; the shim's socket name derives from it
  -publish-binary BIN  binary to publish events back to containerd (accepted, unused)
  -id ID               the container (task) id
  -bundle DIR          the bundle, if not the working directory
  -socket PATH         accepted for compatibility
  -debug               log at debug level
  -v                   print the version and exit
"""


class UsageError(Exception):
    pass


def parse_args(argv: list[str]) -> Options:
    options = Options()
    rest = list(argv)
    while rest and rest[0].startswith("-") and rest[0] not in ("-", "--"):
        flag, has_value, value = rest.pop(0).lstrip("-").partition("=")
        if flag in ("h", "help"):
            raise UsageError("")
        if flag in _BOOL_FLAGS:
            if has_value and value not in ("true", "false", "1", "0"):
                raise UsageError(f"invalid boolean value {value!r} for -{flag}")
            setattr(options, _BOOL_FLAGS[flag], value in ("", "true", "1"))
        elif flag in _VALUE_FLAGS:
            if not has_value:
                if not rest:
                    raise UsageError(f"flag needs an argument: -{flag}")
                value = rest.pop(0)
            setattr(options, _VALUE_FLAGS[flag], value)
        else:
            raise UsageError(f"flag provided but not defined: -{flag}")
    if rest and rest[0] == "--":
        rest.pop(0)
    if rest:
        if rest[0] not in ("start", "delete") or len(rest) > 1:
            raise UsageError(f"unknown command {' '.join(rest)!r} (start or delete)")
        options.action = rest[0]
    if not (options.namespace and options.address):
        from labkit import paths     # (`start` passes both to the daemon: it never needs this)

        options.namespace = options.namespace or paths.NAMESPACE
        options.address = options.address or str(paths.CONTAINERD_SOCK)
    return options


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as e:
        from labkit import paths

        print((f"labkit-shim: {e}\n" if str(e) else "") + USAGE % paths.NAMESPACE,
              file=sys.stderr if str(e) else sys.stdout)
        return 2 if str(e) else 0
    if args.version:
        from labkit.shim.service import SHIM_VERSION

        print(SHIM_VERSION)
        return 0
    if not args.id:
        print("labkit-shim: -id is required", file=sys.stderr)
        return 2
    if args.bundle:
        try:
            os.chdir(args.bundle)
        except OSError as e:
            print(f"labkit-shim: cannot use bundle {args.bundle}: {e.strerror}", file=sys.stderr)
            return 1
    try:
        if args.action == "start":
            return cmd_start(args)
        if args.action == "delete":
            return cmd_delete(args)
        return run_daemon(args)
    except OSError as e:
        detail = f"{e.filename}: {e.strerror}" if e.filename else (e.strerror or str(e))
        print(f"labkit-shim {args.action or 'daemon'}: {detail}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
