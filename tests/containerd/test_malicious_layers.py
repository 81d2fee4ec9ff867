"""Hostile images: crafted layers pulled through a private labkit-containerd, checked on the host.

Each image below is pushed to a private labkit-registry and pulled over gRPC by a private
labkit-containerd process — the path `docker pull` takes: the blob is downloaded, verified,
and unpacked on a temporary overlay mount under containerd's state directory. Every test then
looks at the *host*: a directory outside containerd's root (`outside/`, which the layers aim
their symlinks, hardlinks and whiteouts at), canary files beside the temporary mounts (where
`.wh...` used to reach) and the snapshots of an innocent image pulled first must be exactly
as before — nothing written, deleted, or with changed metadata (mode, owner, times, links).

A refused layer fails the pull with a message that names the entry; nothing of it is left
(no active "extract-" snapshot, no temporary mount).

The whole suite runs twice: once with each snapshotter (overlayfs, where a layer is unpacked
on an overlay mount, and native, where it is unpacked on a bind mount of a full copy).
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import grpc
import pytest

from labkit.containerd.client import Client, pb
from labkit.distribution.client import RegistryClient
from support import labkit_registry

from .layers import entry, make_tar, push_image
from .test_grpc_e2e import Daemon

pytestmark = [pytest.mark.root, pytest.mark.slow]

NS = "lkhostile"


def fingerprint(top: Path) -> dict[str, tuple]:
    """Everything observable about a tree, without following links: type, mode, owner, size,
    mtime, link count, inode and the contents of regular files."""
    seen = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in ["."] + dirnames + filenames:
            path = os.path.normpath(os.path.join(dirpath, name))
            st = os.lstat(path)
            digest = None
            if stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            seen[os.path.relpath(path, top)] = (st.st_mode, st.st_uid, st.st_gid, st.st_size,
                                               st.st_mtime_ns, st.st_nlink, st.st_ino, digest)
    return seen


@pytest.fixture(scope="module", params=["overlayfs", "native"])
def lab(request):
    """A private registry and containerd; `outside/` with a secret; canaries in tmpmounts."""
    with labkit_registry("lkhostile-reg-") as registry:
        d = Daemon(Path(__import__("tempfile").mkdtemp(prefix="lkh-", dir="/tmp")),
                   "--snapshotter", request.param)
        d.snapshotter = request.param
        outside = d.base / "outside"
        (outside / "b").mkdir(parents=True)
        (outside / "secret").write_text("host secret\n")
        canaries = d.base / "state" / "tmpmounts" / "canary"
        canaries.mkdir(parents=True)
        (canaries / "file").write_text("do not delete\n")
        d.start()
        try:
            with Client(d.sock, NS) as c:
                c.wait_ready(10)
                d.client, d.registry, d.outside = c, registry, outside
                d.push = RegistryClient(registry.url)
                innocent = make_tar(entry("etc/", "dir"), entry("etc/os-release", "file", b"x\n"))
                pull(d, "innocent", [innocent])
                d.innocent = fingerprint(d.base / "root" / "snapshots")
                yield d
        finally:
            d.stop()
            from labkit.containerd import mount as mountlib
            from labkit.lab.reset import mounts_under
            for point in mounts_under([d.base]):
                mountlib.unmount_all(point)
            import shutil
            shutil.rmtree(d.base, ignore_errors=True)


def pull(lab, name: str, layers: list[bytes]) -> None:
    push_image(lab.push, f"hostile/{name}", "latest", layers)
    ref = f"{lab.registry.address}/hostile/{name}:latest"
    list(lab.client.transfer.Pull(pb.PullRequest(reference=ref), timeout=60))


@pytest.fixture
def host(lab):
    """Fingerprints the host side before the test and checks it is unchanged after."""
    watched = {"outside": lab.outside, "tmpmounts/canary": lab.base / "state/tmpmounts/canary"}
    before = {k: fingerprint(v) for k, v in watched.items()}
    yield lab
    for key, top in watched.items():
        assert fingerprint(top) == before[key], f"the host's {key}/ changed"
    # the innocent image's snapshots: untouched (other snapshots may have been added)
    now = fingerprint(lab.base / "root" / "snapshots")
    changed = {p for p, v in lab.innocent.items() if p != "." and now.get(p) != v}
    assert not changed, f"the innocent image's snapshots changed: {sorted(changed)[:5]}"
    # a refused layer leaves no half-unpacked snapshot behind
    infos = lab.client.snapshots.List(pb.ListSnapshotsRequest(snapshotter=lab.snapshotter)).info
    assert infos, "no snapshots in the snapshotter under test"
    actives = [i.name for i in infos if i.name.startswith("extract-")]
    assert actives == []


def refused(lab, name: str, layers: list[bytes], message: str) -> None:
    with pytest.raises(grpc.RpcError) as e:
        pull(lab, name, layers)
    assert message in e.value.details(), e.value.details()


# ------------------------------------------------------------------ refused whiteouts


@pytest.mark.parametrize("whiteout, hides", [(".wh...", ".."), ("dir/.wh...", ".."),
                                             (".wh..", "."), (".wh.", "")])
def test_whiteout_of_dot_dot_dot_or_nothing_is_refused(host, whiteout, hides):
    """`.wh...` used to delete the temporary mount's siblings (tmpmounts/canary) and `.wh..`
    the whole snapshot; both are refused, as is the empty name."""
    layer = make_tar(entry("dir/", "dir"), entry("dir/keep", "file", b"k"), entry(whiteout, "file"))
    refused(host, "wh" + str(len(whiteout)) + hides.replace(".", "d"), [layer],
            f"is not a valid whiteout: it hides {hides!r}")


# ------------------------------------------------------------------ metadata through a symlink


def test_directory_times_never_follow_a_later_symlink(host):
    """`a/`, `a/b/` (mtime 0), then `a -> outside`: the deferred directory time used to land on
    the host's outside/b. Now it is looked up inside the root, where a/b no longer exists."""
    layer = make_tar(entry("a/", "dir"), entry("a/b/", "dir", mtime=0),
                     entry("a", "symlink", link=str(host.outside)))
    pull(host, "dirtimes", [layer])


