"""L2, the shim: `labkit-shim`, one process per container.

The shim is what lets containerd and dockerd die, restart or be upgraded while containers keep
running. It is the container's parent (a child subreaper), it holds the container's stdio
(pipes it copies to fifos), it records the exit status, and it answers containerd over a unix
socket in the real shim v2 protocol: ttrpc frames carrying the protobuf messages of
`containerd.task.v2.Task`. A real containerd could drive labkit-shim, and labkit-containerd
can drive containerd-shim-runc-v2.

The protocol itself is not here but in labkit.wire, which containerd imports too: the
`start`/`delete` handshake and ShimClient (labkit.wire.shim), the Task and event messages
(task.proto, events.proto; the shim uses them as labkit.wire.shim.messages), and the ttrpc
framing (labkit.wire.ttrpc).

A shim lives as long as its container, one per container, so it is kept lean: the daemon runs
as `python -S` (main.py), encodes its protobuf messages itself (labkit.wire.protowire) and
imports what only some commands need (hashlib, ctypes for mounts) where they need it.
benchmarks/shim_memory.py measures it next to containerd-shim-runc-v2.

Modules, from the one nearest containerd to the one nearest the kernel:

    main.py       the command line (start, delete) and the daemon's main loop
    service.py    TaskService: Create, Start, State, Wait, Kill, Delete … (protocol-free core)
    events.py     /tasks/exit & co. sent back to containerd
    stdio.py      the container's stdio: pipes, fifos, copy threads
    metrics.py    Stats: the container's cgroup counters (v1 or v2) as containerd's messages
    rootfs.py     mounting Create's rootfs mounts on <bundle>/rootfs
    runtime.py    which OCI runtime (labkit-runc, runc, crun) to run, from Create's options
    reaper.py     the subreaper: waiting for the container's init and for orphans
    log.py        the daemon's log lines (logging's names, without its import cost)

What labkit-shim may import: its own modules, labkit.wire (the shim protocol it serves, and the
OCI runtime's command-line client, labkit.wire.runtime), and the low-level helpers below every
layer (labkit.paths, labkit.procfs, labkit.syscalls …). Never labkit.runc's code (the runtime
is a program it runs), containerd's implementation, dockerd, the lab or the course.
tests/test_import_rules.py checks this.
"""
