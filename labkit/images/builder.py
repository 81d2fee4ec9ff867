"""Building the lab's images from scratch, the way an image really is put together.

An OCI image is four kinds of JSON-and-blob, each pointing at the next by digest:

    index     (tag "latest")  {"manifests": [{digest of the manifest, platform linux/amd64}]}
      manifest                {"config": {digest}, "layers": [{digest of layer.tar.gz}]}
        config                {"architecture", "os", "config": {Cmd, Env, WorkingDir},
                               "rootfs": {"diff_ids": [sha256 of the *uncompressed* tar]}}
        layer                 a gzipped tar of files

Building is therefore: make each layer's tar, gzip it, hash both (the gzip's digest goes in
the manifest, the tar's digest — the "diff ID" — in the config), write the config, the
manifest and the index, and push them bottom-up so that the registry never sees a
reference to something it does not have.

The build is *deterministic*: the same inputs give the same bytes, hence the same digests,
so building twice pushes nothing the second time. That takes care: tar entries carry fixed
mtimes, uid/gid 0 and no user names; gzip's header would record the time, so it is set to 0;
JSON is written with sorted keys and no spaces; `created` is a fixed date (or
SOURCE_DATE_EPOCH, the reproducible-builds convention). gcc is deterministic for the same
input, and its output is cached anyway.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

from labkit import paths
from labkit.distribution import mediatypes
from labkit.distribution.platforms import host_platform

# 2024-01-01T00:00:00Z: old enough to be obviously "not a build time", recent enough that
# `docker images` does not say "55 years ago".
DEFAULT_EPOCH = 1704067200
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUSYBOX = Path("/bin/busybox")          # Debian's busybox-static: one static binary
CACHE_DIR = paths.LIB / "images-cache"  # compiled hello binaries, keyed by source digest


def build_epoch() -> int:
    try:
        return int(os.environ.get("SOURCE_DATE_EPOCH", DEFAULT_EPOCH))
    except ValueError:
        raise ValueError("SOURCE_DATE_EPOCH must be a number of seconds") from None


def _canonical_json(doc: dict) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------ layers

@dataclass(frozen=True)
class Entry:
    """One file system entry of a layer: a directory, a regular file or a symlink."""
    path: str                 # relative to the root, no leading "/": "bin/sh"
    kind: str                 # "dir", "file" or "symlink"
    mode: int = 0o755
    data: bytes = b""         # for files
    target: str = ""          # for symlinks


@dataclass(frozen=True)
class Layer:
    blob: bytes               # the gzipped tar, as stored in the registry
    digest: str               # sha256 of blob: what the manifest lists
    diff_id: str              # sha256 of the uncompressed tar: what the config lists

    def descriptor(self) -> dict:
        return {"mediaType": mediatypes.OCI_LAYER_GZIP, "digest": self.digest, "size": len(self.blob)}


def make_layer(entries: list[Entry], mtime: int | None = None) -> Layer:
    """A deterministic gzipped tar of `entries` (sorted, fixed owner and mtime)."""
    mtime = build_epoch() if mtime is None else mtime
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in sorted(entries, key=lambda e: e.path):
            info = tarfile.TarInfo(e.path)
            info.mtime, info.uid, info.gid, info.uname, info.gname = mtime, 0, 0, "", ""
            info.mode = e.mode
            if e.kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif e.kind == "symlink":
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, e.target, 0o777
                tar.addfile(info)
            elif e.kind == "file":
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
            else:
                raise ValueError(f"unknown layer entry kind {e.kind!r} for {e.path}")
    tar_bytes = raw.getvalue()
    compressed = io.BytesIO()
    # mtime=0 and no file name: otherwise the gzip header would differ on every build
    with gzip.GzipFile(fileobj=compressed, mode="wb", mtime=0, filename="") as gz:
        gz.write(tar_bytes)
    blob = compressed.getvalue()
    return Layer(blob=blob, digest=_digest(blob), diff_id=_digest(tar_bytes))


# ------------------------------------------------------------------ images

@dataclass
class Image:
    """A built image: every blob and document, ready to push (see the module docstring)."""
    name: str                             # repository path, "library/busybox"
    tag: str
    layers: list[Layer]
    config: bytes
    manifest: bytes
    index: bytes
    platform: dict = field(default_factory=dict)

    @property
    def config_digest(self) -> str:
        return _digest(self.config)

    @property
    def manifest_digest(self) -> str:
        return _digest(self.manifest)

    @property
    def index_digest(self) -> str:
        return _digest(self.index)


def make_image(name: str, layers: list[Layer], *, cmd: list[str], env: list[str] | None = None,
               working_dir: str = "/", created_by: str = "", tag: str = "latest",
               platform: dict | None = None, volumes: list[str] | None = None) -> Image:
    """Config, manifest and index around `layers` for the host platform. `volumes` are
    the image's VOLUMEs (config.Volumes): paths that get a volume in every container."""
    platform = platform or host_platform()
    created = datetime.fromtimestamp(build_epoch(), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    config = {
        "created": created,
        "architecture": platform["architecture"],
        "os": platform["os"],
        "config": {"Env": env or [PATH_ENV], "Cmd": cmd, "WorkingDir": working_dir},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [{"created": created, "created_by": created_by or f"labkit.images: {name}",
                     "comment": "built offline by labkit.images"}],
    }
    if volumes:
        config["config"]["Volumes"] = {path: {} for path in volumes}
    if platform.get("variant"):
        config["variant"] = platform["variant"]
    config_bytes = _canonical_json(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "config": {"mediaType": mediatypes.OCI_CONFIG, "digest": _digest(config_bytes),
                   "size": len(config_bytes)},
        "layers": [layer.descriptor() for layer in layers],
    }
    manifest_bytes = _canonical_json(manifest)
    index = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_INDEX,
        "manifests": [{"mediaType": mediatypes.OCI_MANIFEST, "digest": _digest(manifest_bytes),
                       "size": len(manifest_bytes), "platform": platform}],
    }
    return Image(name=name, tag=tag, layers=layers, config=config_bytes,
                 manifest=manifest_bytes, index=_canonical_json(index), platform=platform)


