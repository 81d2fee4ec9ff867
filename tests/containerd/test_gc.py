"""Leases and garbage collection, over gRPC, in a private labkit-containerd.

Two images share their first layer: `docker rmi` of one must free what only it used (its
index, manifest, config, second layer and that layer's snapshot) and keep what the other
still needs; removing both leaves the content store and the snapshotter empty. Leases hold
what they name against collection until deleted or expired; containerd.io/gc.root holds a
blob by itself.
"""

from __future__ import annotations

from pathlib import Path
import shutil
import tempfile

import grpc
import pytest
from google.protobuf import field_mask_pb2

from labkit.containerd.client import LEASE_KEY, Client, pb
from labkit.distribution.client import RegistryClient
from labkit.distribution.layers import chain_ids
from support import labkit_registry

from .layers import entry, make_tar, push_image, sha, gz
from .test_grpc_e2e import Daemon

pytestmark = [pytest.mark.root, pytest.mark.slow]

NS = "lkgc"
SHARED = make_tar(entry("bin/", "dir"), entry("bin/tool", "file", b"shared\n", mode=0o755))
ONLY_A = make_tar(entry("etc/", "dir"), entry("etc/a", "file", b"a\n"))
ONLY_B = make_tar(entry("etc/", "dir"), entry("etc/b", "file", b"b\n"))


@pytest.fixture(scope="module")
def lab():
    with labkit_registry("lkgc-reg-") as registry:
        d = Daemon(Path(tempfile.mkdtemp(prefix="lkgc-", dir="/tmp")))
        d.start()
        try:
            with Client(d.sock, NS) as c:
                c.wait_ready(10)
                d.client, d.registry = c, registry
                push = RegistryClient(registry.url)
                d.a = push_image(push, "gc/a", "latest", [SHARED, ONLY_A], index=True)
                d.b = push_image(push, "gc/b", "latest", [SHARED, ONLY_B])
                for info, name in ((d.a, "a"), (d.b, "b")):
                    info["ref"] = f"{registry.address}/gc/{name}:latest"
                    info["chains"] = chain_ids(info["diff_ids"])
                yield d
        finally:
            d.stop()
            from labkit.containerd import mount as mountlib
            from labkit.lab.reset import mounts_under
            for point in mounts_under([d.base]):
                mountlib.unmount_all(point)
            shutil.rmtree(d.base, ignore_errors=True)


@pytest.fixture
def c(lab):
    """The client, with both images pulled; everything this module makes is gone after."""
    for info in (lab.a, lab.b):
        list(lab.client.transfer.Pull(pb.PullRequest(reference=info["ref"]), timeout=60))
    yield lab.client
    for lease in lab.client.leases.List(pb.ListLeasesRequest()).leases:
        lab.client.leases.Delete(pb.DeleteLeaseRequest(id=lease.id, sync=True))
    for img in lab.client.images.List(pb.ListImagesRequest()).images:
        lab.client.images.Delete(pb.DeleteImageRequest(name=img.name))
    assert blobs(lab.client) == set() and snapshots(lab.client) == set()


def blobs(c) -> set[str]:
    return {i.digest for i in c.content.List(pb.ListContentRequest()).info}


def snapshots(c) -> set[str]:
    return {i.name for i in c.snapshots.List(pb.ListSnapshotsRequest()).info}


def layer(tar: bytes) -> str:
    return sha(gz(tar))


def rmi(c, info) -> None:
    c.images.Delete(pb.DeleteImageRequest(name=info["ref"]))


def test_rmi_frees_what_only_that_image_used(lab, c):
    a, b = lab.a, lab.b
    a_blobs = {a["top"], a["manifest"], a["config"], layer(SHARED), layer(ONLY_A)}
    b_blobs = {b["manifest"], b["config"], layer(SHARED), layer(ONLY_B)}
    assert blobs(c) == a_blobs | b_blobs
    assert snapshots(c) == set(a["chains"]) | set(b["chains"])
    assert a["chains"][0] == b["chains"][0]          # the shared first layer: one snapshot

    rmi(c, a)
    assert blobs(c) == b_blobs                         # the shared layer stays, A's own go
    assert snapshots(c) == set(b["chains"])
    rmi(c, b)
    assert blobs(c) == set() and snapshots(c) == set()
    assert not list((lab.base / "root/snapshots").iterdir())   # directories gone too


