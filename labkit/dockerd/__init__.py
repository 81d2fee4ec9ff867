"""L4: labkit-dockerd — the Docker Engine API on a unix socket.

The real docker CLI and docker-py talk to it (DOCKER_HOST=unix:///run/labkit/docker.sock);
it keeps Docker's user model (names, configs, states, logs, attached clients) and asks
labkit-containerd, over gRPC, for images, snapshots, containers and tasks.

Modules, from the one nearest the user to the one nearest containerd:

    main.py         `labkit-dockerd` command line: options, signals, start and stop
    server.py       HTTP/1.1 over a unix socket: keep-alive, chunked streams, hijacking (attach)
    httputils.py    the API's HTTP vocabulary: Request, the three responses, versions, filters
    router.py       the route table (method + path -> handler) and the thin handlers
      routes_stdio.py   attach, logs, exec: framing, content types, detach keys
      routes_volumes.py volume create, ls (filters), inspect, rm, prune
      routes_archive.py docker cp: HEAD/GET/PUT /containers/{id}/archive
      routes_networks.py  the handlers of /networks
    backend.py      the Backend Protocol the router calls (a fake one drives the unit tests)
    errors.py       error kinds, one per HTTP status (404 drives pull-on-create)
    jsonmessage.py  pull progress as Docker's JSON message stream (no I/O)
    daemon.py       the real Backend: `Daemon`, the rooms below mixed together
    core.py         what the rooms share: configuration, the container table, one lock
      create.py       `docker create`: record, /etc files, spec, snapshot, containerd container
      imageconfig.py  the image's Cmd, Entrypoint, Env, WorkingDir, User merged with the request
      validate.py     the create request's types, signal names: 400s that name the field
      network.py      networks: the default bridge, user bridges, NetworkMode, -p; names
                      between containers (/etc/hosts); what is given back when
        networkapi.py   `docker network create/ls/inspect/rm/connect/disconnect/prune`
        networkstore.py the networks' records (IPAM allocations) and their bridges
        net/            the network layer (chapter 08; `labkit lab use network` swaps it):
          ipam.py         which subnet a network gets, which address a container gets
          bridge.py       bridges, veth pairs, addresses, routes over rtnetlink (pyroute2)
        portproxy.py    published ports: one userland proxy process per port
      etcfiles.py     /etc/hostname, /etc/hosts, /etc/resolv.conf for each container
      attach.py       `docker attach`, `docker logs`, resize
      wait.py         `docker wait` (registered before start, so no exit is missed)
      start.py        `docker start`, `stop`, `kill`, `restart`: the task, its fifos
      monitor.py      a task's exit: record it, drain the output, wake the waiters
      restart.py      restart policies: backoff, stop/kill by hand, again after a restart
      exec.py         `docker exec`: one more process in a running container
      remove.py       `docker rm`, container prune
      restore.py      live restore: take running containers back after a restart
      views.py        `docker inspect`, `ps`, `top`
      stats.py        `docker stats`: Tasks.Metrics (the shim reads the cgroup) as the API's JSON
      update.py       `docker update`: Tasks.Update (the runtime's update), the limits kept
      rename.py       `docker rename`
      changes.py      `docker diff`, `docker export` (the snapshot, as containerd gives it)
      archive.py      `docker cp`: tar in and out (rootfs.py: the container's root, seen
                      from the host: /proc/<pid>/root, or its snapshot mounted)
      info.py         `docker version`, `docker info`
    images.py       images as Docker shows them (IDs, tags, digests), pull, rmi, tag
    diskusage.py    `docker system df` and `docker image prune`: sizes as containerd reports
    save.py         `docker save`: an OCI layout (and Docker's manifest.json) from containerd
    load.py         `docker load` (either layout) and `docker import`: blobs into containerd
    events.py       `docker events`: the daemon's log of what happened
    volumes.py      named and anonymous volumes: directories dockerd manages, bind-mounted
    container.py    the container record: state, persistence, inspect/ps views
    oci.py          the OCI runtime spec handed down, in the shape a real dockerd writes
    mounts.py       -v, --mount and anonymous volumes as OCI mounts; inspect's Mounts
    security.py     --security-opt: seccomp profiles resolved per container, no-new-privileges
    seccomp_default.py  Docker's default seccomp profile, as commented data
    logdriver.py    log drivers json-file (max-size/max-file rotation) and none
    jsonlog.py      the json-file log: one JSON line per output line, timestamps (no I/O)
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

Chapter 09 (dockerd and the Engine API) has the student write split_version (httputils.py),
the router's dispatch, container_create and container_wait, and oci.resources; `labkit lab
use dockerd workspace` runs the workspace's whole labkit_student.dockerd as labkit-dockerd
(its net/ too: chapter 08 comes first).

The multiplexed stream of attach and logs (stdout and stderr framed on one connection) is
wire knowledge the Engine API client needs too: it lives outside both, in labkit.stdcopy.
"""
