"""A private labkit-registry (in-process, ephemeral port, temporary root) for these tests."""

from __future__ import annotations

import shutil
import tempfile

import pytest

from labkit.registry import serve


@pytest.fixture
def registry():
    root = tempfile.mkdtemp(prefix="labkit-reg-", dir="/tmp")
    server = serve(root, "127.0.0.1", 0, log=None)
    try:
        yield server
    finally:
        server.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def lab_images(monkeypatch, tmp_path):
    """Build the lab's images with a private compile cache (not /var/lib/labkit)."""
    import labkit.images.builder as builder
    monkeypatch.setattr(builder, "CACHE_DIR", tmp_path / "images-cache")
    from labkit.images import build_and_push
    return build_and_push
