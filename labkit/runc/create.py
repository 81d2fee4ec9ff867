"""`labkit-runc create [--bundle B] [--pid-file F] [--console-socket S] [--no-pivot] ID`

Build the container and leave its init blocked just before execve, then exit 0. The
runtime (this process) does the host-side work and supervises its children through the
sync channel; init.py has the diagram of who does what.

Host-side work, in order:
  1. read and check config.json (a mistake is reported before anything is created);
  2. <root>/<id>/ (mkdir is the lock: a second create with the same id fails) and exec.fifo;
  3. the cgroup directories with their limits (linux.cgroupsPath, linux.resources);
  4. connect to --console-socket (a host path, unreachable from init after pivot_root);
  5. fork the bootstrap child, then follow the sync channel until init is ready; init's pid
     (as the HOST sees it) goes into state.json the moment the bootstrap child reports it;
  6. write --pid-file. Then exit: the caller (the shim, a subreaper) inherits init.

On any failure everything is undone (init killed, cgroup and state removed) and the error
is reported as runc does: "runc create failed: unable to start container process: …".
"""

from __future__ import annotations

import os
import signal
import socket

from labkit import procfs
from labkit.runc import cgroups, config, log, mounts, network
from labkit.runc.container import OCI_VERSION, Container, check_id, now_rfc3339
from labkit.runc.delete import kill_and_wait, release
from labkit.runc.hooks import run_hooks
from labkit.runc.init import InitArgs, SyncChannel, bootstrap, write_id_maps
from labkit.runc.log import ContainerError

# argparse only for readers and type checkers: `create` is run by main.quick_args, which
# spares it argparse's import (main.py says why)
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", "-b", default=".", help="path to the bundle (default: .)")
    p.add_argument("--pid-file", help="write init's host pid here")
    p.add_argument("--console-socket", help="unix socket to send the pty master to")
    p.add_argument("--no-pivot", action="store_true", help="use MS_MOVE+chroot, not pivot_root")
    p.add_argument("--no-new-keyring", action="store_true", help="accepted, no effect")
    p.add_argument("--preserve-fds", type=int, default=0,
                   help="pass fds 3 .. 3+N-1 on to the container")
    p.add_argument("--pidfd-socket", help="accepted, ignored")
    p.add_argument("id")


def run(args: argparse.Namespace) -> int:
    create(args.root, args.id, args.bundle, args.pid_file, args.console_socket, args.no_pivot,
           preserve_fds=args.preserve_fds)
    return 0


def create(root: str, container_id: str, bundle: str, pid_file: str | None = None,
           console_socket: str | None = None, no_pivot: bool = False,
           verb: str = "create", preserve_fds: int = 0) -> Container:
    """Create the container; return its state. Raises ContainerError with runc's wording."""
    prefix = f"runc {verb} failed: "
    try:
        check_id(container_id)
        bundle = os.path.abspath(bundle)
        spec = config.load(bundle)
        if (spec["process"].get("terminal") and not console_socket and verb == "create"):
            raise ContainerError("cannot allocate tty if runc will detach without setting "
                                 "console socket")
    except ContainerError as e:
        raise ContainerError(prefix + str(e)) from None
    rootfs = config.rootfs_path(spec, bundle)
    if not os.path.isdir(rootfs):
        raise ContainerError(f"{prefix}rootfs ({rootfs}) does not exist")

    os.makedirs(root, mode=0o700, exist_ok=True)
    state_dir = os.path.join(root, container_id)
    try:
        os.mkdir(state_dir, 0o711)
    except FileExistsError:
        raise ContainerError(prefix + "container with given ID already exists") from None

    c = Container(id=container_id, state_dir=state_dir, bundle=bundle, rootfs=rootfs,
                  created=now_rfc3339(), annotations=spec.get("annotations") or {}, config=spec)
    try:
        # exec.fifo: mode 0622 so that init can still open it after becoming another user
        os.mkfifo(c.fifo_path, 0o622)
        os.chmod(c.fifo_path, 0o622)
        linux = spec.get("linux") or {}
        if linux.get("cgroupsPath"):
            c.cgroup_paths = cgroups.paths_for(linux["cgroupsPath"], container_id)
            c.cgroup_created = cgroups.create(c.cgroup_paths, linux.get("resources") or {})
        if "mount" not in config.namespaces(spec):
            # init will mount in the HOST's table, on top of the rootfs: remember what was
            # there before, so that delete detaches exactly what the container added
            c.host_rootfs_mounts = mounts.mount_ids_at(rootfs)
        c.save()                     # from here on, `delete` can clean up after us
        _spawn(c, spec, bundle, rootfs, console_socket, no_pivot, preserve_fds)
        if pid_file:
            _write_pid_file(pid_file, c.pid)
    except BaseException as e:
        if c.pid:
            try:
                kill_and_wait(c)     # init first: the state directory goes only once it is dead
            except ContainerError:
                raise                # it outlived SIGKILL: keep the state, `delete` finds it
            except Exception as broken:
                # The status code itself failed (a course workspace's Container.init_alive
                # not written yet): init got its SIGKILL, so clean up anyway and report the
                # error that made create fail, not this one.
                log.warning(f"while cleaning up: {type(broken).__name__}: {broken}")
        try:
            release(c)               # cgroup directories, mounts on the host
        except Exception as cleanup:
            # the error that stopped create is the one to report, not a clean-up's
            log.warning(f"clean-up after a failed create: {cleanup}")
        c.remove_state()
        if isinstance(e, ContainerError):
            raise ContainerError(prefix + str(e)) from None
        if isinstance(e, OSError):
            raise ContainerError(f"{prefix}{e.strerror or e}"
                                 + (f": {e.filename}" if e.filename else "")) from None
        raise
    return c


