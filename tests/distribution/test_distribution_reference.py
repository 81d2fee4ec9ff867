"""Reference parsing and normalization, against Docker's own cases
(distribution/reference normalize_test.go and what the docker CLI prints)."""

from __future__ import annotations

import pytest

from labkit.distribution.reference import parse_reference

D = "sha256:" + "a" * 64

# typed -> (domain, path, tag, digest, str(), familiar(), locator)
VALID = [
    ("busybox", "docker.io", "library/busybox", None, None,
     "docker.io/library/busybox:latest", "busybox:latest", "latest"),
    ("busybox:1.36", "docker.io", "library/busybox", "1.36", None,
     "docker.io/library/busybox:1.36", "busybox:1.36", "1.36"),
    ("library/busybox", "docker.io", "library/busybox", None, None,
     "docker.io/library/busybox:latest", "busybox:latest", "latest"),
    ("docker.io/library/busybox", "docker.io", "library/busybox", None, None,
     "docker.io/library/busybox:latest", "busybox:latest", "latest"),
    ("index.docker.io/library/busybox", "docker.io", "library/busybox", None, None,
     "docker.io/library/busybox:latest", "busybox:latest", "latest"),
    ("docker.io/busybox", "docker.io", "library/busybox", None, None,
     "docker.io/library/busybox:latest", "busybox:latest", "latest"),
    ("myuser/x:1", "docker.io", "myuser/x", "1", None,
     "docker.io/myuser/x:1", "myuser/x:1", "1"),
    ("docker.io/library/a/b", "docker.io", "library/a/b", None, None,
     "docker.io/library/a/b:latest", "library/a/b:latest", "latest"),
    ("localhost/x", "localhost", "x", None, None,
     "localhost/x:latest", "localhost/x:latest", "latest"),
    ("localhost:5000/x/y:tag", "localhost:5000", "x/y", "tag", None,
     "localhost:5000/x/y:tag", "localhost:5000/x/y:tag", "tag"),
    ("127.0.0.1:5000/x", "127.0.0.1:5000", "x", None, None,
     "127.0.0.1:5000/x:latest", "127.0.0.1:5000/x:latest", "latest"),
    ("example.com/a/b/c:v1.2", "example.com", "a/b/c", "v1.2", None,
     "example.com/a/b/c:v1.2", "example.com/a/b/c:v1.2", "v1.2"),
    ("[::1]:5000/x", "[::1]:5000", "x", None, None,
     "[::1]:5000/x:latest", "[::1]:5000/x:latest", "latest"),
    ("xn--n3h.com/my-image_1.2__x", "xn--n3h.com", "my-image_1.2__x", None, None,
     "xn--n3h.com/my-image_1.2__x:latest", "xn--n3h.com/my-image_1.2__x:latest", "latest"),
    (f"busybox@{D}", "docker.io", "library/busybox", None, D,
     f"docker.io/library/busybox@{D}", f"busybox@{D}", D),
    # a digest pins the content, so it is what gets pulled even with a tag beside it
    (f"busybox:1.36@{D}", "docker.io", "library/busybox", "1.36", D,
     f"docker.io/library/busybox:1.36@{D}", f"busybox:1.36@{D}", D),
    ("a" * 63, "docker.io", "library/" + "a" * 63, None, None,
     f"docker.io/library/{'a' * 63}:latest", f"{'a' * 63}:latest", "latest"),
]


@pytest.mark.parametrize("typed,domain,path,tag,digest,full,familiar,locator", VALID)
def test_valid(typed, domain, path, tag, digest, full, familiar, locator):
    ref = parse_reference(typed)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (domain, path, tag, digest)
    assert str(ref) == full
    assert ref.familiar() == familiar
    assert ref.locator == locator
    assert ref.name == f"{domain}/{path}"
    again = parse_reference(str(ref))                # normalization is idempotent
    assert (str(again), again.name, again.locator) == (full, ref.name, locator)


INVALID = [
    ("Busybox", "invalid reference format: repository name must be lowercase"),
    ("localhost:5000/Foo", "invalid reference format: repository name must be lowercase"),
    ("myuser/X:1", "invalid reference format: repository name must be lowercase"),
    ("", "invalid reference format"),
    ("a b", "invalid reference format"),
    ("busybox:", "invalid reference format"),
    (":tag", "invalid reference format"),
    ("/busybox", "invalid reference format"),
    ("busybox/", "invalid reference format"),
    ("a//b", "invalid reference format"),
    ("-busybox", "invalid reference format"),
    ("busybox:" + "t" * 129, "invalid reference format"),
    ("busybox@sha256:abc", "invalid reference format"),
    ("busybox@", "invalid reference format"),
    ("a" * 64, "invalid reference format"),      # that is an image ID, not a name
    ("example.com/" + "a" * 250, "invalid reference format"),
]


@pytest.mark.parametrize("typed,message", INVALID)
def test_invalid(typed, message):
    with pytest.raises(ValueError) as info:
        parse_reference(typed)
    assert str(info.value).startswith(message)


def test_reference_is_frozen_and_hashable():
    ref = parse_reference("busybox")
    with pytest.raises(AttributeError):
        ref.tag = "x"  # type: ignore[misc]
    assert {ref: 1}[parse_reference("docker.io/library/busybox")] == 1
