"""`docker build` and `docker commit` against labkit-dockerd, with the real docker CLI.

The classic builder: each step's result is an image, RUN runs in a real container, the layer
cache is checked by which steps say "Using cache" (nothing is timed)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from dockerd.conftest import DOCKER, docker_cli_major

pytestmark = [pytest.mark.root, pytest.mark.e2e,
              pytest.mark.skipif(not os.path.exists(DOCKER), reason="docker CLI not installed")]

DOCKERFILE = """\
FROM busybox
COPY greeting.txt /greeting.txt
RUN echo "built on $(cat /greeting.txt)" > /built.txt && echo ran-the-step
ENV WHO=labkit
CMD ["sh", "-c", "cat /built.txt; echo hi from $WHO"]
"""


def docker(env: dict, *args: str, cwd=None, timeout: float = 180):
    return subprocess.run([DOCKER, *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def steps_cached(output: str) -> list[bool]:
    """For each "Step n/m" of a build's output: did it say "Using cache"?"""
    blocks = output.split("Step ")[1:]
    return ["Using cache" in block for block in blocks]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    (tmp_path / "greeting.txt").write_text("monday\n")
    (tmp_path / ".dockerignore").write_text("secret.txt\n")
    (tmp_path / "secret.txt").write_text("do not send\n")
    return tmp_path


def test_build_run_rebuild_cached_then_only_from_the_changed_step(docker_env, project):
    env = docker_env
    first = docker(env, "build", "-t", "lk-built:1", str(project))
    assert first.returncode == 0, first.stderr + first.stdout
    out = first.stdout + first.stderr
    assert "Step 1/5 : FROM busybox" in out and "Step 5/5 : CMD" in out
    assert "ran-the-step" in out and "Successfully tagged lk-built:1" in out
    # docker CLI 23+ reads "Builder-Version: 1" in labkit's /_ping and takes the classic
    # builder by itself (no buildx needed), saying that it is deprecated
    if docker_cli_major(env) >= 23:      # CLI 20.10 has only the classic builder: no word
        assert "legacy builder is deprecated" in first.stderr, first.stderr
    try:
        run = docker(env, "run", "--rm", "lk-built:1")
        assert (run.returncode, run.stdout) == (0, "built on monday\nhi from labkit\n"), run.stderr

        again = docker(env, "build", "-t", "lk-built:1", str(project))
        assert again.returncode == 0, again.stderr
        assert steps_cached(again.stdout + again.stderr)[1:] == [True, True, True, True]
        assert "\nran-the-step\n" not in again.stdout        # the step did not run again

        (project / "greeting.txt").write_text("tuesday\n")
        edited = docker(env, "build", "-t", "lk-built:1", str(project))
        assert edited.returncode == 0, edited.stderr
        assert steps_cached(edited.stdout + edited.stderr)[1:] == [False, False, False, False]
        run = docker(env, "run", "--rm", "lk-built:1")
        assert run.stdout.startswith("built on tuesday"), run.stderr

        history = docker(env, "history", "--no-trunc", "--format", "{{.CreatedBy}}", "lk-built:1")
        assert "COPY file:" in history.stdout and "ran-the-step" in history.stdout
        probe = docker(env, "run", "--rm", "lk-built:1", "ls", "/")
        assert "secret.txt" not in probe.stdout          # .dockerignore kept it out
    finally:
        docker(env, "rmi", "-f", "lk-built:1")


CLIS = [DOCKER] + (["/usr/bin/docker"] if os.path.exists("/usr/bin/docker") and
                   os.path.realpath("/usr/bin/docker") != os.path.realpath(DOCKER) else [])


@pytest.mark.parametrize("cli", CLIS)
def test_a_failing_run_shows_output_and_code_and_leaves_nothing(docker_env, tmp_path, cli):
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN echo about to fail && exit 7\n")
    before = docker(docker_env, "ps", "-aq").stdout.split()
    r = subprocess.run([cli, "build", "-t", "lk-fails", str(tmp_path)], capture_output=True,
                       text=True, timeout=180, env=dict(docker_env, DOCKER_BUILDKIT="0"))
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "about to fail" in out
    assert "returned a non-zero code: 7" in out
    assert docker(docker_env, "ps", "-aq").stdout.split() == before
    assert docker(docker_env, "image", "inspect", "lk-fails").returncode != 0