def _spawn(c: Container, spec: dict, bundle: str, rootfs: str, console_socket: str | None,
           no_pivot: bool, preserve_fds: int = 0) -> None:
    """Steps 4-5: fork the bootstrap child and follow the sync channel to "ready". Init's
    pid goes into state.json the moment we learn it: if we die before the end, `delete`
    still finds the init (blocked on exec.fifo) and kills it."""
    hooks = spec.get("hooks") or {}
    console_sock = None
    if console_socket and spec["process"].get("terminal"):
        try:
            console_sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            console_sock.connect(console_socket)
        except OSError as e:
            raise ContainerError(f"connect to console socket {console_socket}: "
                                 f"{(e.strerror or str(e)).lower()}") from None
    parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    state_dir_fd = os.open(c.state_dir, os.O_DIRECTORY | os.O_RDONLY)
    oci_state = {"ociVersion": OCI_VERSION, "id": c.id, "bundle": bundle, "rootfs": rootfs,
                 "annotations": c.annotations}
    a = InitArgs(spec=spec, bundle=bundle, rootfs=rootfs, state_dir_fd=state_dir_fd,
                 sync=SyncChannel(child_end), console_sock=console_sock, no_pivot=no_pivot,
                 cgroup_paths=c.cgroup_paths, oci_state=oci_state, preserve_fds=preserve_fds,
                 has_runtime_hooks=bool(hooks.get("prestart") or hooks.get("createRuntime")))
    child = os.fork()
    if child == 0:
        parent_end.close()
        bootstrap(a)                                  # never returns
    # Our copies of the children's ends must go, or we would never see EOF on the channel.
    child_end.close()
    os.close(state_dir_fd)
    if console_sock is not None:
        console_sock.close()

    sync = SyncChannel(parent_end)
    init_pid = 0
    hooks_wanted = ready = False
    new_netns = config.new_namespace(spec, "network")
    try:
        # Done when init is ready AND C1 has told us its pid: the two come from different
        # processes, so either may arrive first.
        while not (ready and init_pid):
            msg = sync.recv()
            if msg is None:
                raise ContainerError("unable to start container process: container init "
                                     "exited before it was ready")
            kind = msg.get("type")
            if kind == "pid":
                init_pid = msg["pid"]
                stat = procfs.stat(init_pid)
                c.pid, c.start_time = init_pid, stat.start_time if stat else 0
                c.save()
                if new_netns:
                    # while init builds its mounts (network.py says why here)
                    try:
                        network.loopback_up(init_pid)
                    except FileNotFoundError:
                        pass      # init has died already: its own error follows on the channel
                    except OSError as e:
                        raise ContainerError(f"unable to start container process: loopback "
                                             f"interface up: {e}") from None
            elif kind == "warning":
                log.warning(msg["msg"])
            elif kind == "error":
                stage = "" if msg.get("stage") == "exec" else "error during container init: "
                raise ContainerError(f"unable to start container process: {stage}{msg['msg']}")
            elif kind == "hooks":
                hooks_wanted = True
            elif kind == "userns":
                write_id_maps(msg["pid"], spec)
                sync.send({"type": "mapped"})
            elif kind == "ready":
                ready = True
            # The pid arrives from C1 and the rest from C2, so "hooks" may overtake "pid":
            # run hooks only once both are in.
            if hooks_wanted and init_pid:
                hooks_wanted = False
                # The status each hook sees: prestart, in the lifecycle of runtime-spec 1.0
                # (where it runs once `start` is called), "created", as the runtime-tools
                # validation expects; createRuntime, part of the create operation (1.1),
                # "creating".
                try:
                    run_hooks(hooks.get("prestart"), dict(oci_state, pid=init_pid,
                                                          status="created"))
                    run_hooks(hooks.get("createRuntime"), dict(oci_state, pid=init_pid,
                                                               status="creating"))
                except ContainerError as e:
                    raise ContainerError(f"unable to start container process: error running "
                                         f"hook: {e}") from None
                sync.send({"type": "continue"})
    finally:
        sync.close()
        os.waitpid(child, 0)                           # C1 is our child: reap it


def _write_pid_file(path: str, pid: int) -> None:
    # write then rename: a reader never sees a half-written pid
    path = os.path.abspath(path)
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, path)


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
