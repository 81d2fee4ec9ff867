"""labkit-containerd end to end, over gRPC, in a private instance.

A labkit-registry on 127.0.0.1:<ephemeral> holds a tiny two-layer busybox image; a private
labkit-containerd (temporary root, state and run directories, short socket path) pulls it,
prepares a snapshot, and runs `echo hi` as a task under labkit-shim and runc, with stdout on
a fifo the test reads. Everything started is stopped by PID and every mount undone, even when
a test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2, field_mask_pb2

from labkit.containerd.client import Client, pb
from labkit.distribution.client import RegistryClient
from labkit.distribution.layers import chain_ids
from labkit.lab.reset import mounts_under
from labkit.registry.server import serve
from support import base_spec, make_busybox_rootfs, short_tmpdir

from .layers import entry, make_tar, push_image, tar_directory

pytestmark = [pytest.mark.root, pytest.mark.slow]

NS = "lktest"
RUNTIME = "runc"  # a real runtime under labkit-shim: this suite tests containerd, not runc


@pytest.fixture(scope="module")
def base():
    with short_tmpdir("lkc-") as d:
        try:
            yield d
        finally:
            for point in mounts_under([d]):   # never rmtree through a mount
                subprocess.run(["umount", "-l", point], check=False)


@pytest.fixture(scope="module")
def registry(base):
    srv = serve(base / "registry", log=None)
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture(scope="module")
def image(registry, base):
    rootfs = make_busybox_rootfs(base / "bb")
    layer1 = tar_directory(rootfs)
    shutil.rmtree(rootfs)
    layer2 = make_tar(entry("etc/", "dir"), entry("etc/motd", "file", b"labkit\n"),
                      entry("etc/.wh.group", "file"))
    client = RegistryClient(registry.url)
    info = push_image(client, "lab/busybox", "latest", [layer1, layer2], index=True)
    push_image(client, "library/lkbox", "latest", [layer1, layer2])
    info["ref"] = f"{registry.address}/lab/busybox:latest"
    info["chains"] = chain_ids(info["diff_ids"])
    return info


def accepts(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
            return True
        except OSError:   # not there yet, or a dead daemon's socket (ECONNREFUSED)
            return False


class Daemon:
    def __init__(self, base: Path, *args: str) -> None:
        self.base, self.args = base, list(args)   # args: more flags (--snapshotter native)
        self.sock = str(base / "c.sock")
        self.proc: subprocess.Popen | None = None
        self.env = dict(os.environ, LABKIT_RUN_DIR=str(base / "run"))

    def start(self) -> None:
        log = open(self.base / "containerd.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "labkit.containerd.main", "--address", self.sock,
             "--root", str(self.base / "root"), "--state", str(self.base / "state"),
             "--log-level", "debug", *self.args], env=self.env, stdout=log, stderr=log)
        log.close()
        # Ready when the socket accepts a connection: after a kill -9 the dead daemon's socket
        # file is still there (refusing connections) until the new one binds it again.
        deadline = time.time() + 15
        while not accepts(self.sock):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("labkit-containerd did not start: " +
                                   (self.base / "containerd.log").read_text()[-2000:])
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture(scope="module")
def daemon(base):
    d = Daemon(base)
    d.start()
    try:
        yield d
    finally:
        if d.proc is None:
            d.start()
        # Remove whatever tasks a failed test left behind, through the daemon itself.
        with Client(d.sock, NS) as c:
            for t in c.tasks.List(pb.ListTasksRequest()).tasks:
                try:
                    c.tasks.Kill(pb.KillRequest(container_id=t.container_id, signal=9))
                    c.tasks.Wait(pb.WaitRequest(container_id=t.container_id), timeout=10)
                except grpc.RpcError:
                    pass
                try:
                    c.tasks.Delete(pb.DeleteTaskRequest(container_id=t.container_id))
                except grpc.RpcError:
                    pass
        d.stop()


@pytest.fixture
def client(daemon):
    with Client(daemon.sock, NS) as c:
        c.wait_ready(10)
        yield c


def pull(client, ref, **kw):
    return list(client.transfer.Pull(pb.PullRequest(reference=ref, **kw), timeout=60))


# ---------------------------------------------------------------------------------- pull


def test_version_and_namespace_required(daemon, client):
    assert client.version.Version(empty_pb2.Empty()).version
    raw = grpc.insecure_channel("unix://" + daemon.sock)
    try:
        from labkit.wire.containerd import api_pb2_grpc
        with pytest.raises(grpc.RpcError) as e:
            api_pb2_grpc.ImagesStub(raw).List(pb.ListImagesRequest())
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert e.value.details() == "namespace is required"
    finally:
        raw.close()


def test_pull_reports_progress_in_docker_order(client, image):
    events = pull(client, image["ref"])
    kinds = [e.event for e in events]
    assert kinds[0] == "resolved" and kinds[-1] == "done"
    assert events[-1].image_name == image["ref"]
    assert events[-1].image_digest == image["top"]
    for layer in {e.desc.digest for e in events if e.event == "waiting"}:
        seq = [e.event for e in events if e.desc.digest == layer]
        order = ["waiting", "downloading", "verifying", "downloaded", "extracting", "unpacked"]
        assert [k for k in order if k in seq] == order, seq
        assert [seq.index(k) for k in order] == sorted(seq.index(k) for k in order)
        last_dl = [e for e in events if e.desc.digest == layer and e.event == "downloading"][-1]
        assert last_dl.current == last_dl.total > 0
    img = client.images.Get(pb.GetImageRequest(name=image["ref"])).image
    assert img.target.digest == image["top"]
    assert img.target.media_type == "application/vnd.oci.image.index.v1+json"
    snaps = {s.name: s for s in client.snapshots.List(pb.ListSnapshotsRequest()).info}
    assert snaps[image["chains"][1]].parent == image["chains"][0]
    assert snaps[image["chains"][0]].kind == pb.COMMITTED
    assert client.content.Info(pb.InfoRequest(digest=image["config"])).info.size > 0
    config = json.loads(client.read_content(image["config"]))
    assert config["rootfs"]["diff_ids"] == image["diff_ids"]


def test_second_pull_finds_layers_exist(client, image):
    pull(client, image["ref"])
    events = pull(client, image["ref"])
    assert [e.event for e in events] == ["resolved", "exists", "exists", "done"]


def test_pull_through_docker_io_mirror(client, image, registry):
    events = pull(client, "docker.io/library/lkbox:latest", mirrors=[registry.url])
    assert events[-1].event == "done"
    assert client.images.Get(pb.GetImageRequest(name="docker.io/library/lkbox:latest")).image


@pytest.mark.parametrize("ref,message", [
    ("{reg}/lab/busybox:nope", "manifest unknown"),
    ("{reg}/lab/nothing:latest", "not found"),
])
def test_pull_unknown_is_not_found(client, registry, image, ref, message):
    with pytest.raises(grpc.RpcError) as e:
        pull(client, ref.format(reg=registry.address))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert message in e.value.details()


def test_pull_errors(client):
    with pytest.raises(grpc.RpcError) as e:
        pull(client, "127.0.0.1:1/x/y:latest")
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "no registry answered" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        pull(client, "Not A Reference")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_images_and_containers_not_found(client):
    for call, req in [(client.images.Get, pb.GetImageRequest(name="nope")),
                      (client.images.Delete, pb.DeleteImageRequest(name="nope")),
                      (client.containers.Get, pb.GetContainerRequest(id="nope")),
                      (client.tasks.Get, pb.GetRequest(container_id="nope")),
                      (client.tasks.Wait, pb.WaitRequest(container_id="nope")),
                      (client.content.Info, pb.InfoRequest(digest="sha256:" + "0" * 64)),
                      (client.snapshots.Stat, pb.StatSnapshotRequest(key="nope"))]:
        with pytest.raises(grpc.RpcError) as e:
            call(req, timeout=10)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND, call


# ---------------------------------------------------------------------------------- run


class Fifo:
    """A fifo for the task's stdout, read to EOF on a thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        os.mkfifo(path)
        # O_NONBLOCK so this open does not wait for a writer; reads then block normally.
        self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        os.set_blocking(self._fd, True)
        self.data = b""
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        seen_writer = False
        while True:
            try:
                chunk = os.read(self._fd, 4096)
            except OSError:
                return
            if chunk:
                seen_writer = True
                self.data += chunk
            elif seen_writer:
                return
            else:
                time.sleep(0.02)  # no writer has opened it yet

    def read_all(self, timeout: float = 10) -> bytes:
        self._thread.join(timeout)
        return self.data

    def close(self) -> None:
        os.close(self._fd)