@pytest.mark.parametrize("dockerfile, message", [
    ("FROM busybox\nRUUN true\n", "line 2: unknown instruction: RUUN"),
    ("FROM busybox\nCOPY ../outside /x\n", "forbidden path outside the build context"),
])
def test_bad_dockerfiles_say_what_and_where(docker_env, tmp_path, dockerfile, message):
    (tmp_path / "Dockerfile").write_text(dockerfile)
    r = docker(docker_env, "build", str(tmp_path))
    assert r.returncode != 0 and message in r.stdout + r.stderr


def test_commit_with_changes_then_run(docker_env):
    env = docker_env
    r = docker(env, "run", "--name", "lk-to-commit", "busybox", "sh", "-c",
               "echo kept > /state.txt")
    assert r.returncode == 0, r.stderr
    try:
        c = docker(env, "commit", "--change", 'CMD ["cat", "/state.txt"]', "--change",
                   "ENV MODE=committed", "lk-to-commit", "lk-committed:v1")
        assert c.returncode == 0, c.stderr
        assert c.stdout.strip().startswith("sha256:")
        run = docker(env, "run", "--rm", "lk-committed:v1")
        assert (run.returncode, run.stdout) == (0, "kept\n"), run.stderr
        cfg = json.loads(docker(env, "image", "inspect", "lk-committed:v1").stdout)[0]["Config"]
        assert "MODE=committed" in cfg["Env"] and cfg["Cmd"] == ["cat", "/state.txt"]
    finally:
        docker(env, "rm", "-f", "lk-to-commit")
        docker(env, "rmi", "-f", "lk-committed:v1")


def test_docker_py_images_build(docker_env, project):
    docker_py = pytest.importorskip("docker")
    client = docker_py.DockerClient(base_url=docker_env["DOCKER_HOST"])
    try:
        image, logs = client.images.build(path=str(project), tag="lk-py-built:1")
        assert "lk-py-built:1" in image.tags
        assert any("Successfully built" in item.get("stream", "") for item in logs)
        out = client.containers.run("lk-py-built:1", remove=True)
        assert out == b"built on monday\nhi from labkit\n"
    finally:
        client.images.remove("lk-py-built:1", force=True)
        client.close()


MULTI_STAGE = """\
ARG BASE=busybox
FROM $BASE AS maker
ARG FLAVOUR=plain
RUN mkdir /out && echo "$FLAVOUR" > /out/flavour && tar -cf /out/bundle.tar -C /etc hostname
FROM busybox AS final
COPY --from=maker /out/flavour /flavour
ADD bundle.tar /unpacked/
WORKDIR /unpacked
CMD ["sh", "-c", "cat /flavour; ls"]
FROM final AS extra
ENV EXTRA=1
"""


