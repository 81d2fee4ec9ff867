"""`docker rmi`, `docker image prune` and `docker system df` free and count what is on disk.

Two images pushed to the stack's registry share their first layer. Through the real docker
CLI: pull both; rmi one -> its own blobs and snapshot go, the shared layer stays; the other
pulled once more by digest (a name without a tag: dangling once its tag is gone), untagged,
then `docker image prune` -> containerd is back to what it held before the test, and the
space reclaimed is what it freed. `docker system df`'s numbers are checked against what
containerd reports (Content.List, Snapshots.Usage). The session's other images stay.
"""

from __future__ import annotations

import json
import os

import pytest

from containerd.layers import entry, gz, make_tar, push_image, sha
from dockerd.conftest import DOCKER
from dockerd.httpunix import call
from labkit.containerd.client import Client, pb
from labkit.distribution.client import RegistryClient
from labkit.distribution.layers import chain_ids

from .test_e2e import docker

pytestmark = [pytest.mark.root, pytest.mark.e2e,
              pytest.mark.skipif(not os.path.exists(DOCKER), reason="docker CLI not installed")]

SHARED = make_tar(entry("bin/", "dir"), entry("bin/shared", "file", b"s" * 5000))
ONLY_A = make_tar(entry("a/", "dir"), entry("a/file", "file", b"a" * 7000))
ONLY_B = make_tar(entry("b/", "dir"), entry("b/file", "file", b"b" * 9000))


def on_disk(c) -> tuple[dict[str, int], dict[str, int]]:
    blobs = {i.digest: i.size for i in c.content.List(pb.ListContentRequest()).info}
    snaps = {s.name: c.snapshots.Usage(pb.SnapshotUsageRequest(key=s.name)).size
             for s in c.snapshots.List(pb.ListSnapshotsRequest()).info if s.kind == pb.COMMITTED}
    return blobs, snaps


def test_rmi_prune_and_df(stack, docker_env, labkit_stack):
    push = RegistryClient(stack.registry.url)
    a = push_image(push, "library/lkgc-a", "latest", [SHARED, ONLY_A])
    b = push_image(push, "library/lkgc-b", "latest", [SHARED, ONLY_B])
    a_blobs = {a["manifest"], a["config"], sha(gz(SHARED)), sha(gz(ONLY_A))}
    b_blobs = {b["manifest"], b["config"], sha(gz(SHARED)), sha(gz(ONLY_B))}
    a_chains, b_chains = chain_ids(a["diff_ids"]), chain_ids(b["diff_ids"])
    with Client(stack.tmp / "c.sock", "moby") as c:
        blobs0, snaps0 = on_disk(c)
        listed = lambda: sorted(docker(docker_env, "images", "--format",
                                       "{{.Repository}}:{{.Tag}}").stdout.split())
        images0 = listed()
        listed_names = lambda: [n.split(":")[0] for n in listed()]
        try:
            for name in ("lkgc-a", "lkgc-b"):
                r = docker(docker_env, "pull", name)
                assert r.returncode == 0, r.stderr
            blobs, snaps = on_disk(c)
            assert set(blobs) == set(blobs0) | a_blobs | b_blobs
            assert set(snaps) == set(snaps0) | set(a_chains) | set(b_chains)

            # docker system df: the numbers are containerd's
            status, _, body = call(labkit_stack, "GET", "/v1.45/system/df")
            assert status == 200
            df = json.loads(body)
            images = {i["Id"]: i for i in df["Images"]}
            own = lambda info, chains, layers: (
                blobs[info["manifest"]] + blobs[info["config"]] +
                sum(blobs[sha(gz(t))] for t in layers) + sum(snaps[x] for x in chains))
            shared = blobs[sha(gz(SHARED))] + snaps[a_chains[0]]
            for info, chains, layers in ((a, a_chains, [SHARED, ONLY_A]),
                                         (b, b_chains, [SHARED, ONLY_B])):
                item = images[info["config"]]
                assert item["Size"] == own(info, chains, layers)
                assert item["SharedSize"] == shared
                assert item["Containers"] == 0
            assert df["LayersSize"] == sum(blobs.values()) + sum(snaps.values())
            r = docker(docker_env, "system", "df")
            assert r.returncode == 0, r.stderr
            assert r.stdout.split("\n")[1].split()[0] == "Images"

            # rmi: what only lkgc-a used goes; the shared layer and its snapshot stay
            r = docker(docker_env, "rmi", "lkgc-a")
            assert r.returncode == 0, r.stderr
            blobs, snaps = on_disk(c)
            assert set(blobs) == set(blobs0) | b_blobs
            assert set(snaps) == set(snaps0) | set(b_chains)

            # a name without a tag keeps the image; prune removes it once it is dangling
            r = docker(docker_env, "pull", f"lkgc-b@{b['manifest']}")
            assert r.returncode == 0, r.stderr
            assert docker(docker_env, "rmi", "lkgc-b").returncode == 0
            blobs, snaps = on_disk(c)
            assert set(blobs) == set(blobs0) | b_blobs            # still named by digest
            freed = sum(size for d, size in blobs.items() if d not in blobs0) + \
                sum(size for s, size in snaps.items() if s not in snaps0)
            status, _, body = call(labkit_stack, "POST",
                                   "/v1.45/images/prune?filters=" +
                                   '%7B%22dangling%22%3A%5B%22true%22%5D%7D')
            assert status == 200, body
            pruned = json.loads(body)
            assert {"Deleted": b["config"]} in pruned["ImagesDeleted"]
            assert pruned["SpaceReclaimed"] == freed > 0
            blobs, snaps = on_disk(c)
            assert (set(blobs), set(snaps)) == (set(blobs0), set(snaps0))   # back to before
            assert listed() == images0      # the session's other images are kept

            # -a: tagged images too, when no container uses them (here: those labelled)
            push_image(push, "library/lkgc-c", "latest", [ONLY_A], labels={"lkgc": "yes"})
            assert docker(docker_env, "pull", "lkgc-c").returncode == 0
            r = docker(docker_env, "image", "prune", "-f", "--filter", "label=lkgc=yes")
            assert "lkgc-c" in listed_names() and "Total reclaimed space: 0B" in r.stdout
            assert docker(docker_env, "create", "--name", "lkgc-user", "lkgc-c").returncode == 0
            r = docker(docker_env, "image", "prune", "-a", "-f", "--filter", "label=lkgc=yes")
            assert "lkgc-c" in listed_names(), r.stdout      # a container uses it
            assert docker(docker_env, "rm", "lkgc-user").returncode == 0
            r = docker(docker_env, "image", "prune", "-a", "-f", "--filter", "label=lkgc=yes")
            assert r.returncode == 0 and "untagged: lkgc-c:latest" in r.stdout.lower(), r.stdout
            assert listed() == images0
            assert on_disk(c)[0].keys() == blobs0.keys()
            r = docker(docker_env, "image", "prune", "-f")
            assert r.returncode == 0 and "Total reclaimed space: 0B" in r.stdout, r.stdout
        finally:
            docker(docker_env, "rm", "-f", "lkgc-user")
            for name in ("lkgc-a", "lkgc-b", f"lkgc-b@{b['manifest']}", "lkgc-c"):
                docker(docker_env, "rmi", name)


