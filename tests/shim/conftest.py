"""Fixtures for the shim's contract suite: a shim launched on a busybox bundle, per runtime.

Every test gets its own directory under /tmp (short: the shim's socket name derives from it,
and fifo and bundle paths stay readable), its own runtime --root inside it and its own
"containerd address", hence its own shim socket. Teardown kills only what the test started
(by pid), deletes the containers through the runtime, and checks that nothing is left.
"""

from __future__ import annotations

import json
import os
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

from labkit.shim.client import ShimClient, ShimError  # noqa: E402
from labkit.shim.launch import start_shim  # noqa: E402
from labkit.shim.main import socket_path  # noqa: E402
from labkit.shim.runtime import OCIRuntimeError, Runtime, RuntimeOptions, open_runtime  # noqa: E402,F401

NAMESPACE = "labkit-test"
RUNTIMES = ["runc", "crun", "labkit-runc"]


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


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
    ids: list[str] = field(default_factory=list)
    shims: dict[str, tuple[str, int]] = field(default_factory=dict)   # id -> (address, pid)
    readers: list[FifoReader] = field(default_factory=list)

    def bundle(self, id: str, args: list[str], **spec) -> Path:
        bundle = make_bundle(self.dir / id, args, **spec)
        (bundle / "options.json").write_text(json.dumps(
            {"binary_name": self.runtime, "root": str(self.dir / "root")}))
        return bundle

    def fifo(self, name: str) -> Path:
        path = self.dir / name
        os.mkfifo(path)
        return path

    def reader(self, path: Path) -> FifoReader:
        r = FifoReader(path)
        self.readers.append(r)
        return r

    def launch(self, id: str, args: list[str], **spec) -> tuple[ShimClient, Path]:
        """A bundle running `args` and a shim for it: (connected client, bundle)."""
        bundle = self.bundle(id, args, **spec)
        address = start_shim(id=id, namespace=NAMESPACE, bundle=bundle,
                             containerd_address=self.containerd_address)
        self.ids.append(id)
        client = ShimClient(address)
        self.shims[id] = (address, client.connect()["shim_pid"])
        return client, bundle

    def oci_runtime(self, id: str) -> Runtime:
        return open_runtime(RuntimeOptions(self.runtime, self.dir / "root"), NAMESPACE, self.dir / id)

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
                try:
                    with ShimClient(address, timeout=2) as c:
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


_probe_results: dict[str, str | None] = {}


def _probe(runtime: str) -> str | None:
    """Why `runtime` cannot run under the shim here, or None if it can (checked once)."""
    if runtime in _probe_results:
        return _probe_results[runtime]
    reason = None
    if shutil.which(runtime) is None:
        reason = f"{runtime} is not installed"
    else:
        sut = ShimUnderTest(Path(tempfile.mkdtemp(dir="/tmp", prefix="lks-")), runtime,
                            "/tmp/labkit-shim-probe.sock")
        try:
            client, _ = sut.launch("probe", ["true"])
            with client:
                client.create("probe", sut.dir / "probe")
                client.start("probe")
                client.wait("probe", timeout=10)
                client.delete("probe")
        except ShimError as e:
            reason = f"{runtime} does not run a container under labkit-shim yet: {e.message}"
        finally:
            sut.cleanup()
    _probe_results[runtime] = reason
    return reason


@pytest.fixture(params=RUNTIMES)
def shim(request, tmp_path_factory) -> ShimUnderTest:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    reason = _probe(request.param)
    if reason:
        pytest.skip(reason)
    d = Path(tempfile.mkdtemp(dir="/tmp", prefix="lks-"))
    sut = ShimUnderTest(d, request.param, str(d / "containerd.sock"))
    try:
        yield sut
    finally:
        leftovers = sut.cleanup()
    assert not leftovers, leftovers
