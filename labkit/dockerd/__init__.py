"""L4: labkit-dockerd — the Docker Engine API on a unix socket.

The real docker CLI and docker-py talk to it (DOCKER_HOST=unix:///run/labkit/docker.sock);
it keeps Docker's user model (names, configs, states, logs, attached clients) and asks
labkit-containerd, over gRPC, for images, snapshots, containers and tasks.

Modules, from the one nearest the user to the one nearest containerd:

    main.py         `labkit-dockerd` command line: options, signals, start and stop
    server.py       HTTP/1.1 over a unix socket: keep-alive, chunked streams, hijacking (attach)
    router.py       the route table (method + path -> handler) and the thin handlers
    backend.py      the Backend Protocol the router calls (a fake one drives the unit tests)
    errors.py       error kinds, one per HTTP status (404 drives pull-on-create)
    stdcopy.py      multiplexed stdout/stderr frames and json-file log lines (no I/O)
    jsonmessage.py  pull progress as Docker's JSON message stream (no I/O)
    daemon.py       the real Backend: create, start, exit monitoring, wait, attach, logs
    exec.py         `docker exec`: one more process in a running container
    images.py       images as Docker shows them (IDs, tags, digests), pull, rmi
    events.py       `docker events`: the daemon's log of what happened
    volumes.py      named volumes: directories dockerd manages, bind-mounted into containers
    container.py    the container record: state, persistence, inspect/ps views
    oci.py          the OCI runtime spec handed down, in the shape a real dockerd writes
    stdio.py        fifos, the json-file log, and fan-out to attached clients
    names.py        "adjective_surname" container names
    remote.py       the gRPC connection to labkit-containerd (namespace "moby")

What labkit-dockerd may import: its own modules, containerd's client side (labkit.containerd.client,
.errors) and its wire package (labkit.wire.containerd), labkit.distribution, and the helpers
below every layer. Never the shim, the runtime, containerd's server side (server, tasks,
metadata, snapshots, content, apply, pull), the CLI, the lab or the course. Like moby, it
decides which OCI runtime runs a container (--default-runtime, --add-runtime, HostConfig.Runtime),
resolves it to a binary once, and sends it down in the container's runtime options.
tests/test_import_rules.py checks the imports.
"""
