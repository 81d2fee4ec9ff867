"""Media types: how a registry says what a blob or manifest is.

Two families describe the same things. Docker's "schema 2" types came first (2016); the OCI
image spec (2017) standardized them under new names with the same JSON shapes. A registry
stores whatever bytes it is given and answers with the media type it was given, so a client
must accept both families — and must *ask* for them in `Accept`, or an old registry (2.8)
answers with the long-obsolete schema 1 instead (INTERFACES §3.1).

    what                 OCI                                          Docker schema 2
    -------------------  -------------------------------------------  ---------------------------------------------------
    multi-platform list  application/vnd.oci.image.index.v1+json      application/vnd.docker.distribution.manifest.list.v2+json
    one image            application/vnd.oci.image.manifest.v1+json   application/vnd.docker.distribution.manifest.v2+json
    image config         application/vnd.oci.image.config.v1+json     application/vnd.docker.container.image.v1+json
    layer (tar.gz)       application/vnd.oci.image.layer.v1.tar+gzip  application/vnd.docker.image.rootfs.diff.tar.gzip
"""

from __future__ import annotations

# --- lists of manifests, one per platform ---
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"

# --- one image: a config plus an ordered list of layers ---
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_V1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"  # obsolete

# --- the image config: architecture, os, Cmd/Env/..., rootfs.diff_ids, history ---
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"

# --- layers: tar archives of a filesystem change set ---
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"  # has "urls"

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})
LAYER_TYPES = frozenset({OCI_LAYER_TAR, OCI_LAYER_GZIP, OCI_LAYER_ZSTD,
                         DOCKER_LAYER_GZIP, DOCKER_LAYER_FOREIGN})

# What a pulling client sends in `Accept` (the order is a preference: lists first, so that
# the client, not the registry, picks the platform).
MANIFEST_ACCEPT = (OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST)


def compression(media_type: str) -> str:
    """"gzip", "zstd" or "" (plain tar) for a layer media type; ValueError otherwise."""
    if media_type in (OCI_LAYER_GZIP, DOCKER_LAYER_GZIP, DOCKER_LAYER_FOREIGN):
        return "gzip"
    if media_type == OCI_LAYER_ZSTD:
        return "zstd"
    if media_type == OCI_LAYER_TAR:
        return ""
    raise ValueError(f"unsupported layer media type {media_type!r}")