def test_pull_labels_what_refers_to_what(lab, c):
    a = lab.a
    info = lambda d: dict(c.content.Info(pb.InfoRequest(digest=d)).info.labels)
    # the index lists a foreign platform first, then ours: m.1
    assert info(a["top"]) == {"containerd.io/gc.ref.content.m.1": a["manifest"]}
    assert info(a["manifest"]) == {"containerd.io/gc.ref.content.config": a["config"],
                                   "containerd.io/gc.ref.content.l.0": layer(SHARED),
                                   "containerd.io/gc.ref.content.l.1": layer(ONLY_A)}
    assert info(a["config"]) == {"containerd.io/gc.ref.snapshot.overlayfs": a["chains"][-1]}
    assert info(layer(ONLY_A)) == {"containerd.io/uncompressed": a["diff_ids"][1]}
    # Content.List filters, in containerd's syntax
    found = c.content.List(pb.ListContentRequest(filters=[
        'labels."containerd.io/uncompressed"'])).info
    assert {i.digest for i in found} == {layer(SHARED), layer(ONLY_A), layer(ONLY_B)}
    found = c.content.List(pb.ListContentRequest(filters=[
        f"digest=={a['config']}", f'labels."containerd.io/gc.ref.content.m.1"=={a["manifest"]}'
    ])).info
    assert {i.digest for i in found} == {a["config"], a["top"]}
    with pytest.raises(grpc.RpcError) as e:
        c.content.List(pb.ListContentRequest(filters=['labels."x']))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_no_leases_are_left_by_pulls(c):
    assert list(c.leases.List(pb.ListLeasesRequest()).leases) == []


def test_a_lease_holds_a_blob_until_deleted(lab, c):
    a = lab.a
    lease = c.leases.Create(pb.CreateLeaseRequest(id="keep", labels={"why": "test"})).lease
    assert lease.id == "keep" and lease.labels["why"] == "test"
    c.leases.AddResource(pb.AddResourceRequest(id="keep", resource=pb.Resource(
        type="content", id=layer(ONLY_A))))
    c.leases.AddResource(pb.AddResourceRequest(id="keep", resource=pb.Resource(
        type="snapshots/overlayfs", id=a["chains"][1])))
    assert [(r.type, r.id) for r in c.leases.ListResources(
        pb.ListResourcesRequest(id="keep")).resources] == [
        ("content", layer(ONLY_A)), ("snapshots/overlayfs", a["chains"][1])]
    rmi(c, a)
    assert layer(ONLY_A) in blobs(c) and a["manifest"] not in blobs(c)
    assert set(a["chains"]) <= snapshots(c)          # the parent is kept with its child
    c.leases.Delete(pb.DeleteLeaseRequest(id="keep", sync=True))
    assert layer(ONLY_A) not in blobs(c) and a["chains"][1] not in snapshots(c)
    assert a["chains"][0] in snapshots(c)            # still b's


