"""The Engine API route table and its thin handlers (moby `api/server/router`).

Theory of operation
-------------------
A request arrives as (method, path, query, headers, body). The path may carry an API
version prefix, `/v1.45/containers/json`, or none, `/containers/json` (the docker CLI
uses none for `/_ping`, docker-py for its first `/version`). `Router.dispatch` strips
and checks the version, then walks ROUTES — (method, regular expression, handler) —
and calls the first handler whose pattern matches the rest of the path.

A handler only decodes (query values, JSON body), calls ONE backend method, and encodes
the result as one of the three kinds of response of httputils.py (an ordinary Response, a
StreamResponse whose headers go out at once, or a HijackResponse: attach).

Errors: a backend raises a `DaemonError`; dispatch turns it into `{"message": ...}` with
the error's status and `Content-Type: application/json` (exactly that: the CLI parses the
message only then). Anything unexpected becomes a 500 with the exception's text — the
daemon answers, it never crashes.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from typing import Callable, Iterator

from labkit import stdcopy
from labkit.dockerd import jsonlog, jsonmessage
from labkit.dockerd.routes_images import ImageMakingRoutes
from labkit.dockerd.backend import AttachStream, Backend
from labkit.dockerd.errors import DaemonError, InvalidParameter
from labkit.dockerd.httputils import (API_VERSION, JSON, AnyResponse, HijackResponse,
                                      RawConnection, Request, Response, StreamResponse,
                                      error_response, json_response, parse_filters,
                                      split_version)
from labkit.dockerd.routes_networks import NetworkRoutes

log = logging.getLogger("labkit.dockerd")


# ---------------------------------------------------------------- the router

Handler = Callable[[Request], AnyResponse]

_CONTAINER_NAME = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


class Router(NetworkRoutes, ImageMakingRoutes):
    """Maps requests to handlers; every handler calls one method of `backend`."""

    def __init__(self, backend: Backend, server_version: str = "0.1.0-labkit") -> None:
        self.backend = backend
        self.server_version = server_version
        # The route table. Patterns match the path after the version prefix; a name may
        # hold slashes only for images (127.0.0.1:5000/hello-world), not for containers.
        C = r"/containers/(?P<name>[^/]+)"
        I = r"/images/(?P<name>.+?)"
        E = r"/exec/(?P<id>[^/]+)"
        V = r"/volumes/(?P<name>[^/]+)"
        N = r"/networks/(?P<name>[^/]+)"
        self.routes: list[tuple[str, re.Pattern, Handler]] = [
            (m, re.compile(f"^{p}$"), h) for m, p, h in [
                ("GET", r"/_ping", self.ping),
                ("HEAD", r"/_ping", self.ping),
                ("GET", r"/version", self.version),
                ("GET", r"/info", self.info),
                ("GET", r"/events", self.events),
                ("POST", r"/containers/create", self.container_create),
                ("GET", r"/containers/json", self.container_list),
                ("POST", r"/containers/prune", self.container_prune),
                ("GET", C + r"/json", self.container_inspect),
                ("GET", C + r"/top", self.container_top),
                ("POST", C + r"/start", self.container_start),
                ("POST", C + r"/stop", self.container_stop),
                ("POST", C + r"/restart", self.container_restart),
                ("POST", C + r"/kill", self.container_kill),
                ("POST", C + r"/wait", self.container_wait),
                ("POST", C + r"/attach", self.container_attach),
                ("GET", C + r"/logs", self.container_logs),
                ("POST", C + r"/resize", self.container_resize),
                ("DELETE", C, self.container_remove),
                ("POST", C + r"/exec", self.exec_create),
                ("POST", E + r"/start", self.exec_start),
                ("POST", E + r"/resize", self.exec_resize),
                ("GET", E + r"/json", self.exec_inspect),
                ("GET", r"/networks", self.network_list),
                ("POST", r"/networks/create", self.network_create),
                ("POST", r"/networks/prune", self.network_prune),
                ("GET", N, self.network_inspect),
                ("DELETE", N, self.network_remove),
                ("POST", N + r"/connect", self.network_connect),
                ("POST", N + r"/disconnect", self.network_disconnect),
                ("POST", r"/volumes/create", self.volume_create),
                ("GET", r"/volumes", self.volume_list),
                ("GET", V, self.volume_inspect),
                ("DELETE", V, self.volume_remove),
                ("POST", r"/images/create", self.image_create),
                ("GET", r"/images/json", self.image_list),
                ("GET", I + r"/json", self.image_inspect),
                ("GET", I + r"/history", self.image_history),
                ("DELETE", I, self.image_remove),
                ("POST", r"/images/prune", self.image_prune),
                ("POST", r"/build", self.image_build),
                ("POST", r"/build/prune", self.build_prune),
                ("POST", r"/commit", self.container_commit),
                ("POST", I + r"/push", self.image_push),
                ("GET", r"/system/df", self.system_df),
            ]
        ]

    # ---- dispatch

    def common_headers(self) -> dict[str, str]:
        """Headers every answer carries (INTERFACES.md §1.1)."""
        return {"Api-Version": API_VERSION, "Docker-Experimental": "false", "Ostype": "linux"}

    def dispatch(self, req: Request) -> AnyResponse:
        try:
            req.api_version, req.path = split_version(req.path)
            for method, pattern, handler in self.routes:
                m = pattern.match(req.path)
                if m and method == req.method:
                    req.params = m.groupdict()
                    return handler(req)
            return error_response(404, "page not found")
        except DaemonError as e:
            if e.status == 304:
                return Response(304)
            return error_response(e.status, e.message)
        except Exception as e:  # a bug or a lower layer's surprise: answer, don't crash
            log.exception("internal error handling %s %s", req.method, req.path)
            return error_response(500, f"internal error: {e}")

    # ---- system

    def ping(self, req: Request) -> Response:
        headers = {"Builder-Version": "1", "Swarm": "inactive", "Pragma": "no-cache",
                   "Cache-Control": "no-cache, no-store, must-revalidate"}
        body = b"" if req.method == "HEAD" else b"OK"
        return Response(200, body, "text/plain; charset=utf-8", headers)

    def version(self, req: Request) -> Response:
        return json_response(self.backend.version())

    def info(self, req: Request) -> Response:
        return json_response(self.backend.info())

    def events(self, req: Request) -> StreamResponse:
        # since=0 means "from the start" (docker-py sends it), so absence is None, not 0
        since = _unix_time(req, "since") if req.query.get("since") else None
        events = self.backend.events(since, _unix_time(req, "until"),
                                     parse_filters(req.query.get("filters", "")))

        def body() -> Iterator[bytes]:
            for event in events:
                yield json.dumps(event).encode() + b"\n"

        return StreamResponse(200, JSON, body())

    # ---- containers

    def container_create(self, req: Request) -> Response:
        name = req.query.get("name") or None
        if name is not None and not _CONTAINER_NAME.match(name):
            raise InvalidParameter(f"Invalid container name ({name}), only "
                                   "[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        config = req.json()
        if config is None:
            raise InvalidParameter("config cannot be empty in order to create a container")
        if not isinstance(config, dict):
            raise InvalidParameter("invalid container config: expected a JSON object")
        result = self.backend.container_create(name.lstrip("/") if name else None, config)
        return json_response({"Id": result.id, "Warnings": result.warnings}, 201)

    def container_list(self, req: Request) -> Response:
        filters = parse_filters(req.query.get("filters", ""))
        limit = req.int("limit", -1)
        return json_response(self.backend.container_list(req.bool("all"), filters, limit))

    def container_prune(self, req: Request) -> Response:
        removed = self.backend.container_prune(parse_filters(req.query.get("filters", "")))
        return json_response({"ContainersDeleted": removed or None, "SpaceReclaimed": 0})

    def container_inspect(self, req: Request) -> Response:
        return json_response(self.backend.container_inspect(req.params["name"]))

    def container_top(self, req: Request) -> Response:
        return json_response(self.backend.container_top(req.params["name"]))

    def container_start(self, req: Request) -> Response:
        self.backend.container_start(req.params["name"])
        return Response(204)

    def container_stop(self, req: Request) -> Response:
        self.backend.container_stop(req.params["name"], req.int("t"), req.query.get("signal"))
        return Response(204)

    def container_restart(self, req: Request) -> Response:
        self.backend.container_restart(req.params["name"], req.int("t"), req.query.get("signal"))
        return Response(204)

    def container_kill(self, req: Request) -> Response:
        self.backend.container_kill(req.params["name"], req.query.get("signal") or None)
        return Response(204)

    def container_remove(self, req: Request) -> Response:
        self.backend.container_remove(req.params["name"], req.bool("force"), req.bool("v"))
        return Response(204)

    def container_resize(self, req: Request) -> Response:
        h, w = req.int("h", 0), req.int("w", 0)
        self.backend.container_resize(req.params["name"], h, w)
        return Response(200)

    def container_wait(self, req: Request) -> StreamResponse:
        condition = req.query.get("condition") or "not-running"
        if condition not in ("not-running", "next-exit", "removed"):
            raise InvalidParameter(f"invalid condition: {condition!r} (want not-running, "
                                   "next-exit or removed)")
        # Registered NOW, before the headers go out: the client starts the container only
        # after it has them, so the exit cannot slip by unseen.
        waiter = self.backend.container_wait(req.params["name"], condition)

        def body() -> Iterator[bytes]:
            yield json.dumps(waiter().to_json()).encode() + b"\n"

        return StreamResponse(200, JSON, body())

    def container_attach(self, req: Request) -> HijackResponse:
        want_stdin = req.bool("stdin")
        attach = self.backend.container_attach(
            req.params["name"], stdin=want_stdin, stdout=req.bool("stdout"),
            stderr=req.bool("stderr"), logs=req.bool("logs"), stream=req.bool("stream"))
        return self._hijack(req, attach, stdin=want_stdin)

    def _hijack(self, req: Request, attach: AttachStream, stdin: bool) -> HijackResponse:
        """Hand the connection to a stdio session: output out (framed unless TTY), stdin in."""
        def session(conn: RawConnection) -> None:
            if stdin:
                threading.Thread(target=_pump_stdin, args=(conn, attach), daemon=True,
                                 name="attach-stdin").start()
            # Only output ends the session. Without -i the CLI half-closes its side right
            # after the 101; that EOF must not end the output direction.
            try:
                for stream, data in attach.output():
                    conn.write(data if attach.tty else stdcopy.encode_frame(stream, data))
            except OSError:
                pass  # the client went away
            finally:
                attach.close()

        upgrade = "upgrade" in req.headers.get("Connection", "").lower()
        return HijackResponse(stdcopy.RAW if attach.tty else stdcopy.MULTIPLEXED, session, upgrade)

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
        since, until = _unix_time(req, "since"), _unix_time(req, "until")
        logs = self.backend.container_logs(req.params["name"], req.bool("follow"), stdout,
                                           stderr, tail, since, until)
        timestamps = req.bool("timestamps")

        def body() -> Iterator[bytes]:
            for entry in logs.entries:
                yield from jsonlog.iter_frames([entry], logs.tty, timestamps)

        return StreamResponse(200, stdcopy.RAW if logs.tty else stdcopy.MULTIPLEXED, body())

    # ---- exec

    def exec_create(self, req: Request) -> Response:
        config = req.json()
        if not isinstance(config, dict):
            raise InvalidParameter("invalid exec config: expected a JSON object")
        exec_id = self.backend.exec_create(req.params["name"], config)
        return json_response({"Id": exec_id}, 201)

    def exec_start(self, req: Request) -> AnyResponse:
        body = req.json() or {}
        if not isinstance(body, dict):
            raise InvalidParameter("invalid exec start config: expected a JSON object")
        detach = bool(body.get("Detach"))
        stream = self.backend.exec_start(req.params["id"], detach)
        if detach or stream is None:
            return Response(200, b"", JSON)
        return self._hijack(req, stream, stdin=True)

    def exec_resize(self, req: Request) -> Response:
        self.backend.exec_resize(req.params["id"], req.int("h", 0), req.int("w", 0))
        return Response(200)

    def exec_inspect(self, req: Request) -> Response:
        return json_response(self.backend.exec_inspect(req.params["id"]))

    # ---- volumes

    def volume_create(self, req: Request) -> Response:
        body = req.json() or {}
        if not isinstance(body, dict):
            raise InvalidParameter("invalid volume config: expected a JSON object")
        name = body.get("Name") or None
        if name is not None and not isinstance(name, str):
            raise InvalidParameter("invalid volume Name: expected a string")
        volume = self.backend.volume_create(name, body.get("Driver") or "local",
                                            body.get("Labels"), body.get("DriverOpts"))
        return json_response(volume, 201)

    def volume_list(self, req: Request) -> Response:
        return json_response({"Volumes": self.backend.volume_list(), "Warnings": []})

    def volume_inspect(self, req: Request) -> Response:
        return json_response(self.backend.volume_inspect(req.params["name"]))

    def volume_remove(self, req: Request) -> Response:
        self.backend.volume_remove(req.params["name"], req.bool("force"))
        return Response(204)

    # ---- images

    def image_create(self, req: Request) -> StreamResponse:
        if req.query.get("fromSrc"):
            raise InvalidParameter("importing an image (fromSrc) is not supported by labkit-dockerd")
        from_image = req.query.get("fromImage", "")
        if not from_image:
            raise InvalidParameter("missing parameter: fromImage")
        messages = self.backend.image_pull(from_image, req.query.get("tag", ""),
                                           req.query.get("platform", ""))
        return StreamResponse(200, JSON, jsonmessage.stream(messages, f"pull of {from_image}"))

    def image_list(self, req: Request) -> Response:
        return json_response(self.backend.image_list(parse_filters(req.query.get("filters", "")),
                                                     all_=req.bool("all")))

    def image_inspect(self, req: Request) -> Response:
        return json_response(self.backend.image_inspect(req.params["name"]))

    def image_history(self, req: Request) -> Response:
        return json_response(self.backend.image_history(req.params["name"]))

    def image_remove(self, req: Request) -> Response:
        return json_response(self.backend.image_remove(req.params["name"], req.bool("force")))

    def image_prune(self, req: Request) -> Response:
        return json_response(self.backend.image_prune(parse_filters(req.query.get("filters", ""))))

    def system_df(self, req: Request) -> Response:
        return json_response(self.backend.system_df())


def _pump_stdin(conn: RawConnection, attach) -> None:
    """Copy the client's bytes to the container's stdin; its half-close closes stdin."""
    try:
        while data := conn.read():
            attach.write_stdin(data)
    except OSError:
        pass
    finally:
        attach.close_stdin()


def _unix_time(req: Request, key: str) -> float:
    """`since`/`until` are unix seconds, possibly with a fraction ("1700000000.123")."""
    raw = req.query.get(key, "")
    if raw == "":
        return 0.0
    try:
        return float(raw)
    except ValueError:
        raise InvalidParameter(f"invalid value for {key}: {raw!r} is not a unix timestamp") from None

