"""The container's init: from a forked copy of the runtime to the user's program.

`labkit-runc create` builds the container with three processes. The runtime itself (R)
must EXIT when create is done (the shim, its caller, waits for it), while the container's
first process (init) must stay behind, blocked, with its namespaces built. And because
unshare(CLONE_NEWPID) only puts the caller's future CHILDREN in the new pid namespace,
it takes two forks to get a pid 1:

    R: labkit-runc create             C1: bootstrap                C2: init (pid 1 inside)
    ---------------------             -------------                -----------------------
    mkdir <root>/<id>, mkfifo
    exec.fifo, cgroup dirs,
    socketpair (the sync channel)
    fork ---------------------------> join the cgroup
                                      setns() the namespaces with a
                                      path; unshare() the new ones
    <------ {"type": "userns"} ------ (a new user namespace first)
    write its uid_map, gid_map
    ------- {"type": "mapped"} ----->
                                      fork ----------------------> (in the new namespaces)
    <------ {"type": "pid", pid} ---- exit(0)
    state.json gets init's pid                                     make mounts private,
    (delete can find it from now on)                               hostname, rootfs mounts,
                                                                   /dev
    <------------------------------- {"type": "hooks"} ----------- (only if there are hooks)
    run prestart + createRuntime
    hooks (they see the namespaces)
    ------------------------------- {"type": "continue"} -------->
                                                                   pivot_root, console,
                                                                   sysctl, masked/ro paths,
                                                                   rlimits, cwd, find the
                                                                   executable, ids, caps
    <------------------------------- {"type": "warning", msg} ---- (any number, any time)
    <------------------------------- {"type": "error", msg} ------ (then exit 1) or:
    <------------------------------- {"type": "ready"} ----------- close the channel
    write --pid-file, waitpid(C1)                                  open exec.fifo O_WRONLY:
    exit 0  (C2 is re-parented to                                  BLOCKS until a reader
    the nearest subreaper: the shim)                               (or exit 1 once the state
                                                                   directory is gone)
    labkit-runc start: open exec.fifo for reading, read 1 byte --> write "0" and go on:
    unlink exec.fifo                                               startContainer hooks
                                                                   execve(args)

Messages are JSON objects, one per line, on an AF_UNIX socketpair both children inherit.
The channel closes (EOF for R) when every child holding it has exited or closed it: R reads
that as "init died before it was ready".

Everything below runs in forked children: they never return into the CLI code, they end
with os._exit or execve. And since pivot_root takes the host filesystem away, every module
init needs is imported here, at the top, before the fork (json and subprocess, for hooks
only, are imported by init itself before pivot_root, when the config has startContainer hooks).
The hooks themselves are run by hooks.py, which start and delete use too.
"""

from __future__ import annotations

import os
import signal
import socket
from collections import namedtuple

TYPE_CHECKING = False           # typing only for type checkers: it would cost `create` ~4 ms
if TYPE_CHECKING:
    from typing import NoReturn

from labkit import mountopts, namespaces, quickjson, syscalls as sc   # namespaces: chapter 01
from labkit.runc import cgroups, mounts, process as proc, seccomp
from labkit.runc.config import Spec
from labkit.runc.hooks import run_hooks
from labkit.runc.log import ContainerError


class ExecError(ContainerError):
    """The program cannot be started (runc does not prefix these with "container init")."""


