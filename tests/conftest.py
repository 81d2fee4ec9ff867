"""Shared test set-up.

Markers (declared in pyproject.toml): `root` for tests that need root and a real kernel,
`slow`, `e2e`. Tests that touch the kernel create their own namespaces, mounts and cgroups
and remove them, also when they fail.
"""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (namespaces, mounts, cgroups): run the suite as root")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)
