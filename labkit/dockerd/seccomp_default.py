"""Docker's default seccomp profile, as readable data: which system calls a container may make.

A container's root is the host's root (no user namespace), held back by three fences:
namespaces (what it can see), capabilities (which privileged operations it may attempt) and
this filter (which kernel entry points it may reach at all). The filter is the last of the
three: it shrinks the kernel's attack surface, so a bug in a rarely used system call (keyctl,
the module loader, a new mount API) is out of a container's reach even where capabilities
would let the call in.

The profile is an ALLOW-list. Everything not named fails with EPERM (defaultErrnoRet, as
Docker 20.10+ sends it); the ~360 names below are what ordinary programs use. It is written
in Docker's profile format (the one `docker run --security-opt seccomp=profile.json` reads),
which adds to the OCI format three things the daemon resolves per container
(labkit/dockerd/seccomp.py does it):

    archMap   the native architecture -> the ones its kernel also runs (x86_64 runs 32-bit
              x86 and x32 programs, aarch64 runs 32-bit arm): every one must be filtered,
              or a 32-bit program would walk around the 64-bit rules.
    includes  a rule applies only if the container has these capabilities ("caps"), runs
    excludes  on this architecture ("arches", Go's names: amd64, arm64, x86, x32, arm) or
              a kernel at least this new ("minKernel"), respectively only if it has not.

So `--cap-add SYS_ADMIN` does not only grant the capability, it also opens the calls that
need it (mount, unshare, setns, …); `--cap-add SYS_MODULE` opens init_module. Without the
capability the kernel would refuse most of them anyway: the filter refuses them earlier,
before any of their code runs.

Facts from Docker's public profile and docs (docs.docker.com/engine/security/seccomp/);
the grouping and the comments are labkit's. Only the x86_64 and aarch64 families are kept
(Docker's also has rules for ppc64le, s390x, riscv64, mips and loongarch).
"""

from __future__ import annotations

import errno

# clone(2)'s namespace flags (sched.h): a new namespace of any kind. CLONE_NEWUSER is the
# dangerous one: it gives an unprivileged process a full set of capabilities over a new
# user namespace, and with them a large part of the kernel (mount, netfilter, …) to probe.
CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS = 0x00020000, 0x02000000, 0x04000000
CLONE_NEWIPC, CLONE_NEWUSER = 0x08000000, 0x10000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
CLONE_NAMESPACES = (CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER
                    | CLONE_NEWPID | CLONE_NEWNET)

AF_ALG, AF_VSOCK = 38, 40       # socket families: the kernel crypto API, host<->VM sockets


# --- the calls every program may make -------------------------------------------------------
# Each group is allowed unconditionally. The kernel still checks permissions and
# capabilities as usual (setuid needs CAP_SETUID, chown CAP_CHOWN, …): allowing a call here
# only means the filter does not stand in the way.

PROCESSES = [   # start, end and wait for processes; ask about them
    "fork", "vfork", "execve", "execveat", "exit", "exit_group", "wait4", "waitid", "waitpid",
    "getpid", "getppid", "gettid", "getpgid", "getpgrp", "getsid", "setpgid", "setsid",
    "set_tid_address", "restart_syscall", "pidfd_open", "pidfd_send_signal",
    "process_mrelease", "uname", "sysinfo", "times", "getrusage", "getcpu",
    "rseq", "membarrier", "set_robust_list", "get_robust_list", "getrandom",
    "set_thread_area", "get_thread_area",   # thread-local storage on 32-bit x86
    # clone and clone3 are not here: see the argument rules below
]

LIMITS_AND_SCHEDULING = [   # a process's own limits, priority and CPUs
    "getrlimit", "setrlimit", "ugetrlimit", "prlimit64", "getpriority", "setpriority",
    "ioprio_get", "ioprio_set", "sched_yield", "sched_getaffinity", "sched_setaffinity",
    "sched_getattr", "sched_setattr", "sched_getparam", "sched_setparam",
    "sched_getscheduler", "sched_setscheduler", "sched_get_priority_max",
    "sched_get_priority_min", "sched_rr_get_interval", "sched_rr_get_interval_time64",
]

