"""Checkpoint cp07 -- chapter 07, containerd's stores (labkit/containerd/snapshots.py and
labkit/containerd/content.py).

Graded with `labkit grade cp07`. The first group tests one exercise each, on real stores in a
temporary directory: the overlay snapshotter's mounts are *performed* (real overlayfs, undone
in a finally) and the files looked at; the content store's ingests are written, verified and
published, or refused. Where a test needs another exercise's work done (committing a snapshot
before stacking on it) it does that work with labkit's reference metadata, so one exercise's
bug cannot hide another's. The last one runs the real docker CLI through a private lab whose
content store and snapshotter (loaded into labkit-containerd) are the graded code:
`docker pull busybox`, `docker run --rm busybox …`, and `docker rmi`, after which the blobs and
snapshots the pull made must be gone again (containerd's garbage collector removes them
through your content store and snapshotter).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from labkit.containerd import mount as mountlib
from labkit.containerd.errors import NotFound   # raised by the reference MetadataStore below
from labkit.containerd.metadata import MetadataStore
from labkit.course.grading import checkpoint
from labkit.lab.implementations import resolve_module

NS = "cp07"


def snapshots():
    """labkit.containerd.snapshots as this grading run configured it (reference or workspace)."""
    return resolve_module("snapshotter", "labkit.containerd.snapshots")


def content():
    """labkit.containerd.content as this grading run configured it."""
    return resolve_module("content", "labkit.containerd.content")


def error(module, name: str) -> type[Exception]:
    """The exception class `name` as the module under test raises it (a workspace's module
    imports the workspace's containerd.errors, whose classes are not labkit's)."""
    return getattr(module, name)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Stores:
    """A snapshot root and a content root in a short temporary directory; every mount made
    through `mount()` is undone at the end (before the directory goes), also on failure."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.meta = MetadataStore(base / "root" / "meta.db")
        self.points: list[str] = []

    def overlay(self):
        return snapshots().OverlaySnapshotter(self.base / "root", self.meta, NS)

    def content(self):
        return content().LocalContentStore(self.base / "root")

    def record(self, key: str):
        return self.meta.get_snapshot(NS, "overlayfs", key)

    def fs(self, key: str) -> Path:
        return self.base / "root" / "snapshots" / str(self.record(key).id) / "fs"

    def commit(self, name: str, key: str) -> None:
        """Commit with the reference metadata (not the exercise): for tests of other verbs."""
        self.meta.commit_snapshot(NS, "overlayfs", key, name, {})

    def mount(self, mounts) -> Path:
        target = tempfile.mkdtemp(prefix="m", dir=self.base)
        mountlib.mount_all(mounts, target)
        self.points.append(target)
        return Path(target)

    def unmount(self, target: Path) -> None:
        mountlib.unmount_all(str(target))
        self.points.remove(str(target))

    def close(self) -> None:
        for point in reversed(self.points):
            with contextlib.suppress(OSError):
                mountlib.unmount_all(point)
        self.meta.close()


@pytest.fixture
def stores():
    base = Path(tempfile.mkdtemp(prefix="cp7-", dir="/tmp"))   # short: overlay options
    s = Stores(base)
    try:
        yield s
    finally:
        s.close()
        shutil.rmtree(base, ignore_errors=True)


def _layer(stores: Stores, snap, key: str, parent: str, files: dict[str, str]) -> None:
    """Make committed snapshot `key` on `parent` holding `files` (written through its mount)."""
    target = stores.mount(snap.prepare("extract " + key, parent))
    for name, text in files.items():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_text(text)
    stores.unmount(target)
    stores.commit(key, "extract " + key)


# --- the snapshotter ------------------------------------------------------------------------

@checkpoint("cp07", points=4, hint="OverlaySnapshotter.mounts: an active snapshot with no parent "
            "is a rw bind of its fs/; with parents it is overlay with lowerdir=<parent's fs>:…:"
            "<bottom's fs> (top first, self._chain), upperdir=its fs/, workdir=its work/; a view "
            "is read-only: a ro bind of its one layer, or overlay with only lowerdirs; a "
            "committed snapshot shows itself over its parents")
