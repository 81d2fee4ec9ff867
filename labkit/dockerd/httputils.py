"""The Engine API's HTTP vocabulary: requests, the three kinds of response, versions, filters
(moby `api/server/httputils`).

The router (router.py) decodes a Request, calls the backend, and answers with one of three
kinds of response, because the Engine API has three shapes of answer; the server
(server.py) writes each to the socket:

    Response          an ordinary answer with a body (JSON mostly) or none (204/304)
    StreamResponse    200 whose headers go out AT ONCE and whose body follows in chunks
                      as events happen: pull progress, logs --follow, and wait (the CLI
                      sends /start only after it has the headers of its /wait)
    HijackResponse    "101 UPGRADED", after which the connection is a raw byte pipe owned
                      by a session function: attach (container stdio both ways)

Every path may carry an API version prefix, `/v1.45/containers/json`, or none; list
requests carry `filters` as JSON. Both are decoded here. No I/O.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Protocol

from labkit.dockerd.errors import InvalidParameter, TooLarge

# ONE range of API versions, as dockerd has: /_ping and /version advertise the newest, the
# client then uses min(its own, ours) in every path; a path naming a version outside the
# range is refused, with these same numbers in the message. An unversioned path is served
# as the newest (moby: api.DefaultVersion).
API_VERSION = "1.45"      # the newest this daemon serves
MIN_API_VERSION = "1.24"  # the oldest
MAX_API_VERSION = API_VERSION

JSON = "application/json"

# A JSON body larger than this is refused (413): a container's config is a few kB, and
# containerd refuses gRPC messages over 4 MiB (the spec travels in one). Bodies that are
# data (a tar for PUT /containers/{id}/archive) have server.MAX_BODY as their limit.
MAX_JSON_BODY = 2 * 1024 * 1024


# ---------------------------------------------------------------- requests and responses

@dataclass
class Request:
    method: str
    path: str                      # without the version prefix and the query
    query: dict[str, str]          # last value of each key
    headers: Mapping[str, str]
    body: bytes = b""
    api_version: str | None = None
    params: dict[str, str] = field(default_factory=dict)  # named groups of the route pattern
    repeated: dict[str, list[str]] = field(default_factory=dict)  # every value (`docker build -t a -t b`)

    def json(self) -> object:
        """The body as JSON. Too large (MAX_JSON_BODY), or nested deeper than Python's
        recursion allows: refused with a 4xx, never a 500 from deep inside."""
        if not self.body.strip():
            return None
        if len(self.body) > MAX_JSON_BODY:
            raise TooLarge(f"request body too large: {len(self.body)} bytes of JSON (at most "
                           f"{MAX_JSON_BODY})")
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as e:
            raise InvalidParameter(f"invalid JSON in request body: {e}") from None
        except RecursionError:
            raise InvalidParameter("invalid JSON in request body: nested too deeply") from None

    def bool(self, key: str, default: bool = False) -> bool:
        """moby's BoolValue: anything but "", "0", "no", "false", "none" is true."""
        if key not in self.query:
            return default
        return self.query[key].strip().lower() not in ("", "0", "no", "false", "none")

    def int(self, key: str, default: int | None = None) -> int | None:
        value = self.query.get(key, "")
        if value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise InvalidParameter(f"invalid value for {key}: {value!r} is not an integer") from None


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class StreamResponse:
    status: int
    content_type: str
    chunks: Iterable[bytes]
    headers: dict[str, str] = field(default_factory=dict)


class RawConnection(Protocol):
    """The socket of a hijacked connection."""

    def read(self, n: int = 65536) -> bytes:
        """Up to n bytes; b"" once the client half-closed or went away."""
        ...

    def write(self, data: bytes) -> None: ...


@dataclass
class HijackResponse:
    content_type: str
    session: Callable[[RawConnection], None]
    upgrade: bool = True  # 101 UPGRADED when the client asked for it, else 200 then raw


AnyResponse = Response | StreamResponse | HijackResponse


def json_response(obj: object, status: int = 200) -> Response:
    return Response(status, json.dumps(obj).encode() + b"\n", JSON)


def error_response(status: int, message: str) -> Response:
    return json_response({"message": message}, status)


# ---------------------------------------------------------------- version prefix

_VERSIONED = re.compile(r"^/v(?P<version>[0-9]+\.[0-9]+)(?P<rest>/.*)$")


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split("."))


def split_version(path: str) -> tuple[str | None, str]:
    """("1.45", "/containers/json") from "/v1.45/containers/json"; (None, path) if unversioned."""
    # BEGIN SOLUTION chapter="09" hint="Engine API docs, Versioning: /v1.41/... is served as the route /..., a version outside MIN_API_VERSION..MAX_API_VERSION is a 400 that names the range"
    # TODO: match the prefix with _VERSIONED (no prefix: (None, path) unchanged); refuse a
    # TODO: version below MIN_API_VERSION or above MAX_API_VERSION with an InvalidParameter;
    # TODO: else return the version and the rest of the path
    # HINT: dockerd's words: "client version 1.12 is too old. Minimum supported API version is 1.24, please upgrade your client to a newer version", "client version 1.99 is too new. Maximum supported API version is 1.45"
    # HINT: compare numbers, not strings ("1.9" < "1.24" as numbers): _version_tuple
    m = _VERSIONED.match(path)
    if not m:
        return None, path
    version = m.group("version")
    if _version_tuple(version) < _version_tuple(MIN_API_VERSION):
        raise InvalidParameter(f"client version {version} is too old. Minimum supported API "
                               f"version is {MIN_API_VERSION}, please upgrade your client to a newer version")
    if _version_tuple(version) > _version_tuple(MAX_API_VERSION):
        raise InvalidParameter(f"client version {version} is too new. Maximum supported API "
                               f"version is {MAX_API_VERSION}")
    return version, m.group("rest")
    # END SOLUTION


def version_at_least(version: str | None, minimum: str) -> bool:
    """Whether a request's API version (None: unversioned, i.e. the newest) is >= minimum:
    behaviour that changed with a version (moby's versions.GreaterThanOrEqualTo)."""
    return _version_tuple(version or API_VERSION) >= _version_tuple(minimum)


def parse_filters(raw: str) -> dict[str, list[str]]:
    """The `filters` query value: {"status":["exited"]} or the legacy {"status":{"exited":true}}."""
    if not raw:
        return {}
    try:
        decoded = json.loads(raw)
    except ValueError as e:
        raise InvalidParameter(f"invalid filters: {e}") from None
    if not isinstance(decoded, dict):
        raise InvalidParameter("invalid filters: expected a JSON object")
    out: dict[str, list[str]] = {}
    for key, value in decoded.items():
        if isinstance(value, dict):
            out[key] = [k for k, on in value.items() if on]
        elif isinstance(value, list):
            out[key] = [str(v) for v in value]
        else:
            raise InvalidParameter(f"invalid filter {key!r}: expected a list or an object")
    return out
