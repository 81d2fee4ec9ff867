"""The routes that make and ship images: build, commit, push (handlers of labkit.dockerd.router).

Thin, as every handler: decode the request, call the backend, encode the answer. Build and
push answer 200 at once and then stream JSON messages (labkit.dockerd.jsonmessage.stream).
"""

from __future__ import annotations

from labkit.dockerd import jsonmessage
from labkit.dockerd.builder.backend import build_options
from labkit.dockerd.httputils import JSON, Request, Response, StreamResponse, json_response


class ImageMakingRoutes:
    backend: object

    def image_build(self, req: Request) -> StreamResponse:
        """POST /build: the context tar in, the builder's message stream out (as a pull's)."""
        messages = self.backend.image_build(req.body, build_options(req.query, req.repeated))
        return StreamResponse(200, JSON, jsonmessage.stream(messages, "build"))

    def build_prune(self, req: Request) -> Response:
        return json_response(self.backend.build_prune())

    def container_commit(self, req: Request) -> Response:
        image_id = self.backend.container_commit(req.query, req.repeated.get("changes", []),
                                                 req.json())
        return json_response({"Id": image_id}, 201)

    def image_push(self, req: Request) -> StreamResponse:
        """POST /images/{name}/push?tag=: blobs, then the manifest; X-Registry-Auth's
        credentials for the registry."""
        messages = self.backend.image_push(req.params["name"], req.query.get("tag", ""),
                                           req.headers.get("X-Registry-Auth", ""))
        return StreamResponse(200, JSON, jsonmessage.stream(messages, "push"))