SELF_RESTRICTION = [    # a process may always make itself *less* powerful
    "prctl", "capget", "capset", "seccomp", "umask",
    "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self",
]

IDENTITY = [    # user and group ids (the *32 names are 32-bit x86's and arm's)
    "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups",
    "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups",
    "setfsuid", "setfsgid",
    "getuid32", "geteuid32", "getgid32", "getegid32", "getresuid32", "getresgid32",
    "getgroups32", "setuid32", "setgid32", "setreuid32", "setregid32", "setresuid32",
    "setresgid32", "setgroups32", "setfsuid32", "setfsgid32",
]

SIGNALS = [
    "kill", "tkill", "tgkill", "pause", "alarm", "sigaltstack", "signalfd", "signalfd4",
    "sigprocmask", "sigreturn", "rt_sigaction", "rt_sigpending", "rt_sigprocmask",
    "rt_sigqueueinfo", "rt_tgsigqueueinfo", "rt_sigreturn", "rt_sigsuspend",
    "rt_sigtimedwait", "rt_sigtimedwait_time64",
]

TIME = [    # reading clocks, sleeping, timers (setting the clock needs CAP_SYS_TIME: below)
    "time", "gettimeofday", "clock_gettime", "clock_gettime64", "clock_getres",
    "clock_getres_time64", "clock_nanosleep", "clock_nanosleep_time64", "nanosleep",
    "adjtimex", "clock_adjtime", "clock_adjtime64",    # read-only without CAP_SYS_TIME
    "getitimer", "setitimer", "timer_create", "timer_delete", "timer_getoverrun",
    "timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64",
    "timerfd_create", "timerfd_gettime", "timerfd_gettime64", "timerfd_settime",
    "timerfd_settime64",
]

MEMORY = [
    "brk", "mmap", "mmap2", "munmap", "mprotect", "mremap", "madvise", "mincore", "msync",
    "mlock", "mlock2", "mlockall", "munlock", "munlockall", "remap_file_pages",
    "memfd_create", "memfd_secret", "pkey_alloc", "pkey_free", "pkey_mprotect",
    "map_shadow_stack", "mseal",
]

FILE_IO = [     # open files and move data through them
    "open", "openat", "openat2", "creat", "close", "close_range", "dup", "dup2", "dup3",
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "preadv2",
    "pwritev", "pwritev2", "lseek", "_llseek", "fcntl", "fcntl64", "flock", "ioctl",
    "fsync", "fdatasync", "sync", "syncfs", "sync_file_range", "truncate", "truncate64",
    "ftruncate", "ftruncate64", "fallocate", "fadvise64", "fadvise64_64", "readahead",
    "sendfile", "sendfile64", "splice", "tee", "vmsplice", "copy_file_range", "pipe",
    "pipe2", "cachestat",
]

FILE_NAMES_AND_METADATA = [     # the directory tree: look up, create, rename, change modes
    "stat", "lstat", "fstat", "stat64", "lstat64", "fstat64", "fstatat64", "newfstatat",
    "statx", "statfs", "statfs64", "fstatfs", "fstatfs64", "access", "faccessat",
    "faccessat2", "chdir", "fchdir", "getcwd", "getdents", "getdents64", "mkdir",
    "mkdirat", "mknod", "mknodat", "rmdir", "rename", "renameat", "renameat2", "link",
    "linkat", "symlink", "symlinkat", "unlink", "unlinkat", "readlink", "readlinkat",
    "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat",
    "chown32", "fchown32", "lchown32", "utime", "utimes", "utimensat", "utimensat_time64",
    "futimesat", "name_to_handle_at", "statmount", "listmount",
    # open_by_handle_at is not here: it can open any file of a file system, outside the
    # container's root (the 2014 "shocker" escape); it needs CAP_DAC_READ_SEARCH, below
]

