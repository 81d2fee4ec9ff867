"""podman and buildah (Debian's) with `--runtime labkit-runc`, as they run with runc.

Both are OCI runtime callers other than labkit's own shim: podman through conmon, buildah
directly for each RUN step. The image is the lab's busybox (labkit.images), pushed into a
private labkit-registry on 127.0.0.1 and pulled with --tls-verify=false. Every path podman
and buildah would write on the host is redirected into a temporary directory (storage
--root/--runroot, containers.conf's tmp_dir, volume_path, event log, the cgroup parent), and
all of it is removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from labkit import syscalls as sc
from labkit.lab.reset import mounts_under
from support import REPO, lab_images, registry, short_tmpdir  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.root, pytest.mark.slow]

SHM_LOCK = Path("/dev/shm/libpod_lock")      # podman's lock memory (shm lock manager)


@pytest.fixture
def containers_env(registry, lab_images):
    """(env, runtime wrapper, image reference, cgroup parent) for podman/buildah runs."""
    lab_images(registry.address, names=("busybox",))
    had_shm_lock = SHM_LOCK.exists()
    cgroup_parent = f"/labkit-test-podman-{uuid.uuid4().hex[:8]}"
    with short_tmpdir("lkpod-") as tmp:
        # labkit-runc from this checkout, whoever runs it (conmon passes no PYTHONPATH on)
        runtime = tmp / "labkit-runc"
        # (and it notes each command line, the proof that podman/buildah really called it)
        runtime.write_text(f"#!/bin/sh\necho \"$*\" >> {tmp}/runtime-calls\nPYTHONPATH={REPO} exec "
                           f"{Path(sys.executable).parent / 'labkit-runc'} \"$@\"\n")
        runtime.chmod(0o755)
        conf = tmp / "containers.conf"
        conf.write_text(f'[engine]\ntmp_dir = "{tmp}/tmp"\nvolume_path = "{tmp}/volumes"\n'
                        f'static_dir = "{tmp}/static"\nevents_logger = "file"\n'
                        f'events_logfile_path = "{tmp}/events.log"\ncgroup_manager = "cgroupfs"\n'
                        f'[containers]\nlog_driver = "k8s-file"\n')
        env = dict(os.environ, CONTAINERS_CONF=str(conf), TMPDIR=str(tmp),
                   BUILDAH_ISOLATION="oci")
        storage = ["--root", str(tmp / "storage"), "--runroot", str(tmp / "run"),
                   "--storage-driver", "vfs"]
        try:
            yield env, str(runtime), f"{registry.address}/library/busybox:latest", storage, \
                cgroup_parent, tmp
        finally:
            for tool in ("podman", "buildah"):
                if shutil.which(tool):
                    subprocess.run([tool, *storage, "rm", "-a", "-f"], env=env,
                                   capture_output=True, timeout=60)
            for m in sorted(mounts_under([tmp]), key=len, reverse=True):   # a safety net
                sc.umount2(m, sc.MNT_DETACH)
            for hierarchy in Path("/sys/fs/cgroup").iterdir():
                d = hierarchy / cgroup_parent.lstrip("/")
                if d.is_dir():
                    for child in sorted(d.rglob("*"), reverse=True):
                        if child.is_dir():
                            child.rmdir()
                    d.rmdir()
            if not had_shm_lock:
                SHM_LOCK.unlink(missing_ok=True)


def runtime_verbs(tmp: Path) -> set[str]:
    """The verbs (create, start, run …) of every command line the runtime wrapper noted."""
    verbs = set()
    for line in (tmp / "runtime-calls").read_text().splitlines():
        words = [w for w in line.split() if not w.startswith("-")]
        verbs.update(w for w in words[:3] if w in ("create", "start", "run", "delete", "kill",
                                                    "state", "exec"))
    return verbs


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (Debian's package: apt-get install {tool})")
    return path


def test_podman_run_with_labkit_runc(containers_env):
    podman = need("podman")
    env, runtime, image, storage, cgroup_parent, _tmp = containers_env
    r = subprocess.run(
        [podman, *storage, "--runtime", runtime, "run", "--rm", "--tls-verify=false",
         "--network", "none", "--cgroup-parent", cgroup_parent, image,
         "sh", "-c", "ping -c 1 -W 5 127.0.0.1 >/dev/null && echo loopback-ok; hostname; id -u"],
        env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split()
    assert lines[0] == "loopback-ok" and lines[-1] == "0"
    verbs = runtime_verbs(_tmp)
    assert {"create", "start", "delete"} <= verbs, verbs


def test_buildah_bud_with_a_run_step(containers_env):
    buildah = need("buildah")
    env, runtime, image, storage, _cgroup_parent, tmp = containers_env
    context = tmp / "context"
    context.mkdir()
    (context / "Containerfile").write_text(
        f"FROM {image}\nRUN echo built-by-labkit-runc > /built && cat /built\n")
    r = subprocess.run(
        [buildah, *storage, "bud", "--runtime", runtime, "--tls-verify=false",
         "--isolation", "oci", "--network", "none", "-t", "lkbuilt", str(context)],
        env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "built-by-labkit-runc" in r.stdout
    assert {"create", "start"} <= runtime_verbs(tmp)          # the RUN step went through it
