"""Building layer tarballs in memory for tests (the way an image builder would)."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile


def entry(name: str, kind: str = "file", data: bytes = b"", *, mode: int | None = None,
          link: str = "", uid: int = 0, gid: int = 0, xattrs: dict[str, str] | None = None,
          dev: tuple[int, int] = (0, 0), mtime: int = 1_700_000_000
          ) -> tuple[tarfile.TarInfo, bytes]:
    t = tarfile.TarInfo(name)
    t.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
              "hardlink": tarfile.LNKTYPE, "char": tarfile.CHRTYPE, "block": tarfile.BLKTYPE,
              "fifo": tarfile.FIFOTYPE}[kind]
    t.mode = mode if mode is not None else (0o755 if kind == "dir" else 0o644)
    t.uid, t.gid, t.mtime = uid, gid, mtime
    t.linkname = link
    t.devmajor, t.devminor = dev
    if kind == "file":
        t.size = len(data)
    if xattrs:
        t.pax_headers = {"SCHILY.xattr." + k: v for k, v in xattrs.items()}
    return t, data


def make_tar(*entries) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_directory(root) -> bytes:
    """A layer tar of a directory tree (root-relative names, owners as on disk)."""
    import os
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(dirnames) + sorted(filenames):
                path = os.path.join(dirpath, name)
                tar.add(path, arcname=os.path.relpath(path, root), recursive=False)
    return buf.getvalue()


def push_image(registry, repository: str, tag: str, layers: list[bytes], *,
               cmd: list[str] | None = None, index: bool = False,
               labels: dict[str, str] | None = None) -> dict:
    """Push an image (plain-tar layers, gzipped here) with labkit's RegistryClient.

    Returns {"manifest": digest, "config": digest, "diff_ids": [...], "top": digest}; with
    index=True the tag points at an OCI index holding the manifest (and a foreign platform).
    """
    import json

    from labkit.distribution import mediatypes, platforms

    plat = platforms.host_platform()
    diff_ids = [sha(t) for t in layers]
    config = json.dumps({"architecture": plat["architecture"], "os": "linux",
                         "config": {"Cmd": cmd or ["sh"], "Labels": labels or None},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    registry.push_blob(repository, config, sha(config))
    layer_descs = []
    for t in layers:
        blob = gz(t)
        registry.push_blob(repository, blob, sha(blob))
        layer_descs.append({"mediaType": mediatypes.OCI_LAYER_GZIP, "digest": sha(blob),
                            "size": len(blob)})
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": mediatypes.OCI_MANIFEST,
        "config": {"mediaType": mediatypes.OCI_CONFIG, "digest": sha(config),
                   "size": len(config)},
        "layers": layer_descs}).encode()
    top = registry.push_manifest(repository, sha(manifest) if index else tag, manifest,
                                 mediatypes.OCI_MANIFEST)
    if index:
        idx = json.dumps({"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": [
            {"mediaType": mediatypes.OCI_MANIFEST, "digest": sha(manifest),
             "size": len(manifest), "platform": {"os": "linux", "architecture": "s390x"}},
            {"mediaType": mediatypes.OCI_MANIFEST, "digest": sha(manifest),
             "size": len(manifest), "platform": plat}]}).encode()
        top = registry.push_manifest(repository, tag, idx, mediatypes.OCI_INDEX)
    return {"manifest": sha(manifest), "config": sha(config), "diff_ids": diff_ids, "top": top}
