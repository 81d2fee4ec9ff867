"""The course's graded checkpoints: one file per chapter, tests/checkpoints/test_cpNN_<topic>.py.

Run them with `labkit grade cp01` (or `python -m labkit.course grade cp01`), or as ordinary
tests with `pytest -m cp01` (the grading plugin is loaded by tests/conftest.py).

Rules every checkpoint here follows (see labkit.course.grading for the marks):

* The code under test comes from `resolve_module(layer, "labkit.…")` INSIDE the test (the
  fixtures below), never at import time: the same checkpoint grades labkit's reference or a
  student's workspace, and a syntax error in a student's file becomes that chapter's error.
* What a checkpoint compares against is the kernel, read directly (os.readlink of
  /proc/<pid>/ns/*, /proc/self/mountinfo, socket.if_nameindex) -- not the code under test.
* The helpers below that fork and unshare use labkit's reference syscalls and nothing of the
  code under test, so a checkpoint can test one exercise at a time (set_hostname in a UTS
  namespace the helper made) and a student's bug in one function cannot hide another.
* Everything a checkpoint creates is removed, also on failure: children are killed by pid (or
  their own process group), mounts are made inside private mount namespaces or detached in a
  fixture's finally.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import tempfile
from types import ModuleType
from typing import Any, Callable, Iterator

import pytest

from labkit import syscalls
from labkit.lab.implementations import resolve_module


@pytest.fixture
def ns() -> ModuleType:
    """Chapter 01's module as configured: labkit.namespaces, or the workspace's copy."""
    return resolve_module("namespaces", "labkit.namespaces")


def in_child(fn: Callable[[], Any], flags: int = 0, *, private_mounts: bool = True) -> Any:
    """Run fn() in a forked child that first unshared `flags`; return fn's value here.

    With CLONE_NEWNS the child's mounts are made private first (unless `private_mounts` is
    False: the test of make_mounts_private needs them still shared); with CLONE_NEWPID the
    child forks once more, so fn runs as pid 1. An exception in fn is raised again here,
    with its own type (a NotImplementedError stays one).
    """
    with tempfile.TemporaryFile() as out:
        pid = os.fork()
        if pid == 0:                                 # the child: never returns
            code = 0
            try:
                os.setpgid(0, 0)
                syscalls.unshare(flags)
                if flags & syscalls.CLONE_NEWNS and private_mounts:
                    syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
                if flags & syscalls.CLONE_NEWPID:
                    child = os.fork()
                    if child:
                        _, status = os.waitpid(child, 0)
                        os._exit(1 if status else 0)
                try:
                    outcome: tuple[str, Any] = ("value", fn())
                except BaseException as e:
                    outcome = ("error", e)
                try:
                    data = pickle.dumps(outcome)
                except Exception as e:
                    data = pickle.dumps(("error", RuntimeError(f"cannot send back {outcome!r}: {e}")))
                out.write(data)
                out.flush()
            except BaseException as e:
                os.write(2, f"checkpoint helper: {e}\n".encode())
                code = 1
            finally:
                os._exit(code)
        _wait_or_kill(pid)
        out.seek(0)
        data = out.read()
    if not data:
        raise RuntimeError("the checkpoint's helper process died before fn returned")
    kind, value = pickle.loads(data)
    if kind == "error":
        raise value
    return value


def _wait_or_kill(pid: int) -> int:
    try:
        return os.waitpid(pid, 0)[1]
    except BaseException:                # a checkpoint timeout: leave nothing behind
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        raise


@contextlib.contextmanager
def process_in(flags: int) -> Iterator[int]:
    """A child process that unshared `flags` and waits; yields its pid, kills it afterwards."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            syscalls.unshare(flags)
            os.write(ready_w, b"1")
            while True:
                signal.pause()
        finally:
            os._exit(0)
    os.close(ready_w)
    try:
        if os.read(ready_r, 1) != b"1":
            raise RuntimeError(f"the checkpoint's helper could not unshare {flags:#x}")
        yield pid
    finally:
        os.close(ready_r)
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


@contextlib.contextmanager
def private_lab() -> Iterator[dict[str, str]]:
    """A private lab (its own directories, registry port and sockets), up with the lab's
    images pushed; yields the environment for the docker CLI (DOCKER_HOST set). The
    implementations are whatever this grading run configured (LABKIT_IMPL_* in the
    environment): that is how a chapter's proof runs `docker run` through the student's code.
    `labkit lab reset` and the directory's removal happen whatever the test did."""
    import random
    import shutil
    import socket as sockets
    import subprocess
    import sys
    from pathlib import Path

    root = Path(tempfile.mkdtemp(prefix="lk-cp-", dir="/tmp"))
    port = next(p for p in random.sample(range(15000, 16000), 200) if _free(sockets, p))
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "LABKIT_JUPYTER_PORT")}
    env.update(LABKIT_RUN_DIR=str(root / "run"), LABKIT_LIB_DIR=str(root / "lib"),
               LABKIT_LOG_DIR=str(root / "log"), LABKIT_ETC_DIR=str(root / "etc"),
               LABKIT_REGISTRY_ADDR=f"127.0.0.1:{port}")
    labkit = [sys.executable, "-m", "labkit.cli.main", "lab"]

    def lab(verb: str) -> None:
        r = subprocess.run(labkit + [verb], env=env, capture_output=True, text=True, timeout=180)
        if r.returncode:
            raise RuntimeError(f"labkit lab {verb} failed: {r.stderr or r.stdout}")

    try:
        lab("up")
        lab("images")
        yield dict(env, DOCKER_HOST=f"unix://{root / 'run' / 'docker.sock'}")
    finally:
        subprocess.run(labkit + ["reset"], env=env, capture_output=True, timeout=180)
        shutil.rmtree(root, ignore_errors=True)


def _free(sockets, port: int) -> bool:
    with sockets.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


# The helpers as fixtures: checkpoint files cannot import this conftest by name (tests/ has
# several conftest.py), so they ask for the helper instead.
@pytest.fixture(name="in_child")
def _in_child_fixture() -> Callable[..., Any]:
    return in_child


@pytest.fixture(name="process_in")
def _process_in_fixture() -> Callable[[int], contextlib.AbstractContextManager[int]]:
    return process_in


@pytest.fixture(name="private_lab")
def _private_lab_fixture() -> Callable[[], contextlib.AbstractContextManager[dict[str, str]]]:
    return private_lab


@pytest.fixture(name="module_lab", scope="module")
def _module_lab_fixture() -> Iterator[dict[str, str]]:
    """One private lab shared by a checkpoint file's tests (its environment, DOCKER_HOST set):
    for checkpoints whose code under test is a CLIENT of the lab (chapter 10), which need a
    running engine but leave the lab's layers on whatever the run configured."""
    with private_lab() as env:
        yield env