class SyncChannel:
    """One end of the parent<->child channel: JSON objects, one per line."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._buffer = b""

    def send(self, message: dict) -> None:
        self.sock.sendall(quickjson.dumps(message).encode() + b"\n")

    def recv(self) -> dict | None:
        """The next message, or None when every writer has gone away."""
        while b"\n" not in self._buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return quickjson.loads(line)

    def close(self) -> None:
        self.sock.close()


class InitArgs(namedtuple("InitArgs", "spec bundle rootfs state_dir_fd sync console_sock "
                                      "no_pivot cgroup_paths has_runtime_hooks oci_state "
                                      "preserve_fds", defaults=(None, False, {}, False, {}, 0))):
    """What the runtime prepared for its children (fds are inherited through fork). A named
    tuple, neither a dataclass nor typing's: labkit.procfs says why.

        spec               config.json (a Spec)
        bundle, rootfs     their absolute paths
        state_dir_fd       <root>/<id>, to reach exec.fifo after pivot_root
        sync               the SyncChannel to the runtime
        console_sock       --console-socket's connected socket, or None
        no_pivot           --no-pivot: MS_MOVE + chroot instead of pivot_root
        cgroup_paths       the container's cgroup directories (never changed: a default is shared)
        has_runtime_hooks  prestart/createRuntime: R must run them
        oci_state          id, bundle, …: the hooks' stdin
        preserve_fds       fds 3 .. 3+N-1 go on to the program
    """

    __slots__ = ()


def close_other_fds(keep: set[int], preserve: int) -> None:
    """The program gets stdio and the --preserve-fds ones, nothing else the runtime's caller
    happened to leave open. Read /proc/self/fd while it is still the host's /proc."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd < 3 or fd in keep:
            continue
        if fd < 3 + preserve:
            os.set_inheritable(fd, True)
            continue
        try:
            os.close(fd)
        except OSError:
            pass                                        # the fd of the listdir itself


def describe(e: BaseException) -> str:
    """An exception as one lower-case line that names what failed."""
    if isinstance(e, OSError):
        text = e.strerror or str(e)
        # syscalls already wrote "mount /proc: EPERM"; os.* errors carry the file name
        if e.filename is not None and str(e.filename) not in text:
            text = f"{e.filename}: {text.lower()}"
        return text
    return str(e) or type(e).__name__


def _send_error(sync: SyncChannel, e: BaseException) -> None:
    kind = "exec" if isinstance(e, ExecError) else "init"
    try:
        sync.send({"type": "error", "stage": kind, "msg": describe(e)})
    except OSError:
        # The channel is closed once init said "ready" (a startContainer hook failed after
        # `start`, say): the container's stderr is all that is left to tell.
        try:
            os.write(2, f"labkit-runc init: {describe(e)}\n".encode())
        except OSError:
            pass


# --- C1 ------------------------------------------------------------------------------------
JOIN_ORDER = {"user": 0, "mount": 2}        # everything else: 1


def become_root() -> None:
    """In a user namespace we start as the overflow uid until mapped: become its root
    (uid/gid 0 inside, the mapped host ids outside) so files we create have an owner."""
    try:
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    except OSError:
        pass                     # 0 is not mapped: stay who we are; set_identity decides


def write_id_maps(pid: int, spec: Spec) -> None:
    """R's half of the user-namespace set-up: /proc/<pid>/uid_map and gid_map, written from
    the parent namespace, each in ONE write (man 7 user_namespaces)."""
    linux = spec.get("linux") or {}
    for filename, key in (("uid_map", "uidMappings"), ("gid_map", "gidMappings")):
        text = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in linux[key])
        fd = os.open(f"/proc/{pid}/{filename}", os.O_WRONLY)
        try:
            os.write(fd, text.encode())
        except OSError as e:
            raise ContainerError(f"write {filename} {text.strip()!r}: "
                                 f"{e.strerror.lower()}") from None
        finally:
            os.close(fd)


