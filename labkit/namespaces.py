"""Chapter 01: processes and namespaces -- isolation built from raw system calls.

Theory of operation
-------------------
A *process* is a running program: an address space, open files, credentials, and a process
id (pid). Linux makes a new process with clone(2) -- Python's os.fork() is clone() without
flags -- and the child starts as a copy of its parent. Every process has a directory
/proc/<pid> that describes it; /proc/self is the caller's own.

A *namespace* wraps one global resource so that the processes inside it get their own copy.
A container is nothing but an ordinary process that lives in new namespaces (plus cgroups
for limits and a different root filesystem, chapters 02 and 03). The kinds this chapter uses
(man 7 namespaces):

    kind       flag           isolates                                   /proc/<pid>/ns/<file>
    uts        CLONE_NEWUTS   hostname and NIS domain name               uts
    pid        CLONE_NEWPID   process ids: the first process is pid 1    pid
    mount      CLONE_NEWNS    the list of mounts (the oldest namespace,  mnt
                              hence the odd flag name)
    network    CLONE_NEWNET   interfaces, addresses, routes, ports       net
    ipc        CLONE_NEWIPC   System V IPC, POSIX message queues         ipc

(user and cgroup namespaces exist too: namespace_flags knows them, for labkit-runc, but the
chapter's experiments leave them alone.)

This module is not a side copy: labkit-runc, the OCI runtime under every `docker run` of the
lab, creates and joins a container's namespaces with these very functions (labkit/runc/
init.py: namespace_flags and join_namespace, then make_mounts_private and set_hostname inside;
`labkit-runc run` reports the exit with exit_status). Select your workspace for this layer --
`labkit lab use namespaces workspace` -- and every container the lab starts is made by your
code; an exercise not done yet makes `docker run` fail with its name.

Three system calls move processes between namespaces:

    clone(2)    create a child in new namespaces (CLONE_NEW* flags)
    unshare(2)  move the CALLER into new namespaces
    setns(2)    move the caller into an EXISTING namespace, named by an open
                /proc/<pid>/ns/<file> (what `docker exec` and `nsenter` do)

Python's os module has none of them; labkit.syscalls (the one module that reaches the kernel
through ctypes) provides unshare and setns, and we combine unshare with os.fork.

Namespaces are objects in the kernel, each with an inode number: readlink("/proc/<pid>/ns/uts")
gives "uts:[4026531838]". Two processes share a namespace exactly when these links are equal;
that is how this chapter (and `lsns`) tells them apart. A namespace lives as long as something
refers to it -- a process inside, an open fd of its ns file, or a bind mount of it -- so the
namespaces made here vanish with the processes we start.

Two rules make the order of the steps below matter:

* A PID namespace applies to the caller's CHILDREN, not to the caller. A process's pid
  cannot change while it runs (getpid() must keep returning the same number), so
  unshare(CLONE_NEWPID) only decides where the next fork()ed child is born. That child is
  pid 1 of the new namespace -- its init: when it exits, the kernel kills everything else in
  the namespace. Hence two forks: the parent forks a child that unshares, and that child
  forks the grandchild that becomes pid 1. (runc does the same; see labkit/runc/init.py.)

* /proc shows the pid namespace of whoever MOUNTED it. After entering a new pid namespace,
  /proc still lists the host's processes until a fresh procfs is mounted -- which needs a
  new mount namespace, or we would cover the host's /proc for everyone. And a new mount
  namespace starts as a copy whose mounts may still be *shared* with the host (mount
  propagation, man 7 mount_namespaces): a mount made in one peer then shows up in the other.
  So before mounting anything, the new mount namespace is made private with
  mount(NULL, "/", NULL, MS_REC|MS_PRIVATE) -- what `unshare --propagation private` does.

The life of one `run_isolated(fn, ["uts", "pid", "mount"], hostname="box")`:

    parent (caller)            child                            grandchild (pid 1 inside)
    ---------------            -----                            -------------------------
    namespace_flags(kinds)
    fork -------------------->  unshare(NEWUTS|NEWPID|NEWNS)
                                set_hostname("box")
                                make_mounts_private()
                                fork -------------------------->  mount_proc("/proc")
                                waitpid(grandchild)               fn()  ... exit(status)
                                exit(same status) <--------------
    waitpid(child) <-----------
    return the status

The functions marked as exercises (`# BEGIN SOLUTION` in the reference) are the ones a student
writes in a workspace (`labkit lab workspace DIR`); checkpoint cp01 (tests/checkpoints/
test_cp01_namespaces.py) grades them. The plumbing around them -- reporting a failed set-up
to the parent, returning fn's value -- is given.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections import namedtuple

# pickle, tempfile and traceback are imported inside run_isolated's helpers below, not here:
# labkit-runc imports this module for every `create` and needs none of them (~5 ms). Nor
# typing (it brings re: ~4 ms): its names are only for readers and type checkers.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

from labkit import syscalls


class Kind(namedtuple("Kind", "flag file")):
    """One kind of namespace: the flag that creates it and the name of its file in /proc/<pid>/ns/.

        flag    (int) the CLONE_NEW* flag of clone(2), unshare(2) and setns(2)
        file    (str) /proc/<pid>/ns/<file>: "mnt" for mount, "net" for network
    """

    __slots__ = ()


# Every kind of namespace a container gets, by the names the OCI runtime spec gives them
# (config.json's linux.namespaces[].type), in the order `lsns` lists them. This table is the
# one labkit has: labkit-runc creates and joins namespaces with it, the course's diagrams
# read /proc/<pid>/ns/<file> with it. Chapter 01 uses the five KINDS below.
NAMESPACES: dict[str, Kind] = {
    "mount": Kind(syscalls.CLONE_NEWNS, "mnt"),
    "uts": Kind(syscalls.CLONE_NEWUTS, "uts"),
    "ipc": Kind(syscalls.CLONE_NEWIPC, "ipc"),
    "pid": Kind(syscalls.CLONE_NEWPID, "pid"),
    "network": Kind(syscalls.CLONE_NEWNET, "net"),
    "user": Kind(syscalls.CLONE_NEWUSER, "user"),
    "cgroup": Kind(syscalls.CLONE_NEWCGROUP, "cgroup"),
}

# The namespace kinds of this chapter, in the order run_isolated documents them, and the name
# of each kind's file in /proc/<pid>/ns/ (see namespace_id()).
KINDS: tuple[str, ...] = ("uts", "pid", "mount", "network", "ipc")
NS_FILES: dict[str, str] = {kind: ns.file for kind, ns in NAMESPACES.items()}

# Exit status of a child whose namespaces could not be set up (docker run uses 125 when the
# container could not be created: the program itself never ran).
SETUP_FAILED = 125


class IsolatedError(RuntimeError):
    """The isolated process could not be set up, or fn failed inside it; the message says why."""


# --- exercises -------------------------------------------------------------------------------

def namespace_flags(kinds: list[str]) -> int:
    """The CLONE_NEW* flags for namespace kinds: ["uts", "pid"] -> CLONE_NEWUTS | CLONE_NEWPID.

    `kinds` are the OCI names (the keys of NAMESPACES: this chapter's KINDS, and "user" and
    "cgroup", which labkit-runc asks for too). Raises ValueError naming the first unknown kind.
    """
    # BEGIN SOLUTION chapter="01" hint="man 2 unshare (the CLONE_NEW* flags); NAMESPACES[kind].flag is each kind's flag"
    # TODO: OR together the CLONE_NEW* flag of each kind; a kind not in NAMESPACES is a ValueError
    # A string would otherwise be read letter by letter: "uts" as "u", "t", "s".
    if isinstance(kinds, str) or not isinstance(kinds, (list, tuple, set, frozenset)):
        raise ValueError(f"namespace kinds must be a list such as ['uts', 'pid'], got {kinds!r}")
    result = 0
    for kind in kinds:
        if not isinstance(kind, str) or kind not in NAMESPACES:
            raise ValueError(f"unknown namespace kind {kind!r} "
                             f"(expected one of {', '.join(NAMESPACES)})")
        result |= NAMESPACES[kind].flag
    return result
    # END SOLUTION


def join_namespace(kind: str, fd: int) -> None:
    """Move the caller into the existing namespace of `kind` open as `fd` (an open
    /proc/<pid>/ns/<file>, or a bind mount of one): what `docker run --network container:web`,
    `docker exec` and nsenter(1) do. The caller keeps the fd; closing it is theirs."""
    if kind not in NAMESPACES:
        raise ValueError(f"unknown namespace kind {kind!r} (expected one of {', '.join(NAMESPACES)})")
    # BEGIN SOLUTION chapter="01" hint="man 2 setns (nstype: the CLONE_NEW* flag makes the kernel check the fd's kind)"
    # HINT: labkit.syscalls has setns(fd, nstype); NAMESPACES[kind].flag is the nstype
    # TODO: join the namespace
    syscalls.setns(fd, NAMESPACES[kind].flag)
    # END SOLUTION


def namespace_id(kind: str, pid: int | str = "self") -> str:
    """The identity of process `pid`'s namespace of `kind`, e.g. "uts:[4026531838]".

    `kind` is one of KINDS ("mount", "network" …) or a file name of /proc/<pid>/ns ("mnt",
    "net", "user", "cgroup" …). Two processes share a namespace when their ids are equal.
    """
    name = NS_FILES.get(kind, kind) if isinstance(kind, str) else ""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"unknown namespace kind {kind!r} (expected one of {', '.join(KINDS)})")
    if pid != "self" and not (isinstance(pid, (int, str)) and str(pid).isdigit()):
        raise ValueError(f"pid must be a process id or 'self', got {pid!r}")
    # BEGIN SOLUTION chapter="01" hint="man 7 namespaces, section 'The /proc/[pid]/ns/ directory'"
    # HINT: each entry is a symbolic link whose target is the namespace's id: os.readlink
    # TODO: read the link /proc/<pid>/ns/<name>
    try:
        return os.readlink(f"/proc/{pid}/ns/{name}")
    except FileNotFoundError:
        if not os.path.isdir(f"/proc/{pid}"):
            raise ValueError(f"no process {pid} (no /proc/{pid})") from None
        raise ValueError(f"unknown namespace kind {kind!r} (no /proc/{pid}/ns/{name}; "
                         f"expected one of {', '.join(KINDS)})") from None
    # END SOLUTION


def set_hostname(name: str) -> None:
    """Set the hostname of the caller's UTS namespace (the host's, unless it unshared one!)."""
    if not isinstance(name, str) or not name or len(name.encode()) > 64 or "\0" in name:
        raise ValueError(f"hostname must be 1 to 64 bytes without NUL, got {name!r}")
    # BEGIN SOLUTION chapter="01" hint="man 2 sethostname"
    # HINT: Python has this one already, in the socket module
    # TODO: set the hostname
    socket.sethostname(name)
    # END SOLUTION


def make_mounts_private() -> None:
    """Stop mount events propagating between this mount namespace and the host's (every mount)."""
    # BEGIN SOLUTION chapter="01" hint="man 7 mount_namespaces (shared subtrees); man 2 mount, 'Changing the propagation type'"
    # HINT: syscalls.mount(source, target, fstype, flags): no source and no type, only flags
    # TODO: change the propagation of "/" and everything below it to private
    syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
    # END SOLUTION


