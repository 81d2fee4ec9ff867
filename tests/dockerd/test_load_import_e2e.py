"""End to end: `docker import` and `docker load` (with `docker save`, the pair round-trips),
through the real docker CLI (28, and Debian's 20.10 where installed) and docker-py, against
labkit-dockerd on the private stack; and tarballs from a real dockerd 20.10 (Docker's legacy
layout) both ways, where this host can run one.

The image that travels is made here: busybox's root filesystem (`docker export`) imported as a
one-layer image with a CMD of its own, so its layer exists nowhere else — removing the image
really removes its blobs, and loading it back really writes them through containerd.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile

import pytest

from dockerd.conftest import DOCKER
from dockerd.httpunix import call
from dockerd.test_api_e2e import containers, docker_py
from dockerd.test_e2e import docker

pytestmark = [pytest.mark.root, pytest.mark.e2e,
              pytest.mark.skipif(not os.path.exists(DOCKER), reason="docker CLI not installed")]

DEBIAN_DOCKER = "/usr/bin/docker"
CLIS = [DOCKER] + ([DEBIAN_DOCKER] if os.path.exists(DEBIAN_DOCKER)
                   and os.path.realpath(DEBIAN_DOCKER) != os.path.realpath(DOCKER) else [])


@pytest.fixture(scope="module")
def rootfs(docker_env, tmp_path_factory) -> bytes:
    """busybox's root filesystem as a plain tar (`docker export`)."""
    name = "lk-export-src"
    with containers(docker_env, name):
        assert docker(docker_env, "create", "--name", name, "busybox", "true").returncode == 0
        path = tmp_path_factory.mktemp("rootfs") / "rootfs.tar"
        r = docker(docker_env, "export", "-o", str(path), name)
        assert r.returncode == 0, r.stderr
    return path.read_bytes()


def run_output(env: dict, image: str, *args: str) -> str:
    r = docker(env, "run", "--rm", image, *args)
    assert r.returncode == 0, r.stderr
    return r.stdout


def image_id(env: dict, name: str) -> str:
    return docker(env, "inspect", "--format", "{{.Id}}", name).stdout.strip()