def bootstrap(a: InitArgs) -> NoReturn:
    """C1: enter the cgroup and the namespaces, fork the container's pid 1, report its pid."""
    try:
        # The cgroup first: everything forked from here on is born inside it, so no process
        # of the container ever runs unaccounted.
        cgroups.join(a.cgroup_paths, os.getpid())

        # Namespaces with a `path` are joined, the others created. Open every path BEFORE
        # joining anything: joining a mount namespace changes what the paths point to.
        listed = [(ns["type"], ns.get("path") or None) for ns in
                  (a.spec.get("linux") or {}).get("namespaces") or []]
        to_join = []
        for kind, path in listed:
            if path:
                try:
                    to_join.append((kind, os.open(path, os.O_RDONLY)))
                except OSError as e:
                    raise ContainerError(f"open {kind} namespace {path}: "
                                         f"{e.strerror.lower()}") from None
        # The user namespace first (it grants the rights to join the others), mount last.
        to_join.sort(key=lambda item: JOIN_ORDER.get(item[0], 1))
        for kind, fd in to_join:
            namespaces.join_namespace(kind, fd)              # chapter 01: setns(2)
            os.close(fd)
            if kind == "user":
                become_root()

        # A NEW user namespace comes first and alone, so that the namespaces created next
        # belong to it; the runtime (outside) writes its uid/gid maps while we wait.
        if ("user", None) in listed:
            sc.unshare(sc.CLONE_NEWUSER)
            a.sync.send({"type": "userns", "pid": os.getpid()})
            if (a.sync.recv() or {}).get("type") != "mapped":
                os._exit(1)                              # R reported what went wrong
            become_root()

        # Every other listed namespace without a path is new: ONE unshare with the flags
        # chapter 01's namespace_flags gives. CLONE_NEWPID takes effect only for the fork below.
        new = namespaces.namespace_flags([kind for kind, path in listed
                                          if not path and kind != "user"])
        if new:
            sc.unshare(new)

        pid = os.fork()
        if pid == 0:
            run_init(a)                                            # never returns
        # In C1, fork() returns the child's pid in C1's OWN pid namespace, which is the
        # runtime's (the host's): exactly the pid the runtime must write to --pid-file.
        a.sync.send({"type": "pid", "pid": pid})
        os._exit(0)
    except BaseException as e:
        _send_error(a.sync, e)
        os._exit(1)


# --- C2 ------------------------------------------------------------------------------------
def run_init(a: InitArgs) -> NoReturn:
    try:
        container_init(a)
    except BaseException as e:
        _send_error(a.sync, e)
        os._exit(1)


