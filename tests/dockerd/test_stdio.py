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


# A dockerd stand-in: the copier of one task, started fresh (create) or again (reopen); it
# exits once the output ended. The test kills it with SIGKILL at random moments.
COPIER = """
import sys
from pathlib import Path
from labkit.dockerd.stdio import Broadcaster, TaskIO
io = TaskIO(Path(sys.argv[1]), Path(sys.argv[2]), tty=False, open_stdin=False,
            broadcaster=Broadcaster(), rotation=(int(sys.argv[4]), 3))
if sys.argv[3] == "create":
    io.create()
    sys.stdin.readline()   # as dockerd does, copy only once the shim holds the fifos
else:
    io.reopen()
io.start()
io.done.wait()
"""


# rotated: 3 files of 200 kB hold all of the ~370 kB logged, and the log rotates twice
@pytest.mark.parametrize("max_size", [-1, 200_000], ids=["one-log", "rotated"])
def test_nothing_lost_or_doubled_when_the_copier_is_killed_at_any_moment(tmp, max_size):
    """The shim keeps writing (its fifo ends are O_RDWR, as in labkit.shim.stdio) while the
    copier is killed -9 and started again 25 times: the log has every line exactly once, each
    stream in order, partial lines included."""
    import random
    import subprocess
    import sys

    from labkit.dockerd.logdriver import files_oldest_first
    from labkit.shim.stdio import unread_bytes

    fifos, log_path = tmp / "fifos", tmp / "c-json.log"
    rng = random.Random(7)

    def copier(how: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", COPIER, str(fifos), str(log_path), how,
                                 str(max_size)], stdin=subprocess.PIPE)

    first = copier("create")
    for _ in range(200):
        if (fifos / "init-stdout").exists() and (fifos / "init-stderr").exists():
            break
        first.poll()
        assert first.returncode is None, "the copier died before it made the fifos"
        threading.Event().wait(0.02)
    writers = {STDOUT: os.open(fifos / "init-stdout", os.O_RDWR),
               STDERR: os.open(fifos / "init-stderr", os.O_RDWR)}
    first.stdin.close()   # go on
    sent = {STDOUT: bytearray(), STDERR: bytearray()}

    def write_all() -> None:
        for i in range(3000):
            stream = STDOUT if i % 3 else STDERR
            # lines of every length, some written in two pieces, one longer than an entry
            line = b"%d " % i + b"x" * (i % 97) + b"\n"
            if i == 1500:
                line = b"y" * 40000 + b"\n"
            for piece in (line[:len(line) // 2], line[len(line) // 2:]) if i % 5 == 0 else (line,):
                os.write(writers[stream], piece)
                sent[stream] += piece
        os.write(writers[STDOUT], b"no newline at the end")
        sent[STDOUT] += b"no newline at the end"

    writer = threading.Thread(target=write_all)
    writer.start()
    current = first
    try:
        for _ in range(25):
            threading.Event().wait(rng.uniform(0.0, 0.08))
            current.kill()
            current.wait()
            current = copier("reopen")
        writer.join(60)
        assert not writer.is_alive()
        for fd in writers.values():
            # as the shim does: close only once everything was taken (closing the last
            # open end of a fifo throws away what it holds)
            while unread_bytes(fd):
                threading.Event().wait(0.01)
            os.close(fd)   # EOF
        assert current.wait(30) == 0
    finally:
        if current.poll() is None:
            current.kill()
            current.wait()
    logged = {STDOUT: bytearray(), STDERR: bytearray()}
    for path in files_oldest_first(str(log_path)):
        for line in open(path, "rb"):
            entry = json.loads(line)
            logged[STDOUT if entry["stream"] == "stdout" else STDERR] += entry["log"].encode()
    if max_size > 0:
        assert len(files_oldest_first(str(log_path))) == 3   # the log did rotate
    assert bytes(logged[STDOUT]) == bytes(sent[STDOUT])
    assert bytes(logged[STDERR]) == bytes(sent[STDERR])