def test_multi_stage_build_args_add_and_target_with_debians_cli(docker_env, tmp_path):
    """COPY --from a stage, --build-arg into a RUN, ADD unpacking a local tar, WORKDIR, and
    --target stopping at a stage -- with Debian's 20.10 CLI (DOCKER_BUILDKIT=0) as well."""
    import io
    import tarfile
    (tmp_path / "Dockerfile").write_text(MULTI_STAGE)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("from-the-tar.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"yes"))
    (tmp_path / "bundle.tar").write_bytes(buf.getvalue())
    cli = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else DOCKER
    env = dict(docker_env, DOCKER_BUILDKIT="0")
    r = subprocess.run([cli, "build", "--build-arg", "FLAVOUR=spicy", "--target", "final",
                        "-t", "lk-multi", str(tmp_path)], env=env, capture_output=True,
                       text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Step 9/9" in r.stdout                     # ENV EXTRA (stage "extra") not built
    try:
        run = docker(docker_env, "run", "--rm", "lk-multi")
        assert (run.returncode, run.stdout) == (0, "spicy\nfrom-the-tar.txt\n"), run.stderr
        cfg = json.loads(docker(docker_env, "image", "inspect", "lk-multi").stdout)[0]["Config"]
        assert cfg["WorkingDir"] == "/unpacked" and not any(
            e.startswith("EXTRA=") for e in cfg["Env"])
    finally:
        docker(docker_env, "rmi", "-f", "lk-multi")


def test_push_a_built_image_then_skopeo_and_a_real_dockerd_pull_it(docker_env, stack, tmp_path):
    """docker push of a built image to a labkit-registry; skopeo reads it back, and a real
    dockerd 20.10 pulls and runs it: the image labkit made is a standard one."""
    import shutil as sh
    from realdocker import Unavailable, private_real_dockerd
    registry = stack.registry.url.removeprefix("http://")
    name = f"{registry}/lk/pushed:1"
    (tmp_path / "Dockerfile").write_text('FROM busybox\nRUN echo pushed-and-pulled > /msg\n'
                                         'CMD ["cat", "/msg"]\n')
    r = docker(docker_env, "build", "-t", name, str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    try:
        push = docker(docker_env, "push", name)
        assert push.returncode == 0, push.stdout + push.stderr
        assert f"The push refers to repository [{registry}/lk/pushed]" in push.stdout
        assert "1: digest: sha256:" in push.stdout
        again = docker(docker_env, "push", name)
        assert "Layer already exists" in again.stdout, again.stdout + again.stderr
        if sh.which("skopeo"):
            inspect = subprocess.run(["skopeo", "inspect", "--tls-verify=false",
                                      f"docker://{name}"], capture_output=True, text=True,
                                     timeout=60)
            assert inspect.returncode == 0, inspect.stderr
            assert json.loads(inspect.stdout)["Architecture"] in ("amd64", "arm64")
        try:
            with private_real_dockerd(registry) as real:
                env = dict(docker_env, DOCKER_HOST=real)
                run = docker(env, "run", "--rm", name)
                assert (run.returncode, run.stdout) == (0, "pushed-and-pulled\n"), run.stderr
        except Unavailable as e:
            pytest.skip(str(e))
    finally:
        docker(docker_env, "rmi", "-f", name)


def test_buildah_builds_and_pushes_then_labkit_runs_it(docker_env, stack):
    """An image built by another builder (Debian's buildah, chroot isolation, storage in a
    temporary directory) and pushed to the labkit-registry runs under labkit."""
    import shutil as sh
    from labkit import syscalls as sc
    from labkit.lab.reset import mounts_under
    from support import short_tmpdir
    buildah = sh.which("buildah")
    if buildah is None:
        pytest.skip("buildah is not installed (apt-get install buildah)")
    registry = stack.registry.url.removeprefix("http://")
    with short_tmpdir("lkbah-") as tmp:
        storage = ["--root", str(tmp / "storage"), "--runroot", str(tmp / "run"),
                   "--storage-driver", "vfs"]
        conf = tmp / "containers.conf"
        conf.write_text(f'[engine]\ntmp_dir = "{tmp}/tmp"\nevents_logger = "file"\n'
                        f'events_logfile_path = "{tmp}/events.log"\n')
        env = dict(os.environ, CONTAINERS_CONF=str(conf), TMPDIR=str(tmp))
        (tmp / "ctx").mkdir()
        (tmp / "ctx" / "Containerfile").write_text(
            f"FROM {registry}/library/busybox:latest\nRUN echo made-by-buildah > /who\n"
            'CMD ["cat", "/who"]\n')
        name = f"{registry}/lk/buildah-built:1"
        try:
            for argv in (["bud", "--isolation", "chroot", "--tls-verify=false", "-t", name,
                          str(tmp / "ctx")],
                         ["push", "--tls-verify=false", name, f"docker://{name}"]):
                r = subprocess.run([buildah, *storage, *argv], env=env, capture_output=True,
                                   text=True, timeout=300)
                assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
            run = docker(docker_env, "run", "--rm", name)
            assert (run.returncode, run.stdout) == (0, "made-by-buildah\n"), run.stderr
        finally:
            subprocess.run([buildah, *storage, "rm", "-a"], env=env, capture_output=True,
                           timeout=60)
            for m in sorted(mounts_under([tmp]), key=len, reverse=True):
                sc.umount2(m, sc.MNT_DETACH)
            docker(docker_env, "rmi", "-f", name)
