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
    jsonlog.py      the json-file log: one JSON line per output line, timestamps (no I/O)
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
"""
