"""Interop: the real skopeo (containers/image) pulls from and pushes to labkit-registry."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from labkit.distribution import RegistryClient
from labkit.distribution import mediatypes as mt
from support import short_tmpdir

pytestmark = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")


def skopeo(*args: str) -> str:
    result = subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, f"skopeo {' '.join(args)} failed: {result.stderr}"
    return result.stdout


@pytest.fixture
def workdir():
    with short_tmpdir("labkit-skopeo-") as d:
        yield d


def test_skopeo_pulls_and_inspects(registry, lab_images, workdir):
    digests = lab_images(registry.address, ("busybox",))
    ref = f"docker://{registry.address}/library/busybox:latest"
    info = json.loads(skopeo("inspect", "--tls-verify=false", ref))
    assert info["Digest"] == digests["busybox"]
    assert info["Architecture"] and info["Os"] == "linux" and info["RepoTags"] == ["latest"]
    skopeo("copy", "--src-tls-verify=false", ref, f"oci:{workdir}/layout:busybox")
    index = json.loads((workdir / "layout" / "index.json").read_text())
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "busybox"
    raw_config = json.loads(skopeo("inspect", "--config", f"oci:{workdir}/layout:busybox"))
    assert raw_config["config"]["Cmd"] == ["sh"]


def test_skopeo_pushes(registry, lab_images, workdir):
    """skopeo streams uploads (chunked PATCH), as the docker daemon does."""
    lab_images(registry.address, ("hello-world",))
    src = f"docker://{registry.address}/library/hello-world:latest"
    skopeo("copy", "--src-tls-verify=false", src, f"oci:{workdir}/hello:latest")
    for fmt, repo in (("oci", "copies/hello-oci"), ("v2s2", "copies/hello-docker")):
        skopeo("copy", "--dest-tls-verify=false", "--format", fmt, f"oci:{workdir}/hello:latest",
               f"docker://{registry.address}/{repo}:v1")
        desc, raw = RegistryClient(registry.url).resolve(repo, "v1")
        expected = mt.OCI_MANIFEST if fmt == "oci" else mt.DOCKER_MANIFEST
        assert desc["mediaType"] == expected
        skopeo("inspect", "--tls-verify=false", f"docker://{registry.address}/{repo}:v1")
