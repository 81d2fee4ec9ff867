"""containerd ↔ shim: the shim v2 protocol, as containerd-shim-runc-v2 speaks it.

Two parts, both defined by containerd and spoken by labkit-shim, containerd-shim-runc-v2 and a
student's shim alike:

1. the shim binary's command line (launch.py): containerd runs
   `<shim> -namespace NS -address A -publish-binary B -id ID start` in the bundle; the shim
   prints the address of its socket; `… delete` cleans up after a shim that died;
2. the Task service on that socket (client.py, task.proto): ttrpc frames (labkit.wire.ttrpc)
   carrying `containerd.task.v2.Task` requests (Create, Start, Wait, Kill, Delete …); and the
   other way, events the shim sends containerd (events.proto).

    protocol.py   names and constants both sides must agree on; ShimError
    launch.py     start_shim()/delete_shim(): the `start`/`delete` handshake, containerd's side
    client.py     ShimClient: the Task service called from Python (labkit-containerd uses it)
    task.proto    the Task service's messages; task_pb2.py is generated
    events.proto  the task events (TaskExit …) and Events.Forward; events_pb2.py is generated
    cgroups_v1.proto, cgroups_v2.proto
                  what Task.Stats answers: containerd's io.containerd.cgroups.v1/v2.Metrics
                  (a container's cgroup counters), in an Any; *_pb2.py are generated
    messages.py   the messages of those .protos for labkit.wire.protowire: the shim
                  speaks the protocol with these (no protobuf runtime in a per-container process)
"""
