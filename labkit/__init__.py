"""labkit — the Docker engine rebuilt in Python, one layer at a time, for teaching.

The layers, from the user down to the kernel (each is its own process, speaking the
real protocol to its neighbours; see ARCHITECTURE.md in the course's shared folder):

    labkit.cli          L5  `labkit` — a docker-like client of the Engine API
    labkit.client           the Engine API client the CLI (and the lab) uses
    labkit.dockerd      L4  `labkit-dockerd` — the Docker Engine API on a unix socket
    labkit.containerd   L3  `labkit-containerd` — content, snapshots, images, containers, tasks (gRPC)
    labkit.shim         L2  `labkit-shim` — one per container, holds stdio, records the exit
    labkit.runc         L1  `labkit-runc` — a runc-compatible OCI runtime
    labkit.namespaces       chapter 01's building block: isolation from raw syscalls; its
                            NAMESPACES table (kind -> CLONE_NEW* flag, /proc/<pid>/ns file)
                            is the runtime's too
    labkit.syscalls     L0  the one module through which kernel calls Python lacks are made

    labkit.registry         `labkit-registry` — the OCI distribution API over a directory
    labkit.distribution     the registry client: references, manifests, blobs, pull and push
    labkit.images           builds the lab's own images (hello-world, busybox) offline
    labkit.wire             the protocols between layers, owned by none: containerd's gRPC API,
                            the shim protocol over ttrpc, runc's command line (go-runc's role)
    labkit.lab              lab control: up, down, status, reset; which implementation runs each layer
    labkit.paths            where each layer keeps its state by default
    labkit.securejoin       resolve a path inside a root without escaping it (runtime and containerd)
    labkit.procfs           /proc read once: process stat, status, cmdline, ns inodes, mountinfo
    labkit.mountopts        what each mount option means to mount(2): flags, propagation, data
    labkit.signals          signal names and numbers, read as Docker and runc read them
    labkit.quickjson        json's C parser and writer without the json package (labkit-runc's start-up)
    labkit.units            human-readable sizes and durations (Docker's go-units), for CLI and daemon
    labkit.course           the course: student workspaces, grading,
                            diagrams and slides
"""

__version__ = "0.1.0"
