"""Image references: what `docker pull busybox` actually means.

A reference names an image in a registry. Its full form is

    [domain[:port]/]path[:tag][@digest]
    e.g.  docker.io/library/busybox:latest
          127.0.0.1:5000/lab/hello@sha256:1d5e...

Users type short, "familiar" forms, and Docker normalizes them (distribution/reference's
`ParseNormalizedNamed`):

  * the first path component is a registry host only if it contains "." or ":" or is
    "localhost" (or has an upper-case letter); otherwise the domain is docker.io.
    So "myuser/x" is on Docker Hub, while "localhost/x" and "127.0.0.1:5000/x" are not;
  * on docker.io, a one-component path gets "library/" in front: official images live
    in the "library" namespace, so "busybox" is "docker.io/library/busybox";
  * no tag and no digest means the tag "latest" (a digest alone pins the content, and
    then no tag is implied).

The grammar (lower-case path components joined by "/", separators ".", "_", "__" or dashes
inside a component, tags of at most 128 word characters, digests "algorithm:hex") is the
one from distribution/reference/regexp.go, written out below as Python regular expressions.
Errors use Docker's wording, e.g. "invalid reference format: repository name must be
lowercase", because the CLI prints exactly that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"   # old configs still say this; it means docker.io
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

# --- the grammar, piece by piece (distribution/reference/regexp.go) ---
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

PATH_RE = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
DOMAIN_RE = re.compile(_DOMAIN)
TAG_RE = re.compile(_TAG)
DIGEST_RE = re.compile(_DIGEST)
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}")   # a bare image ID, not a name


def _invalid(detail: str) -> ValueError:
    return ValueError(f"invalid reference format: {detail}")


@dataclass(frozen=True)
class Reference:
    """A fully normalized image reference (see the module docstring)."""

    domain: str                 # "docker.io", "127.0.0.1:5000"
    path: str                   # "library/busybox"
    tag: str | None = None      # None when the user gave none
    digest: str | None = None   # "sha256:<64 hex>" or None

    @property
    def name(self) -> str:
        """The repository's full name: "docker.io/library/busybox"."""
        return f"{self.domain}/{self.path}"

    @property
    def locator(self) -> str:
        """What to put after /manifests/ when pulling: the digest if pinned, else the tag.

        A digest wins over a tag ("busybox:1.36@sha256:...") because it names exact
        content, and that is what Docker pulls in that case.
        """
        return self.digest or self.tag or DEFAULT_TAG

    def __str__(self) -> str:
        """The fully qualified form: "docker.io/library/busybox:latest"."""
        return self.name + self._suffix()

    def familiar(self) -> str:
        """The short form Docker shows users: "busybox:latest", "myuser/x:1"."""
        path = self.path
        if self.domain == DEFAULT_DOMAIN:
            if path.startswith(OFFICIAL_REPO_PREFIX) and "/" not in path[len(OFFICIAL_REPO_PREFIX):]:
                path = path[len(OFFICIAL_REPO_PREFIX):]
            return path + self._suffix()
        return f"{self.domain}/{path}" + self._suffix()

    def _suffix(self) -> str:
        if self.digest and self.tag:
            return f":{self.tag}@{self.digest}"
        if self.digest:
            return f"@{self.digest}"
        return f":{self.tag or DEFAULT_TAG}"


def split_domain(name: str) -> tuple[str, str]:
    """Split a repository name into (domain, path) the way Docker does (splitDockerDomain).

        "busybox"                  -> ("docker.io", "library/busybox")
        "myuser/x"                 -> ("docker.io", "myuser/x")
        "127.0.0.1:5000/lab/hello" -> ("127.0.0.1:5000", "lab/hello")
        "index.docker.io/busybox"  -> ("docker.io", "library/busybox")
    """
    # BEGIN SOLUTION chapter="06" hint="distribution/reference normalize.go, splitDockerDomain"
    # TODO: split off the registry host, if the first component is one; add library/ on docker.io
    # HINT: the first component is a host only if it contains "." or ":", is "localhost",
    # HINT: or has an upper-case letter; "index.docker.io" is the legacy name of docker.io
    first, slash, rest = name.partition("/")
    if not slash or ("." not in first and ":" not in first and first != "localhost"
                     and first.lower() == first):
        domain, path = DEFAULT_DOMAIN, name
    else:
        domain, path = first, rest
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_REPO_PREFIX + path
    return domain, path
    # END SOLUTION


def parse_reference(s: str) -> Reference:
    """Parse and normalize what a user typed ("busybox", "localhost:5000/x:1", ...).

    Raises ValueError("invalid reference format: ...") for anything Docker would refuse.
    """
    if not isinstance(s, str) or not s:
        raise _invalid("empty reference")
    if _IDENTIFIER_RE.fullmatch(s):
        raise _invalid(f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings")

    # The digest is everything after "@"; the tag is after the last ":" that follows the
    # last "/" (a ":" before that belongs to a registry port, as in 127.0.0.1:5000/x).
    remainder, at, digest = s.partition("@")
    if at:
        if not DIGEST_RE.fullmatch(digest):
            raise _invalid(f"invalid digest format in {s!r}")
    else:
        digest = ""
    tag = ""
    colon = remainder.rfind(":")
    if colon > remainder.rfind("/"):
        remainder, tag = remainder[:colon], remainder[colon + 1:]
        if not TAG_RE.fullmatch(tag):
            raise _invalid(f"invalid tag format in {s!r}")

    domain, path = split_domain(remainder)
    if not path:
        raise _invalid("repository name must have at least one component")
    if path.lower() != path:
        raise _invalid("repository name must be lowercase")
    if not DOMAIN_RE.fullmatch(domain) or not PATH_RE.fullmatch(path):
        raise _invalid(f"{s!r} is not a valid image name "
                       "(lower-case letters, digits and . _ - separators, components joined by /)")
    if len(domain) + 1 + len(path) > NAME_TOTAL_LENGTH_MAX:
        raise _invalid(f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters")
    return Reference(domain=domain, path=path, tag=tag or None, digest=digest or None)


def validate_repository(path: str) -> str:
    """Check a repository path as it appears in a URL ("library/busybox"); return it."""
    if not PATH_RE.fullmatch(path) or len(path) > NAME_TOTAL_LENGTH_MAX:
        raise ValueError(f"invalid repository name {path!r}")
    return path
