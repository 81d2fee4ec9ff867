"""Fixtures for the shim's contract suite: a shim launched on a busybox bundle.

The suite is parametrized over (shim, runtime) pairs: the configured shim (labkit-shim, or a
student's, see labkit.lab.implementations) over labkit-runc, runc and crun, and containerd's
own containerd-shim-runc-v2 over runc, to check that the suite asks only what the real shim does.

Every test gets its own directory under /tmp (short: the shim's socket name derives from it,
and fifo and bundle paths stay readable), its own runtime --root inside it and its own
"containerd address", hence its own shim socket. Teardown kills only what the test started
(by pid), deletes the containers through the runtime, and checks that nothing is left.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from support import base_spec, make_bundle  # noqa: E402,F401

from labkit.wire.shim.client import ShimClient, ShimError  # noqa: E402
from labkit.wire.shim.launch import start_shim  # noqa: E402
from labkit.shim.main import socket_path  # noqa: E402
from labkit.shim.runtime import OCIRuntimeError, Runtime, RuntimeOptions, open_runtime  # noqa: E402,F401

NAMESPACE = "labkit-test"
REAL_SHIM = "containerd-shim-runc-v2"


def configured_shim() -> str:
    try:
        from labkit.lab.implementations import resolve_binary
        return str(resolve_binary("shim"))
    except (ImportError, ValueError):
        return "labkit-shim"


# (shim binary, runtime): labkit's shim over every runtime, the real shim over runc.
PAIRS = [("labkit-shim", "runc"), ("labkit-shim", "crun"), ("labkit-shim", "labkit-runc"),
         (REAL_SHIM, "runc")]


# alive(pid): True while `pid` exists and is not a zombie -- the engine's own check.
from labkit.procfs import alive  # noqa: E402


def wait_until(predicate, timeout: float = 5.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class FifoReader:
    """Reads a fifo to EOF in a thread (the open blocks until the shim opens its end)."""

    def __init__(self, path: Path):
        self.path = path
        self.data = bytearray()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with open(self.path, "rb", buffering=0) as f:
            while chunk := f.read(4096):
                self.data += chunk

    def result(self, timeout: float = 10.0) -> bytes:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"no EOF on {self.path} within {timeout} s"
        return bytes(self.data)

    def abandon(self) -> None:
        """Unblock the thread if no writer ever came (a writer that appears and leaves)."""
        if self._thread.is_alive():
            try:
                os.close(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
            self._thread.join(2)


@dataclass
class ShimUnderTest:
    dir: Path
    runtime: str
    containerd_address: str
    shim_binary: str = "labkit-shim"
    ids: list[str] = field(default_factory=list)
    shims: dict[str, tuple[str, int]] = field(default_factory=dict)   # id -> (address, pid)
    readers: list[FifoReader] = field(default_factory=list)
    logs: list[threading.Thread] = field(default_factory=list)

    @property
    def real(self) -> bool:
        return os.path.basename(self.shim_binary) == REAL_SHIM

    @property
    def runtime_root(self) -> Path:
        # containerd's shim takes the root from Create's options, which ShimClient does not
        # send: it uses its default, /run/containerd/runc.
        return Path("/run/containerd/runc") if self.real else self.dir / "root"

    def bundle(self, id: str, args: list[str], **spec) -> Path:
        bundle = make_bundle(self.dir / id, args, **spec)
        if not self.real:   # containerd's shim takes its options from Create, not from this file
            (bundle / "options.json").write_text(json.dumps(
                {"binary_name": self.runtime, "root": str(self.dir / "root")}))
        else:
            # containerd's shim writes its log into the bundle's `log` fifo, which containerd
            # reads; without a reader it does not start. Play containerd: drain it to a file.
            os.mkfifo(bundle / "log")
            fd = os.open(bundle / "log", os.O_RDONLY | os.O_NONBLOCK)
            t = threading.Thread(target=_drain, args=(fd, bundle / "shim.log"), daemon=True)
            t.start()
            self.logs.append(t)
        return bundle

    def fifo(self, name: str) -> Path:
        path = self.dir / name
        os.mkfifo(path)
        return path

    def outputs(self, prefix: str = "") -> tuple[Path, Path, FifoReader, FifoReader]:
        """stdout and stderr fifos with a reader each (containerd always passes both)."""
        out, err = self.fifo(prefix + "out"), self.fifo(prefix + "err")
        return out, err, self.reader(out), self.reader(err)

    def reader(self, path: Path) -> FifoReader:
        r = FifoReader(path)
        self.readers.append(r)
        return r

    def launch(self, id: str, args: list[str], **spec) -> tuple[ShimClient, Path]:
        """A bundle running `args` and a shim for it: (connected client, bundle)."""
        bundle = self.bundle(id, args, **spec)
        address = start_shim(self.shim_binary, id=id, namespace=NAMESPACE, bundle=bundle,
                             containerd_address=self.containerd_address)
        self.ids.append(id)
        client = ShimClient(address)
        self.shims[id] = (address, client.connect()["shim_pid"])
        return client, bundle

    def oci_runtime(self, id: str) -> Runtime:
        return open_runtime(RuntimeOptions(self.runtime, self.runtime_root), NAMESPACE, self.dir / id)

    def cleanup(self) -> list[str]:
        """Remove everything; return the leftovers that were found (for the test to fail on)."""
        leftovers = []
        for r in self.readers:
            r.abandon()
        for id in self.ids:
            try:
                self.oci_runtime(id).delete(id, force=True)
            except OCIRuntimeError:
                pass
        for id, (address, pid) in self.shims.items():
            if alive(pid):
                # The protocol's own clean-up: delete the task (its init is dead by now), then
                # shut down (containerd's shim ignores Shutdown while it still has a task).
                try:
                    with ShimClient(address, timeout=2) as c:
                        try:
                            c.delete(id)
                        except ShimError:
                            pass
                        c.shutdown(now=True)
                except ShimError:
                    pass
                if not wait_until(lambda: not alive(pid), 3):
                    leftovers.append(f"shim {pid} still running")
                    os.kill(pid, signal.SIGKILL)
            path = socket_path(address)
            if os.path.exists(path):
                leftovers.append(f"socket {path} left behind")
                os.unlink(path)
        shutil.rmtree(self.dir, ignore_errors=True)
        return leftovers


def _drain(fd: int, dest: Path) -> None:
    """Copy a log fifo into a file until its directory is removed."""
    try:
        with open(dest, "ab") as out:
            while os.path.exists(dest.parent):
                select.select([fd], [], [], 1.0)
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if data:
                    out.write(data)
                else:
                    time.sleep(0.1)   # no writer (yet, or any more)
    except OSError:
        pass
    finally:
        os.close(fd)


_probe_results: dict[tuple[str, str], str | None] = {}


def _probe(shim_binary: str, runtime: str) -> str | None:
    """Why `runtime` cannot run under this shim here, or None if it can (checked once)."""
    key = (shim_binary, runtime)
    if key in _probe_results:
        return _probe_results[key]
    reason = None
    if shutil.which(runtime) is None:
        reason = f"{runtime} is not installed"
    elif shutil.which(shim_binary) is None:
        reason = f"{shim_binary} is not installed"
    else:
        sut = ShimUnderTest(Path(tempfile.mkdtemp(dir="/tmp", prefix="lks-")), runtime,
                            "/tmp/labkit-shim-probe.sock", shim_binary)
        try:
            client, _ = sut.launch("probe", ["true"])
            with client:
                client.create("probe", sut.dir / "probe")
                client.start("probe")
                client.wait("probe", timeout=10)
                client.delete("probe")
        except ShimError as e:
            reason = f"{runtime} does not run a container under {shim_binary} yet: {e.message}"
        finally:
            sut.cleanup()
    _probe_results[key] = reason
    return reason


@pytest.fixture(params=PAIRS, ids=[f"{s}+{r}" for s, r in PAIRS])
def shim(request) -> ShimUnderTest:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    shim_binary, runtime = request.param
    if shim_binary == "labkit-shim":
        shim_binary = configured_shim()
    reason = _probe(shim_binary, runtime)
    if reason:
        pytest.skip(reason)
    d = Path(tempfile.mkdtemp(dir="/tmp", prefix="lks-"))
    sut = ShimUnderTest(d, runtime, str(d / "containerd.sock"), shim_binary)
    try:
        yield sut
    finally:
        leftovers = sut.cleanup()
    assert not leftovers, leftovers
