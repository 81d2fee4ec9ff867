"""Registries for the client's contract tests: labkit-registry and Debian's docker-registry.

The same tests run against both (STYLE: a contract suite taking a factory), so the client is
checked against the real thing and labkit-registry is checked to behave like it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from labkit.registry import serve
from support import free_port, wait_for_v2

DOCKER_REGISTRY = Path("/usr/bin/docker-registry")


def start_labkit_registry():
    root = tempfile.mkdtemp(prefix="labkit-reg-", dir="/tmp")
    server = serve(root, "127.0.0.1", 0, log=None)

    def stop():
        server.close()
        shutil.rmtree(root, ignore_errors=True)
    return server.url, root, stop


def start_docker_registry():
    """Debian's docker-registry 2.8 with a private config, storage and port; stopped by PID."""
    if not DOCKER_REGISTRY.exists():
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    root = tempfile.mkdtemp(prefix="labkit-dreg-", dir="/tmp")
    port = free_port()
    config = Path(root) / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: error}\n"
        f"storage: {{filesystem: {{rootdirectory: {root}/data}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n")
    proc = subprocess.Popen([str(DOCKER_REGISTRY), "serve", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop():
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(root, ignore_errors=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_v2(url, proc)
    except Exception:
        stop()
        raise
    return url, root, stop


@pytest.fixture(scope="module", params=["labkit-registry", "docker-registry"])
def registry_url(request):
    """The base URL of a registry of each kind, shared by a module's tests (each test uses
    its own repository names)."""
    start = start_labkit_registry if request.param == "labkit-registry" else start_docker_registry
    url, _root, stop = start()
    try:
        yield url
    finally:
        stop()
