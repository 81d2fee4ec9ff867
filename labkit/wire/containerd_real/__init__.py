"""containerd 1.6's REAL gRPC API, the subset labkit-ctr calls.

labkit-containerd's wire (labkit.wire.containerd) keeps containerd's shapes under labkit's
own package name, `labkit.containerd.v1`. A gRPC method is addressed by its full name
(/containerd.services.images.v1.Images/List), so to talk to a real containerd the names must
be containerd's: here they are, one .proto per containerd package, with containerd's message
names and field numbers (written from the public api/ definitions), trimmed to what
labkit-ctr needs.

    types.proto       containerd.types               Descriptor, Mount
    task.proto        containerd.v1.types            Process, Status
    version.proto     containerd.services.version.v1
    namespaces.proto  containerd.services.namespaces.v1
    images.proto      containerd.services.images.v1
    content.proto     containerd.services.content.v1   (List is a stream here)
    snapshots.proto   containerd.services.snapshots.v1 (List is a stream here)
    containers.proto  containerd.services.containers.v1 (spec is an Any here)
    tasks.proto       containerd.services.tasks.v1
    diff.proto        containerd.services.diff.v1       (Apply: unpacking a layer)
    runc_options.proto containerd.runc.v1           (the runc shim's Options: binary, root)

The *_pb2.py and *_pb2_grpc.py files are generated (see each .proto's header); never edit them.
"""
