"""Checkpoint cp11 -- chapter 11, building images (labkit/dockerd/builder/).

Graded with `labkit grade cp11`. The first group tests one exercise each: the cache key and
the .dockerignore matcher against the rules Docker documents, the COPY layer as a real tar
that labkit's containerd unpacks onto a real directory, the cache lookup against a cache
index, and one RUN step whose "container" is a real process. The last one runs the real
docker CLI through a private lab whose builder (loaded into labkit-dockerd) is the graded
code: a five-step Dockerfile builds, `docker run` runs it, a rebuild takes every step from the
cache, and an edit rebuilds from the changed step only.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

from labkit.course.grading import checkpoint
from labkit.lab.implementations import resolve_module

# the docker CLI on PATH: 28 here, Debian's 20.10 on a fresh machine (vagrant/setup.sh)
DOCKER = shutil.which("docker") or "docker"


def module(name: str):
    """labkit.dockerd.builder.<name> as this grading run configured it (reference or workspace)."""
    return resolve_module("builder", f"labkit.dockerd.builder.{name}")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Backend:
    """The part of the builder's Backend protocol a step touches, for one step at a time.

    `run` really runs the command, as a process on this machine (in a fresh directory, with
    the step's environment), where the daemon would start a container; the commit makes an
    image whose ID is the hash of what it was made from. Every call is recorded, in order."""

    def __init__(self, steps):
        self.steps = steps                   # the graded module, for its Image class
        self.calls: list[tuple] = []
        self.index: dict[str, dict[str, object]] = {}
        self.commit_fails = False
        self.workdir = Path(tempfile.mkdtemp(prefix="lk-cp11-"))

    def run(self, parent, config, argv, emit):
        self.calls.append(("run", parent.id, list(argv)))
        env = dict(item.split("=", 1) for item in config.get("Env") or [])
        done = subprocess.run(argv, env={"PATH": "/usr/bin:/bin", **env}, cwd=self.workdir,
                              capture_output=True, timeout=30)
        emit({"stream": done.stdout.decode()})
        container = hashlib.sha256(f"{parent.id} {argv}".encode()).hexdigest()
        return container, done.returncode

    def commit_container(self, container, parent, config, created_by):
        self.calls.append(("commit", container, dict(config), created_by))
        if self.commit_fails:
            raise OSError("no space left on device")
        return self.steps.Image(sha256(f"{parent.id} {created_by}".encode()), config)

    def remove_container(self, container):
        self.calls.append(("remove", container))

    def cache_get(self, parent, key):
        self.calls.append(("cache_get", parent, key))
        return self.index.get(parent, {}).get(key)

    def cache_put(self, parent, key, image):
        self.index.setdefault(parent, {})[key] = image

    def close(self):
        import shutil
        shutil.rmtree(self.workdir, ignore_errors=True)


@pytest.fixture
def backend():
    b = Backend(module("steps"))
    try:
        yield b
    finally:
        b.close()


# --- one exercise at a time ----------------------------------------------------------------

@checkpoint("cp11", points=2, hint="cache_key: 'sha256:' + the sha256 of one canonical text of "
            "(instruction, config, extra) -- json.dumps(..., sort_keys=True) -- so that the order "
            "of the config's keys does not matter and any change of the three does")
def test_cache_key():
    key = module("steps").cache_key
    config = {"Env": ["PATH=/bin", "WHO=labkit"], "WorkingDir": "/app", "User": ""}
    k = key("/bin/sh -c make", config)
    assert isinstance(k, str) and k.startswith("sha256:") and len(k) == 71, k
    int(k[7:], 16)
    assert key("/bin/sh -c make", dict(reversed(list(config.items())))) == k, \
        "the same config with its keys in another order is the same step"
    assert key("/bin/sh -c make", config, "") == k
    others = [key("/bin/sh -c make test", config),
              key("/bin/sh -c make", {**config, "Env": ["PATH=/bin", "WHO=you"]}),
              key("/bin/sh -c make", {**config, "User": "1000"}),
              key("/bin/sh -c make", config, "sha256:" + "1" * 64),
              key("/bin/sh -c make", config, "sha256:" + "2" * 64)]
    assert len({k, *others}) == 6, "instruction, config and files each change the key"


@checkpoint("cp11", points=2, hint="cache_lookup: None when the cache is off (enabled False) or "
            "the parent is scratch (Image id ''); else backend.cache_get(parent.id, key)")
def test_cache_lookup(backend):
    steps = module("steps")
    parent = steps.Image("sha256:" + "a" * 64, {})
    child = steps.Image("sha256:" + "b" * 64, {"Cmd": ["sh"]})
    backend.cache_put(parent.id, "sha256:" + "c" * 64, child)
    assert steps.cache_lookup(backend, parent, "sha256:" + "c" * 64, True) == child
    assert steps.cache_lookup(backend, parent, "sha256:" + "d" * 64, True) is None, \
        "another step on the same parent is a miss"
    other = steps.Image("sha256:" + "e" * 64, {})
    assert steps.cache_lookup(backend, other, "sha256:" + "c" * 64, True) is None, \
        "the same step on another parent is a miss"
    backend.calls.clear()
    assert steps.cache_lookup(backend, parent, "sha256:" + "c" * 64, False) is None, \
        "--no-cache (or an earlier miss in this build): never a hit"
    assert steps.cache_lookup(backend, steps.Image("", {}), "sha256:" + "c" * 64, True) is None
    assert backend.calls == [], "with the cache off, or on scratch, the index is not asked"


@checkpoint("cp11", points=3, hint="run_step: backend.run(parent, run_config, argv, emit) -> "
            "(container, status); status != 0 -> BuildError(\"The command '…' returned a non-zero "
            "code: N\"); else backend.commit_container(container, parent, image_config, "
            "created_by); in a finally: emit 'Removing intermediate container …' and "
            "backend.remove_container(container)")
def test_run_step(backend):
    steps = module("steps")
    parent = steps.Image("sha256:" + "a" * 64, {})
    messages: list[dict] = []
    run_config = {"Env": ["STAGE=build", "WHO=labkit"]}
    image_config = {"Env": ["WHO=labkit"], "Cmd": ["sh"]}
    argv = ["/bin/sh", "-c", "echo hello $WHO from $STAGE"]
    image = steps.run_step(backend, parent, run_config, image_config, argv,
                           "/bin/sh -c echo hello", messages.append)
    assert image.id.startswith("sha256:") and image.id != parent.id
    kinds = [c[0] for c in backend.calls]
    assert kinds == ["run", "commit", "remove"], f"run, commit, then remove: {kinds}"
    assert backend.calls[0][2] == argv
    container = backend.calls[1][1]
    assert backend.calls[1][2] == image_config, \
        "the image keeps its own config: build args (run_config's extra Env) are not in it"
    assert backend.calls[1][3] == "/bin/sh -c echo hello"
    assert backend.calls[2] == ("remove", container)
    text = "".join(m.get("stream", "") for m in messages)
    assert "hello labkit from build" in text, "the step's output reaches the client"
    assert f"Removing intermediate container {container[:12]}" in text

    # a failing command: BuildError with the exit code, no commit, the container removed
    backend.calls.clear()
    with pytest.raises(steps.BuildError, match=r"'/bin/sh -c exit 7' returned a non-zero code: 7"):
        steps.run_step(backend, parent, run_config, image_config, ["/bin/sh", "-c", "exit 7"],
                       "/bin/sh -c exit 7", messages.append)
    assert [c[0] for c in backend.calls] == ["run", "remove"], backend.calls

    # a commit that fails still removes the container
    backend.calls.clear()
    backend.commit_fails = True
    with pytest.raises(OSError):
        steps.run_step(backend, parent, run_config, image_config, ["/bin/true"], "/bin/true",
                       messages.append)
    assert [c[0] for c in backend.calls] == ["run", "commit", "remove"], backend.calls


@checkpoint("cp11", points=3, hint="layer_tar: one tar member per file, path without the leading "
            "'/', every missing parent directory first (0755, root's), mode/uid/gid/link kept, "
            "no path twice; tarfile.TarInfo + addfile")
def test_layer_tar(tmp_path):
    from labkit.containerd.apply import apply_layer
    FileToCopy = module("context").FileToCopy
    files = [
        FileToCopy("/app/bin/run.sh", "file", 0o755, b"#!/bin/sh\necho run\n", uid=1000, gid=1000),
        FileToCopy("/app/conf", "dir", 0o700),
        FileToCopy("/app/conf/settings.ini", "file", 0o640, b"[main]\nmode=build\n"),
        FileToCopy("/app/current", "symlink", 0o777, link="bin/run.sh"),
        FileToCopy("/etc/motd", "file", 0o644, b"built by labkit\n"),
    ]
    data = module("backend").layer_tar(files)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert not any(n.startswith("/") for n in names), f"paths are relative to the root: {names}"
    assert len(names) == len(set(names)), f"a path twice: {names}"
    for i, name in enumerate(names):
        parent = name.rpartition("/")[0]
        if parent:
            assert parent in names[:i], f"{parent}/ must come before {name}: {names}"
    by_name = {m.name: m for m in members}
    assert set(by_name) == {"app", "app/bin", "app/bin/run.sh", "app/conf",
                            "app/conf/settings.ini", "app/current", "etc", "etc/motd"}
    assert by_name["app"].isdir() and by_name["app"].mode == 0o755
    assert by_name["app/conf"].isdir() and by_name["app/conf"].mode == 0o700
    run = by_name["app/bin/run.sh"]
    assert (run.mode, run.uid, run.gid, run.size) == (0o755, 1000, 1000, len(files[0].data))
    assert by_name["app/current"].issym() and by_name["app/current"].linkname == "bin/run.sh"

    # and it is a layer: containerd's Diff.Apply unpacks it onto a root filesystem
    root = tmp_path / "rootfs"
    root.mkdir()
    result = apply_layer(io.BytesIO(data), root)
    assert result.diff_id == sha256(data)
    assert (root / "app/bin/run.sh").read_bytes() == files[0].data
    st = os.lstat(root / "app/bin/run.sh")
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o755, 1000, 1000)
    assert os.readlink(root / "app/current") == "bin/run.sh"
    assert (root / "app/conf/settings.ini").read_bytes() == files[2].data
    assert (root / "etc/motd").read_text() == "built by labkit\n"


# --- the proof: docker build through your builder --------------------------------------------

DOCKERFILE = """\
FROM busybox
COPY greeting.txt /greeting.txt
RUN echo "built on $(cat /greeting.txt)" > /built.txt && echo ran-the-step
ENV WHO=labkit
CMD ["sh", "-c", "cat /built.txt; echo hi from $WHO"]
"""


def _cached(output: str) -> list[bool]:
    """For each "Step n/m" of a build's output: did it say "Using cache"?"""
    return ["Using cache" in block for block in output.split("Step ")[1:]]


@checkpoint("cp11", points=6, hint="labkit-dockerd builds with your builder package: `docker "
            "build` of FROM busybox / COPY / RUN / ENV / CMD must work and `docker run` the "
            "image; a second build must say 'Using cache' for every step after FROM, and after "
            "an edit of the copied file only the steps from COPY on may run again (the docker "
            "error names the function that is not done yet)")
@pytest.mark.root
def test_docker_build_through_your_builder(private_lab, tmp_path):
    assert shutil.which("docker"), "no docker CLI on PATH (vagrant/setup.sh installs Debian's docker.io)"
    project = tmp_path / "project"
    project.mkdir()
    (project / "Dockerfile").write_text(DOCKERFILE)
    (project / "greeting.txt").write_text("monday\n")
    (project / ".dockerignore").write_text("*.secret\n")
    (project / "key.secret").write_text("never sent\n")

    with private_lab() as env:
        def docker(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([DOCKER, *args], env=env, capture_output=True, text=True,
                                  timeout=120)

        first = docker("build", "-t", "cp11:built", str(project))
        assert first.returncode == 0, _docker_error(first.stdout + first.stderr)
        assert "Successfully tagged cp11:built" in first.stdout, first.stdout[-1500:]
        assert "ran-the-step" in first.stdout, "the RUN step ran (its output is in the build's)"
        run = docker("run", "--rm", "cp11:built")
        assert (run.returncode, run.stdout) == (0, "built on monday\nhi from labkit\n"), \
            _docker_error(run.stderr)
        probe = docker("run", "--rm", "cp11:built", "ls", "/")
        assert "key.secret" not in probe.stdout and "greeting.txt" in probe.stdout

        again = docker("build", "-t", "cp11:built", str(project))
        assert again.returncode == 0, _docker_error(again.stdout + again.stderr)
        assert _cached(again.stdout)[1:] == [True] * 4, \
            f"a rebuild of the same context takes every step from the cache:\n{again.stdout}"
        assert "\nran-the-step\n" not in again.stdout

        (project / "Dockerfile").write_text(DOCKERFILE.replace("ENV WHO=labkit", "ENV WHO=you"))
        edited = docker("build", "-t", "cp11:built", str(project))
        assert edited.returncode == 0, _docker_error(edited.stdout + edited.stderr)
        assert _cached(edited.stdout)[1:] == [True, True, False, False], \
            f"only the changed step (ENV) and those after it are built again:\n{edited.stdout}"
        run = docker("run", "--rm", "cp11:built")
        assert run.stdout == "built on monday\nhi from you\n", _docker_error(run.stderr)
        left = docker("ps", "-aq")
        assert left.stdout.strip() == "", "every intermediate container is removed"


def _docker_error(output: str) -> str:
    """The line of docker's output that says what failed (the rest is the build's steps)."""
    lines = output.strip().splitlines()
    for wanted in ("not done yet", "rror"):
        found = [line for line in lines if wanted in line]
        if found:
            return found[-1]
    return "\n".join(lines[-3:])          # a build's failure is its last words
