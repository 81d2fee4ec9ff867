"""Content.Write, Status, ListStatuses and Abort over gRPC, in a private labkit-containerd.

Content.Write is a bidirectional stream: the client sends STAT / WRITE / COMMIT requests for
one ingest (named by its ref) and gets one answer per request. A broken stream leaves the
ingest where it stood, and a new stream with the same ref resumes it, even across a
`kill -9` of the daemon; COMMIT checks the size and the digest (FAILED_PRECONDITION, nothing
stored); a blob written outside a lease is garbage at the next collection.
"""

from __future__ import annotations

import hashlib
import queue
import shutil
import signal
import tempfile
from pathlib import Path

import grpc
import pytest

from labkit.containerd.client import LEASE_KEY, Client, pb

from .test_grpc_e2e import Daemon

pytestmark = [pytest.mark.root, pytest.mark.slow]

NS = "lkwrite"
DATA = bytes(range(256)) * 4096          # 1 MiB
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()


@pytest.fixture(scope="module")
def daemon():
    d = Daemon(Path(tempfile.mkdtemp(prefix="lkw-", dir="/tmp")))
    d.start()
    try:
        yield d
    finally:
        d.stop()
        shutil.rmtree(d.base, ignore_errors=True)


@pytest.fixture
def c(daemon):
    with Client(daemon.sock, NS) as client:
        client.wait_ready(10)
        yield client
        for st in client.content.ListStatuses(pb.ListContentStatusesRequest()).statuses:
            client.content.Abort(pb.AbortContentRequest(ref=st.ref))
        for info in client.content.List(pb.ListContentRequest()).info:
            client.content.Delete(pb.DeleteContentRequest(digest=info.digest))


class Stream:
    """One Content.Write stream, driven request by request."""

    def __init__(self, client: Client, **kw) -> None:
        self._q: queue.Queue = queue.Queue()
        self._answers = client.content.Write(iter(self._q.get, None), timeout=30, **kw)

    def __call__(self, action, **fields) -> pb.WriteContentResponse:
        self._q.put(pb.WriteContentRequest(action=action, **fields))
        return next(self._answers)

    def close(self) -> None:
        """End the stream without a commit and wait until the daemon has let go of the ref
        (the answers end after the handler's cleanup, so nothing here depends on timing)."""
        self._q.put(None)
        assert list(self._answers) == []


def test_write_in_chunks_and_commit(c):
    w = Stream(c)
    st = w(pb.STAT, ref="one", total=len(DATA))
    assert (st.offset, st.total) == (0, len(DATA))
    for off in range(0, len(DATA), 300_000):
        ans = w(pb.WRITE, ref="one", offset=off, data=DATA[off:off + 300_000])
        assert ans.offset == min(off + 300_000, len(DATA))
    done = w(pb.COMMIT, ref="one", expected=DIGEST, labels={"role": "test"})
    assert done.digest == DIGEST and done.offset == len(DATA)
    info = c.content.Info(pb.InfoRequest(digest=DIGEST)).info
    assert info.size == len(DATA) and info.labels["role"] == "test"
    assert b"".join(r.data for r in c.content.Read(pb.ReadContentRequest(digest=DIGEST))) == DATA
    assert list(c.content.ListStatuses(pb.ListContentStatusesRequest()).statuses) == []
    w.close()
    # the same blob again: ALREADY_EXISTS as soon as the expected digest is known
    w = Stream(c)
    with pytest.raises(grpc.RpcError) as e:
        w(pb.STAT, ref="again", expected=DIGEST)
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS


def test_a_broken_stream_is_resumed_at_its_offset(c):
    half = len(DATA) // 2
    w = Stream(c)
    w(pb.WRITE, ref="resume", total=len(DATA), expected=DIGEST, data=DATA[:half])
    w.close()                                  # the stream breaks
    st = c.content.Status(pb.ContentStatusRequest(ref="resume")).status
    assert (st.ref, st.offset, st.total) == ("resume", half, len(DATA))
    assert [s.ref for s in c.content.ListStatuses(pb.ListContentStatusesRequest(
        filters=["ref==resume"])).statuses] == ["resume"]
    w = Stream(c)
    assert w(pb.STAT, ref="resume").offset == half
    with pytest.raises(grpc.RpcError) as e:   # not where the ingest stands
        w(pb.WRITE, ref="resume", offset=half + 1, data=b"x")
    assert e.value.code() == grpc.StatusCode.OUT_OF_RANGE
    w = Stream(c)
    assert w(pb.COMMIT, ref="resume", offset=half, data=DATA[half:],
             expected=DIGEST).digest == DIGEST


