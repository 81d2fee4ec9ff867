"""Where labkit keeps things by default, in the style of the real tools.

State that dies with a reboot lives under /run/labkit, data that survives under
/var/lib/labkit, configuration under /etc/labkit and logs under /var/log/labkit.
Every daemon and the runtime take these as command-line options, so tests run private
instances (in temporary directories) side by side with a lab in use.
"""

from __future__ import annotations

import os
from pathlib import Path

# Each top directory can be moved with an environment variable, so that a test (or a second
# lab on the same host) runs a complete private set of daemons without touching the lab in use.
RUN = Path(os.environ.get("LABKIT_RUN_DIR", "/run/labkit"))
LIB = Path(os.environ.get("LABKIT_LIB_DIR", "/var/lib/labkit"))
ETC = Path(os.environ.get("LABKIT_ETC_DIR", "/etc/labkit"))
LOG = Path(os.environ.get("LABKIT_LOG_DIR", "/var/log/labkit"))

# L4: the Docker Engine API socket (the docker CLI's DOCKER_HOST=unix:///run/labkit/docker.sock)
DOCKER_SOCK = RUN / "docker.sock"
DOCKERD_ROOT = LIB / "docker"            # containers' config, json-file logs
DOCKERD_EXEC_ROOT = RUN / "docker"       # stdio fifos handed to containerd

# L3: containerd's gRPC socket, its persistent root and its volatile state (bundles)
CONTAINERD_SOCK = RUN / "containerd" / "containerd.sock"
CONTAINERD_ROOT = LIB / "containerd"     # content store, snapshots, metadata database
CONTAINERD_STATE = RUN / "containerd"    # io.containerd.runtime.v2.task/<ns>/<id>/ bundles

# L2: shims listen on sockets here (short paths: a unix socket path must fit in 108 bytes)
SHIM_SOCKETS = RUN / "s"

# L1: the runtime's --root for containers started by the lab (one subdirectory per namespace)
RUNTIME_ROOT = RUN / "runc"

# L1/L4: containers' cgroups are <CGROUP_PARENT>/<id> in every hierarchy (dockerd uses /docker)
CGROUP_PARENT = "/labkit"

# the registry: blobs and manifests on disk, served on 127.0.0.1:5000
REGISTRY_ROOT = LIB / "registry"
REGISTRY_ADDR = os.environ.get("LABKIT_REGISTRY_ADDR", "127.0.0.1:5000")

# the containerd namespace labkit-dockerd works in, as docker uses "moby"
NAMESPACE = "moby"
