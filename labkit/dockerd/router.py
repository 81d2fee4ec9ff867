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
from typing import Callable, Iterator

from labkit.dockerd import jsonmessage
from labkit.dockerd.backend import Backend
from labkit.dockerd.routes_images import ImageMakingRoutes
from labkit.dockerd.errors import DaemonError, InvalidParameter, NotFound
from labkit.dockerd.events import check_filters
from labkit.dockerd.httputils import (API_VERSION, JSON, AnyResponse, Request, Response,
                                      StreamResponse, error_response, json_response,
                                      parse_filters, split_version)
from labkit.dockerd.routes_archive import ArchiveRoutes
from labkit.dockerd.routes_networks import NetworkRoutes
from labkit.dockerd.routes_stdio import StdioRoutes, unix_time
from labkit.dockerd.routes_volumes import VolumeRoutes

log = logging.getLogger("labkit.dockerd")


# ---------------------------------------------------------------- the router

Handler = Callable[[Request], AnyResponse]

_CONTAINER_NAME = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


class Router(StdioRoutes, VolumeRoutes, ArchiveRoutes, NetworkRoutes, ImageMakingRoutes):
    """Maps requests to handlers; every handler calls one method of `backend`."""

    def __init__(self, backend: Backend, server_version: str = "0.1.0-labkit") -> None:
        self.backend = backend
        self.server_version = server_version
        self.routes: list[tuple[str, re.Pattern, Handler]] = [
            (m, re.compile(f"^{p}$"), h) for m, p, h in self._container_routes()
            + self._other_routes()]

    # The route table. Patterns match the path after the version prefix; a name may hold
    # slashes only for images (127.0.0.1:5000/hello-world), not for containers.

    def _container_routes(self) -> list[tuple[str, str, Handler]]:
        C = r"/containers/(?P<name>[^/]+)"
        E = r"/exec/(?P<id>[^/]+)"
        return [
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
            ("GET", C + r"/stats", self.container_stats),
            ("POST", C + r"/update", self.container_update),
            ("POST", C + r"/start", self.container_start),
            ("POST", C + r"/stop", self.container_stop),
            ("POST", C + r"/restart", self.container_restart),
            ("POST", C + r"/kill", self.container_kill),
            ("POST", C + r"/pause", self.container_pause),
            ("POST", C + r"/unpause", self.container_unpause),
            ("POST", C + r"/wait", self.container_wait),
            ("POST", C + r"/attach", self.container_attach),
            ("GET", C + r"/logs", self.container_logs),
            ("POST", C + r"/resize", self.container_resize),
            ("POST", C + r"/rename", self.container_rename),
            ("GET", C + r"/changes", self.container_changes),
            ("GET", C + r"/export", self.container_export),
            ("HEAD", C + r"/archive", self.archive_head),
            ("GET", C + r"/archive", self.archive_get),
            ("PUT", C + r"/archive", self.archive_put),
            ("DELETE", C, self.container_remove),
            ("POST", C + r"/exec", self.exec_create),
            ("POST", E + r"/start", self.exec_start),
            ("POST", E + r"/resize", self.exec_resize),
            ("GET", E + r"/json", self.exec_inspect),
        ]

    def _other_routes(self) -> list[tuple[str, str, Handler]]:
        I = r"/images/(?P<name>.+?)"
        V = r"/volumes/(?P<name>[^/]+)"
        N = r"/networks/(?P<name>[^/]+)"
        return [
            ("GET", r"/networks", self.network_list),
            ("POST", r"/networks/create", self.network_create),
            ("POST", r"/networks/prune", self.network_prune),
            ("GET", N, self.network_inspect),
            ("DELETE", N, self.network_remove),
            ("POST", N + r"/connect", self.network_connect),
            ("POST", N + r"/disconnect", self.network_disconnect),
            ("POST", r"/volumes/create", self.volume_create),
            ("POST", r"/volumes/prune", self.volume_prune),
            ("GET", r"/volumes", self.volume_list),
            ("GET", V, self.volume_inspect),
            ("DELETE", V, self.volume_remove),
            ("POST", r"/images/create", self.image_create),
            ("POST", r"/images/prune", self.image_prune),
            ("POST", r"/build", self.image_build),
            ("POST", r"/build/prune", self.build_prune),
            ("POST", r"/commit", self.container_commit),
            ("POST", I + r"/push", self.image_push),
            ("GET", r"/system/df", self.system_df),
            ("GET", r"/images/json", self.image_list),
            ("GET", I + r"/json", self.image_inspect),
            ("GET", I + r"/history", self.image_history),
            ("DELETE", I, self.image_remove),
            ("POST", I + r"/tag", self.image_tag),
            ("GET", r"/images/get", self.images_save),
            ("POST", r"/images/load", self.images_load),
            ("GET", I + r"/get", self.image_save),
        ]

    # ---- dispatch

    def common_headers(self) -> dict[str, str]:
        """Headers every answer carries (INTERFACES.md §1.1)."""
        return {"Api-Version": API_VERSION, "Docker-Experimental": "false", "Ostype": "linux"}

    def dispatch(self, req: Request) -> AnyResponse:
        try:
            # BEGIN SOLUTION chapter="09" hint="moby's api/server/router: the first route whose method AND pattern match wins; its named groups are the handler's parameters"
            # TODO: strip the version prefix (split_version) into req.api_version and req.path;
            # TODO: find the first (method, pattern, handler) of self.routes whose method is
            # TODO: req.method and whose pattern matches req.path, set req.params to the match's
            # TODO: named groups and return handler(req); no such route: a 404 "page not found"
            # HINT: error_response(404, "page not found") is the JSON {"message": ...} the CLI prints
            # HINT: pattern.match(req.path).groupdict() -> {"name": "<id or name>"}
            req.api_version, req.path = split_version(req.path)
            for method, pattern, handler in self.routes:
                m = pattern.match(req.path)
                if m and method == req.method:
                    req.params = m.groupdict()
                    return handler(req)
            return error_response(404, "page not found")
            # END SOLUTION
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
        since = unix_time(req, "since") if req.query.get("since") else None
        filters = parse_filters(req.query.get("filters", ""))
        check_filters(filters)
        events = self.backend.events(since, unix_time(req, "until"), filters)

        def body() -> Iterator[bytes]:
            for event in events:
                yield json.dumps(event).encode() + b"\n"

        return StreamResponse(200, JSON, body())

    # ---- containers

    def container_create(self, req: Request) -> Response:
        # BEGIN SOLUTION chapter="09" hint="Engine API docs, POST /containers/create: 201 with {Id, Warnings}; 400 for a bad name or body"
        # TODO: read the optional ?name= and refuse one that _CONTAINER_NAME does not match;
        # TODO: read the JSON body (req.json()) and refuse an empty one or one that is not an
        # TODO: object; call self.backend.container_create(name without a leading "/", config)
        # TODO: and answer 201 with {"Id": result.id, "Warnings": result.warnings}
        # HINT: refusals are InvalidParameter (400): "Invalid container name (NAME), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", "config cannot be empty in order to create a container"
        # HINT: json_response(obj, status)
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
        # END SOLUTION

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

    def container_stats(self, req: Request) -> AnyResponse:
        """GET /containers/{id}/stats?stream=1|0&one-shot=1 (stats.py): one JSON sample a
        second while streaming, else one sample and the end."""
        stream = req.bool("stream", True)
        samples = self.backend.container_stats(req.params["name"], stream,
                                               req.bool("one-shot"))
        if not stream:
            sample = next(iter(samples), None)
            if sample is None:                  # removed while we looked
                raise NotFound(f"No such container: {req.params['name']}")
            return json_response(sample)

        def body() -> Iterator[bytes]:
            for sample in samples:
                yield json.dumps(sample).encode() + b"\n"
        return StreamResponse(200, JSON, body())

    def container_update(self, req: Request) -> Response:
        """POST /containers/{id}/update, body: the new Resources and RestartPolicy."""
        warnings = self.backend.container_update(req.params["name"], req.json())
        return json_response({"Warnings": warnings})

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

    def container_pause(self, req: Request) -> Response:
        self.backend.container_pause(req.params["name"])
        return Response(204)

    def container_unpause(self, req: Request) -> Response:
        self.backend.container_unpause(req.params["name"])
        return Response(204)

    def container_remove(self, req: Request) -> Response:
        self.backend.container_remove(req.params["name"], req.bool("force"), req.bool("v"))
        return Response(204)

    def container_rename(self, req: Request) -> Response:
        self.backend.container_rename(req.params["name"], req.query.get("name", ""))
        return Response(204)

    def container_resize(self, req: Request) -> Response:
        h, w = req.int("h", 0), req.int("w", 0)
        self.backend.container_resize(req.params["name"], h, w)
        return Response(200)

    def container_wait(self, req: Request) -> StreamResponse:
        # BEGIN SOLUTION chapter="09" hint="Engine API docs, POST /containers/{id}/wait: condition not-running (the default), next-exit or removed; the answer is {StatusCode: N, Error: null}"
        # TODO: check ?condition= (default "not-running", another value is an InvalidParameter);
        # TODO: register the wait NOW with self.backend.container_wait(name, condition), and
        # TODO: return a 200 StreamResponse (JSON) whose body is a generator yielding one line,
        # TODO: json.dumps(waiter().to_json()) and a newline, once the waiter returns
        # HINT: the headers go out before the body: `docker run` sends /start only after it has them
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
        # END SOLUTION


    # ---- images

    def image_create(self, req: Request) -> StreamResponse:
        """POST /images/create: a pull (fromImage=), or `docker import` (fromSrc=-, the
        tarball in the body; load.py)."""
        source = req.query.get("fromSrc", "")
        if source:
            if source != "-":
                raise InvalidParameter(f"importing from {source!r} is not supported: give the "
                                       "tarball in the request body (fromSrc=-)")
            image_id = self.backend.image_import(req.body, req.query.get("repo", ""),
                                                 req.query.get("tag", ""),
                                                 req.query.get("message", ""),
                                                 req.repeated.get("changes", []))
            return StreamResponse(200, JSON, jsonmessage.stream(iter([{"status": image_id}]),
                                                                "import"))
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

    def image_tag(self, req: Request) -> Response:
        repo = req.query.get("repo", "")
        if not repo:
            raise InvalidParameter("repository name must have at least one component")
        self.backend.image_tag(req.params["name"], repo, req.query.get("tag", ""))
        return Response(201)

    def images_load(self, req: Request) -> StreamResponse:
        """POST /images/load: a `docker save` tar in; one message per image loaded out."""
        messages = self.backend.image_load(req.body)
        return StreamResponse(200, JSON, jsonmessage.stream(iter(messages), "load"))

    def images_save(self, req: Request) -> StreamResponse:
        names = [n for n in req.repeated.get("names", []) if n]
        if not names:
            raise InvalidParameter("no images to save: give names=IMAGE (one or more)")
        return StreamResponse(200, "application/x-tar", self.backend.image_save(names))

    def image_save(self, req: Request) -> StreamResponse:
        return StreamResponse(200, "application/x-tar",
                              self.backend.image_save([req.params["name"]]))
