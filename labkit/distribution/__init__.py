"""labkit.distribution — the registry client: references, manifests, blobs, pull and push.

The modules, from the user's words down to the wire:

    reference.py   "busybox" -> docker.io/library/busybox:latest (Docker's normalization)
    platforms.py   pick linux/amd64 out of a multi-platform index
    mediatypes.py  the OCI and Docker media types, and the Accept list for manifests
    layers.py      diff IDs and chain IDs (how unpacked layers are keyed)
    client.py      RegistryClient: resolve, fetch_blob, push_blob, push_manifest, tags
    auth.py        401 challenges -> Bearer tokens or Basic credentials (no I/O)
    errors.py      the registry's {"errors": [...]} codes; shared with labkit-registry

labkit-containerd pulls with it; labkit.images pushes the lab's images with it; any OCI
registry (labkit-registry, Debian's docker-registry, Docker Hub) is on the other end.
"""

from .client import Registry, RegistryClient, endpoint_for_domain
from .errors import DigestMismatch, RegistryError, RegistryUnavailable, TruncatedBlob
from .layers import chain_ids
from .platforms import host_platform, select_manifest
from .reference import Reference, parse_reference

__all__ = ["Reference", "parse_reference", "RegistryClient", "Registry", "endpoint_for_domain",
           "RegistryError", "DigestMismatch", "RegistryUnavailable", "TruncatedBlob", "chain_ids",
           "host_platform", "select_manifest"]