@pytest.mark.root
def test_overlay_mounts(stores):
    snap = stores.overlay()
    first = snap.prepare("extract one")
    assert [(m.type, "rw" in m.options) for m in first] == [("bind", True)], first
    target = stores.mount(first)
    (target / "a").write_text("one")
    (target / "d").mkdir()
    (target / "d" / "x").write_text("x")
    stores.unmount(target)
    stores.commit("one", "extract one")
    _layer(stores, snap, "two", "one", {"a": "two", "b": "b"})

    # a container's rootfs: overlay, its upperdir its own fs/, the layers below top first
    mounts = snap.prepare("rootfs", "two")
    assert len(mounts) == 1 and mounts[0].type == "overlay", mounts
    options = dict(o.split("=", 1) for o in mounts[0].options if "=" in o)
    assert options.get("lowerdir") == f"{stores.fs('two')}:{stores.fs('one')}", options
    assert options.get("upperdir") == str(stores.fs("rootfs")), options
    assert "workdir" in options, options
    rootfs = stores.mount(mounts)
    assert (rootfs / "a").read_text() == "two", "the upper layer wins"
    assert (rootfs / "b").read_text() == "b" and (rootfs / "d" / "x").read_text() == "x"
    (rootfs / "new").write_text("mine")
    (rootfs / "a").write_text("changed")
    assert (stores.fs("rootfs") / "new").read_text() == "mine", "writes land in the upperdir"
    assert (stores.fs("two") / "a").read_text() == "two", "the layers below never change"

    # views: read-only, of one layer or of several
    for key, parent, expect_b in (("look-1", "one", False), ("look-2", "two", True)):
        view = stores.mount(snap.view(key, parent))
        assert (view / "a").read_text() == ("two" if expect_b else "one")
        assert (view / "b").exists() == expect_b
        with pytest.raises(OSError):
            (view / "c").write_text("no")
    # a committed snapshot, looked at, shows itself over its parents
    looked = stores.mount(snap.mounts("two"))
    assert (looked / "a").read_text() == "two" and (looked / "d" / "x").read_text() == "x"


@checkpoint("cp07", points=2, hint="commit: FailedPrecondition unless the snapshot is active; "
            "self._meta.commit_snapshot renames its row (keep its labels when none are given); "
            "remove its work/ directory")
@pytest.mark.root
def test_commit_snapshot(stores):
    snap = stores.overlay()
    FailedPrecondition = error(snapshots(), "FailedPrecondition")
    target = stores.mount(snap.prepare("extract", "", {"why": "cp07"}))
    (target / "f").write_text("kept")
    stores.unmount(target)
    work = stores.fs("extract").parent / "work"
    assert work.is_dir()
    snap.commit("layer", "extract")
    info = snap.stat("layer")
    assert (info.kind, info.parent, info.labels) == ("committed", "", {"why": "cp07"})
    with pytest.raises(NotFound):
        snap.stat("extract")
    assert (stores.fs("layer") / "f").read_text() == "kept"
    assert not work.exists(), "a committed snapshot needs no overlay work/ directory"
    # only an active snapshot can be committed: not a view, not a committed one
    snap.view("look", "layer")
    with pytest.raises(FailedPrecondition):
        snap.commit("frozen-view", "look")
    with pytest.raises(FailedPrecondition):
        snap.commit("again", "layer")
    assert {i.name: i.kind for i in snap.list()} == {"layer": "committed", "look": "view"}
    with pytest.raises(NotFound):
        snap.commit("x", "no-such-snapshot")


@checkpoint("cp07", points=2, hint="remove: FailedPrecondition while other snapshots have it as "
            "parent (self._meta.snapshot_children); else delete its row and its numbered "
            "directory")
@pytest.mark.root
def test_remove_snapshot(stores):
    snap = stores.overlay()
    FailedPrecondition = error(snapshots(), "FailedPrecondition")
    _layer(stores, snap, "base", "", {"a": "base"})
    rootfs = stores.mount(snap.prepare("container", "base"))
    base_dir = stores.fs("base").parent
    with pytest.raises(FailedPrecondition, match="container"):
        snap.remove("base")           # the container's overlay still names it as a lowerdir
    assert base_dir.is_dir() and (rootfs / "a").read_text() == "base"
    container_dir = stores.fs("container").parent
    stores.unmount(rootfs)
    snap.remove("container")
    assert not container_dir.exists()
    snap.remove("base")               # children first, then the parent
    assert not base_dir.exists() and snap.list() == []
    with pytest.raises(NotFound):
        snap.remove("base")


# --- the content store ----------------------------------------------------------------------

BLOB = os.urandom(3 << 20)            # 3 MB: written in several chunks


@checkpoint("cp07", points=3, hint="_LocalWriter.commit: the bytes written must be self._size "
            "(unless -1) and hash to self._digest, else FailedPrecondition and nothing is "
            "published; then make data read-only and os.rename it to store.blob_path(digest)")
