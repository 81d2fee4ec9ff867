"""dockerd's side of a container's stdio, with real fifos and a stand-in for the shim."""

from __future__ import annotations

import json
import os
import threading

import pytest

from labkit.stdcopy import STDERR, STDOUT
from labkit.dockerd.stdio import Broadcaster, TaskIO
from support import short_tmpdir


@pytest.fixture
def tmp():
    with short_tmpdir("lk-io-") as d:
        yield d


def collect(attachment) -> list[tuple[int, bytes]]:
    return list(attachment.output())


def test_output_reaches_log_and_attached_clients_then_eof(tmp):
    broadcaster = Broadcaster()
    both = broadcaster.subscribe(tty=False, stdout=True, stderr=True, stdin=None)
    only_err = broadcaster.subscribe(tty=False, stdout=False, stderr=True, stdin=None)
    io = TaskIO(tmp / "fifos", tmp / "c-json.log", tty=False, open_stdin=False,
                broadcaster=broadcaster)
    io.create()
    io.start()
    # the shim's side: it opens the fifos O_RDWR (labkit.shim.stdio) and writes
    out = os.open(io.stdout_path, os.O_RDWR)
    err = os.open(io.stderr_path, os.O_RDWR)
    results: dict[str, list] = {}
    readers = [threading.Thread(target=lambda k=k, a=a: results.__setitem__(k, collect(a)))
               for k, a in (("both", both), ("err", only_err))]
    for t in readers:
        t.start()
    os.write(out, b"hello\nwor")
    os.write(err, b"oops\n")
    os.write(out, b"ld\nno newline")
    os.close(out)
    os.close(err)  # the shim closes its ends when the task is deleted: EOF
    assert io.done.wait(5)
    for t in readers:
        t.join(5)
    assert b"".join(d for s, d in results["both"] if s == STDOUT) == b"hello\nworld\nno newline"
    assert results["err"] == [(STDERR, b"oops\n")]
    lines = [json.loads(line) for line in (tmp / "c-json.log").read_text().splitlines()]
    assert [(x["stream"], x["log"]) for x in lines if x["stream"] == "stdout"] == \
        [("stdout", "hello\n"), ("stdout", "world\n"), ("stdout", "no newline")]
    assert [x["log"] for x in lines if x["stream"] == "stderr"] == ["oops\n"]
    io.cleanup()
    assert not (tmp / "fifos").exists()


def test_abort_ends_a_task_that_never_started(tmp):
    broadcaster = Broadcaster()
    client = broadcaster.subscribe(tty=True, stdout=True, stderr=True, stdin=None)
    io = TaskIO(tmp / "fifos", tmp / "c-json.log", tty=True, open_stdin=False,
                broadcaster=broadcaster)
    io.create()
    assert io.stderr_path == ""  # with a TTY there is one stream
    io.abort()
    assert io.done.wait(2)
    assert collect(client) == []


def test_abort_ends_a_copy_whose_writer_hangs_on(tmp):
    io = TaskIO(tmp / "fifos", tmp / "c-json.log", tty=False, open_stdin=False,
                broadcaster=Broadcaster())
    io.create()
    io.start()
    holders = [os.open(p, os.O_RDWR) for p in (io.stdout_path, io.stderr_path)]
    try:
        assert not io.done.wait(0.3)
        io.abort()
        assert io.done.wait(3)
    finally:
        for fd in holders:
            os.close(fd)
        io.cleanup()


def test_stdin_goes_to_the_fifo(tmp):
    io = TaskIO(tmp / "fifos", tmp / "c-json.log", tty=False, open_stdin=True,
                broadcaster=Broadcaster())
    io.create()
    reader = os.open(io.stdin_path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        io.write_stdin(b"input\n")
        assert os.read(reader, 100) == b"input\n"
    finally:
        os.close(reader)
        io.abort()
        io.cleanup()
