"""labkit.lab — lab control: start, stop, inspect and reset the lab's daemons.

The lab is four long-running processes, each in its own session (so closing the terminal
that started them does not stop them), each logging to /var/log/labkit/<name>.log and
recording its PID in /run/labkit/<name>.pid — the way init scripts managed daemons before
systemd, and simple enough to read in full:

    labkit-registry    the OCI distribution API on 127.0.0.1:5000 (the lab's "Docker Hub")
    labkit-containerd  gRPC on /run/labkit/containerd/containerd.sock
    labkit-dockerd     the Engine API on /run/labkit/docker.sock (DOCKER_HOST for the docker CLI)
    labkit-jupyter     JupyterLab on 0.0.0.0:8888 with a token (the course's notebooks, root kernel)

Modules:

    control     up / down / status / images: start in order, wait until each answers, stop by
                PID file (SIGTERM, then SIGKILL), report who answers
    daemons     what each daemon is: its command line, its address and how to ask it
                "are you there?" (GET /v2/, gRPC Version, HEAD /_ping)
    jupyter     JupyterLab as a lab daemon: its token file, command line, URL and probe
    delegation  on a systemd host with cgroup v2: containerd started in a scope systemd
                delegates (systemd-run), so that its runtime's containers get cgroups below it
    reset       return the host to clean: stop what is left (shims, containers) by the PIDs
                in the lab's state files, unmount everything under the lab's directories
                (deepest first), remove the directories
    implementations  which implementation runs each layer (reference, a real binary, a
                student's workspace): read here, where the daemons are started, and passed
                down as their flags (--shim, --default-runtime)

The lab sits above the engine: it may import any layer's client side (labkit.client,
labkit.containerd.client, labkit.wire) and the helpers below every layer, but nothing of the
engine imports the lab. The course sits above the lab (it may import labkit.lab; never the
reverse). tests/test_import_rules.py checks this.

Every path comes from labkit.paths, so LABKIT_RUN_DIR / LABKIT_LIB_DIR / LABKIT_LOG_DIR /
LABKIT_REGISTRY_ADDR (with LABKIT_JUPYTER_IP / LABKIT_JUPYTER_PORT for JupyterLab) give a
complete private lab (the tests use that) beside the one in use.
"""

from labkit.lab.control import LabError, down, push_images, status, up, use
from labkit.lab.daemons import Daemon, DaemonStatus, lab_daemons
from labkit.lab.reset import reset

__all__ = ["Daemon", "DaemonStatus", "LabError", "down", "lab_daemons", "push_images", "use",
           "reset", "status", "up"]