def test_content_commit(stores):
    store = stores.content()
    FailedPrecondition = error(content(), "FailedPrecondition")
    digest = sha256(BLOB)
    with store.writer(digest, len(BLOB)) as w:
        for i in range(0, len(BLOB), 1 << 20):
            w.write(BLOB[i:i + (1 << 20)])
        info = w.commit()
    assert (info.digest, info.size) == (digest, len(BLOB))
    path = store.blob_path(digest)
    assert path.read_bytes() == BLOB
    assert stat.S_IMODE(path.stat().st_mode) & 0o222 == 0, "a blob never changes: read-only"
    assert list(store.ingest_dir.iterdir()) == [], "the ingest is gone once published"

    # a wrong digest (bytes changed on the way) and a short write: refused, nothing published
    other = bytearray(BLOB[:4096])
    other[100] ^= 1
    for data, size in ((bytes(other), 4096), (BLOB[:1000], 4096)):
        claimed = sha256(BLOB[:4096])
        with pytest.raises(FailedPrecondition):
            with store.writer(claimed, size) as w:
                w.write(data)
                w.commit()
        assert not store.exists(claimed), "a blob that failed its check was published"
        assert list(store.ingest_dir.iterdir()) == [], "the failed ingest was left behind"
    # the size is optional (-1), the digest never is
    small = b"a config"
    with store.writer(sha256(small)) as w:
        w.write(small)
        assert w.commit().size == len(small)
    with pytest.raises(FailedPrecondition):
        with store.writer(sha256(b"x")) as w:
            w.write(b"y")
            w.commit()
    assert sorted(i.digest for i in store.list()) == sorted([digest, sha256(small)])


@checkpoint("cp07", points=2, hint="Ingest.write: a write must start at self.offset (else "
            "OutOfRange, and nothing is written); append, flush, hash, advance self.offset, "
            "write the time to updatedat")
def test_resumable_ingest(stores):
    store = stores.content()
    OutOfRange = error(content(), "OutOfRange")
    digest = sha256(BLOB)
    half = len(BLOB) // 2
    ingest = store.ingest("cp07-layer", len(BLOB), digest)
    ingest.write(BLOB[:half], 0)
    assert ingest.offset == half and store.ingest_status("cp07-layer").offset == half
    with pytest.raises(OutOfRange):
        ingest.write(BLOB[half + 10:], half + 10)     # a gap
    with pytest.raises(OutOfRange):
        ingest.write(BLOB[:10], 0)                    # written twice
    assert store.ingest_status("cp07-layer").offset == half, "a refused write changed the ingest"
    ingest.close()                                    # the writer's stream broke

    again = store.ingest("cp07-layer")                # ... and it comes back
    assert again.offset == half
    again.write(BLOB[half:], half)
    status = store.ingest_status("cp07-layer")
    assert (status.offset, status.total) == (len(BLOB), len(BLOB))
    assert status.updated_at >= status.started_at
    info = again.commit(len(BLOB), digest)
    assert info.size == len(BLOB) and store.read_bytes(digest) == BLOB
    assert store.ingest_statuses() == []


# --- the proof: docker pull, run and rmi through your stores --------------------------------

@checkpoint("cp07", points=5, hint="labkit-containerd stores every blob of `docker pull` with "
            "your content store and unpacks every layer with your snapshotter (prepare, mount, "
            "untar, commit); `docker run` mounts your snapshotter's mounts as the rootfs; "
            "`docker rmi` lets the garbage collector remove them again (the docker error names "
            "the function that is not done yet)")
@pytest.mark.root
def test_docker_through_your_stores(private_lab):
    docker = shutil.which("docker")
    assert docker, "no docker CLI on PATH (vagrant/setup.sh installs Debian's docker.io)"
    with private_lab() as env:
        root = Path(env["LABKIT_LIB_DIR"]) / "containerd"
        blobs, snaps = root / "content" / "blobs" / "sha256", root / "snapshots"

        def on_disk() -> tuple[set[str], set[str]]:
            return ({p.name for p in blobs.iterdir()} if blobs.is_dir() else set(),
                    {p.name for p in snaps.iterdir()} if snaps.is_dir() else set())

        def run(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([docker, *args], env=env, capture_output=True, text=True,
                                  timeout=120)

        before = on_disk()
        pull = run("pull", "busybox")
        assert pull.returncode == 0, _docker_error(pull.stderr or pull.stdout)
        image_id = run("image", "inspect", "--format", "{{.Id}}", "busybox").stdout.strip()
        pulled = on_disk()
        assert image_id.split(":")[-1] in pulled[0], "the image's config is a blob in your store"
        assert pulled[1] - before[1], "the layer was unpacked into a snapshot"

        script = "echo cp07 > /tmp/f && cat /tmp/f && ls /bin/busybox"
        ran = run("run", "--rm", "busybox", "sh", "-c", script)
        assert (ran.returncode, ran.stdout) == (0, "cp07\n/bin/busybox\n"), \
            _docker_error(ran.stderr)

        gone = run("rmi", "busybox")
        assert gone.returncode == 0, _docker_error(gone.stderr)
        left = on_disk()
        assert not (left[0] - before[0]), f"blobs the pull stored are still there: {left[0] - before[0]}"
        assert not (left[1] - before[1]), f"snapshots the pull made are still there: {left[1] - before[1]}"


def _docker_error(stderr: str) -> str:
    """The line of docker's error that says what failed (the rest is the pull's progress)."""
    lines = [line for line in stderr.splitlines() if "rror" in line]
    return lines[-1] if lines else stderr.strip()[-500:]
