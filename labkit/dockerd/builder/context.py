"""The build context: the tar archive `docker build` sends, read without unpacking it.

`docker build DIR` packs DIR into a tar stream (leaving out what DIR/.dockerignore names) and
POSTs it to /build. The builder never extracts it onto the host: a context is untrusted input
(a member `../../etc/passwd`, a symlink out of the context), so it is indexed by clean
relative paths and read member by member (`Context`). COPY and ADD select members with
`select`, and the cache key of a COPY is the hash of exactly the bytes and metadata it copies
(`Context.checksum`).

.dockerignore (`ignored`): one pattern per line, `#` comments, `!pattern` re-includes;
`*` and `?` stay inside one path component, `**` crosses any number of them; a pattern that
names a directory covers everything below it; the *last* matching line decides. The CLI
applies it before sending, and the builder applies it again, as dockerd does for clients
that do not.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import posixpath
import tarfile
from dataclasses import dataclass

from labkit.dockerd.builder.dockerfile import DockerfileError
from labkit.dockerignore import ignore_patterns, ignored


class ContextError(ValueError):
    """A context that cannot be used, or a path that leaves it; the message says which."""


def clean(path: str) -> str:
    """A member or source path relative to the context root: "./a//b/" → "a/b", "/" → ".";
    ContextError when it climbs out ("../x")."""
    normal = posixpath.normpath("/" + path.replace("\\", "/")).lstrip("/") or "."
    if path.replace("\\", "/").lstrip("/").startswith("..") or \
            posixpath.normpath(path.lstrip("/") or ".").startswith(".."):
        raise ContextError(f"forbidden path outside the build context: {path}")
    return normal


# -- .dockerignore: the matcher is shared with the client (labkit.dockerignore) ----------

@dataclass
class FileToCopy:
    path: str                # absolute destination in the image
    kind: str                # "file", "dir", "symlink"
    mode: int
    data: bytes = b""
    link: str = ""
    uid: int = 0
    gid: int = 0


# -- the context ---------------------------------------------------------------------------

class Context:
    """The members of a context archive by clean path ("." is the root)."""

    def __init__(self, data: bytes, ignore_file: bool = True) -> None:
        """`data`: the archive; `ignore_file`: apply its .dockerignore (a build context)."""
        try:
            self._tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
            members = self._tar.getmembers()
        except (tarfile.TarError, EOFError) as e:
            raise ContextError(f"the build context is not a tar archive: {e}") from None
        self.members: dict[str, tarfile.TarInfo] = {}
        for m in members:
            name = clean(m.name)             # "../x" in the archive: refuse the context
            if m.islnk():
                clean(m.linkname)
            self.members[name] = m
        patterns = ignore_patterns(self.read(".dockerignore").decode("utf-8", "replace")) \
            if ignore_file and ".dockerignore" in self.members else []
        self.ignore = patterns
        for name in [n for n in self.members if n not in (".", ".dockerignore")
                     and ignored(n, patterns)]:
            del self.members[name]

    def read(self, path: str) -> bytes:
        member = self.members.get(clean(path))
        if member is None or not member.isfile():
            raise ContextError(f"{path}: no such file in the build context")
        return self._tar.extractfile(member).read()

    def dockerfile(self, name: str = "Dockerfile") -> bytes:
        try:
            return self.read(name)
        except ContextError:
            raise ContextError(f"Cannot locate specified Dockerfile: {name}") from None

    def select(self, source: str) -> list[tuple[str, tarfile.TarInfo]]:
        """What `COPY source …` copies: [(path relative to what lands at the destination,
        member)]. A directory gives its contents (not itself), a file itself, a wildcard
        every match. ContextError when nothing matches or the path leaves the context."""
        path = clean(source)
        if self._is_directory(path):
            return self._below(path)
        matches = [n for n in self.members if n == path or
                   (any(c in path for c in "*?[") and fnmatch.fnmatchcase(n, path))]
        if not matches:
            raise ContextError(f"COPY failed: file not found in build context or excluded by "
                               f".dockerignore: stat {source}: file does not exist")
        found: list[tuple[str, tarfile.TarInfo]] = []
        for name in sorted(matches):
            if self._is_directory(name):
                found += self._below(name)
            else:
                found.append((posixpath.basename(name), self.members[name]))
        return found

    def _is_directory(self, path: str) -> bool:
        """The root, a directory member, or a directory the archive only implies ("a" when it
        holds "a/b" but no entry "a": tar writers need not add one)."""
        member = self.members.get(path)
        if path == "." or (member is not None and member.isdir()):
            return True
        return member is None and any(n.startswith(path + "/") for n in self.members)

    def _below(self, path: str) -> list[tuple[str, tarfile.TarInfo]]:
        prefix = "" if path == "." else path + "/"
        return [(n[len(prefix):], self.members[n]) for n in sorted(self.members)
                if n not in (path, ".") and n.startswith(prefix)]

    def data(self, member: tarfile.TarInfo) -> bytes:
        return self._tar.extractfile(member).read() if member.isfile() else b""

    def checksum(self, selected: list[tuple[str, tarfile.TarInfo]]) -> str:
        """The cache key of a COPY: names, types, modes, link targets and contents (not
        times or owners: the CLI resets neither, and a fresh checkout must hit the cache)."""
        h = hashlib.sha256()
        for rel, m in selected:
            h.update(f"{rel}\0{m.type!r}\0{m.mode & 0o7777:o}\0{m.linkname}\0".encode())
            if m.isfile():
                h.update(hashlib.sha256(self.data(m)).digest())
        return "sha256:" + h.hexdigest()


def file_of(context: Context, m) -> FileToCopy:
    """A member of an archive as the builder copies it."""
    kind = "dir" if m.isdir() else "symlink" if m.issym() else "file"
    return FileToCopy("", kind, m.mode & 0o7777, context.data(m), m.linkname, m.uid, m.gid)


def is_tar(data: bytes) -> bool:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as t:
            return t.next() is not None
    except (tarfile.TarError, EOFError, OSError):
        return False


def untar(data: bytes, dest: str, uid: int, gid: int) -> list[FileToCopy]:
    ctx = Context(data)
    out = []
    for name, m in sorted(ctx.members.items()):
        if name == ".":
            continue
        f = file_of(ctx, m)
        f.path = posixpath.join(dest, name)
        out.append(f)
    return out


__all__ = ["Context", "ContextError", "DockerfileError", "clean", "file_of", "is_tar", "untar"]
