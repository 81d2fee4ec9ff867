"""Registry errors, as the distribution spec defines them.

A registry reports failures as JSON, whatever the HTTP status:

    {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown", "detail": {...}}]}

The `code` is the stable, machine-readable part (the spec lists them; the table below gives
each one's usual HTTP status and message, as Docker's registry writes them). Docker prints an
error as "<code in lower case, spaces for underscores>: <message>", e.g.
"manifest unknown: manifest unknown"; RegistryError's str() does the same.

This module is shared by the client (parsing) and labkit-registry (writing).
"""

from __future__ import annotations

import json

# code -> (HTTP status, message): distribution/registry/api/errcode + api/v2/errors.go
ERROR_CODES: dict[str, tuple[int, str]] = {
    "BLOB_UNKNOWN": (404, "blob unknown to registry"),
    "BLOB_UPLOAD_INVALID": (400, "blob upload invalid"),
    "BLOB_UPLOAD_UNKNOWN": (404, "blob upload unknown to registry"),
    "DIGEST_INVALID": (400, "provided digest did not match uploaded content"),
    "MANIFEST_BLOB_UNKNOWN": (400, "blob unknown to registry"),
    "MANIFEST_INVALID": (400, "manifest invalid"),
    "MANIFEST_UNKNOWN": (404, "manifest unknown"),
    "NAME_INVALID": (400, "invalid repository name"),
    "NAME_UNKNOWN": (404, "repository name not known to registry"),
    "SIZE_INVALID": (400, "provided length did not match content length"),
    "TAG_INVALID": (400, "manifest tag did not match URI"),
    "UNAUTHORIZED": (401, "authentication required"),
    "DENIED": (403, "requested access to the resource is denied"),
    "UNSUPPORTED": (405, "the operation is unsupported"),
    "RANGE_INVALID": (416, "invalid content range"),
    "PAGINATION_NUMBER_INVALID": (400, "invalid number of results requested"),
    "TOOMANYREQUESTS": (429, "too many requests"),
    "UNKNOWN": (500, "unknown error"),
}


class RegistryError(Exception):
    """An error answered by a registry: its code, message and HTTP status."""

    def __init__(self, code: str, message: str, status: int | None = None, detail=None):
        self.code = code
        self.message = message
        self.status = status
        self.detail = detail
        super().__init__(f"{code.lower().replace('_', ' ')}: {message}")


class DigestMismatch(RegistryError):
    """Content did not hash to the digest (or size) it was fetched by: never trust it."""

    def __init__(self, expected: str, actual: str, what: str = "content"):
        self.expected = expected
        self.actual = actual
        super().__init__("DIGEST_INVALID", f"{what} digest mismatch: expected {expected}, got {actual}")


class TruncatedBlob(RegistryError):
    """A download ended before the descriptor's size: the connection broke, or the server
    lied about the length. Nothing of it may be kept; pulling again starts over."""

    def __init__(self, digest: str, received: int, size: int):
        self.digest, self.received, self.size = digest, received, size
        super().__init__("SIZE_INVALID", f"download of blob {digest} truncated: received "
                         f"{received} of {size} bytes")


class RegistryUnavailable(ConnectionError):
    """The registry could not be reached at all (refused, timed out, DNS, TLS)."""


def error_body(code: str, message: str | None = None, detail=None) -> bytes:
    """The JSON body a registry sends for one error."""
    entry = {"code": code, "message": message or ERROR_CODES.get(code, (500, code.lower()))[1]}
    if detail is not None:
        entry["detail"] = detail
    return json.dumps({"errors": [entry]}).encode()


def parse_error(status: int, body: bytes, *, default_code: str = "UNKNOWN",
                reason: str = "") -> RegistryError:
    """Turn an error response into a RegistryError (the first error listed wins).

    HEAD responses and proxies give no JSON; then `default_code` (chosen by the caller from
    the request: a 404 on a blob is BLOB_UNKNOWN) and the HTTP status stand in.
    """
    try:
        errors = json.loads(body.decode("utf-8"))["errors"]
        first = errors[0]
        return RegistryError(str(first.get("code", default_code)), str(first.get("message", "")),
                             status, first.get("detail"))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        pass
    if status == 401:
        default_code = "UNAUTHORIZED"
    elif status == 403:
        default_code = "DENIED"
    elif status == 429:
        default_code = "TOOMANYREQUESTS"
    text = body[:200].decode("utf-8", "replace").strip()
    message = text or reason or ERROR_CODES.get(default_code, (0, "unknown error"))[1]
    return RegistryError(default_code, f"{message} (HTTP {status})", status)
