"""The Engine API's backend interface: what the router asks of a daemon.

moby splits the API server from the daemon: the router decodes HTTP, calls a backend
method, encodes the answer. This Protocol is that seam. `labkit.dockerd.daemon.Daemon`
implements it on top of labkit-containerd; the unit tests implement it with a small
in-memory fake, so every route can be tested without containers.

Glossary
--------
reference   how a client names a container: the full 64-hex id, a unique prefix of it,
            or the name with or without the leading "/".
condition   what a wait waits for: "not-running" (answer at once if not running),
            "next-exit" (the next exit), "removed" (after the container is deleted).

A worked lifecycle (what `docker run --rm busybox echo hi` makes the router call)
----------------------------------------------------------------------------------
    container_create(None, {"Image": "busybox", "Cmd": ["echo","hi"], "HostConfig": {...}})
        -> NotFound("No such image: busybox:latest")          # the CLI then pulls:
    image_pull("docker.io/library/busybox", "latest")        -> progress messages
    container_create(None, {...})                            -> CreateResult(id, [])
    container_attach(id, stdin=False, stdout=True, stderr=True) -> an AttachStream
    container_wait(id, "removed")                            -> a Waiter (registered now)
    container_start(id)                                      # output flows to the attach
    waiter()                                                 -> WaitResult(0, None)
Every method raises a `labkit.dockerd.errors.DaemonError` subclass for failures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Protocol

from labkit.dockerd.jsonlog import LogEntry


@dataclass(frozen=True)
class CreateResult:
    id: str
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class WaitResult:
    status_code: int
    error: str | None = None

    def to_json(self) -> dict:
        return {"StatusCode": self.status_code,
                "Error": {"Message": self.error} if self.error else None}


# A waiter blocks until its condition holds, then returns the result. The backend creates
# it (and registers interest) when container_wait is called, so an exit that happens before
# the waiter is called is not lost.
Waiter = Callable[[], WaitResult]


class AttachStream(Protocol):
    """One client's view of a container's stdio."""

    tty: bool  # raw bytes (True) or multiplexed frames (False)
    stdin_attached: bool  # the client's bytes reach the container (attach stdin=1, OpenStdin)

    def output(self) -> Iterator[tuple[int, bytes]]:
        """(stream, bytes) pairs as the container writes them; ends at EOF of its output."""
        ...

    def write_stdin(self, data: bytes) -> None: ...

    def close_stdin(self) -> None:
        """The client half-closed: the container's stdin sees EOF (output keeps flowing)."""
        ...

    def close(self) -> None:
        """The client is gone: stop delivering output to it."""
        ...


@dataclass(frozen=True)
class Logs:
    tty: bool
    entries: Iterator[LogEntry]


class Backend(Protocol):
    # ---- system
    def version(self) -> dict: ...
    def info(self) -> dict: ...
    def events(self, since: float | None, until: float,
               filters: dict[str, list[str]]) -> Iterator[dict]:
        """Past events from `since` (None: none), then live ones until `until` (0: forever)."""
        ...

    # ---- containers
    def container_create(self, name: str | None, config: dict) -> CreateResult: ...
    def container_start(self, ref: str) -> None: ...
    def container_stop(self, ref: str, timeout: int | None, signal: str | None) -> None: ...
    def container_kill(self, ref: str, signal: str | None) -> None: ...
    def container_restart(self, ref: str, timeout: int | None, signal: str | None) -> None:
        """Stop (a stopped container is fine), then start."""
        ...
    def container_remove(self, ref: str, force: bool, volumes: bool) -> None: ...
    def container_wait(self, ref: str, condition: str) -> Waiter: ...
    def container_attach(self, ref: str, stdin: bool, stdout: bool, stderr: bool,
                         logs: bool, stream: bool) -> AttachStream: ...
    def container_logs(self, ref: str, follow: bool, stdout: bool, stderr: bool,
                       tail: int | None, since: float, until: float) -> Logs: ...
    def container_resize(self, ref: str, height: int, width: int) -> None: ...
    def container_inspect(self, ref: str) -> dict: ...
    def container_top(self, ref: str) -> dict: ...
    def container_rename(self, ref: str, new_name: str) -> None: ...
    def container_archive_stat(self, ref: str, path: str) -> dict:
        """The stat of a path in the container (docker cp's HEAD)."""
        ...
    def container_archive_get(self, ref: str, path: str) -> tuple[dict, Iterator[bytes]]:
        """Its stat and a tar of it."""
        ...
    def container_changes(self, ref: str) -> list[dict]:
        """`docker diff`: [{"Path", "Kind": 0 changed, 1 added, 2 deleted}]."""
        ...
    def container_export(self, ref: str) -> Iterator[bytes]:
        """`docker export`: a tar of the container's filesystem."""
        ...
    def container_archive_put(self, ref: str, path: str, body, copy_uid_gid: bool) -> None:
        """Unpack the tar `body` (a binary file) into the directory `path`."""
        ...
    def container_list(self, all: bool, filters: dict[str, list[str]], limit: int) -> list[dict]: ...
    def container_prune(self, filters: dict[str, list[str]]) -> list[str]:
        """Remove every stopped container (matching `filters`); the removed ids."""
        ...

    # ---- exec (`docker exec`)
    def exec_create(self, ref: str, config: dict) -> str: ...
    def exec_start(self, exec_id: str, detach: bool) -> AttachStream | None:
        """Detached: None once started. Attached: the stream the connection is handed to."""
        ...
    def exec_resize(self, exec_id: str, height: int, width: int) -> None: ...
    def exec_inspect(self, exec_id: str) -> dict: ...

    # ---- networks
    def network_list(self, filters: dict[str, list[str]] | None = None) -> list[dict]: ...
    def network_inspect(self, name: str) -> dict: ...
    def network_create(self, body: dict) -> dict:
        """POST /networks/create's body -> {"Id", "Warning"}."""
        ...
    def network_remove(self, name: str) -> None: ...
    def network_connect(self, name: str, container: str, endpoint_config: dict | None) -> None: ...
    def network_disconnect(self, name: str, container: str, force: bool) -> None: ...
    def network_prune(self) -> list[str]: ...

    # ---- volumes
    def volume_create(self, name: str | None, driver: str, labels: dict | None,
                      options: dict | None) -> dict: ...
    def volume_list(self) -> list[dict]: ...
    def volume_inspect(self, name: str) -> dict: ...
    def volume_remove(self, name: str, force: bool) -> None: ...
    def volume_users(self, name: str) -> list[str]:
        """The ids of the containers that mount volume `name`."""
        ...
    def volume_prune(self, filters: dict[str, list[str]]) -> tuple[list[str], int]:
        """Remove unused anonymous volumes (all unused with all=true): (names, bytes)."""
        ...

    # ---- images
    def image_pull(self, from_image: str, tag: str, platform: str) -> Iterator[dict]:
        """Validate now (raise before any message), then yield JSON progress messages."""
        ...

    def image_list(self, filters: dict[str, list[str]]) -> list[dict]: ...
    def image_inspect(self, name: str) -> dict: ...
    def image_history(self, name: str) -> list[dict]: ...
    def image_remove(self, name: str, force: bool) -> list[dict]: ...
    def image_save(self, names: list[str]) -> Iterator[bytes]:
        """`docker save`: a tar of the images (checked before the first byte)."""
        ...
    def image_tag(self, source: str, repo: str, tag: str) -> None:
        """`docker tag SOURCE REPO:TAG`."""
        ...