def create_container(client, image, cid, args):
    pull(client, image["ref"])  # (quick when it is there already: every layer "exists")
    mounts = client.snapshots.Prepare(pb.PrepareSnapshotRequest(
        key=cid, parent=image["chains"][-1])).mounts
    spec = base_spec(args)
    client.containers.Create(pb.CreateContainerRequest(container=pb.Container(
        id=cid, image=image["ref"], spec=json.dumps(spec).encode(),
        runtime=pb.Container.Runtime(name="labkit-shim",
                                     options=json.dumps({"binary_name": RUNTIME}).encode()),
        snapshotter="overlayfs", snapshot_key=cid)))
    return list(mounts)


def remove_container(client, cid):
    """Remove the container (and its task, if a failed test left one behind)."""
    try:
        client.tasks.Get(pb.GetRequest(container_id=cid), timeout=10)
    except grpc.RpcError:
        pass
    else:
        try:
            client.tasks.Kill(pb.KillRequest(container_id=cid, signal=9))
            client.tasks.Wait(pb.WaitRequest(container_id=cid), timeout=10)
        except grpc.RpcError:
            pass
        client.tasks.Delete(pb.DeleteTaskRequest(container_id=cid))
    client.containers.Delete(pb.DeleteContainerRequest(id=cid))
    client.snapshots.Remove(pb.RemoveSnapshotRequest(key=cid))


