"""Fixtures for these tests: `registry`, a private labkit-registry (in-process, ephemeral port,
temporary root), and `lab_images`, the lab's image builder with a private cache — both defined
in tests/support.py, shared with the other directories that push images."""

from __future__ import annotations

from support import lab_images, registry  # noqa: F401  (fixtures: pytest finds them by name)