def container_init(a: InitArgs) -> NoReturn:
    """C2, the container's pid 1: build the container's view of the system, then wait for
    `start` and become the user's program. Each step's position is deliberate."""
    spec, process = a.spec, a.spec["process"]
    linux = spec.get("linux") or {}
    rootfs = a.rootfs
    # our pid as the host sees it (/proc is still the host's here), for the hooks' state
    state = dict(a.oci_state, pid=int(os.readlink("/proc/self")), status="created")
    # Only what init itself needs stays open (besides stdio and --preserve-fds).
    close_other_fds({a.sync.sock.fileno(), a.state_dir_fd}
                    | ({a.console_sock.fileno()} if a.console_sock else set()), a.preserve_fds)

    def warn(msg: str) -> None:
        a.sync.send({"type": "warning", "msg": msg})

    reset_signals()

    # Without a mount namespace of its own (none listed in the config: the spec says the
    # container then shares the runtime's), everything below happens in the HOST's mount
    # table: its propagation is left alone, the mounts appear on the host (the runtime
    # detaches them at delete: create.py) and the root changes by chroot (step 7).
    own_mounts = "mount" in {ns["type"] for ns in linux.get("namespaces") or []}

    # 1. Make every mount in our (new) mount namespace private before touching anything:
    #    otherwise mounts below would propagate back to the host's shared mounts. The
    #    default, rprivate, is chapter 01's make_mounts_private. A config asking for
    #    (r)slave or (r)shared gets rslave: host mounts still reach us, ours never reach the
    #    host. The root's own propagation (shared, unbindable …) is set after pivot_root
    #    (step 7): pivot_root refuses a shared root, and a shared mount here would share
    #    with the host.
    propagation = linux.get("rootfsPropagation") or "rprivate"
    if not own_mounts:
        pass
    elif propagation in ("slave", "rslave", "shared", "rshared"):
        sc.mount(None, "/", None, sc.MS_SLAVE | sc.MS_REC)
    else:
        namespaces.make_mounts_private()

    # 2. The hostname: only affects our new UTS namespace (config.py refused it otherwise);
    #    chapter 01's set_hostname.
    if spec.get("hostname"):
        namespaces.set_hostname(spec["hostname"])

    # 3. pivot_root needs the new root to be a mount point: bind the rootfs onto itself.
    sc.mount(rootfs, rootfs, None, sc.MS_BIND | sc.MS_REC)

    # 4. config.json's mounts, in order (order matters: /dev before /dev/pts). /proc is
    #    mounted here, by a process that is already in the new pid namespace, so it shows
    #    the container's processes only.
    os.umask(0)                      # modes below are exactly the ones the spec asks for
    for m in spec.get("mounts") or []:
        mounts.mount_entry(rootfs, a.bundle, m, a.cgroup_paths)

    # 5. /dev: device nodes and symlinks, into the tmpfs mounted at /dev by step 4.
    mounts.populate_dev(rootfs, linux.get("devices") or [])

    # 6. Hooks that must see the container's namespaces but not yet its root: prestart and
    #    createRuntime run in the runtime (R); createContainer here, in our namespaces.
    if a.has_runtime_hooks:
        a.sync.send({"type": "hooks"})
        if (a.sync.recv() or {}).get("type") != "continue":
            os._exit(1)                                  # R reported the hook's failure
    run_hooks((spec.get("hooks") or {}).get("createContainer"), state)
    if (spec.get("hooks") or {}).get("startContainer"):
        import json  # noqa: F401  hooks.run_hook's (step 17): pivot_root takes the library away
        import subprocess  # noqa: F401

    # 7. Swap the root: afterwards the host's files are out of reach (only fds opened
    #    before, like state_dir_fd and the console socket, still lead out). Then the root's
    #    own propagation (step 1), now that it is the container's root and no host mount.
    #    What only some configs need is loaded first, from the host's library: the console
    #    code (step 8) and libseccomp (steps 14/18). Not at import: every `create` would pay.
    if process.get("terminal"):
        from labkit.runc import console
    profile = linux.get("seccomp")
    if profile and not seccomp.available():
        warn("seccomp: libseccomp is not installed: the filter is skipped")
        profile = None
    if own_mounts:
        mounts.enter_root(rootfs, a.no_pivot)   # pivot_root, the old root detached
        if propagation != "rprivate":
            sc.mount(None, "/", None, mountopts.PROPAGATION[propagation])
    else:
        # the host's mount table: pivot_root or MS_MOVE would move the HOST's root
        os.chdir(rootfs)
        os.chroot(".")
        os.chdir("/")

    # 8. The terminal, after pivot_root: the pty must come from the container's devpts.
    if process.get("terminal"):
        if a.console_sock is None:
            raise ContainerError("process.terminal is set but no --console-socket was given")
        console.setup(a.console_sock, process.get("consoleSize"), console=True)

    # 9. sysctls go through /proc/sys, so before step 11 makes /proc/sys read-only.
    for key, value in (linux.get("sysctl") or {}).items():
        with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
            f.write(str(value))

    # 10. The working directory is created if missing, so before the root turns read-only.
    proc.prepare_cwd(process.get("cwd") or "/")

    # 11. Read-only root, then read-only and masked paths (all after pivot_root: they are
    #     container paths, and masking uses the container's /dev/null).
    if (spec.get("root") or {}).get("readonly"):
        sc.mount(None, "/", None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY
                 | mounts.current_flags("/"))
    for path in linux.get("readonlyPaths") or []:
        mounts.readonly_path(path)
    for path in linux.get("maskedPaths") or []:
        mounts.mask_path(path)
    for key in ("apparmorProfile", "selinuxLabel"):
        if linux.get(key) or process.get(key):
            warn(f"{key} is not supported by labkit-runc: skipped")

    # 12. Resource settings of the process itself, while we still have every capability.
    if process.get("oomScoreAdj") is not None:
        try:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write(str(process["oomScoreAdj"]))
        except OSError as e:
            warn(f"oom_score_adj {process['oomScoreAdj']}: {e.strerror.lower()}")
    proc.apply_rlimits(process.get("rlimits") or [], warn)

    # 13. Find the program NOW, so that a typo fails `create` (docker then exits 127)
    #     instead of a container that dies after `start`.
    program, env = find_program(process)

    # BEGIN SOLUTION chapter="04" hint="runtime-spec runtime.md, 'Lifecycle'; man 2 seccomp and man 2 prctl, PR_SET_NO_NEW_PRIVS"
    # TODO: the last steps (14-18): become the user (with its capabilities, and seccomp
    # TODO: if no_new_privs is off), tell the runtime "ready" and close the channel, wait
    # TODO: for `start` on exec.fifo, run the startContainer hooks (status "running"), load
    # TODO: seccomp now if no_new_privs is on, then execve the program
    # HINT: become_user(process, profile, warn); a.sync.send({"type": "ready"}); a.sync.close()
    # HINT: wait_for_start(a.state_dir_fd), then close that fd; run_hooks(hooks, dict(state, …))
    # HINT: os.execve(program, process["args"], env); if it fails: a line on fd 2, os._exit(127)
    # 14. Become the configured user with the configured capabilities: the last
    #     privileged step.
    become_user(process, profile, warn)

    # 15. Tell the runtime we are ready (it writes state.json and the pid file, then exits),
    #     and close our end: nothing more will be said.
    a.sync.send({"type": "ready"})
    a.sync.close()

    # 16. Wait for `start` (it may never come: see wait_for_start).
    wait_for_start(a.state_dir_fd)
    os.close(a.state_dir_fd)

    # 17. startContainer hooks run inside the container, after start, before the program.
    run_hooks((spec.get("hooks") or {}).get("startContainer"), dict(state, status="running"))

    # 18. With no_new_privs the filter goes on last, so it need not allow what init does,
    #     only what the program does. Then become the program: execve keeps our pid (1),
    #     namespaces, cgroup, stdio and the seccomp filter.
    if profile and process.get("noNewPrivileges"):
        seccomp.load(profile)
    try:
        os.execve(program, process["args"], env)
    except OSError as e:
        os.write(2, f"labkit-runc: exec {program}: {e.strerror.lower()}\n".encode())
        os._exit(127)
    # END SOLUTION


