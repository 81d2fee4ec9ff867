"""Choosing the host's manifest out of an index; chain IDs; auth challenges."""

from __future__ import annotations

import hashlib
import platform

import pytest

from labkit.distribution import auth, chain_ids, host_platform, select_manifest
from labkit.distribution.mediatypes import MANIFEST_ACCEPT, OCI_INDEX, compression


def _entry(digest, os_, arch, variant=None, **extra):
    plat = {"os": os_, "architecture": arch}
    if variant:
        plat["variant"] = variant
    return {"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "sha256:" + digest * 64, "size": 1, "platform": plat, **extra}


# shaped like Docker Hub's busybox index (attestations included)
INDEX = {"mediaType": OCI_INDEX, "manifests": [
    _entry("1", "linux", "arm", "v7"),
    _entry("2", "unknown", "unknown",
           annotations={"vnd.docker.reference.type": "attestation-manifest"}),
    _entry("3", "linux", "arm64"),
    _entry("4", "linux", "amd64"),
    _entry("5", "windows", "amd64"),
]}


def test_host_platform_matches_uname():
    p = host_platform()
    assert p["os"] == "linux"
    expected = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), p["architecture"])
    assert p["architecture"] == expected
    if expected == "arm64":
        assert p["variant"] == "v8"


def test_selects_amd64():
    assert select_manifest(INDEX, {"os": "linux", "architecture": "amd64"})["digest"] == "sha256:" + "4" * 64


def test_arm64_variant_is_normalized():
    # the index omits "v8"; the host says v8: containerd treats them as the same platform
    chosen = select_manifest(INDEX, {"os": "linux", "architecture": "arm64", "variant": "v8"})
    assert chosen["digest"] == "sha256:" + "3" * 64


def test_arm_variant_must_match():
    with pytest.raises(LookupError):
        select_manifest(INDEX, {"os": "linux", "architecture": "arm", "variant": "v6"})


def test_attestations_are_skipped():
    only_attestation = {"manifests": [INDEX["manifests"][1]]}
    with pytest.raises(LookupError):
        select_manifest(only_attestation, {"os": "unknown", "architecture": "unknown"})


def test_default_is_the_host():
    assert select_manifest(INDEX)["platform"]["architecture"] == host_platform()["architecture"]


def test_no_match_uses_dockers_words():
    with pytest.raises(LookupError) as info:
        select_manifest({"manifests": [_entry("1", "linux", "s390x")]},
                        {"os": "linux", "architecture": "amd64"})
    assert str(info.value) == "no matching manifest for linux/amd64 in the manifest list entries"


def test_not_an_index():
    with pytest.raises(ValueError, match="not an image index"):
        select_manifest({"layers": []})


def test_chain_ids():
    a, b, c = ("sha256:" + x * 64 for x in "abc")
    ab = "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    abc = "sha256:" + hashlib.sha256(f"{ab} {c}".encode()).hexdigest()
    assert chain_ids([a, b, c]) == [a, ab, abc]
    assert chain_ids([]) == []
    with pytest.raises(ValueError, match="invalid diff id"):
        chain_ids(["nope"])


def test_accept_lists_all_four_manifest_types():
    assert len(MANIFEST_ACCEPT) == 4 and MANIFEST_ACCEPT[0] == OCI_INDEX
    assert compression("application/vnd.docker.image.rootfs.diff.tar.gzip") == "gzip"
    with pytest.raises(ValueError, match="unsupported layer media type"):
        compression("text/plain")


def test_parse_docker_hub_challenge():
    ch = auth.parse_challenge('Bearer realm="https://auth.docker.io/token",'
                              'service="registry.docker.io",scope="repository:library/busybox:pull"')
    assert ch.scheme == "bearer"
    assert ch.params == {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                         "scope": "repository:library/busybox:pull"}
    assert auth.token_url(ch, "ignored") == ("https://auth.docker.io/token?service=registry.docker.io"
                                              "&scope=repository%3Alibrary%2Fbusybox%3Apull")
    assert auth.parse_challenge('Basic realm="basic-realm"').scheme == "basic"


def test_token_response():
    assert auth.parse_token_response(b'{"access_token":"t","expires_in":300}').value == "t"
    with pytest.raises(ValueError, match="without a token"):
        auth.parse_token_response(b"{}")