def test_run_echo_hi(client, image, base):
    pull(client, image["ref"])
    events = client.events.Subscribe(pb.SubscribeRequest(filters=["/tasks/"]), timeout=60)
    mounts = create_container(client, image, "echo1", ["/bin/sh", "-c", "echo hi; cat /etc/motd"])
    out = Fifo(base / "echo1-out")
    try:
        with pytest.raises(grpc.RpcError) as e:
            client.containers.Create(pb.CreateContainerRequest(container=pb.Container(id="echo1")))
        assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
        created = client.tasks.Create(pb.CreateTaskRequest(
            container_id="echo1", rootfs=mounts, stdout=str(out.path)))
        assert created.pid > 0
        bundle = base / "state/io.containerd.runtime.v2.task" / NS / "echo1"
        assert json.loads((bundle / "options.json").read_text())["binary_name"] == RUNTIME
        assert (bundle / "rootfs/bin/busybox").exists()  # the overlay is mounted there
        assert client.tasks.Get(pb.GetRequest(container_id="echo1")).process.status == pb.CREATED
        client.tasks.Start(pb.StartRequest(container_id="echo1"))
        # several waiters at once all get the status
        results = []
        waiters = [threading.Thread(target=lambda: results.append(client.tasks.Wait(
            pb.WaitRequest(container_id="echo1"), timeout=30).exit_status)) for _ in range(3)]
        for w in waiters:
            w.start()
        for w in waiters:
            w.join(30)
        assert results == [0, 0, 0]
        assert out.read_all() == b"hi\nlabkit\n"
        assert client.tasks.Get(pb.GetRequest(container_id="echo1")).process.status == pb.STOPPED
        deleted = client.tasks.Delete(pb.DeleteTaskRequest(container_id="echo1"))
        assert deleted.exit_status == 0
        assert not bundle.exists()
        assert not [m for m in mounts_under([base]) if "echo1" in m]
        topics = []
        for env in events:
            topics.append(env.topic)
            if env.topic == "/tasks/delete":
                break
        assert topics == ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]
    finally:
        events.cancel()
        out.close()
        remove_container(client, "echo1")


def test_run_on_the_native_snapshotter(client, image, base):
    """The same image unpacked by the native snapshotter (full copies, bind mounts) runs, with
    the rootfs taken from the container's snapshot (Tasks.Create without rootfs)."""
    pull(client, image["ref"], snapshotter="native")
    snaps = {s.name: s for s in client.snapshots.List(pb.ListSnapshotsRequest(
        snapshotter="native")).info}
    assert snaps[image["chains"][1]].parent == image["chains"][0]
    config = client.content.Info(pb.InfoRequest(digest=image["config"])).info
    assert config.labels["containerd.io/gc.ref.snapshot.native"] == image["chains"][1]
    assert config.labels["containerd.io/gc.ref.snapshot.overlayfs"] == image["chains"][1]
    mounts = client.snapshots.Prepare(pb.PrepareSnapshotRequest(
        snapshotter="native", key="native1", parent=image["chains"][-1])).mounts
    assert [(m.type, list(m.options)) for m in mounts] == [("bind", ["rbind", "rw"])]
    spec = base_spec(["/bin/sh", "-c", "cat /etc/motd; ls /etc/group || echo no group"])
    client.containers.Create(pb.CreateContainerRequest(container=pb.Container(
        id="native1", image=image["ref"], spec=json.dumps(spec).encode(),
        runtime=pb.Container.Runtime(name="labkit-shim",
                                     options=json.dumps({"binary_name": RUNTIME}).encode()),
        snapshotter="native", snapshot_key="native1")))
    out = Fifo(base / "native1-out")
    try:
        client.tasks.Create(pb.CreateTaskRequest(container_id="native1",
                                                 stdout=str(out.path), stderr=str(out.path)))
        listed = client.tasks.List(pb.ListTasksRequest(filter="container_id==native1")).tasks
        assert [(t.container_id, t.status) for t in listed] == [("native1", pb.CREATED)]
        assert client.tasks.List(pb.ListTasksRequest(filter="status==running")).tasks == []
        client.tasks.Start(pb.StartRequest(container_id="native1"))
        assert client.tasks.Wait(pb.WaitRequest(container_id="native1"), timeout=30).exit_status == 0
        assert b"labkit\n" in out.read_all() and b"no group" in out.data
        usage = client.snapshots.Usage(pb.SnapshotUsageRequest(snapshotter="native",
                                                               key="native1"))
        assert usage.size > 100_000 and usage.inodes > 10      # a full copy of busybox
        client.tasks.Delete(pb.DeleteTaskRequest(container_id="native1"))
    finally:
        out.close()
        try:
            client.tasks.Kill(pb.KillRequest(container_id="native1", signal=9))
            client.tasks.Wait(pb.WaitRequest(container_id="native1"), timeout=10)
            client.tasks.Delete(pb.DeleteTaskRequest(container_id="native1"))
        except grpc.RpcError:
            pass
        client.containers.Delete(pb.DeleteContainerRequest(id="native1"))
        client.snapshots.Remove(pb.RemoveSnapshotRequest(snapshotter="native", key="native1"))