START_CHECK_INTERVAL = 1.0       # seconds between "is my state directory still there?"


def wait_for_start(state_dir_fd: int) -> None:
    """Block until `labkit-runc start` opens exec.fifo, then tell it we go on.

    Opening a fifo for writing blocks until someone opens it for reading. Through the
    directory fd: the fifo's host path is invisible after pivot_root.

    If the state directory is removed while we wait (by hand, or a lab reset), nobody can
    ever open this fifo again, and we would wait forever, an orphan no `delete` can find.
    So a timer (SIGALRM every START_CHECK_INTERVAL) interrupts the open, and the handler
    checks that the fifo still has its name; once it has none, init exits. The interrupted
    open is retried by Python otherwise (PEP 475), so a `start` is answered at once.
    """
    def check(_signum, _frame) -> None:
        try:
            os.stat("exec.fifo", dir_fd=state_dir_fd)
        except FileNotFoundError:
            os.write(2, b"labkit-runc init: the container's state was removed before start: "
                        b"exiting\n")
            os._exit(1)

    signal.signal(signal.SIGALRM, check)
    signal.setitimer(signal.ITIMER_REAL, START_CHECK_INTERVAL, START_CHECK_INTERVAL)
    try:
        fifo = os.open("exec.fifo", os.O_WRONLY | os.O_CLOEXEC, dir_fd=state_dir_fd)
    finally:
        # Disarm in this order: an ignored signal is dropped, so no tick that is still on
        # its way can run `check` once `start` has unlinked the fifo; the timer would
        # survive execve, SIG_IGN too, hence the default disposition last.
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
    os.write(fifo, b"0")
    # The fifo stays open (O_CLOEXEC): execve closes it, and `start`, reading on to EOF,
    # learns that the program has really been exec'd (poststart hooks run only then).


def reset_signals() -> None:
    """Python ignores SIGPIPE and SIGXFSZ and handles SIGINT itself; ignored dispositions
    survive execve, so undo that (`yes | head` must end with SIGPIPE inside too)."""
    for signum in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)


def find_program(process: dict) -> tuple[str, dict]:
    """Enter process.cwd and find process.args[0] on the process's own PATH: returns the
    executable's path and the environment to exec it with."""
    os.chdir(process.get("cwd") or "/")
    env = proc.environment(process)
    try:
        return proc.find_executable(process["args"][0], env), env
    except ContainerError as e:
        raise ExecError(str(e)) from None


def become_user(process: dict, profile: dict | None, warn) -> None:
    """The configured user with the configured capabilities (process.py explains the
    order), and its umask. Without no_new_privs, installing a seccomp filter needs
    CAP_SYS_ADMIN: then it goes on first, while we still have it (with no_new_privs, last,
    just before execve)."""
    if profile and not process.get("noNewPrivileges"):
        seccomp.load(profile)
    proc.set_identity(process, warn)
    os.umask(int((process.get("user") or {}).get("umask", 0o022)))

