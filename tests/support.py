"""Helpers shared by the tests of several layers (test files import it as `support`).

- a busybox root filesystem and a base OCI runtime spec, in the style of `runc spec` (crun's
  tests take the same approach: a base config, one field changed, a small probe inside the
  container reporting what it sees);
- `labkit …` run as a user runs it (a separate process);
- short temporary directories, free TCP ports, waiting for and stopping a daemon a test
  started, and one raw HTTP request, for the fixtures that start servers;
- the `registry` and `lab_images` fixtures: a private in-process labkit-registry and the lab's
  image builder (a test directory's conftest.py imports them by name to use them).
"""

from __future__ import annotations

import http.client
import json
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from labkit.runc.spec import default_spec

if TYPE_CHECKING:
    from labkit.registry.server import RegistryServer

REPO = Path(__file__).resolve().parents[1]
BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static: one static binary, no libraries



def busybox_applets() -> list[str]:
    out = subprocess.run([str(BUSYBOX), "--list"], check=True, capture_output=True, text=True).stdout
    return [a for a in out.split() if a and "/" not in a]


def make_busybox_rootfs(rootfs: Path) -> Path:
    """A minimal root filesystem: /bin/busybox plus one symlink per applet."""
    for d in ("bin", "proc", "dev", "sys", "tmp", "etc", "root"):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    for applet in busybox_applets():
        link = rootfs / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (rootfs / "etc" / "group").write_text("root:x:0:\n")
    return rootfs


def base_spec(args: list[str], rootfs: str = "rootfs", *, hostname: str = "labkit",
              terminal: bool = False) -> dict:
    """The config.json `labkit-runc spec` writes (labkit.runc.spec, as `runc spec`), running
    `args`, with a writable root, no rlimits and a short masked-path list: the base config the
    contract suites change one field of."""
    spec = default_spec()
    spec["process"].update(terminal=terminal, args=args)
    del spec["process"]["rlimits"]
    spec["root"] = {"path": rootfs, "readonly": False}
    spec["hostname"] = hostname
    spec["linux"]["maskedPaths"] = ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"]
    return spec


def make_bundle(bundle: Path, args: list[str], **spec_kw) -> Path:
    """A bundle directory: rootfs/ (busybox) and config.json running `args`."""
    bundle.mkdir(parents=True, exist_ok=True)
    make_busybox_rootfs(bundle / "rootfs")
    (bundle / "config.json").write_text(json.dumps(base_spec(args, **spec_kw), indent=2))
    return bundle


# The `labkit` command as this interpreter runs it: the console script may not be on PATH, and
# `python -m` runs the code of this checkout, whichever labkit is installed.
LABKIT = [sys.executable, "-m", "labkit.cli.main"]


def run_labkit(*args: str, env: dict[str, str] | None = None, cwd: Path | str = REPO,
               timeout: float = 120, input: str | None = None) -> subprocess.CompletedProcess:
    """`labkit ARGS…` as a user runs it: its own process, with `env` (default: ours), output
    captured as text. A test checks returncode, stdout and stderr, as a user would read them."""
    return subprocess.run([*LABKIT, *args], cwd=cwd, env=env, input=input, capture_output=True,
                          text=True, timeout=timeout)


@contextmanager
def short_tmpdir(prefix: str) -> Iterator[Path]:
    """A new directory right under /tmp, removed with its contents at the end (also when the
    test failed). Short on purpose: pytest's tmp_path is too long for a unix socket's path
    (under 108 bytes), and short paths keep messages and wrapper scripts readable."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def free_port(avoid: tuple[int, ...] = ()) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on, in 15000-16000 (the range the tests
    use: far from the lab's own ports and from the kernel's ephemeral range). `avoid` lists
    ports already handed out but not bound yet."""
    for port in random.sample(range(15000, 16000), 200):
        if port in avoid:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port in 15000-16000")


def wait_for_daemon(ready: Callable[[], bool], what: str, proc: subprocess.Popen, log: Path,
                    timeout: float = 30.0) -> None:
    """Poll `ready` (its socket exists, it answers a ping) until it is true for the daemon a
    test started as `proc`, writing to `log`; fail at once, with the end of the log, if the
    daemon exits first, and after `timeout` seconds if it never becomes ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {log.read_text()[-2000:]}")
        if ready():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not come up in {timeout}s: {log.read_text()[-2000:]}")


def stop_process(proc: subprocess.Popen | None, timeout: float = 20.0) -> None:
    """Stop a process the test started (through its Popen, so by its PID): SIGTERM, as
    systemd would, then SIGKILL if it has not exited after `timeout` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def http_request(server: str, method: str, path: str, body: bytes = b"",
                 headers: dict | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One HTTP request on a fresh connection: (status, headers, body). `server` is
    "host:port" or a base URL ("http://host:port"). For the tests that must send what a
    client library would refuse or tidy up (a wrong digest, a bad Range)."""
    netloc = urllib.parse.urlsplit(server).netloc if "://" in server else server
    conn = http.client.HTTPConnection(netloc, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def wait_for_v2(url: str, proc: subprocess.Popen | None = None, timeout: float = 15) -> None:
    """Wait until the registry at base URL `url` answers GET /v2/ with 200 (the API check
    every client makes first); fail early if `proc`, the registry's process, exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"registry exited with status {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(url + "/v2/", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"registry at {url} did not answer /v2/ within {timeout}s")


@contextmanager
def labkit_registry(prefix: str = "labkit-reg-") -> Iterator[RegistryServer]:
    """A private labkit-registry in this process (a RegistryServer: .url, .address): an
    ephemeral port on 127.0.0.1 and a temporary root, both gone at the end."""
    from labkit.registry import serve
    with short_tmpdir(prefix) as root:
        server = serve(str(root), "127.0.0.1", 0, log=None)
        try:
            yield server
        finally:
            server.close()


@pytest.fixture
def registry():
    """A private labkit-registry for one test (see labkit_registry)."""
    with labkit_registry() as server:
        yield server


@pytest.fixture
def lab_images(monkeypatch, tmp_path):
    """labkit.images.build_and_push with a private compile cache (not /var/lib/labkit)."""
    import labkit.images.builder as builder
    monkeypatch.setattr(builder, "CACHE_DIR", tmp_path / "images-cache")
    from labkit.images import build_and_push
    return build_and_push


def cgroup_dirs(path: str, *, every_cgroup2: bool = False) -> list[Path]:
    """The directories of the absolute cgroupsPath `path` on this host, found by the
    runtime's own v1/v2 detection (labkit.runc.cgroups.paths_for): one per v1 hierarchy, or
    the one v2 directory. every_cgroup2 adds the path in every cgroup2 mount, where runc
    makes its directories too on a hybrid v1 host (/sys/fs/cgroup/unified)."""
    from labkit import procfs
    from labkit.runc import cgroups
    dirs = {Path(d) for d in cgroups.paths_for(path, "").values()}
    if every_cgroup2:
        dirs |= {Path(m.mount_point + path) for m in procfs.mountinfo() if m.fstype == "cgroup2"}
    return sorted(dirs)
