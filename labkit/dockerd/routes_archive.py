"""The routes of a container's files: `docker cp` (moby's api/server/router/container/
copy.go; archive.py does the work, the stat travels in the X-Docker-Container-Path-Stat
header, for HEAD and GET), `docker diff` and `docker export` (changes.py)."""

from __future__ import annotations

import io

from labkit.dockerd.archive import stat_header
from labkit.dockerd.backend import Backend
from labkit.dockerd.errors import InvalidParameter
from labkit.dockerd.httputils import Request, Response, StreamResponse, json_response

TAR = "application/x-tar"
STAT = "X-Docker-Container-Path-Stat"


def _path(req: Request) -> str:
    path = req.query.get("path", "")
    if not path:
        raise InvalidParameter("path is required: ?path=/in/the/container")
    return path


class ArchiveRoutes:
    """Archive handlers (mixed into router.Router)."""

    backend: Backend

    def archive_head(self, req: Request) -> Response:
        info = self.backend.container_archive_stat(req.params["name"], _path(req))
        return Response(200, b"", None, {STAT: stat_header(info)})

    def archive_get(self, req: Request) -> StreamResponse:
        info, chunks = self.backend.container_archive_get(req.params["name"], _path(req))
        return StreamResponse(200, TAR, chunks, {STAT: stat_header(info)})

    def container_changes(self, req: Request) -> Response:
        return json_response(self.backend.container_changes(req.params["name"]))

    def container_export(self, req: Request) -> StreamResponse:
        return StreamResponse(200, TAR, self.backend.container_export(req.params["name"]))

    def archive_put(self, req: Request) -> Response:
        self.backend.container_archive_put(req.params["name"], _path(req),
                                           io.BytesIO(req.body), req.bool("copyUIDGID"))
        return Response(200)
