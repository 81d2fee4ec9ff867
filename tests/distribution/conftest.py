"""Registries for the client's contract tests: labkit-registry and Debian's docker-registry.

The same tests run against both (STYLE: a contract suite taking a factory), so the client is
checked against the real thing and labkit-registry is checked to behave like it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from support import free_port, labkit_registry, short_tmpdir, stop_process, wait_for_v2

DOCKER_REGISTRY = Path("/usr/bin/docker-registry")


@contextmanager
def docker_registry() -> Iterator[str]:
    """Debian's docker-registry 2.8 with a private config, storage and port; stopped by PID.
    Yields its base URL."""
    if not DOCKER_REGISTRY.exists():
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    with short_tmpdir("labkit-dreg-") as root:
        port = free_port()
        config = root / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log: {level: error}\n"
            f"storage: {{filesystem: {{rootdirectory: {root}/data}}, delete: {{enabled: true}}}}\n"
            f"http: {{addr: '127.0.0.1:{port}'}}\n")
        proc = subprocess.Popen([str(DOCKER_REGISTRY), "serve", str(config)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for_v2(url, proc)
            yield url
        finally:
            stop_process(proc, timeout=10)


@pytest.fixture(scope="module", params=["labkit-registry", "docker-registry"])
def registry_url(request):
    """The base URL of a registry of each kind, shared by a module's tests (each test uses
    its own repository names)."""
    if request.param == "labkit-registry":
        with labkit_registry() as server:
            yield server.url
    else:
        with docker_registry() as url:
            yield url
