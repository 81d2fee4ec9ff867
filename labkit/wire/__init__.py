"""The wire: what two layers share, owned by neither — protocols, messages, and their clients.

Each layer of labkit knows the one below only through the protocol between them, as containerd
is built (a layer imports the API package of the layer below, never its implementation). This
package holds those protocols. Both sides import them; nothing here imports a layer.

    containerd/     dockerd ↔ containerd: the gRPC API (api.proto; api_pb2*.py are generated)
    shim/           containerd ↔ shim: the shim v2 protocol
        protocol.py   the service names, ShimError, the type URLs both sides must agree on
        task.proto    containerd.task.v2.Task's messages (task_pb2.py is generated)
        events.proto  the events a shim sends back (/tasks/exit …; events_pb2.py)
        messages.py   the same messages declared for protowire: what the shim itself uses
        launch.py     the shim binary's command line: `<shim> … start` / `… delete`
        client.py     ShimClient: the Task service called from Python
    ttrpc.py        the ttrpc framing the shim protocol travels in (ttrpc.proto's messages
                    declared for protowire; ttrpc_pb2.py, generated, is the reference for tests)
    protowire.py    the proto3 wire format by hand, so that a shim needs no protobuf runtime
    runtime.py      shim ↔ OCI runtime: runc's command line, driven from Python (go-runc's role)

What this package may import: the standard library, protobuf and gRPC, and itself. Never a
layer (labkit.dockerd, labkit.containerd, labkit.shim, labkit.runc), the lab or the course;
tests/test_import_rules.py checks it.
"""
