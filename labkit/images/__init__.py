"""labkit.images — the lab's own images (hello-world, busybox), built offline.

The lab cannot reach Docker Hub, so at set-up it builds the two images the course needs
for the host's architecture and pushes them into labkit-registry as library/hello-world and
library/busybox: the daemon uses that registry as a mirror for docker.io, so
`docker run hello-world` finds them under their usual names.

    __main__.py   `python -m labkit.images [--registry ADDR]`
    push.py       push an image bottom-up: blobs, manifest, index
    builder.py    deterministic layers (tarfile + gzip), config, manifest, index
    hello.c       the program in hello-world, compiled `gcc -static -Os`

    >>> from labkit.images import build_and_push
    >>> build_and_push("127.0.0.1:5000")
    {'hello-world': 'sha256:...', 'busybox': 'sha256:...'}
"""

from __future__ import annotations

from labkit import paths

from .builder import BUILDERS, Image, busybox, hello_world, make_image, make_layer
from .push import push_image

__all__ = ["build_and_push", "build", "Image", "hello_world", "busybox", "make_image",
           "make_layer", "push_image"]


def build(name: str) -> Image:
    """Build one of the lab's images ("hello-world" or "busybox")."""
    try:
        return BUILDERS[name]()
    except KeyError:
        raise ValueError(f"unknown lab image {name!r}: expected one of {sorted(BUILDERS)}") from None


def build_and_push(registry: str = paths.REGISTRY_ADDR, names=("hello-world", "busybox"),
                   *, report=None) -> dict[str, str]:
    """Build `names` and push each as library/<name>:latest to `registry`.

    `registry` is "127.0.0.1:5000" or a URL ("http://127.0.0.1:5000"). Returns
    {name: digest of what "latest" points at (the OCI index)}. Idempotent: the build is
    deterministic, so a second run finds everything in place and pushes nothing.
    `report(name, digest, pushed)` is called after each image if given.
    """
    from labkit.distribution.client import RegistryClient
    client = RegistryClient(registry)
    result: dict[str, str] = {}
    for name in names:
        image = build(name)
        pushed = push_image(client, image)
        result[name] = image.index_digest
        if report:
            report(name, image.index_digest, pushed)
    return result
