"""The routes that hand a connection to a container's stdio: attach, logs and exec
(moby's api/server/router/container: postContainersAttach, getContainersLogs, exec.go).

Framing. Without a TTY, stdout and stderr share one connection as frames (labkit.stdcopy);
with one, the bytes go raw (a pty has one output). For an exec, the TTY that decides is the
one the client names at exec START (`{"Detach":false,"Tty":...}`), not at create: docker-py
demultiplexes according to what it asked for at start. The Content-Type says which:
`application/vnd.docker.multiplexed-stream` for frames — but only from API 1.42, before
which Docker called every such stream `application/vnd.docker.raw-stream` (the frames
were the same; a client told them apart by the container's Config.Tty).

Detach keys (labkit.detachkeys). With a TTY, stdin is keystrokes: the detach sequence
(`detachKeys`, ctrl-p ctrl-q by default) ends this client's attach, and the container keeps
running; so does the client closing its side. Without a TTY, stdin is data, copied as it
is, and its end is the container's end of input (if the container has StdinOnce).
"""

from __future__ import annotations

import threading
from typing import Iterator

from labkit import detachkeys, stdcopy
from labkit.dockerd import jsonlog
from labkit.dockerd.backend import AttachStream, Backend
from labkit.dockerd.errors import InvalidParameter
from labkit.dockerd.httputils import (JSON, AnyResponse, HijackResponse, RawConnection,
                                      Request, Response, StreamResponse, json_response,
                                      version_at_least)


def content_type(req: Request, tty: bool) -> str:
    """The media type of an attach/exec/logs stream at the request's API version."""
    if not tty and version_at_least(req.api_version, "1.42"):
        return stdcopy.MULTIPLEXED
    return stdcopy.RAW


def _detach_keys(raw: object) -> bytes:
    if not isinstance(raw, str):
        raise InvalidParameter("invalid DetachKeys: expected a string such as \"ctrl-p,ctrl-q\"")
    try:
        return detachkeys.parse(raw)
    except ValueError as e:
        raise InvalidParameter(str(e)) from None


class StdioRoutes:
    """Attach, logs and exec handlers (mixed into router.Router)."""

    backend: Backend

    def container_attach(self, req: Request) -> HijackResponse:
        keys = _detach_keys(req.query.get("detachKeys", ""))
        want_stdin = req.bool("stdin")
        attach = self.backend.container_attach(
            req.params["name"], stdin=want_stdin, stdout=req.bool("stdout"),
            stderr=req.bool("stderr"), logs=req.bool("logs"), stream=req.bool("stream"))
        return _hijack(req, attach, stdin=want_stdin, tty=attach.tty, keys=keys)

    def container_logs(self, req: Request) -> StreamResponse:
        stdout, stderr = req.bool("stdout"), req.bool("stderr")
        if not (stdout or stderr):
            raise InvalidParameter("Bad parameters: you must choose at least one stream")
        tail_raw = req.query.get("tail", "all")
        if tail_raw in ("", "all"):
            tail = None
        else:
            try:
                tail = int(tail_raw)
            except ValueError:
                raise InvalidParameter(f"invalid value for tail: {tail_raw!r} is neither "
                                       "\"all\" nor an integer") from None
        since, until = unix_time(req, "since"), unix_time(req, "until")
        logs = self.backend.container_logs(req.params["name"], req.bool("follow"), stdout,
                                           stderr, tail, since, until)
        timestamps = req.bool("timestamps")

        def body() -> Iterator[bytes]:
            for entry in logs.entries:
                yield from jsonlog.iter_frames([entry], logs.tty, timestamps)

        return StreamResponse(200, content_type(req, logs.tty), body())

    # ---- exec

    def exec_create(self, req: Request) -> Response:
        config = req.json()
        if not isinstance(config, dict):
            raise InvalidParameter("invalid exec config: expected a JSON object")
        _detach_keys(config.get("DetachKeys") or "")
        exec_id = self.backend.exec_create(req.params["name"], config)
        return json_response({"Id": exec_id}, 201)

    def exec_start(self, req: Request) -> AnyResponse:
        body = req.json() or {}
        if not isinstance(body, dict):
            raise InvalidParameter("invalid exec start config: expected a JSON object")
        for key in ("Detach", "Tty"):
            if not isinstance(body.get(key, False), bool):
                raise InvalidParameter(f"invalid {key}: expected a boolean")
        detach = body.get("Detach", False)
        stream = self.backend.exec_start(req.params["id"], detach)
        if detach or stream is None:
            return Response(200, b"", JSON)
        keys = _detach_keys(getattr(stream, "detach_keys", "") or "")
        return _hijack(req, stream, stdin=True, tty=body.get("Tty", False), keys=keys)

    def exec_resize(self, req: Request) -> Response:
        self.backend.exec_resize(req.params["id"], req.int("h", 0), req.int("w", 0))
        return Response(200)

    def exec_inspect(self, req: Request) -> Response:
        return json_response(self.backend.exec_inspect(req.params["id"]))


def _hijack(req: Request, attach: AttachStream, stdin: bool, tty: bool,
            keys: bytes) -> HijackResponse:
    """Hand the connection to a stdio session: output out (framed unless `tty`), stdin in
    if the stream takes it (moby reads the client only then: without -i the CLI half-closes
    its side right after the 101, and that EOF means nothing)."""
    stdin = stdin and getattr(attach, "stdin_attached", True)

    def session(conn: RawConnection) -> None:
        if stdin:
            threading.Thread(target=_pump_stdin, args=(conn, attach, tty, keys),
                             daemon=True, name="attach-stdin").start()
        # Output ends the session, or, with a TTY, the client detaching or closing.
        try:
            for stream, data in attach.output():
                conn.write(data if tty else stdcopy.encode_frame(stream, data))
        except OSError:
            pass  # the client went away
        finally:
            attach.close()

    upgrade = "upgrade" in req.headers.get("Connection", "").lower()
    return HijackResponse(content_type(req, tty), session, upgrade)


def _pump_stdin(conn: RawConnection, attach, tty: bool, keys: bytes) -> None:
    """Copy the client's bytes to the container's stdin (see the module docstring).

    Without a TTY the client's half-close is the container's EOF. With one, the detach
    keys, or the client closing, end this client's session: its output stops
    (`attach.close()` ends `output()`), and the container and its stdin carry on."""
    matcher = detachkeys.EscapeMatcher(keys) if tty else None
    try:
        while data := conn.read():
            if matcher is not None:
                data, detached = matcher.feed(data)
                if data:
                    attach.write_stdin(data)
                if detached:
                    break
            else:
                attach.write_stdin(data)
    except OSError:
        pass
    finally:
        if tty:
            attach.close()
        else:
            attach.close_stdin()


def unix_time(req: Request, key: str) -> float:
    """`since`/`until` are unix seconds, possibly with a fraction ("1700000000.123")."""
    raw = req.query.get(key, "")
    if raw == "":
        return 0.0
    try:
        return float(raw)
    except ValueError:
        raise InvalidParameter(f"invalid value for {key}: {raw!r} is not a unix timestamp") from None