def test_runtime_error_passes_through(client, image, base):
    mounts = create_container(client, image, "bad1", ["/no/such/program"])
    try:
        with pytest.raises(grpc.RpcError) as e:
            client.tasks.Create(pb.CreateTaskRequest(container_id="bad1", rootfs=mounts))
            client.tasks.Start(pb.StartRequest(container_id="bad1"))
        # the runtime's own words, unchanged: dockerd maps them to `docker run`'s exit status
        assert e.value.details().startswith("OCI runtime create failed: ")
        assert "no such file or directory" in e.value.details()
    finally:
        try:
            client.tasks.Delete(pb.DeleteTaskRequest(container_id="bad1"))
        except grpc.RpcError:
            pass
        remove_container(client, "bad1")
    assert not (base / "state/io.containerd.runtime.v2.task" / NS / "bad1").exists()


def test_delete_running_is_refused_then_kill(client, image):
    create_container(client, image, "sleep1", ["sleep", "60"])
    try:
        # no rootfs in the request: containerd mounts the container's snapshot_key
        client.tasks.Create(pb.CreateTaskRequest(container_id="sleep1"))
        client.tasks.Start(pb.StartRequest(container_id="sleep1"))
        with pytest.raises(grpc.RpcError) as e:
            client.containers.Delete(pb.DeleteContainerRequest(id="sleep1"))
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(grpc.RpcError) as e:
            client.tasks.Delete(pb.DeleteTaskRequest(container_id="sleep1"))
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(grpc.RpcError) as e:
            client.tasks.Create(pb.CreateTaskRequest(container_id="sleep1"))
        assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert [t.container_id for t in client.tasks.List(pb.ListTasksRequest()).tasks] == \
            ["sleep1"]
        client.tasks.Kill(pb.KillRequest(container_id="sleep1", signal=9))
        status = client.tasks.Wait(pb.WaitRequest(container_id="sleep1"), timeout=20).exit_status
        assert status == 137
        client.tasks.Delete(pb.DeleteTaskRequest(container_id="sleep1"))
    finally:
        remove_container(client, "sleep1")


def test_restart_reconnects_to_running_shim(daemon, image):
    with Client(daemon.sock, NS) as c:
        c.wait_ready(10)
        mounts = create_container(c, image, "keep1", ["sleep", "60"])
        c.tasks.Create(pb.CreateTaskRequest(container_id="keep1", rootfs=mounts))
        pid = c.tasks.Start(pb.StartRequest(container_id="keep1")).pid
    daemon.stop()
    assert not os.path.exists(daemon.sock)
    os.kill(pid, 0)  # the container outlived containerd
    daemon.start()
    with Client(daemon.sock, NS) as c:
        c.wait_ready(10)
        try:
            p = c.tasks.Get(pb.GetRequest(container_id="keep1")).process
            assert (p.status, p.pid) == (pb.RUNNING, pid)
            # (SIGKILL: `sleep` is the pid namespace's init, which ignores SIGTERM)
            c.tasks.Kill(pb.KillRequest(container_id="keep1", signal=9))
            assert c.tasks.Wait(pb.WaitRequest(container_id="keep1"), timeout=20).exit_status \
                == 137
            c.tasks.Delete(pb.DeleteTaskRequest(container_id="keep1"))
        finally:
            remove_container(c, "keep1")