def test_lease_filters_resources_and_errors(c):
    c.leases.Create(pb.CreateLeaseRequest(id="one", labels={"role": "x"}))
    c.leases.Create(pb.CreateLeaseRequest(id="two"))
    random = c.leases.Create(pb.CreateLeaseRequest()).lease.id
    assert len(random) >= 16
    assert [l.id for l in c.leases.List(pb.ListLeasesRequest(
        filters=['labels."role"==x'])).leases] == ["one"]
    assert {l.id for l in c.leases.List(pb.ListLeasesRequest(
        filters=["id==two", "id==one"])).leases} == {"one", "two"}
    with pytest.raises(grpc.RpcError) as e:
        c.leases.Create(pb.CreateLeaseRequest(id="one"))
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.RpcError) as e:
        c.leases.AddResource(pb.AddResourceRequest(id="nope", resource=pb.Resource(
            type="content", id="sha256:" + "0" * 64)))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as e:
        c.leases.AddResource(pb.AddResourceRequest(id="one", resource=pb.Resource(
            type="volumes", id="x")))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    c.leases.AddResource(pb.AddResourceRequest(id="one", resource=pb.Resource(
        type="content", id="sha256:" + "1" * 64)))
    c.leases.DeleteResource(pb.DeleteResourceRequest(id="one", resource=pb.Resource(
        type="content", id="sha256:" + "1" * 64)))
    assert list(c.leases.ListResources(pb.ListResourcesRequest(id="one")).resources) == []
    c.leases.Delete(pb.DeleteLeaseRequest(id="one"))
    with pytest.raises(grpc.RpcError) as e:
        c.leases.Delete(pb.DeleteLeaseRequest(id="one"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_an_expired_lease_is_dropped_with_what_it_held(lab, c):
    a = lab.a
    c.leases.Create(pb.CreateLeaseRequest(id="old", labels={
        "containerd.io/gc.expire": "2001-01-01T00:00:00Z"}))
    c.leases.Create(pb.CreateLeaseRequest(id="new", labels={
        "containerd.io/gc.expire": "2999-01-01T00:00:00Z"}))
    for lease, blob in (("old", layer(ONLY_A)), ("new", a["config"])):
        c.leases.AddResource(pb.AddResourceRequest(id=lease, resource=pb.Resource(
            type="content", id=blob)))
    rmi(c, a)
    assert [l.id for l in c.leases.List(pb.ListLeasesRequest()).leases] == ["new"]
    assert a["config"] in blobs(c)
    assert layer(ONLY_A) not in blobs(c) and a["manifest"] not in blobs(c)


def test_gc_root_label_and_snapshots_under_a_lease(lab, c):
    a = lab.a
    c.content.Update(pb.UpdateContentRequest(
        info=pb.ContentInfo(digest=a["config"], labels={"containerd.io/gc.root": "yes"}),
        update_mask=field_mask_pb2.FieldMask(paths=["labels.containerd.io/gc.root"])))
    # A snapshot committed under a lease lives as long as the lease.
    md = [(LEASE_KEY, "build")]
    c.leases.Create(pb.CreateLeaseRequest(id="build"))
    c.snapshots.Prepare(pb.PrepareSnapshotRequest(key="work", parent=a["chains"][1]),
                        metadata=md)
    c.snapshots.Commit(pb.CommitSnapshotRequest(name="built", key="work"), metadata=md)
    assert ("snapshots/overlayfs", "built") in {(r.type, r.id) for r in c.leases.ListResources(
        pb.ListResourcesRequest(id="build")).resources}
    rmi(c, a)
    assert a["config"] in blobs(c)                   # gc.root keeps it
    assert {"built", *a["chains"]} <= snapshots(c)   # the lease keeps built and its parents
    c.leases.Delete(pb.DeleteLeaseRequest(id="build", sync=True))
    # built goes; its parent stays, because the config (a root) refers to it
    assert "built" not in snapshots(c) and a["chains"][1] in snapshots(c)
    c.content.Update(pb.UpdateContentRequest(
        info=pb.ContentInfo(digest=a["config"]),
        update_mask=field_mask_pb2.FieldMask(paths=["labels.containerd.io/gc.root"])))
    assert "containerd.io/gc.root" not in c.content.Info(
        pb.InfoRequest(digest=a["config"])).info.labels


def test_a_restart_collects_garbage(lab, c):
    """A blob written outside any lease and referred to by nothing is garbage; a daemon that
    starts (after a crash, say) collects it."""
    import signal
    data = b"garbage" * 100
    answers = c.content.Write(iter([pb.WriteContentRequest(
        action=pb.COMMIT, ref="g", data=data, expected=sha(data))]))
    assert [a.digest for a in answers] == [sha(data)]
    assert sha(data) in blobs(c)
    lab.proc.send_signal(signal.SIGKILL)
    lab.proc.wait()
    lab.start()
    c.wait_ready(10)
    assert sha(data) not in blobs(c)
    assert lab.a["config"] in blobs(c)     # what images refer to stays


def test_collections_never_take_a_pull_in_progress(lab, c):
    """What leases are for. One thread pulls image A again and again (rmi first); another
    pulls and removes image B, whose first layer is A's, so each of its rmi's collects
    garbage while A's pull may be reusing that very layer. Every time A's pull finishes, every
    blob and snapshot A needs is there."""
    import threading
    a, b = lab.a, lab.b
    needed = {a["top"], a["manifest"], a["config"], layer(SHARED), layer(ONLY_A)}
    errors: list[str] = []
    stop = threading.Event()

    def churn_b() -> None:
        with Client(lab.sock, NS) as cb:
            while not stop.is_set():
                try:
                    list(cb.transfer.Pull(pb.PullRequest(reference=b["ref"]), timeout=60))
                    cb.images.Delete(pb.DeleteImageRequest(name=b["ref"]))
                except grpc.RpcError as e:
                    errors.append(f"image B: {e.details()}")
                    return

    t = threading.Thread(target=churn_b)
    t.start()
    try:
        for _ in range(12):
            rmi(c, a)
            list(c.transfer.Pull(pb.PullRequest(reference=a["ref"]), timeout=60))
            missing = needed - blobs(c)
            gone = set(a["chains"]) - snapshots(c)
            if missing or gone:
                errors.append(f"blobs {sorted(missing)}, snapshots {sorted(gone)}")
    finally:
        stop.set()
        t.join(60)
    assert errors == []
    assert list(c.leases.List(pb.ListLeasesRequest()).leases) == []


def test_an_image_removed_under_a_container_goes_with_its_snapshot(lab, c):
    """A container's snapshot holds its parents after its image is gone; removing that
    snapshot frees them (containerd's Snapshots.Remove leaves the parents to the collector)."""
    a, b = lab.a, lab.b
    c.snapshots.Prepare(pb.PrepareSnapshotRequest(key="ctr-rootfs", parent=a["chains"][1]))
    c.containers.Create(pb.CreateContainerRequest(container=pb.Container(
        id="ctr", snapshotter="overlayfs", snapshot_key="ctr-rootfs")))
    rmi(c, a)
    assert set(a["chains"]) <= snapshots(c)
    c.containers.Delete(pb.DeleteContainerRequest(id="ctr"))
    assert set(a["chains"]) <= snapshots(c)           # the snapshot still holds them
    c.snapshots.Remove(pb.RemoveSnapshotRequest(key="ctr-rootfs"))
    assert snapshots(c) == set(b["chains"])