def mount_proc(target: str = "/proc") -> None:
    """Mount a fresh procfs at `target`: it shows the pid namespace of the process mounting it.

    Only ever in a new, private mount namespace: on the host this would cover its /proc.
    """
    # BEGIN SOLUTION chapter="01" hint="man 5 proc (mounting proc); man 2 mount"
    # HINT: the source of a pseudo filesystem is just a label; the type is "proc"
    # HINT: nosuid, nodev, noexec: nothing in /proc is a program or a device
    # TODO: mount a proc filesystem at target
    syscalls.mount("proc", target, "proc",
                   syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC)
    # END SOLUTION


def network_interfaces() -> list[str]:
    """The names of the network interfaces of the caller's network namespace, sorted."""
    # BEGIN SOLUTION chapter="01" hint="man 3 if_nameindex (it asks the kernel over netlink, man 7 rtnetlink)"
    # HINT: Python has it: socket.if_nameindex() gives (index, name) pairs
    # TODO: list the interfaces of this network namespace and return their names, sorted
    # (Not pyroute2's IPRoute here: its synchronous API runs an asyncio loop of its own, which
    # fails inside Jupyter, where a loop is already running.)
    return sorted(name for _, name in socket.if_nameindex())
    # END SOLUTION


def exit_status(wait_status: int) -> int:
    """A waitpid(2) status as a shell would report it: the exit code, or 128 + the signal."""
    # BEGIN SOLUTION chapter="01" hint="man 2 waitpid (WIFEXITED, WEXITSTATUS, WIFSIGNALED, WTERMSIG)"
    # HINT: Python has the macros: os.WIFEXITED(status), os.WEXITSTATUS(status) …
    # TODO: decode the status
    if os.WIFSIGNALED(wait_status):
        return 128 + os.WTERMSIG(wait_status)
    return os.WEXITSTATUS(wait_status)
    # END SOLUTION


