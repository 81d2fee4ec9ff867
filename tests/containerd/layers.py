"""Building layer tarballs in memory for tests (the way an image builder would)."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile


def entry(name: str, kind: str = "file", data: bytes = b"", *, mode: int | None = None,
          link: str = "", uid: int = 0, gid: int = 0, xattrs: dict[str, str] | None = None,
          dev: tuple[int, int] = (0, 0)) -> tuple[tarfile.TarInfo, bytes]:
    t = tarfile.TarInfo(name)
    t.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
              "hardlink": tarfile.LNKTYPE, "char": tarfile.CHRTYPE, "fifo": tarfile.FIFOTYPE}[kind]
    t.mode = mode if mode is not None else (0o755 if kind == "dir" else 0o644)
    t.uid, t.gid, t.mtime = uid, gid, 1_700_000_000
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