def test_df_counts_volumes_and_their_users(stack, docker_env, labkit_stack):
    """`docker system df` with volumes on the host: each with its size and how many
    containers use it (it answered 500 whenever a volume existed)."""
    assert docker(docker_env, "volume", "create", "gc-df-vol").returncode == 0
    try:
        r = docker(docker_env, "create", "--name", "gc-df-user", "-v", "gc-df-vol:/data",
                   "busybox", "true")
        assert r.returncode == 0, r.stderr
        status, _, body = call(labkit_stack, "GET", "/v1.45/system/df")
        assert status == 200, body
        volumes = {v["Name"]: v for v in json.loads(body)["Volumes"]}
        assert volumes["gc-df-vol"]["UsageData"]["RefCount"] == 1
        assert volumes["gc-df-vol"]["UsageData"]["Size"] >= 0
        r = docker(docker_env, "system", "df", "-v")
        assert r.returncode == 0 and "gc-df-vol" in r.stdout, r.stderr
    finally:
        docker(docker_env, "rm", "-f", "gc-df-user")
        docker(docker_env, "volume", "rm", "-f", "gc-df-vol")


def test_storage_driver_native():
    """labkit-dockerd --storage-driver native: images unpack into, and containers run on,
    containerd's native snapshotter (full copies), and rmi frees them as well."""
    import shutil
    import tempfile
    from pathlib import Path

    from dockerd.conftest import Stack, docker_env_for

    tmp = Path(tempfile.mkdtemp(prefix="lkd-native-", dir="/tmp"))
    stack = Stack(tmp, ("--storage-driver", "native"))
    try:
        stack.start()
        env = docker_env_for(stack)
        r = docker(env, "run", "--rm", "busybox", "sh", "-c", "echo hi > /x; cat /x")
        assert (r.returncode, r.stdout) == (0, "hi\n"), r.stderr
        info = json.loads(docker(env, "info", "--format", "{{json .}}").stdout)
        assert info["Driver"] == "native"
        with Client(tmp / "c.sock", "moby") as c:
            native = c.snapshots.List(pb.ListSnapshotsRequest(snapshotter="native")).info
            overlay = c.snapshots.List(pb.ListSnapshotsRequest(snapshotter="overlayfs")).info
            assert native and not overlay
            assert docker(env, "rmi", "busybox").returncode == 0
            assert not c.snapshots.List(pb.ListSnapshotsRequest(snapshotter="native")).info
            assert not c.content.List(pb.ListContentRequest()).info
    finally:
        stack.stop()
        shutil.rmtree(tmp, ignore_errors=True)
