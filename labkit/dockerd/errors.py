"""The daemon's error kinds, each tied to one HTTP status (moby's `errdefs` package).

A backend raises one of these; the router turns it into `{"message": ...}` with the
status below. Keeping the mapping in one place is what lets the docker CLI react
correctly: a 404 on create makes it pull, a 409 is a conflict it reports, and so on
(INTERFACES.md §1.2).
"""

from __future__ import annotations


class DaemonError(Exception):
    """Base class: an error the Engine API reports to the client."""

    status = 500

    @property
    def message(self) -> str:
        return str(self)


class InvalidParameter(DaemonError):
    """400: the request itself is wrong (malformed JSON, a bad query value, a bad reference)."""

    status = 400


class NotFound(DaemonError):
    """404: no such container, image or route."""

    status = 404


class Forbidden(DaemonError):
    """403: allowed in general, not in this state (removing a network still in use)."""

    status = 403


class Conflict(DaemonError):
    """409: the request clashes with the current state (name in use, container running...)."""

    status = 409


class NotModified(DaemonError):
    """304: nothing to do (start of a running container, stop of a stopped one)."""

    status = 304


class SystemError_(DaemonError):
    """500: the daemon or a layer below it failed."""

    status = 500


class NotImplemented_(DaemonError):
    """A feature this configuration lacks (reading the logs of the none log driver)."""

    status = 501


class TooLarge(DaemonError):
    """A request body over the daemon's limit."""

    status = 413