def test_an_exit_while_containerd_is_away_is_reported_after_its_restart(daemon, image):
    """kill -9 of containerd, the task exits meanwhile: the restarted containerd answers Wait
    and Get with the exit status the shim kept (as containerd's Wait on a stopped task does)."""
    with Client(daemon.sock, NS) as c:
        c.wait_ready(10)
        create_container(c, image, "away1", ["sleep", "60"])
        c.tasks.Create(pb.CreateTaskRequest(container_id="away1"))
        pid = c.tasks.Start(pb.StartRequest(container_id="away1")).pid
    daemon.proc.kill()   # kill -9, by PID
    daemon.proc.wait()
    os.kill(pid, signal.SIGKILL)   # the container dies while nobody is watching but its shim
    deadline = time.time() + 10
    while os.path.exists(f"/proc/{pid}") and time.time() < deadline:
        time.sleep(0.05)
    daemon.start()
    with Client(daemon.sock, NS) as c:
        c.wait_ready(10)
        try:
            resp = c.tasks.Wait(pb.WaitRequest(container_id="away1"), timeout=20)
            assert resp.exit_status == 137 and resp.exited_at.seconds > 0
            p = c.tasks.Get(pb.GetRequest(container_id="away1")).process
            assert (p.status, p.exit_status) == (pb.STOPPED, 137)
            assert c.tasks.Delete(pb.DeleteTaskRequest(container_id="away1")).exit_status == 137
        finally:
            remove_container(c, "away1")


def test_restart_cleans_up_after_a_dead_shim(daemon, image, base):
    from labkit.wire.shim.client import ShimClient

    with Client(daemon.sock, NS) as c:
        c.wait_ready(10)
        create_container(c, image, "dead1", ["sleep", "60"])
        c.tasks.Create(pb.CreateTaskRequest(container_id="dead1"))
        pid = c.tasks.Start(pb.StartRequest(container_id="dead1")).pid
    bundle = base / "state/io.containerd.runtime.v2.task" / NS / "dead1"
    with ShimClient((bundle / "address").read_text().strip()) as shim:
        shim_pid = shim.connect()["shim_pid"]
    daemon.stop()
    os.kill(shim_pid, signal.SIGKILL)  # the shim we started dies while containerd is away
    daemon.start()
    with Client(daemon.sock, NS) as c:
        c.wait_ready(10)
        try:
            with pytest.raises(grpc.RpcError) as e:
                c.tasks.Get(pb.GetRequest(container_id="dead1"))
            assert e.value.code() == grpc.StatusCode.NOT_FOUND
            assert not bundle.exists()
            assert not [m for m in mounts_under([base]) if "dead1" in m]
            deadline = time.time() + 10  # `runtime delete --force` killed the container
            while os.path.exists(f"/proc/{pid}") and time.time() < deadline:
                time.sleep(0.1)
            assert not os.path.exists(f"/proc/{pid}")
        finally:
            remove_container(c, "dead1")


def test_content_read_ranges(client, image):
    whole = client.read_content(image["config"])
    part = b"".join(r.data for r in client.content.Read(
        pb.ReadContentRequest(digest=image["config"], offset=2, size=5)))
    assert part == whole[2:7]
    digests = {i.digest for i in client.content.List(pb.ListContentRequest()).info}
    assert {image["config"], image["manifest"], image["top"]} <= digests


def test_concurrent_pulls_of_one_image(client, registry, image):
    layer = make_tar(entry("only/", "dir"), entry("only/file", "file", os.urandom(300_000)))
    info = push_image(RegistryClient(registry.url), "lab/racy", "v1", [layer])
    ref = f"{registry.address}/lab/racy:v1"
    results, errors = [], []

    def one():
        try:
            results.append(pull(client, ref)[-1].event)
        except grpc.RpcError as e:
            errors.append(e.details())

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and results == ["done"] * 3
    snaps = [s for s in client.snapshots.List(pb.ListSnapshotsRequest()).info]
    assert [s.name for s in snaps if s.name == info["diff_ids"][0]] == [info["diff_ids"][0]]
    assert not [s.name for s in snaps if s.name.startswith("extract-")]