def enter_namespaces(flags: int, hostname: str | None = None) -> None:
    """Move the calling process into new namespaces; return in the process that must run the program.

    Called in a forked child of run_isolated. With CLONE_NEWPID it forks once more: the
    caller stays behind, waits for its child (pid 1 of the new namespace) and exits with its
    status; only that child returns. With both CLONE_NEWPID and CLONE_NEWNS, the child
    mounts a /proc of its own.
    """
    # BEGIN SOLUTION chapter="01" hint="man 2 unshare; man 7 pid_namespaces (the first child is pid 1); man 7 mount_namespaces"
    # TODO: enter the new namespaces and prepare them, in five steps (see the HINTs)
    # HINT: 1. unshare the namespaces in flags (syscalls.unshare)
    # HINT: 2. the hostname, if one was given: the UTS namespace is ours now (set_hostname)
    # HINT: 3. a new mount namespace: make its mounts private BEFORE mounting anything
    # HINT: 4. a new pid namespace: fork again; the parent waits, then os._exit(exit_status(…))
    # HINT: 5. the child of that fork is pid 1: it mounts /proc (if the mount namespace is new) and returns
    syscalls.unshare(flags)
    if hostname is not None:
        set_hostname(hostname)
    if flags & syscalls.CLONE_NEWNS:
        make_mounts_private()
    if flags & syscalls.CLONE_NEWPID:
        # We are still in the OLD pid namespace; our next child is the new one's pid 1.
        pid = os.fork()
        if pid != 0:
            _, status = os.waitpid(pid, 0)
            os._exit(exit_status(status))
        if flags & syscalls.CLONE_NEWNS:
            mount_proc("/proc")
    # END SOLUTION


