"""The volume routes (moby's api/server/router/volume): create, list, inspect, remove, prune.

    POST   /volumes/create    {"Name","Driver","Labels","DriverOpts"} -> 201 the volume
    GET    /volumes           ?filters={"dangling":["true"],"name":[..],"label":[..]}
    GET    /volumes/{name}
    DELETE /volumes/{name}    ?force=1 -> 204 (409 while a container uses it)
    POST   /volumes/prune     ?filters={"all":["true"],"label":[..]} -> VolumesDeleted
"""

from __future__ import annotations

from labkit.dockerd.backend import Backend
from labkit.dockerd.errors import InvalidParameter
from labkit.dockerd.httputils import (Request, Response, json_response, parse_filters,
                                      version_at_least)


class VolumeRoutes:
    """Volume handlers (mixed into router.Router)."""

    backend: Backend

    def volume_create(self, req: Request) -> Response:
        body = req.json() or {}
        if not isinstance(body, dict):
            raise InvalidParameter("invalid volume config: expected a JSON object")
        name = body.get("Name") or None
        if name is not None and not isinstance(name, str):
            raise InvalidParameter("invalid volume Name: expected a string")
        for key in ("Labels", "DriverOpts"):
            if body.get(key) is not None and not isinstance(body[key], dict):
                raise InvalidParameter(f"invalid volume {key}: expected a JSON object")
        if not isinstance(body.get("Driver") or "local", str):
            raise InvalidParameter("invalid volume Driver: expected a string")
        volume = self.backend.volume_create(name, body.get("Driver") or "local",
                                            body.get("Labels"), body.get("DriverOpts"))
        return json_response(volume, 201)

    def volume_list(self, req: Request) -> Response:
        filters = parse_filters(req.query.get("filters", ""))
        unknown = set(filters) - {"dangling", "name", "label", "driver"}
        if unknown:
            raise InvalidParameter(f"invalid filter '{sorted(unknown)[0]}'")
        volumes = [v for v in self.backend.volume_list() if _matches(v, filters, self.backend)]
        return json_response({"Volumes": volumes, "Warnings": []})

    def volume_inspect(self, req: Request) -> Response:
        return json_response(self.backend.volume_inspect(req.params["name"]))

    def volume_remove(self, req: Request) -> Response:
        self.backend.volume_remove(req.params["name"], req.bool("force"))
        return Response(204)

    def volume_prune(self, req: Request) -> Response:
        filters = parse_filters(req.query.get("filters", ""))
        if not version_at_least(req.api_version, "1.42"):
            # before API 1.42 (docker 23) prune took named volumes too: an older client
            # (Debian's CLI 20.10) gets that, as from moby
            filters["all"] = ["true"]
        removed, freed = self.backend.volume_prune(filters)
        return json_response({"VolumesDeleted": removed or None, "SpaceReclaimed": freed})


def _matches(volume: dict, filters: dict[str, list[str]], backend: Backend) -> bool:
    for key, values in filters.items():
        if not values:
            continue
        if key == "name":
            ok = any(v in volume["Name"] for v in values)
        elif key == "driver":
            ok = volume["Driver"] in values
        elif key == "label":
            labels = volume.get("Labels") or {}
            ok = all(k in labels and (not eq or labels[k] == v)
                     for k, eq, v in (f.partition("=") for f in values))
        else:  # dangling: used by no container
            want = values[-1].lower() in ("1", "true")
            ok = (not backend.volume_users(volume["Name"])) == want
        if not ok:
            return False
    return True