EXTENDED_ATTRIBUTES = [
    "getxattr", "lgetxattr", "fgetxattr", "getxattrat", "listxattr", "llistxattr",
    "flistxattr", "listxattrat", "setxattr", "lsetxattr", "fsetxattr", "setxattrat",
    "removexattr", "lremovexattr", "fremovexattr", "removexattrat",
]

WAITING = [     # wait for several things at once
    "select", "_newselect", "pselect6", "pselect6_time64", "poll", "ppoll", "ppoll_time64",
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_wait",
    "epoll_wait_old", "epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2",
    "inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch",
    "fanotify_mark", "futex", "futex_time64", "futex_waitv", "futex_wait", "futex_wake",
    "futex_requeue",
]

ASYNC_IO = [    # Linux AIO. io_uring is NOT here: a large, fast-moving interface with a history
                # of exploitable bugs, refused by Docker's profile since 25.0
    "io_setup", "io_destroy", "io_submit", "io_cancel", "io_getevents", "io_pgetevents",
    "io_pgetevents_time64",
]

SOCKETS = [     # everything but socket() itself, whose families are checked below
    "socketpair", "bind", "connect", "listen", "accept", "accept4", "getsockname",
    "getpeername", "getsockopt", "setsockopt", "send", "sendto", "sendmsg", "sendmmsg",
    "recv", "recvfrom", "recvmsg", "recvmmsg", "recvmmsg_time64", "shutdown",
    "socketcall",   # 32-bit x86 multiplexes all socket calls through this one
]

IPC = [     # System V and POSIX IPC: private to the container's IPC namespace
    "ipc", "msgget", "msgsnd", "msgrcv", "msgctl", "semget", "semop", "semtimedop",
    "semtimedop_time64", "semctl", "shmget", "shmat", "shmdt", "shmctl", "mq_open",
    "mq_unlink", "mq_timedsend", "mq_timedsend_time64", "mq_timedreceive",
    "mq_timedreceive_time64", "mq_notify", "mq_getsetattr",
]

PROBES = ["uretprobe"]      # the return trampoline of user-space probes (x86_64)

ALWAYS = [*PROCESSES, *LIMITS_AND_SCHEDULING, *SELF_RESTRICTION, *IDENTITY, *SIGNALS, *TIME,
          *MEMORY, *FILE_IO, *FILE_NAMES_AND_METADATA, *EXTENDED_ATTRIBUTES, *WAITING,
          *ASYNC_IO, *SOCKETS, *IPC, *PROBES]


def _allow(names: list[str], **rule) -> dict:
    return {"names": names, "action": "SCMP_ACT_ALLOW", **rule}


def _arg(index: int, op: str, value: int) -> dict:
    return {"index": index, "value": value, "op": op}


