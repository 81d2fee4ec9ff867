"""Pushing a built image to a registry, bottom-up.

The order matters: a registry refuses a manifest that names a blob it does not have
(MANIFEST_BLOB_UNKNOWN), and an index that names a manifest it does not have. So:

    layers and config (blobs)  ->  manifest (by its digest)  ->  index (by tag)

Each step is skipped when the registry already has it: push_blob asks with HEAD first, and
if the tag already points at the index we built, there is nothing at all to do.
"""

from __future__ import annotations

from labkit.distribution import mediatypes
from labkit.distribution.client import RegistryClient
from labkit.distribution.errors import RegistryError

from .builder import Image


def push_image(client: RegistryClient, image: Image) -> bool:
    """Push `image` as <name>:<tag>; returns False if the registry already had exactly it."""
    try:
        desc, _ = client.resolve(image.name, image.tag)
        if desc["digest"] == image.index_digest:
            return False
    except RegistryError as e:
        if e.code not in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN"):
            raise
    for layer in image.layers:
        client.push_blob(image.name, layer.blob, layer.digest)
    client.push_blob(image.name, image.config, image.config_digest)
    client.push_manifest(image.name, image.manifest_digest, image.manifest, mediatypes.OCI_MANIFEST)
    client.push_manifest(image.name, image.tag, image.index, mediatypes.OCI_INDEX)
    return True