def test_resume_after_kill_9_of_the_daemon(daemon, c):
    half = len(DATA) // 3
    w = Stream(c)
    w(pb.WRITE, ref="crash", total=len(DATA), data=DATA[:half])
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait()
    w._answers.cancel()
    daemon.start()
    c.wait_ready(10)
    w = Stream(c)
    assert w(pb.STAT, ref="crash").offset == half     # kept: a named ingest is resumable
    assert w(pb.COMMIT, ref="crash", offset=half, data=DATA[half:],
             expected=DIGEST).digest == DIGEST


def test_wrong_digest_or_size_stores_nothing(c):
    w = Stream(c)
    w(pb.WRITE, ref="bad", data=DATA)
    with pytest.raises(grpc.RpcError) as e:
        w(pb.COMMIT, ref="bad", expected="sha256:" + "0" * 64)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "unexpected commit digest" in e.value.details()
    assert list(c.content.List(pb.ListContentRequest()).info) == []
    assert list(c.content.ListStatuses(pb.ListContentStatusesRequest()).statuses) == []

    w = Stream(c)
    w(pb.WRITE, ref="short", data=DATA[:10])
    with pytest.raises(grpc.RpcError) as e:
        w(pb.COMMIT, ref="short", total=len(DATA), expected=DIGEST)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "unexpected commit size" in e.value.details()
    assert list(c.content.List(pb.ListContentRequest()).info) == []
    # a short ingest stays: write the rest and commit
    assert c.content.Status(pb.ContentStatusRequest(ref="short")).status.offset == 10
    w = Stream(c)
    assert w(pb.COMMIT, ref="short", offset=10, data=DATA[10:], expected=DIGEST).digest == DIGEST


def test_locked_abort_and_errors(c):
    w = Stream(c)
    w(pb.WRITE, ref="busy", data=b"abc")
    other = Stream(c)
    with pytest.raises(grpc.RpcError) as e:
        other(pb.STAT, ref="busy")
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE and "locked" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        c.content.Abort(pb.AbortContentRequest(ref="busy"))
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    w.close()
    c.content.Abort(pb.AbortContentRequest(ref="busy"))
    with pytest.raises(grpc.RpcError) as e:
        c.content.Status(pb.ContentStatusRequest(ref="busy"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as e:
        Stream(c)(pb.STAT)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as e:
        Stream(c)(pb.COMMIT, ref="x", data=b"x")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT   # no expected digest


def test_a_blob_written_under_a_lease_outlives_a_collection(c):
    c.leases.Create(pb.CreateLeaseRequest(id="w"))
    try:
        w = Stream(c, metadata=[(LEASE_KEY, "w")])
        w(pb.COMMIT, ref="leased", data=DATA, expected=DIGEST)
        small = b"no lease"
        w = Stream(c)
        small_digest = "sha256:" + hashlib.sha256(small).hexdigest()
        w(pb.COMMIT, ref="free", data=small, expected=small_digest)
        assert {("ingests", "leased"), ("content", DIGEST)} == {
            (r.type, r.id) for r in c.leases.ListResources(pb.ListResourcesRequest(id="w")).resources}
        # a collection (triggered by deleting some other lease, synchronously)
        c.leases.Create(pb.CreateLeaseRequest(id="tmp"))
        c.leases.Delete(pb.DeleteLeaseRequest(id="tmp", sync=True))
        digests = {i.digest for i in c.content.List(pb.ListContentRequest()).info}
        assert digests == {DIGEST}                 # the blob no lease held is gone
    finally:
        c.leases.Delete(pb.DeleteLeaseRequest(id="w", sync=True))
    assert list(c.content.List(pb.ListContentRequest()).info) == []
