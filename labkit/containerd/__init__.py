"""L3: labkit-containerd — images, snapshots, containers and tasks for one host, over gRPC.

containerd sits between dockerd (which knows users, names, networks and volumes) and the
shims (one per running container). It owns what a *host* needs to run containers: the blobs
images are made of, the layered filesystems unpacked from them, the records of which container
uses which image and spec, and the tasks (running processes) behind them. dockerd asks for all
of it over gRPC (labkit/wire/containerd/api.proto), in a namespace of its own ("moby").

Modules, from the one nearest the user to the one nearest the kernel:

    main.py        `labkit-containerd` command line: options, signals, start and stop
    client.py      a typed gRPC client (Client(address, namespace)) for dockerd, tests, notebooks
    server.py      the gRPC services of api.proto: thin handlers that decode, call, encode
    events.py      the event exchange: /tasks/exit, /images/create … to Subscribe streams
    forward.py     <socket>.ttrpc: events the shims send up (Events.Forward over ttrpc)
    filters.py     containerd's filter syntax (labels."x"==y,digest~=…) for every List call
    pull.py        Transfer.Pull: resolve, fetch into content, unpack into snapshots, name it,
                   all under a lease
    gc.py          leases' and garbage collection's rules: what keeps a blob or a snapshot
    diff.py        the Diff service: apply a layer to mounts, compare two trees into a layer
    tasks.py       bundles, shims, waiting for exits, reconnecting after a restart
    apply.py       unpacking a layer tar onto a mounted snapshot (whiteouts, safe paths)
    snapshots.py   the overlayfs and native snapshotters: layered directories (or full
                   copies), described as mounts
    content.py     the content store: verified blobs by digest, resumable ingests by ref
    metadata.py    SQLite (meta.db): images, containers, snapshots, content labels, leases
    mount.py       mount descriptions, performed through labkit.syscalls
    errors.py      the errors every module raises, one per gRPC status code

The protocols live in labkit.wire, owned by neither side: the gRPC API dockerd calls
(labkit.wire.containerd: api.proto, services named as containerd's; api_pb2*.py are
generated), and the shim protocol containerd drives its shims with (labkit.wire.shim: the
`start`/`delete` handshake, ShimClient, the task and event messages, over labkit.wire.ttrpc).

What labkit-containerd may import: its own modules, labkit.wire, labkit.distribution and the
low-level helpers below every layer (labkit.paths, labkit.syscalls, labkit.securejoin …).
Never labkit.runc (the runtime is the shim's business), the shim's implementation
(labkit.shim), dockerd, the CLI, the lab or the course. tests/test_import_rules.py checks this.
"""
