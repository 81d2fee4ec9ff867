"""`docker cp`: files in and out of a container as tar archives (moby's daemon/archive.go).

    HEAD /containers/{id}/archive?path=P   only the stat of P: the header
                                            X-Docker-Container-Path-Stat, base64 of
                                            {"name","size","mode","mtime","linkTarget"}
    GET  same                               the stat, and a tar of P (named by its base name)
    PUT  ?path=DIR                          a tar (the body) unpacked into DIR, which must be
                                            a directory; owned by the container's root
                                            unless copyUIDGID=1 (`docker cp -a`)

`docker cp c:/etc/hostname .` is HEAD-less: one GET. `docker cp file c:/tmp/` stats the
destination with HEAD, then PUTs. The tar is built and read with Python's tarfile; files
are written one by one, each path resolved inside the container (rootfs.resolve), so a
member named ../../x or a symlink planted in the container cannot reach the host.

The mode in the stat is Go's os.FileMode, which the docker CLI decodes: the permission
bits, and a type bit of its own (directory 1<<31, symlink 1<<27 …), not Unix's S_IFMT.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import tarfile
import tempfile
from typing import BinaryIO, Iterator

from labkit.dockerd.core import DaemonCore
from labkit.dockerd.errors import InvalidParameter, NotFound
from labkit.dockerd.jsonlog import rfc3339nano
from labkit.dockerd.rootfs import container_root, resolve

_GO_TYPE = [(stat.S_ISDIR, 1 << 31), (stat.S_ISLNK, 1 << 27), (stat.S_ISFIFO, 1 << 25),
            (stat.S_ISSOCK, 1 << 24), (stat.S_ISBLK, 1 << 26),
            (stat.S_ISCHR, (1 << 26) | (1 << 21))]
_GO_SPECIAL = [(stat.S_ISUID, 1 << 23), (stat.S_ISGID, 1 << 22), (stat.S_ISVTX, 1 << 20)]
CHUNK = 64 * 1024


def go_file_mode(mode: int) -> int:
    """A Unix st_mode as Go's os.FileMode (what the docker CLI expects in the stat)."""
    out = mode & 0o777
    out |= next((bit for test, bit in _GO_TYPE if test(mode)), 0)
    return out | sum(bit for flag, bit in _GO_SPECIAL if mode & flag)


def path_stat(host_path: str, name: str) -> dict:
    st = os.lstat(host_path)
    return {"name": name, "size": st.st_size, "mode": go_file_mode(st.st_mode),
            "mtime": rfc3339nano(int(st.st_mtime * 1e9)),
            "linkTarget": os.readlink(host_path) if stat.S_ISLNK(st.st_mode) else ""}


def stat_header(info: dict) -> str:
    return base64.b64encode(json.dumps(info).encode()).decode()


class Archive(DaemonCore):
    """The Daemon's docker cp (mixed into labkit.dockerd.daemon.Daemon)."""

    def _scratch(self) -> str:
        return str(self.config.exec_root / "archive")

    def _lookup(self, root: str, ref: str, path: str) -> tuple[str, str]:
        if not path.startswith("/"):
            raise InvalidParameter(f"invalid path {path!r}: it must be absolute")
        host = resolve(root, path, follow_last=path.endswith(("/", "/.")))
        if not os.path.lexists(host):
            raise NotFound(f"Could not find the file {path} in container {ref}")
        name = "." if path.endswith("/.") else os.path.basename(path.rstrip("/")) or "/"
        return host, name

    def container_archive_stat(self, ref: str, path: str) -> dict:
        c = self._get(ref)
        with container_root(self.ctr, c, self._scratch()) as root:
            host, name = self._lookup(root, ref, path)
            return path_stat(host, name)

    def container_archive_get(self, ref: str, path: str) -> tuple[dict, Iterator[bytes]]:
        """The stat of `path` and a tar of it (spooled to a file while the root is there)."""
        c = self._get(ref)
        spool = tempfile.TemporaryFile()
        with container_root(self.ctr, c, self._scratch()) as root:
            host, name = self._lookup(root, ref, path)
            info = path_stat(host, name)
            with tarfile.open(fileobj=spool, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                tar.add(host, arcname=name, recursive=True)
        spool.seek(0)
        self._event(c, "archive-path")
        return info, _chunks(spool)

    def container_archive_put(self, ref: str, path: str, body: BinaryIO,
                              copy_uid_gid: bool) -> None:
        c = self._get(ref)
        if c.HostConfig.get("ReadonlyRootfs"):
            raise InvalidParameter("container rootfs is marked read-only")
        with container_root(self.ctr, c, self._scratch()) as root:
            host, _ = self._lookup(root, ref, path)
            if not os.path.isdir(host):
                raise InvalidParameter(f"extraction point is not a directory: {path}")
            try:
                with tarfile.open(fileobj=body, mode="r|*") as tar:
                    for member in tar:
                        _extract(tar, member, root, path, copy_uid_gid)
            except tarfile.TarError as e:
                raise InvalidParameter(f"invalid tar archive: {e}") from None
        self._event(c, "extract-to-dir")


def _chunks(f: BinaryIO) -> Iterator[bytes]:
    try:
        while data := f.read(CHUNK):
            yield data
    finally:
        f.close()


def _extract(tar: tarfile.TarFile, m: tarfile.TarInfo, root: str, into: str,
             copy_uid_gid: bool) -> None:
    """One member, written where it belongs INSIDE the container (never through a link)."""
    target = resolve(root, os.path.join(into, m.name))
    if os.path.lexists(target) and not (m.isdir() and os.path.isdir(target)):
        if os.path.isdir(target) and not os.path.islink(target):
            raise InvalidParameter(f"cannot overwrite directory {m.name} with a non-directory")
        os.unlink(target)
    if m.isdir():
        os.makedirs(target, exist_ok=True)
    elif m.isfile():
        src = tar.extractfile(m)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            while data := src.read(CHUNK):
                out.write(data)
    elif m.issym():
        os.symlink(m.linkname, target)
    elif m.islnk():
        os.link(resolve(root, os.path.join(into, m.linkname)), target, follow_symlinks=False)
    else:
        return  # devices, fifos: not copied (as with docker cp into a container, mostly)
    uid, gid = (m.uid, m.gid) if copy_uid_gid else (0, 0)
    os.chown(target, uid, gid, follow_symlinks=False)
    if not m.issym():
        os.chmod(target, m.mode & 0o7777)
        os.utime(target, (m.mtime, m.mtime))