# ------------------------------------------------------------------ device nodes


def test_device_nodes_are_unreachable_for_other_users(host):
    """c 1:1 (mem), c 1:11 (kmsg), b 254:0: created as the layer says (Docker does too), but
    under containerd's 0700 directories, so no other user of the host can open them."""
    layer = make_tar(entry("dev/", "dir"),
                     entry("dev/mem", "char", mode=0o666, dev=(1, 1)),
                     entry("dev/kmsg", "char", mode=0o666, dev=(1, 11)),
                     entry("dev/vda", "block", mode=0o666, dev=(254, 0)))
    pull(host, "devices", [layer])
    nodes = [p for p in (host.base / "root" / "snapshots").rglob("dev/*")
             if stat.S_ISCHR(p.lstat().st_mode) or stat.S_ISBLK(p.lstat().st_mode)]
    assert len(nodes) == 3
    for directory in (host.base / "root", host.base / "root" / "snapshots",
                      host.base / "state", host.base / "state" / "tmpmounts"):
        assert stat.S_IMODE(directory.stat().st_mode) & 0o077 == 0, directory
    # and really: user nobody cannot open one
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            try:
                os.close(os.open(nodes[0], os.O_RDONLY | os.O_NONBLOCK))
                os._exit(1)
            except PermissionError:
                os._exit(0)
        finally:
            os._exit(2)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0, "nobody opened " + str(nodes[0])


# ------------------------------------------------------------------ held: keep them so


@pytest.mark.parametrize("name", ["../escape", "a/../../escape"])
def test_dot_dot_entries_are_refused(host, name):
    refused(host, "dotdot" + str(len(name)), [make_tar(entry(name, "file", b"x"))],
            "escapes the root")


def test_absolute_paths_stay_inside(host):
    pull(host, "absolute", [make_tar(entry(str(host.outside / "pwned"), "file", b"x"))])


def test_symlink_then_file_in_the_same_layer(host):
    pull(host, "samelayer", [make_tar(entry("l", "symlink", link=str(host.outside)),
                                      entry("l/pwned", "file", b"x"),
                                      entry("r", "symlink", link="../../../../../../"),
                                      entry("r" + str(host.outside) + "/pwned2", "file", b"x"))])


def test_symlink_then_file_in_a_later_layer(host):
    pull(host, "laterlayer", [make_tar(entry("l", "symlink", link=str(host.outside))),
                              make_tar(entry("l/secret", "file", b"overwritten"),
                                       entry("l/b/", "dir", mtime=0))])


@pytest.mark.parametrize("target", ["{outside}/secret", "d/secret"])
def test_hardlinks_to_host_files_are_refused(host, target):
    """A hardlink to a host file, directly or through a symlinked directory: the target is
    looked up inside the root, where it does not exist."""
    layer = make_tar(entry("d", "symlink", link=str(host.outside)),
                     entry("h", "hardlink", link=target.format(outside=host.outside)))
    refused(host, "hardlink" + str(len(target)), [layer], "target is missing")


def test_hardlink_to_shadow_is_refused(host):
    refused(host, "shadow", [make_tar(entry("h", "hardlink", link="/etc/shadow"))],
            "target is missing")


@pytest.mark.parametrize("marker", ["secret", ".wh..wh..opq"])
def test_whiteouts_through_a_symlink_stay_inside(host, marker):
    whiteout = marker if marker.startswith(".wh.") else ".wh." + marker
    pull(host, "whsym" + str(len(marker)),
         [make_tar(entry("l", "symlink", link=str(host.outside))),
          make_tar(entry("l/" + whiteout, "file"))])


def test_wrong_blob_digest_is_refused_and_nothing_stored(host):
    """The registry serves a layer whose bytes are not its digest: refused, not stored."""
    layer = make_tar(entry("f", "file", b"original"))
    info = push_image(host.push, "hostile/baddigest", "latest", [layer])
    import json
    manifest = json.loads((host.registry.storage.root / "blobs" / "sha256" /
                           info["manifest"].split(":")[1]).read_bytes())
    blob_digest = manifest["layers"][0]["digest"]
    blob = host.registry.storage.root / "blobs" / "sha256" / blob_digest.split(":")[1]
    blob.write_bytes(blob.read_bytes()[:-8] + b"tampered")   # same size, other bytes
    with pytest.raises(grpc.RpcError) as e:
        list(host.client.transfer.Pull(pb.PullRequest(
            reference=f"{host.registry.address}/hostile/baddigest:latest"), timeout=60))
    assert "digest" in e.value.details()
    stored = host.base / "root" / "blobs" / "sha256" / blob_digest.split(":")[1]
    assert not stored.exists()
