"""L2, the shim: `labkit-shim`, one process per container.

The shim is what lets containerd and dockerd die, restart or be upgraded while containers keep
running. It is the container's parent (a child subreaper), it holds the container's stdio
(pipes it copies to fifos), it records the exit status, and it answers containerd over a unix
socket in the real shim v2 protocol: ttrpc frames carrying the protobuf messages of
`containerd.task.v2.Task`. A real containerd could drive labkit-shim, and labkit-containerd
can drive containerd-shim-runc-v2.

Modules, from the one nearest containerd to the one nearest the kernel:

    launch.py     start_shim()/delete_shim(): the `labkit-shim … start|delete` handshake
    client.py     ShimClient: the Task service called from Python
    main.py       the command line (start, delete) and the daemon's main loop
    service.py    TaskService: Create, Start, State, Wait, Kill, Delete … (protocol-free core)
    events.py     /tasks/exit & co. sent back to containerd (events.proto; events_pb2.py)
    ttrpc.py      the ttrpc protocol: framing without I/O, then a small server and client
    task.proto    the Task service's messages (containerd's field numbers); task_pb2.py
    ttrpc.proto   ttrpc's Request/Response envelope; ttrpc_pb2.py
    stdio.py      the container's stdio: pipes, fifos, copy threads
    rootfs.py     mounting Create's rootfs mounts on <bundle>/rootfs
    runtime.py    running the OCI runtime (labkit-runc, runc, crun) with runc's command line
    reaper.py     the subreaper: waiting for the container's init and for orphans
"""