# --- given: running a function in new namespaces ---------------------------------------------

def run_isolated(fn: Callable[[], int | None], kinds: list[str], *,
                 hostname: str | None = None) -> int:
    """Run `fn()` in a child process in new namespaces of `kinds`; return its exit status.

    fn's return value is the exit status (None means 0); an exception in fn is printed and
    gives status 1, a signal 128 + its number. The caller is never moved: its namespaces,
    hostname and mounts stay as they were. Raises ValueError for bad arguments and
    IsolatedError when the namespaces could not be set up (the message says why).
    """
    flags = namespace_flags(kinds)          # a bad kind is the caller's error: raise it here
    if not callable(fn):
        raise ValueError(f"run_isolated needs a function to run, got {fn!r}")
    if hostname is not None and not flags & syscalls.CLONE_NEWUTS:
        raise ValueError(f"hostname {hostname!r} needs a new uts namespace "
                         "(setting it without one renames the host)")
    # The child reports a failed set-up through this pipe, as runc's init does through its
    # sync socket: close-on-exec, written only if set-up fails. The parent's read returns at
    # EOF, once every process holding the write end has closed it or exited.
    errors_r, errors_w = os.pipe2(os.O_CLOEXEC)
    # Unflushed output would be copied into the child and printed twice.
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    pid = os.fork()
    if pid == 0:
        os.close(errors_r)
        _child(fn, flags, hostname, errors_w)       # never returns
    os.close(errors_w)
    try:
        with os.fdopen(errors_r, "rb") as channel:
            error = channel.read().decode(errors="replace")
        _, status = os.waitpid(pid, 0)
    except BaseException:
        # Interrupted (Ctrl-C, a checkpoint's timeout): take the child and its pid 1 with us.
        # They form their own process group (see _child), so one signal reaches both.
        try:
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        raise
    if error:
        raise IsolatedError(f"setting up the namespaces ({', '.join(kinds)}) failed: {error}")
    return exit_status(status)