class StallingProxy:
    """A TCP proxy in front of the registry that stops passing a response once it has passed
    `after` bytes — one connection only, the first to get that far: a download that hangs
    half-way, at a moment the test knows. Later connections pass everything."""

    def __init__(self, upstream: tuple[str, int], after: int) -> None:
        self.upstream, self.after = upstream, after
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = "127.0.0.1:%d" % self.listener.getsockname()[1]
        self.stalled = threading.Event()    # a download hangs now
        self._release = threading.Event()   # end the stalled connection
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return   # closed
            up = socket.create_connection(self.upstream)
            self._sockets += [conn, up]
            threading.Thread(target=self._pipe, args=(conn, up, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(up, conn, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, response: bool) -> None:
        passed = 0
        try:
            while data := src.recv(65536):
                if response and passed + len(data) > self.after:
                    with self._lock:
                        stall = not self.stalled.is_set()
                        self.stalled.set()
                    if stall:
                        dst.sendall(data[:self.after - passed])
                        self._release.wait()
                        return
                dst.sendall(data)
                passed += len(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._release.set()
        self.listener.close()
        for s in self._sockets:
            s.close()


def test_an_interrupted_download_is_cleaned_up_at_restart(daemon, registry, base):
    """kill -9 of containerd in the middle of a layer's download leaves a partial ingest;
    the next start removes it, and the next pull downloads the layer again and succeeds."""
    layer = make_tar(entry("big/", "dir"), entry("big/blob", "file", os.urandom(4 << 20)))
    info = push_image(RegistryClient(registry.url), "lab/big", "v1", [layer])
    host, port = registry.address.rsplit(":", 1)
    proxy = StallingProxy((host, int(port)), after=3 << 20)
    ref = f"{proxy.address}/lab/big:v1"
    ingest = base / "root" / "content" / "ingest"
    errors: list[str] = []

    def pull_until_killed() -> None:
        with Client(daemon.sock, NS) as c:
            try:
                pull(c, ref)
            except grpc.RpcError as e:
                errors.append(e.code().name)

    try:
        puller = threading.Thread(target=pull_until_killed)
        puller.start()
        assert proxy.stalled.wait(30), "the download never got half-way"
        deadline = time.monotonic() + 10   # the bytes that came are being written
        while not any(f.stat().st_size for f in ingest.glob("*/data")):
            assert time.monotonic() < deadline, "no partial download in the ingest"
            time.sleep(0.05)
        daemon.proc.kill()   # kill -9, by PID
        daemon.proc.wait()
        puller.join(30)
        assert len(errors) == 1, "the pull did not fail with its daemon"
        assert list(ingest.iterdir()), "the crash left no partial download (nothing to test)"
        daemon.start()
        with Client(daemon.sock, NS) as c:
            c.wait_ready(10)
            assert list(ingest.iterdir()) == []
            assert pull(c, ref)[-1].event == "done"   # the proxy passes it all now
            assert c.content.Info(pb.InfoRequest(digest=info["manifest"])).info.size > 0
            assert list(ingest.iterdir()) == []
            c.images.Delete(pb.DeleteImageRequest(name=ref))
    finally:
        proxy.close()


@pytest.fixture
def docker_registry(base):
    """Debian's docker-registry 2.8 on a free 127.0.0.1 port, stopped by PID afterwards."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    import urllib.request
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = base / "dreg"
    root.mkdir()
    (root / "config.yml").write_text(
        "version: 0.1\nlog: {level: error}\n"
        f"storage: {{filesystem: {{rootdirectory: {root}/data}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n")
    proc = subprocess.Popen([binary, "serve", str(root / "config.yml")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 15
        while True:
            try:
                urllib.request.urlopen(url + "/v2/", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    pytest.fail("docker-registry did not start")
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_pull_from_the_real_docker_registry(client, docker_registry):
    """The real registry (2.8) as the source: the swap-a-layer promise, checked."""
    layer = make_tar(entry("real/", "dir"), entry("real/file", "file", b"from docker-registry"))
    info = push_image(RegistryClient(docker_registry), "lab/real", "v1", [layer], index=True)
    ref = docker_registry.removeprefix("http://") + "/lab/real:v1"
    events = pull(client, ref)
    assert events[-1].event == "done" and events[-1].image_digest == info["top"]
    assert client.snapshots.Stat(pb.StatSnapshotRequest(key=info["diff_ids"][0])).info.kind == \
        pb.COMMITTED


def test_task_under_the_real_containerd_shim(client, image, base):
    """Runtime name io.containerd.runc.v2 -> containerd-shim-runc-v2: a real L2 under our L3."""
    if shutil.which("containerd-shim-runc-v2") is None:
        pytest.skip("containerd-shim-runc-v2 is not installed")
    mounts = create_container(client, image, "real1", ["/bin/echo", "from the real shim"])
    c = client.containers.Get(pb.GetContainerRequest(id="real1")).container
    client.containers.Delete(pb.DeleteContainerRequest(id="real1"))
    c.runtime.name = "io.containerd.runc.v2"
    client.containers.Create(pb.CreateContainerRequest(container=c))
    out = Fifo(base / "real1-out")
    socket_path = ""
    try:
        # (the real shim wants stdout and stderr both set or both empty)
        client.tasks.Create(pb.CreateTaskRequest(container_id="real1", rootfs=mounts,
                                                 stdout=str(out.path), stderr=str(out.path)))
        bundle = base / "state/io.containerd.runtime.v2.task" / NS / "real1"
        assert (bundle / "shim-binary-path").read_text().endswith("containerd-shim-runc-v2")
        socket_path = (bundle / "address").read_text().strip().removeprefix("unix://")
        from labkit.wire.shim.client import ShimClient
        with ShimClient("unix://" + socket_path) as shim:
            shim_pid = shim.connect()["shim_pid"]
        client.tasks.Start(pb.StartRequest(container_id="real1"))
        assert client.tasks.Wait(pb.WaitRequest(container_id="real1"), timeout=20) \
            .exit_status == 0
        assert out.read_all() == b"from the real shim\n"
        client.tasks.Delete(pb.DeleteTaskRequest(container_id="real1"))
        assert not bundle.exists()
        # it delivered its events to <socket>.ttrpc, so it exits as soon as it is shut down
        deadline = time.time() + 10
        while os.path.exists(f"/proc/{shim_pid}") and time.time() < deadline:
            time.sleep(0.1)
        assert not os.path.exists(f"/proc/{shim_pid}")
    finally:
        out.close()
        remove_container(client, "real1")
        # The real shim removes its socket by reading <bundle>/address, which may be gone by
        # the time it exits; and it keeps runc's state under /run/containerd/runc/<ns>.
        if socket_path and os.path.exists(socket_path):
            os.unlink(socket_path)
        try:
            os.rmdir(f"/run/containerd/runc/{NS}")
        except OSError:
            pass


def test_shim_dying_under_a_running_daemon(client, image, base):
    from labkit.wire.shim.client import ShimClient

    create_container(client, image, "lost1", ["sleep", "60"])
    try:
        client.tasks.Create(pb.CreateTaskRequest(container_id="lost1"))
        pid = client.tasks.Start(pb.StartRequest(container_id="lost1")).pid
        bundle = base / "state/io.containerd.runtime.v2.task" / NS / "lost1"
        with ShimClient((bundle / "address").read_text().strip()) as shim:
            shim_pid = shim.connect()["shim_pid"]
        os.kill(shim_pid, signal.SIGKILL)  # a shim we started
        # the watcher loses its connection: the task counts as exited, status unknown (255)
        assert client.tasks.Wait(pb.WaitRequest(container_id="lost1"), timeout=20) \
            .exit_status == 255
        with pytest.raises(grpc.RpcError) as e:
            client.tasks.Get(pb.GetRequest(container_id="lost1"))
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        client.tasks.Delete(pb.DeleteTaskRequest(container_id="lost1"))  # still deletable
        assert not bundle.exists()
        deadline = time.time() + 10
        while os.path.exists(f"/proc/{pid}") and time.time() < deadline:
            time.sleep(0.1)
        assert not os.path.exists(f"/proc/{pid}")
    finally:
        remove_container(client, "lost1")


def test_close_io_gives_the_container_stdin_eof(client, image, base):
    create_container(client, image, "cat1", ["cat"])
    stdin = base / "cat1-in"
    os.mkfifo(stdin)
    out = Fifo(base / "cat1-out")
    try:
        client.tasks.Create(pb.CreateTaskRequest(container_id="cat1", stdin=str(stdin),
                                                 stdout=str(out.path)))
        client.tasks.Start(pb.StartRequest(container_id="cat1"))
        with open(stdin, "wb") as w:   # the shim holds the read end already
            w.write(b"hello through stdin\n")
        # our end is closed, but the shim keeps the fifo open: only CloseIO ends cat's input
        client.tasks.CloseIO(pb.CloseIORequest(container_id="cat1", stdin=True))
        assert client.tasks.Wait(pb.WaitRequest(container_id="cat1"), timeout=20) \
            .exit_status == 0
        assert out.read_all() == b"hello through stdin\n"
        client.tasks.Delete(pb.DeleteTaskRequest(container_id="cat1"))
    finally:
        out.close()
        remove_container(client, "cat1")


def test_exec_in_a_running_task(client, image, base):
    create_container(client, image, "exec1", ["sleep", "60"])
    out = Fifo(base / "exec1-out")
    events = client.events.Subscribe(pb.SubscribeRequest(filters=["/tasks/exec"]), timeout=60)
    try:
        client.tasks.Create(pb.CreateTaskRequest(container_id="exec1"))
        init_pid = client.tasks.Start(pb.StartRequest(container_id="exec1")).pid
        process = {"args": ["/bin/sh", "-c", "echo from exec; exit 7"], "cwd": "/",
                   "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}}
        client.tasks.Exec(pb.ExecProcessRequest(container_id="exec1", exec_id="e1",
                                                spec=json.dumps(process).encode(),
                                                stdout=str(out.path)))
        with pytest.raises(grpc.RpcError) as e:
            client.tasks.Exec(pb.ExecProcessRequest(container_id="exec1", exec_id="e1",
                                                    spec=json.dumps(process).encode()))
        assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
        pid = client.tasks.Start(pb.StartRequest(container_id="exec1", exec_id="e1")).pid
        assert pid > 0 and pid != init_pid
        assert client.tasks.Wait(pb.WaitRequest(container_id="exec1", exec_id="e1"),
                                 timeout=20).exit_status == 7
        assert out.read_all() == b"from exec\n"
        p = client.tasks.Get(pb.GetRequest(container_id="exec1", exec_id="e1")).process
        assert (p.id, p.status, p.exit_status) == ("e1", pb.STOPPED, 7)
        assert client.tasks.DeleteProcess(pb.DeleteProcessRequest(
            container_id="exec1", exec_id="e1")).exit_status == 7
        with pytest.raises(grpc.RpcError) as e:
            client.tasks.Get(pb.GetRequest(container_id="exec1", exec_id="e1"))
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        pids = [p.pid for p in client.tasks.ListPids(
            pb.ListPidsRequest(container_id="exec1")).processes]
        assert init_pid in pids
        topics = [next(events).topic for _ in range(2)]
        assert topics == ["/tasks/exec-added", "/tasks/exec-started"]
        client.tasks.Kill(pb.KillRequest(container_id="exec1", signal=9))
        client.tasks.Wait(pb.WaitRequest(container_id="exec1"), timeout=20)
        client.tasks.Delete(pb.DeleteTaskRequest(container_id="exec1"))
    finally:
        events.cancel()
        out.close()
        remove_container(client, "exec1")


def test_concurrent_deletes_one_wins(client, image):
    create_container(client, image, "race1", ["true"])
    try:
        client.tasks.Create(pb.CreateTaskRequest(container_id="race1"))
        client.tasks.Start(pb.StartRequest(container_id="race1"))
        client.tasks.Wait(pb.WaitRequest(container_id="race1"), timeout=20)
        codes = []

        def delete():
            try:
                client.tasks.Delete(pb.DeleteTaskRequest(container_id="race1"))
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as e:
                codes.append(e.code())

        threads = [threading.Thread(target=delete) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(codes, key=str) == sorted(
            [grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.NOT_FOUND], key=str)
    finally:
        remove_container(client, "race1")


def test_metrics_of_a_task_and_the_containers_update(client, image):
    """Tasks.Metrics asks each selected task's shim for its cgroup numbers and passes the
    shim's Any on unopened; Containers.Update replaces what its field mask names."""
    import os

    from labkit.wire.shim import cgroups_v1_pb2, cgroups_v2_pb2
    v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    create_container(client, image, "metrics1", ["sleep", "60"])
    try:
        with pytest.raises(grpc.RpcError) as e:     # no task yet: nothing to update
            client.tasks.Update(pb.UpdateTaskRequest(container_id="metrics1",
                                                     resources=b'{"pids": {"limit": 5}}'))
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        assert list(client.tasks.Metrics(pb.MetricsRequest(filters=["id==metrics1"])).metrics) == []
        client.tasks.Create(pb.CreateTaskRequest(container_id="metrics1"))
        client.tasks.Start(pb.StartRequest(container_id="metrics1"))
        [metric] = client.tasks.Metrics(pb.MetricsRequest(filters=["id==metrics1"])).metrics
        assert metric.id == "metrics1" and metric.timestamp.seconds > 0
        assert metric.data.type_url == f"io.containerd.cgroups.v{2 if v2 else 1}.Metrics"
        m = (cgroups_v2_pb2 if v2 else cgroups_v1_pb2).Metrics.FromString(metric.data.value)
        assert (m.memory.usage if v2 else m.memory.usage.usage) > 0
        assert list(client.tasks.Metrics(pb.MetricsRequest(filters=["id==other"])).metrics) == []
        with pytest.raises(grpc.RpcError) as e:
            client.tasks.Update(pb.UpdateTaskRequest(container_id="metrics1", resources=b"[1]"))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # the record: a new spec, one label set and one dropped, the image untouched
        record = client.containers.Get(pb.GetContainerRequest(id="metrics1")).container
        spec = json.loads(record.spec)
        spec["process"]["args"] = ["sleep", "1"]
        client.containers.Update(pb.UpdateContainerRequest(
            container=pb.Container(id="metrics1", spec=json.dumps(spec).encode(),
                                   labels={"a": "1"}, image="ignored"),
            update_mask=field_mask_pb2.FieldMask(paths=["spec", "labels.a", "labels.b"])))
        updated = client.containers.Get(pb.GetContainerRequest(id="metrics1")).container
        assert json.loads(updated.spec)["process"]["args"] == ["sleep", "1"]
        assert dict(updated.labels) == {"a": "1"} and updated.image == record.image
        with pytest.raises(grpc.RpcError) as e:
            client.containers.Update(pb.UpdateContainerRequest(
                container=pb.Container(id="metrics1"),
                update_mask=field_mask_pb2.FieldMask(paths=["snapshot_key"])))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        remove_container(client, "metrics1")