@pytest.mark.parametrize("cli", CLIS)
def test_import_a_rootfs_with_changes_and_a_message(cli, docker_env, rootfs, tmp_path):
    name = "lk-imported:" + os.path.basename(cli)
    (tmp_path / "rootfs.tar.gz").write_bytes(gzip.compress(rootfs))    # compressed: fine too
    try:
        r = subprocess.run([cli, "import", "--change", 'CMD ["cat", "/etc/motd"]',
                            "--change", "ENV GREETING=hi", "--change", "WORKDIR /tmp",
                            "-m", "from a test", str(tmp_path / "rootfs.tar.gz"), name],
                           env=docker_env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip().startswith("sha256:") and r.stdout.strip() == image_id(docker_env, name)
        config = json.loads(docker(docker_env, "inspect", "--format", "{{json .Config}}",
                                   name).stdout)
        assert config["Cmd"] == ["cat", "/etc/motd"] and "GREETING=hi" in config["Env"]
        assert config["WorkingDir"] == "/tmp"
        layers = json.loads(docker(docker_env, "inspect", "--format", "{{json .RootFS.Layers}}",
                                   name).stdout)
        assert layers == ["sha256:" + hashlib.sha256(rootfs).hexdigest()]   # the tar itself
        history = docker(docker_env, "history", "--format", "{{.Comment}}", name).stdout
        assert history.strip() == "from a test"
        assert run_output(docker_env, name, "sh", "-c", "echo $GREETING $(pwd)") == "hi /tmp\n"
        # importing again under the same name moves the name to the new image
        again = subprocess.run([cli, "import", "--change", "CMD echo second",
                                str(tmp_path / "rootfs.tar.gz"), name], env=docker_env,
                               capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr
        assert image_id(docker_env, name) == again.stdout.strip() != r.stdout.strip()
        assert run_output(docker_env, name) == "second\n"
    finally:
        docker(docker_env, "rmi", "-f", name)


def test_import_without_a_name_or_a_message(docker_env, rootfs, labkit_stack):
    status, _, body = call(labkit_stack, "POST", "/v1.45/images/create?fromSrc=-", rootfs,
                           {"Content-Type": "application/x-tar"})
    assert status == 200, body
    new_id = json.loads(body)["status"]
    try:
        assert docker(docker_env, "history", "--format", "{{.Comment}}",
                      new_id).stdout.strip() == "Imported from -"
        listed = docker(docker_env, "images", "--format", "{{.ID}} {{.Repository}}").stdout
        assert f"{new_id[7:19]} <none>" in listed
    finally:
        docker(docker_env, "rmi", "-f", new_id)


@pytest.mark.parametrize("cli", CLIS)
def test_save_rmi_load_round_trip(cli, docker_env, rootfs, tmp_path):
    """An image whose only name is removed (its blobs collected) comes back from its save."""
    name = "lk-roundtrip:" + os.path.basename(cli)
    (tmp_path / "rootfs.tar").write_bytes(rootfs)
    try:
        r = docker(docker_env, "import", "--change", 'CMD ["echo", "round", "trip"]',
                   str(tmp_path / "rootfs.tar"), name)
        assert r.returncode == 0, r.stderr
        before = image_id(docker_env, name)
        saved = tmp_path / "saved.tar"
        r = subprocess.run([cli, "save", "-o", str(saved), name], env=docker_env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert docker(docker_env, "rmi", name).returncode == 0
        assert docker(docker_env, "inspect", before).returncode != 0       # gone, blobs too
        r = subprocess.run([cli, "load", "-i", str(saved)], env=docker_env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert f"Loaded image: {name}" in r.stdout
        assert image_id(docker_env, name) == before                        # the same image
        assert run_output(docker_env, name) == "round trip\n"
        # loading again: the blobs exist, the name is pointed again
        with open(saved, "rb") as f:
            again = subprocess.run([cli, "load"], stdin=f, env=docker_env, capture_output=True,
                                   text=True, timeout=120)
        assert again.returncode == 0 and f"Loaded image: {name}" in again.stdout, again.stderr
    finally:
        docker(docker_env, "rmi", "-f", name)


def legacy_tar(rootfs: bytes, cmd: list[str], tags: list[str], broken: bool = False) -> bytes:
    """A tarball in the layout Docker 20.10's `docker save` writes (manifest.json, <id>.json,
    <layer id>/layer.tar, repositories), made here for one image of one layer; `broken`: its
    manifest.json names a layer the tarball does not hold."""
    diff_id = "sha256:" + hashlib.sha256(rootfs).hexdigest()
    config = json.dumps({"architecture": "amd64" if os.uname().machine == "x86_64" else "arm64",
                         "os": "linux", "config": {"Cmd": cmd, "Env": ["PATH=/bin"]},
                         "created": "2026-01-01T00:00:00Z",
                         "history": [{"created": "2026-01-01T00:00:00Z", "created_by": "test"}],
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    config_hex = hashlib.sha256(config).hexdigest()
    layer_dir = diff_id[7:]
    files = {f"{config_hex}.json": config, f"{layer_dir}/layer.tar": rootfs,
             f"{layer_dir}/VERSION": b"1.0", f"{layer_dir}/json": b"{}",
             "manifest.json": json.dumps([{"Config": f"{config_hex}.json", "RepoTags": tags,
                                           "Layers": [f"{layer_dir}/layer.tar"
                                                      + (".missing" if broken else "")]}]).encode()}
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_load_docker_legacy_layout_with_docker_py(docker_env, rootfs):
    data = legacy_tar(rootfs, ["echo", "legacy"], ["lk-legacy:1", "lk-legacy:2"])
    with docker_py(docker_env) as client:
        try:
            images = client.images.load(data)
            # docker-py gets an Image for each "Loaded image" line: the same image twice
            assert {t for i in images for t in i.tags} == {"lk-legacy:1", "lk-legacy:2"}
            # the config's bytes are kept: the image ID is their digest, as in Docker
            assert images[0].id == "sha256:" + hashlib.sha256(legacy_config(data)).hexdigest()
            assert run_output(docker_env, "lk-legacy:2") == "legacy\n"
        finally:
            docker(docker_env, "rmi", "-f", "lk-legacy:1", "lk-legacy:2")


def legacy_config(data: bytes) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())
        return tar.extractfile(manifest[0]["Config"]).read()


def test_load_untagged_image_says_its_id(docker_env, rootfs, labkit_stack):
    data = legacy_tar(rootfs, ["true"], [])
    config_id = "sha256:" + hashlib.sha256(legacy_config(data)).hexdigest()
    status, headers, body = call(labkit_stack, "POST", "/v1.45/images/load?quiet=1", data,
                                 {"Content-Type": "application/x-tar"})
    try:
        assert status == 200 and headers["Content-Type"] == "application/json"
        assert json.loads(body) == {"stream": f"Loaded image ID: {config_id}\n"}
    finally:
        docker(docker_env, "rmi", "-f", config_id)


def test_bad_tarballs_are_400s_naming_the_problem(docker_env, labkit_stack, rootfs, tmp_path):
    (tmp_path / "not.tar").write_text("this is not a tar archive\n" * 100)
    r = docker(docker_env, "load", "-i", str(tmp_path / "not.tar"))
    assert r.returncode != 0 and "not a tar archive" in r.stderr, r.stderr
    r = docker(docker_env, "import", str(tmp_path / "not.tar"), "lk-never")
    assert r.returncode != 0 and "not a tar archive" in r.stderr, r.stderr
    cases = [
        (b"", b"empty"),
        (b"\x1f\x8bnot really gzip", b"cannot be decompressed"),
        (rootfs, b"neither index.json (OCI layout) nor manifest.json"),
        (legacy_tar(rootfs, ["true"], ["lk-bad:1"], broken=True), b"which the tarball lacks"),
        (legacy_tar(rootfs, ["true"], ["Not A Name"]), b"invalid image name"),
    ]
    for body, words in cases:
        status, headers, answer = call(labkit_stack, "POST", "/v1.45/images/load", body,
                                       {"Content-Type": "application/x-tar"})
        assert status == 400, (words, answer)
        assert words in answer and headers["Content-Type"] == "application/json"
    status, _, answer = call(labkit_stack, "POST",
                             "/v1.45/images/create?fromSrc=http://example.com/x.tar", b"")
    assert status == 400 and b"not supported" in answer
    assert docker(docker_env, "inspect", "lk-bad:1").returncode != 0


def test_a_real_dockerd_20_10_save_loads_and_labkits_save_loads_there(docker_env, stack,
                                                                      tmp_path):
    """Docker 20.10's own `docker save` (the legacy layout, written by a real dockerd) loads
    into labkit; labkit's save loads into the real dockerd."""
    from realdocker import Unavailable, private_real_dockerd
    registry = stack.registry.url.removeprefix("http://")
    try:
        with private_real_dockerd(registry) as real:
            real_env = dict(docker_env, DOCKER_HOST=real)
            assert docker(real_env, "pull", "busybox").returncode == 0
            assert docker(real_env, "tag", "busybox", "lk-from-real:1").returncode == 0
            r = docker(real_env, "save", "-o", str(tmp_path / "real.tar"), "lk-from-real:1")
            assert r.returncode == 0, r.stderr
            with tarfile.open(tmp_path / "real.tar") as tar:
                assert "manifest.json" in tar.getnames()
            try:
                r = docker(docker_env, "load", "-i", str(tmp_path / "real.tar"))
                assert r.returncode == 0 and "Loaded image: lk-from-real:1" in r.stdout, r.stderr
                assert image_id(docker_env, "lk-from-real:1") == image_id(real_env, "busybox")
                assert run_output(docker_env, "lk-from-real:1", "echo", "ok") == "ok\n"
                r = docker(docker_env, "save", "-o", str(tmp_path / "ours.tar"),
                           "lk-from-real:1")
                assert r.returncode == 0, r.stderr
                assert docker(real_env, "rmi", "lk-from-real:1").returncode == 0
                r = docker(real_env, "load", "-i", str(tmp_path / "ours.tar"))
                assert r.returncode == 0 and "lk-from-real:1" in r.stdout, r.stderr
                run = docker(real_env, "run", "--rm", "lk-from-real:1", "echo", "back")
                assert run.stdout == "back\n", run.stderr
            finally:
                docker(docker_env, "rmi", "-f", "lk-from-real:1")
    except Unavailable as e:
        pytest.skip(str(e))