def _child(fn: Callable[[], int | None], flags: int, hostname: str | None,
           errors_w: int) -> None:
    """The forked side of run_isolated: never returns into the caller's code (os._exit)."""
    import traceback        # now, before fn (which may chroot away from the library)
    code = SETUP_FAILED
    try:
        os.setpgid(0, 0)        # a process group of our own: run_isolated can kill us all
        try:
            enter_namespaces(flags, hostname)
        except BaseException as e:
            os.write(errors_w, _describe(e).encode())
            raise
        os.close(errors_w)      # set-up done: nothing more to report (the parent reads to EOF)
        code = 1
        try:
            result = fn()
        except SystemExit as e:         # sys.exit(n) in fn: n is the status, as in a program
            result = e.code
        code = 0 if result is None else int(result)
        if not 0 <= code <= 255:
            print(f"run_isolated: fn returned {result!r}; an exit status is 0 … 255",
                  file=sys.stderr)
            code = 1
    except BaseException:
        if code != SETUP_FAILED:
            traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def _describe(e: BaseException) -> str:
    """An exception as one line: OSErrors from labkit.syscalls already name the call."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return f"{type(e).__name__}: {e}"


def isolated_output(fn: Callable[[], Any], kinds: list[str], **options: Any) -> Any:
    """Like run_isolated, but return what `fn()` returned (it must pickle: ints, strings, lists …).

    An exception raised by fn inside is raised again here, with the child's traceback attached
    as its note. `options` are run_isolated's (hostname=…).
    """
    import pickle
    import tempfile
    import traceback
    # A temporary file rather than a pipe: the parent reads it only after the child is gone,
    # so a large result cannot fill a pipe and block the child.
    with tempfile.TemporaryFile() as result:
        def run_and_record() -> int:
            try:
                outcome: tuple[str, Any] = ("value", fn())
            except BaseException as e:
                outcome = ("error", (e, traceback.format_exc()))
            try:
                data = pickle.dumps(outcome)
            except Exception as e:
                data = pickle.dumps(("error", (IsolatedError(f"fn's result cannot be sent back: "
                                                             f"{type(e).__name__}: {e}"), "")))
            result.write(data)
            result.flush()
            return 0

        status = run_isolated(run_and_record, kinds, **options)
        result.seek(0)
        data = result.read()
    if not data:
        raise IsolatedError(f"the isolated process exited with status {status} "
                            "before fn returned")
    kind, payload = pickle.loads(data)
    if kind == "error":
        error, child_traceback = payload
        if child_traceback:
            error.add_note("in the isolated process:\n" + child_traceback.rstrip())
        raise error
    return payload


__all__ = ["Kind", "NAMESPACES", "KINDS", "NS_FILES", "SETUP_FAILED", "IsolatedError",
           "namespace_flags", "namespace_id", "set_hostname", "make_mounts_private", "mount_proc",
           "network_interfaces", "exit_status", "enter_namespaces", "run_isolated",
           "isolated_output"]
