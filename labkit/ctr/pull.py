"""`images pull` against a real containerd 1.6: the client does the registry work.

containerd 1.6 has no Transfer service (it came with 2.0); its own ctr pulls client-side:
resolve the reference at the registry, fetch every blob and Content.Write it into the
daemon's store, then Images.Create the name pointing at the root descriptor. labkit-ctr does
the same with labkit's registry client (labkit.distribution).

Order matters for containerd's garbage collector, which keeps only what an image reaches:
children are written first, and each parent carries labels naming its children
(containerd.io/gc.ref.content.*), so that once the image exists the whole tree is reachable.
Then the layers are unpacked as containerd's unpacker does it, through the daemon's
services: Snapshots.Prepare on the parent, Diff.Apply of the layer blob onto the mounts,
Snapshots.Commit under the layer's chain ID. (Without a lease, a garbage collection running
between two of these calls could take what is not yet referenced; containerd's client holds a
lease for the whole pull. Lab pulls are short and nothing else deletes meanwhile.)
"""

from __future__ import annotations

import io
import json
from typing import Iterator

from labkit.distribution import mediatypes
from labkit.distribution.client import RegistryClient, endpoint_for_domain
from labkit.distribution.layers import chain_ids
from labkit.distribution.platforms import host_platform, select_manifest
from labkit.distribution.reference import parse_reference

GC_REF = "containerd.io/gc.ref.content"


def _platform(text: str) -> dict | None:
    """"linux/arm64/v8" -> {"os": "linux", "architecture": "arm64", "variant": "v8"}."""
    if not text:
        return None
    parts = text.split("/")
    p = {"os": parts[0], "architecture": parts[1] if len(parts) > 1 else ""}
    if len(parts) > 2:
        p["variant"] = parts[2]
    return p


def _fetch(registry: RegistryClient, repository: str, desc: dict) -> bytes:
    """A whole blob, verified by the registry client (lab images are small)."""
    buf = io.BytesIO()
    registry.fetch_blob(repository, desc, buf)
    return buf.getvalue()


def client_side_pull(backend, reference: str, platform: str = "",
                     mirrors: list[str] | None = None,
                     snapshotter: str = "overlayfs") -> Iterator[str]:
    ref = parse_reference(reference)
    endpoints = list(mirrors or []) if ref.domain == "docker.io" and mirrors else []
    endpoints.append(endpoint_for_domain(ref.domain))
    last_error: Exception | None = None
    for endpoint in endpoints:
        registry = RegistryClient(endpoint)
        try:
            root, raw = registry.resolve(ref.path, ref.locator)
        except (OSError, LookupError) as e:   # RegistryUnavailable is a ConnectionError
            last_error = e
            continue
        break
    else:
        raise last_error or LookupError(f"{reference}: not found")
    name = str(ref)
    yield f"{name}: resolved {root['digest']}"

    manifest_desc, manifest_raw = root, raw
    index_labels: dict[str, str] = {}
    if root["mediaType"] in mediatypes.INDEX_TYPES:
        chosen = select_manifest(json.loads(raw), _platform(platform) or host_platform())
        manifest_desc, manifest_raw = registry.resolve(ref.path, chosen["digest"])
        index_labels = {f"{GC_REF}.m.0": chosen["digest"]}

    manifest = json.loads(manifest_raw)
    config_desc, layers = manifest["config"], manifest.get("layers", [])
    manifest_labels = {f"{GC_REF}.config": config_desc["digest"]}
    for i, desc in enumerate(layers):
        backend.write_blob(_fetch(registry, ref.path, desc), desc["digest"], desc["mediaType"])
        manifest_labels[f"{GC_REF}.l.{i}"] = desc["digest"]
        yield f"downloaded: {desc['digest']}"
    config_raw = _fetch(registry, ref.path, config_desc)
    yield f"downloaded: {config_desc['digest']}"

    # Unpack: one committed snapshot per layer, named by its chain ID, as containerd's
    # unpacker does; a layer whose snapshot exists (shared with another image) is skipped.
    chains = chain_ids(json.loads(config_raw).get("rootfs", {}).get("diff_ids", []))
    parent = ""
    for desc, chain in zip(layers, chains):
        if backend.snapshot_exists(snapshotter, chain):
            yield f"exists: {chain}"
        else:
            backend.apply_layer(snapshotter, desc, chain, parent)
            yield f"unpacked: {desc['digest']}"
        parent = chain
    # The config holds the top snapshot for the garbage collector (gc.ref.snapshot.<name>).
    config_labels = {f"containerd.io/gc.ref.snapshot.{snapshotter}": chains[-1]} if chains else {}
    backend.write_blob(config_raw, config_desc["digest"], config_desc["mediaType"], config_labels)
    backend.write_blob(manifest_raw, manifest_desc["digest"], manifest_desc["mediaType"],
                       manifest_labels)
    yield f"downloaded: {manifest_desc['digest']}"
    if manifest_desc is not root:
        backend.write_blob(raw, root["digest"], root["mediaType"], index_labels)
        yield f"downloaded: {root['digest']}"
    backend.put_image(name, root)
    yield f"{name}: pulled {root['digest']}"