# --- calls allowed with conditions on their arguments, the architecture or the kernel -------
CONDITIONAL = [
    # Before Linux 4.8 a traced process could change its system call after the filter had
    # looked at it (the tracer rewrites the registers): ptrace was then a way around seccomp.
    _allow(["ptrace", "process_vm_readv", "process_vm_writev"],
           includes={"minKernel": "4.8"}),

    # socket(): every family but AF_ALG (the kernel's crypto API) and AF_VSOCK (sockets to a
    # hypervisor): three rules, since one rule's conditions must all hold at once.
    _allow(["socket"], args=[_arg(0, "SCMP_CMP_LT", AF_ALG)]),
    _allow(["socket"], args=[_arg(0, "SCMP_CMP_EQ", AF_ALG + 1)]),
    _allow(["socket"], args=[_arg(0, "SCMP_CMP_GT", AF_VSOCK)]),

    # personality(): only the harmless personas. 0 = PER_LINUX, 8 = UNAME26 (report a 2.6
    # kernel version to old programs), 0x20000 = ADDR_NO_RANDOMIZE (what `setarch -R` and
    # gdb use), their union, and 0xffffffff = "just tell me the current one". The others
    # switch on old, little-tested kernel behaviour (READ_IMPLIES_EXEC, MMAP_PAGE_ZERO, …).
    *(_allow(["personality"], args=[_arg(0, "SCMP_CMP_EQ", persona)])
      for persona in (0x0, 0x0008, 0x20000, 0x20008, 0xFFFFFFFF)),

    # Calls that exist only on some architectures ("arches" are Go's names).
    _allow(["arch_prctl"], includes={"arches": ["amd64", "x32"]}),      # set FS/GS bases
    _allow(["modify_ldt"], includes={"arches": ["amd64", "x32", "x86"]}),
    _allow(["arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint",
            "cacheflush", "set_tls"], includes={"arches": ["arm", "arm64"]}),

    # clone(): a new process or thread, yes; a new namespace, only with CAP_SYS_ADMIN (whose
    # rule below allows clone unconditionally). MASKED_EQ: (flags & CLONE_NAMESPACES) == 0.
    _allow(["clone"], args=[{"index": 0, "value": CLONE_NAMESPACES, "valueTwo": 0,
                             "op": "SCMP_CMP_MASKED_EQ"}],
           excludes={"caps": ["CAP_SYS_ADMIN"]}),
    # clone3() passes its flags in a struct in memory, which a filter cannot read. So it is
    # refused, with ENOSYS: "this kernel has no clone3", and glibc falls back to clone().
    {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS,
     "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
]


# --- calls allowed only to a container that holds the capability they need ------------------
# (the container's bounding set decides: `docker run --cap-add …` adds the rule too)
BY_CAPABILITY = {
    "CAP_SYS_ADMIN": [  # mounts, namespaces, and other whole-system knobs
        "mount", "umount", "umount2", "mount_setattr", "move_mount", "open_tree", "fsopen",
        "fsconfig", "fsmount", "fspick", "unshare", "setns", "clone", "clone3",
        "sethostname", "setdomainname", "quotactl", "quotactl_fd", "fanotify_init", "bpf",
        "perf_event_open", "lookup_dcookie", "syslog", "lsm_get_self_attr",
        "lsm_set_self_attr", "lsm_list_modules"],
    "CAP_DAC_READ_SEARCH": ["open_by_handle_at"],
    "CAP_SYS_MODULE": ["init_module", "finit_module", "delete_module"],
    "CAP_SYS_BOOT": ["reboot"],
    "CAP_SYS_CHROOT": ["chroot"],       # in Docker's 14 defaults: chroot is allowed
    "CAP_SYS_PACCT": ["acct"],
    "CAP_SYS_PTRACE": ["ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
                       "pidfd_getfd", "process_madvise"],
    "CAP_SYS_RAWIO": ["iopl", "ioperm"],
    "CAP_SYS_TIME": ["settimeofday", "stime", "clock_settime", "clock_settime64"],
    "CAP_SYS_TTY_CONFIG": ["vhangup"],
    "CAP_SYS_NICE": ["get_mempolicy", "set_mempolicy", "mbind", "set_mempolicy_home_node"],
    "CAP_SYSLOG": ["syslog"],
    "CAP_BPF": ["bpf"],
    "CAP_PERFMON": ["perf_event_open"],
}
# Never allowed, whatever the capabilities (not named anywhere above): keyctl, add_key and
# request_key (the kernel keyring is not namespaced: keys would leak between containers),
# kexec_load, swapon/swapoff, userfaultfd, io_uring_*, nfsservctl, the obsolete
# uselib/ustat/sysfs, create_module and friends, and every call newer than this list.


PROFILE = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": errno.EPERM,
    "archMap": [
        {"architecture": "SCMP_ARCH_X86_64",
         "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
    ],
    "syscalls": [
        _allow(ALWAYS),
        *CONDITIONAL,
        *(_allow(names, includes={"caps": [cap]}) for cap, names in BY_CAPABILITY.items()),
    ],
}
