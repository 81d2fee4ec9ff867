"""Contract suite for content stores: any implementation, given a factory, must pass.

To check another store (a student's), add its factory to FACTORIES.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

import pytest

from labkit.containerd.content import LocalContentStore
from labkit.containerd.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound

FACTORIES = {"local": LocalContentStore}


@pytest.fixture(params=sorted(FACTORIES))
def store(request):
    root = Path(tempfile.mkdtemp(prefix="lk-content-"))
    try:
        yield FACTORIES[request.param](root)
    finally:
        shutil.rmtree(root)


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_write_commit_read_info_list_delete(store):
    data = b"hello layer" * 1000
    d = digest(data)
    with store.writer(d, len(data)) as w:
        w.write(data[:10])
        w.write(data[10:])
        info = w.commit()
    assert info.digest == d and info.size == len(data)
    assert store.info(d).size == len(data)
    with store.open(d) as f:
        f.seek(5)
        assert f.read(6) == data[5:11]
    assert [i.digest for i in store.list()] == [d]
    store.delete(d)
    with pytest.raises(NotFound):
        store.info(d)
    assert store.list() == []


def test_wrong_digest_is_refused_and_leaves_nothing(store):
    data = b"abc"
    with pytest.raises(FailedPrecondition, match="digest"):
        with store.writer(digest(b"xyz"), 3) as w:
            w.write(data)
            w.commit()
    assert store.list() == []


def test_wrong_size_is_refused(store):
    with pytest.raises(FailedPrecondition, match="bytes"):
        with store.writer(digest(b"abc"), 4) as w:
            w.write(b"abc")
            w.commit()
    with pytest.raises(NotFound):
        store.info(digest(b"abc"))


def test_abandoned_ingest_is_invisible(store):
    d = digest(b"partial-and-more")
    with store.writer(d) as w:
        w.write(b"partial")
    assert store.list() == []
    with pytest.raises(NotFound):
        store.open(d)


def test_duplicate_and_bad_digests(store):
    d = digest(b"x")
    with store.writer(d, 1) as w:
        w.write(b"x")
        w.commit()
    with pytest.raises(AlreadyExists):
        store.writer(d, 1)
    for bad in ("", "sha256:abc", "md5:" + "0" * 32, "sha256:" + "G" * 64):
        with pytest.raises(InvalidArgument):
            store.info(bad)
    with pytest.raises(NotFound):
        store.delete(digest(b"never"))