# ------------------------------------------------------------------ the two images

def compile_hello(cache_dir: Path | None = None) -> bytes:
    """The static hello binary: compiled once per source version, then read from the cache."""
    source = resources.files("labkit.images").joinpath("hello.c").read_bytes()
    arch = host_platform()["architecture"]
    cache_dir = Path(cache_dir or CACHE_DIR)
    cached = cache_dir / f"hello-{arch}-{hashlib.sha256(source).hexdigest()[:16]}"
    if cached.exists():
        return cached.read_bytes()
    if shutil.which("gcc") is None:
        raise RuntimeError("cannot build hello-world: gcc is not installed (apt-get install gcc libc6-dev)")
    with tempfile.TemporaryDirectory(prefix="labkit-hello-") as tmp:
        # compile "hello.c" by its relative name: no temporary path ends up in the binary
        (Path(tmp) / "hello.c").write_bytes(source)
        result = subprocess.run(["gcc", "-static", "-Os", "-s", "-o", "hello", "hello.c"],
                                cwd=tmp, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError("cannot build hello-world: gcc -static failed "
                               f"(is libc6-dev installed?): {result.stderr.strip()}")
        binary = (Path(tmp) / "hello").read_bytes()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp_path = cached.with_suffix(f".tmp{os.getpid()}")
        tmp_path.write_bytes(binary)
        os.replace(tmp_path, cached)     # atomic: a concurrent build never reads half a file
    except OSError:
        pass    # no cache (e.g. not root): still correct, since gcc's output is deterministic
    return binary


def hello_world(cache_dir: Path | None = None) -> Image:
    """One layer holding /hello; Cmd ["/hello"] — like Docker's hello-world."""
    layer = make_layer([Entry("hello", "file", 0o755, compile_hello(cache_dir))])
    return make_image("library/hello-world", [layer], cmd=["/hello"],
                      created_by='COPY hello / # gcc -static -Os -s hello.c')


def busybox_applets(busybox: Path = BUSYBOX) -> list[str]:
    """The applet names this busybox binary provides (`busybox --list`)."""
    try:
        out = subprocess.run([str(busybox), "--list"], check=True, capture_output=True,
                             text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise RuntimeError(f"cannot build busybox: {busybox} --list failed "
                           f"(apt-get install busybox-static): {e}") from None
    return sorted({a for a in out.split() if a and "/" not in a and a != "busybox"})


def busybox(binary: Path = BUSYBOX) -> Image:
    """/bin/busybox plus one symlink per applet, a minimal /etc; Cmd ["sh"]."""
    try:
        data = Path(binary).read_bytes()
    except OSError as e:
        raise RuntimeError(f"cannot build busybox: cannot read {binary}: {e.strerror}") from None
    entries = [Entry(d, "dir") for d in ("bin", "etc", "home", "usr", "var")]
    entries.append(Entry("root", "dir", 0o700))       # root's home, private as on any host
    entries.append(Entry("tmp", "dir", 0o1777))       # sticky and world-writable
    entries.append(Entry("bin/busybox", "file", 0o755, data))
    entries += [Entry(f"bin/{applet}", "symlink", target="busybox")
                for applet in busybox_applets(Path(binary))]
    entries.append(Entry("etc/passwd", "file", 0o644,
                         b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"))
    entries.append(Entry("etc/group", "file", 0o644, b"root:x:0:\nnogroup:x:65534:\n"))
    layer = make_layer(entries)
    return make_image("library/busybox", [layer], cmd=["sh"],
                      created_by="COPY /bin/busybox / && busybox --install -s /bin")


BUILDERS = {"hello-world": hello_world, "busybox": busybox}
