"""Platforms: choosing this machine's image from a multi-platform list.

`docker pull busybox` fetches one name, but busybox exists for a dozen CPU architectures.
The tag points at an *index* (OCI) or *manifest list* (Docker): a list of descriptors, each
carrying a `platform` {os, architecture, variant?}. The client picks the entry for the host
and fetches that manifest by digest.

Two wrinkles, both from Docker Hub:
  * Go names architectures differently from `uname -m`: x86_64 is "amd64", aarch64 is
    "arm64" (variant "v8"), armv7l is "arm" variant "v7".
  * Since 2023 Hub lists build attestations (SBOM, provenance) as extra entries with
    platform "unknown/unknown" and annotation vnd.docker.reference.type=attestation-manifest.
    They are not images; skip them.
"""

from __future__ import annotations

import platform as _platform

# uname -m -> (GOARCH, variant)
_MACHINES = {
    "x86_64": ("amd64", None), "amd64": ("amd64", None),
    "aarch64": ("arm64", "v8"), "arm64": ("arm64", "v8"),
    "armv7l": ("arm", "v7"), "armv6l": ("arm", "v6"),
    "i386": ("386", None), "i686": ("386", None),
    "ppc64le": ("ppc64le", None), "s390x": ("s390x", None), "riscv64": ("riscv64", None),
}

# Variants implied when an entry leaves them out (containerd's platforms.Normalize).
_DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7"}


def host_platform() -> dict:
    """This machine as an OCI platform: {"os": "linux", "architecture": "amd64"}."""
    machine = _platform.machine()
    arch, variant = _MACHINES.get(machine, (machine, None))
    result = {"os": "linux", "architecture": arch}
    if variant:
        result["variant"] = variant
    return result


def format_platform(p: dict) -> str:
    """"linux/amd64", "linux/arm64/v8" — the form Docker prints."""
    parts = [p.get("os", ""), p.get("architecture", "")]
    if p.get("variant"):
        parts.append(p["variant"])
    return "/".join(parts)


def _is_attestation(descriptor: dict) -> bool:
    plat = descriptor.get("platform") or {}
    annotations = descriptor.get("annotations") or {}
    return (plat.get("os") == "unknown" and plat.get("architecture") == "unknown") or \
        "vnd.docker.reference.type" in annotations


def matches(candidate: dict, wanted: dict) -> bool:
    """Does an index entry's platform satisfy the wanted one? (os, arch, normalized variant)"""
    if candidate.get("os") != wanted.get("os") or \
            candidate.get("architecture") != wanted.get("architecture"):
        return False
    default = _DEFAULT_VARIANT.get(wanted.get("architecture", ""))
    want_variant = wanted.get("variant") or default
    have_variant = candidate.get("variant") or default
    return want_variant is None or have_variant == want_variant


def select_manifest(index: dict, platform: dict | None = None) -> dict:
    """The descriptor in an OCI index / Docker manifest list for `platform` (default: host).

    Raises LookupError with Docker's wording when no entry matches, and ValueError when
    `index` is not a list of manifests.
    """
    wanted = platform or host_platform()
    entries = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(entries, list):
        raise ValueError("not an image index: it has no \"manifests\" list")
    # BEGIN SOLUTION chapter="06" hint="image-spec image-index.md; containerd's platforms.Only"
    # TODO: return the first entry of `entries` that is an image for `wanted` (the host if None)
    # HINT: skip attestation entries (_is_attestation): they describe an image, they are not one
    # HINT: matches(entry["platform"], wanted) compares os, architecture and the normalized variant
    # HINT: no entry fits: raise LookupError naming format_platform(wanted), as below
    for descriptor in entries:
        if not isinstance(descriptor, dict) or _is_attestation(descriptor):
            continue
        if matches(descriptor.get("platform") or {}, wanted):
            return descriptor
    # END SOLUTION
    raise LookupError(
        f"no matching manifest for {format_platform(wanted)} in the manifest list entries")
