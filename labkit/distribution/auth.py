"""Registry authentication, without I/O: challenges in, request headers out.

A registry that wants credentials answers 401 with a challenge (RFC 7235):

    WWW-Authenticate: Bearer realm="https://auth.docker.io/token",service="registry.docker.io",
                      scope="repository:library/busybox:pull"
    WWW-Authenticate: Basic realm="basic-realm"

*Basic*: send `Authorization: Basic base64(user:password)` on every request.

*Bearer* (the token protocol, distribution/docs/spec/auth/token.md): ask the `realm` for a
token for `service` and a `scope` ("repository:<name>:pull" or "...:pull,push"),
anonymously or with Basic credentials; the JSON answer carries "token" (or "access_token")
and "expires_in". Then send `Authorization: Bearer <token>`. A token is good for one scope,
so the client keeps one per scope. The client (labkit.distribution.client) does the HTTP.
"""

from __future__ import annotations

import base64
import json
import re
import time
import urllib.parse
from dataclasses import dataclass, field

# one auth-param: key=token or key="quoted string" (commas may appear inside quotes)
_PARAM_RE = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


@dataclass(frozen=True)
class Challenge:
    scheme: str                                   # "bearer" or "basic" (lower case)
    params: dict[str, str] = field(default_factory=dict)


def parse_challenge(header: str) -> Challenge:
    """Parse a WWW-Authenticate header (the first challenge in it)."""
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        raise ValueError("empty WWW-Authenticate header")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM_RE.match(rest, pos)
        if not m or m.end() == pos:
            break
        value = m.group(2) if m.group(2) is not None else m.group(3)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
        pos = m.end()
    return Challenge(scheme.lower(), params)


def basic_header(username: str, password: str) -> str:
    raw = f"{username}:{password}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def token_url(challenge: Challenge, scope: str) -> str:
    """Where to GET a token for `scope` (the challenge's own scope wins if it names one)."""
    realm = challenge.params.get("realm")
    if not realm:
        raise ValueError("bearer challenge without a realm: cannot ask for a token")
    query = []
    if challenge.params.get("service"):
        query.append(("service", challenge.params["service"]))
    for s in (challenge.params.get("scope") or scope).split(" "):
        if s:
            query.append(("scope", s))
    sep = "&" if "?" in realm else "?"
    return realm + (sep + urllib.parse.urlencode(query) if query else "")


@dataclass
class Token:
    value: str
    expires_at: float   # time.monotonic() deadline

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.expires_at


def parse_token_response(body: bytes) -> Token:
    """The token server's JSON answer -> Token (expires_in defaults to 60 s, per the spec)."""
    try:
        doc = json.loads(body)
        value = doc.get("token") or doc.get("access_token")
    except (ValueError, AttributeError):
        value, doc = None, {}
    if not value:
        raise ValueError("token server answered without a token")
    try:
        expires_in = max(int(doc.get("expires_in") or 60), 60)
    except (TypeError, ValueError):
        expires_in = 60
    # renew a little early so that a token never expires between check and use
    return Token(value, time.monotonic() + expires_in - 5)


def scope_for(repository: str, push: bool = False) -> str:
    return f"repository:{repository}:{'pull,push' if push else 'pull'}"


# How Docker names Hub in config.json (the legacy v1 index URL is the key `docker login` writes).
_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io")


def credentials_for(config: dict, host: str) -> tuple[str, str] | None:
    """(username, password) for registry `host` ("127.0.0.1:5000", "registry-1.docker.io") from
    a docker config.json document, or None when it has none for that host.

    config.json keeps one entry per registry under "auths", keyed by host or URL:
        {"auths": {"127.0.0.1:5000": {"auth": "<base64 of user:password>"}}}
    An entry may also spell out "username" and "password" (an AuthConfig, the JSON that the
    docker CLI base64url-encodes into the X-Registry-Auth header); a bare AuthConfig, without
    "auths", is accepted as the credentials for any host. Credential helpers ("credsStore")
    are programs: not run here.
    """
    if not isinstance(config, dict):
        raise ValueError("auth config: expected a JSON object")
    if "auths" not in config:
        return _entry_credentials(config)
    auths = config.get("auths") or {}
    hub = host in ("registry-1.docker.io", "index.docker.io", "docker.io")
    for key, entry in auths.items():
        name = urllib.parse.urlsplit(key).netloc if "://" in key else key.split("/")[0]
        if name == host or (hub and key in _HUB_KEYS):
            return _entry_credentials(entry)
    return None


def _entry_credentials(entry) -> tuple[str, str] | None:
    if not isinstance(entry, dict):
        return None
    if entry.get("auth"):
        try:
            user, sep, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise ValueError("auth config: \"auth\" is not base64 of user:password") from None
        if not sep:
            raise ValueError("auth config: \"auth\" is not base64 of user:password")
        return user, password
    if entry.get("username"):
        return entry["username"], entry.get("password", "")
    return None
