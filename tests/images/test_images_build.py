"""The lab's images: deterministic builds, idempotent pushes, and contents that work."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time

import pytest

from labkit.distribution import RegistryClient, chain_ids, host_platform, select_manifest
from labkit.distribution import mediatypes as mt
from labkit.images import builder


def pull(registry_url: str, repo: str) -> tuple[dict, dict, bytes]:
    """Pull like containerd does: index -> host manifest -> config and the one layer."""
    client = RegistryClient(registry_url)
    desc, raw = client.resolve(repo, "latest")
    assert desc["mediaType"] == mt.OCI_INDEX
    chosen = select_manifest(json.loads(raw))
    mdesc, mraw = client.resolve(repo, chosen["digest"])
    manifest = json.loads(mraw)
    assert mdesc["mediaType"] == mt.OCI_MANIFEST
    out = io.BytesIO()
    client.fetch_blob(repo, manifest["config"], out)
    config = json.loads(out.getvalue())
    assert len(manifest["layers"]) == 1
    layer = io.BytesIO()
    client.fetch_blob(repo, manifest["layers"][0], layer)
    tar = gzip.decompress(layer.getvalue())
    # the config's diff ID is the digest of the *uncompressed* layer
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(tar).hexdigest()]
    assert chain_ids(config["rootfs"]["diff_ids"]) == config["rootfs"]["diff_ids"]
    return manifest, config, tar


def test_hello_world_pulls_back_and_runs(registry, lab_images, tmp_path):
    digests = lab_images(registry.address, ("hello-world",))
    _, config, tar = pull(registry.url, "library/hello-world")
    assert config["architecture"] == host_platform()["architecture"] and config["os"] == "linux"
    assert config["config"]["Cmd"] == ["/hello"]
    assert any(e.startswith("PATH=") for e in config["config"]["Env"])
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        assert t.getnames() == ["hello"]
        member = t.getmember("hello")
        assert member.mode == 0o755 and member.uid == 0 and member.gid == 0
        (tmp_path / "hello").write_bytes(t.extractfile(member).read())
    (tmp_path / "hello").chmod(0o755)
    result = subprocess.run([str(tmp_path / "hello")], capture_output=True, text=True, timeout=10)
    assert result.returncode == 0
    assert result.stdout.lstrip("\n").startswith("Hello from labkit!\n")
    assert "labkit-runc" in result.stdout and "hello-world" in result.stdout
    assert digests["hello-world"] == RegistryClient(registry.url).resolve("library/hello-world", "latest")[0]["digest"]


def test_busybox_contents(registry, lab_images, tmp_path):
    lab_images(registry.address, ("busybox",))
    _, config, tar = pull(registry.url, "library/busybox")
    assert config["config"]["Cmd"] == ["sh"]
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        names = set(t.getnames())
        assert {"bin/busybox", "bin/sh", "bin/ls", "etc/passwd", "etc/group", "tmp"} <= names
        sh = t.getmember("bin/sh")
        assert sh.issym() and sh.linkname == "busybox"
        assert t.getmember("tmp").mode == 0o1777
        assert t.extractfile("etc/passwd").read().startswith(b"root:x:0:0:")
        assert all(m.mtime == builder.build_epoch() for m in t.getmembers())
        (tmp_path / "busybox").write_bytes(t.extractfile("bin/busybox").read())
    (tmp_path / "busybox").chmod(0o755)
    out = subprocess.run([str(tmp_path / "busybox"), "echo", "from the image"],
                         capture_output=True, text=True, timeout=10).stdout
    assert out == "from the image\n"


def test_build_is_deterministic(tmp_path):
    first = builder.compile_hello(tmp_path / "a")
    second = builder.compile_hello(tmp_path / "b")    # compiled again, not read from a cache
    assert first == second
    assert builder.busybox().index_digest == builder.busybox().index_digest
    assert builder.hello_world(tmp_path / "a").index_digest == builder.hello_world(tmp_path / "b").index_digest


def test_second_push_sends_nothing(registry, lab_images):
    log = io.StringIO()
    registry.log = log
    first = lab_images(registry.address)
    assert set(first) == {"hello-world", "busybox"}
    time.sleep(0.2)     # the server logs after answering: let the last line land
    assert "PUT" in log.getvalue()
    log.seek(0)
    log.truncate()
    pushed = []
    second = lab_images(registry.address, report=lambda name, digest, did: pushed.append(did))
    assert second == first and pushed == [False, False]
    time.sleep(0.2)
    methods = {line.split('"')[1].split()[0] for line in log.getvalue().splitlines()}
    assert methods == {"GET"}, log.getvalue()


def test_unknown_image_name(registry, lab_images):
    with pytest.raises(ValueError, match="unknown lab image 'nginx'"):
        lab_images(registry.address, ("nginx",))


def test_command_line(registry, tmp_path):
    env = {**os.environ, "LABKIT_LIB_DIR": str(tmp_path)}     # private compile cache
    cmd = [sys.executable, "-m", "labkit.images", "--registry", registry.address]
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["library/hello-world:latest", "library/busybox:latest"]
    assert all(line.endswith("pushed") for line in lines)
    second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert all(line.endswith("up to date") for line in second.stdout.splitlines())
    assert (tmp_path / "images-cache").is_dir()


def test_command_line_registry_down(tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "LABKIT_LIB_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "labkit.images", "--registry", f"127.0.0.1:{port}"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1
    assert result.stderr.startswith(f"labkit.images: cannot reach registry http://127.0.0.1:{port}")
