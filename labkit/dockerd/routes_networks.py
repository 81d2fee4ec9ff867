"""The network routes (moby's api/server/router/network): thin handlers, one backend call each.

    GET    /networks                ?filters={"name":[..],"id":[..],"driver":[..],"label":[..],
                                              "type":["custom"|"builtin"]}
    GET    /networks/{id}
    POST   /networks/create         {"Name","Driver","IPAM":{"Config":[{"Subnet","Gateway"}]},
                                     "Internal","Attachable","Options","Labels"} -> 201 {"Id"}
    DELETE /networks/{id}           -> 204 (403 while a running container is on it)
    POST   /networks/{id}/connect   {"Container","EndpointConfig":{"Aliases","IPAMConfig"}}
    POST   /networks/{id}/disconnect {"Container","Force"}
    POST   /networks/prune          -> {"NetworksDeleted": [...]}
"""

from __future__ import annotations

from labkit.dockerd.backend import Backend
from labkit.dockerd.errors import InvalidParameter
from labkit.dockerd.httputils import Request, Response, json_response, parse_filters
from labkit.dockerd.validate import check_endpoint


class NetworkRoutes:
    """Network handlers (mixed into router.Router)."""

    backend: Backend

    def network_list(self, req: Request) -> Response:
        filters = parse_filters(req.query.get("filters", ""))
        return json_response(self.backend.network_list(filters))

    def network_inspect(self, req: Request) -> Response:
        return json_response(self.backend.network_inspect(req.params["name"]))

    def network_create(self, req: Request) -> Response:
        body = req.json()
        if not isinstance(body, dict):
            raise InvalidParameter("invalid network config: expected a JSON object")
        return json_response(self.backend.network_create(body), 201)

    def network_remove(self, req: Request) -> Response:
        self.backend.network_remove(req.params["name"])
        return Response(204)

    def network_connect(self, req: Request) -> Response:
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get("Container"), str):
            raise InvalidParameter("invalid network connect config: expected "
                                   '{"Container": "<name or id>", "EndpointConfig": {...}}')
        endpoint = body.get("EndpointConfig")
        check_endpoint(endpoint, "EndpointConfig")
        self.backend.network_connect(req.params["name"], body["Container"], endpoint)
        return Response(200)

    def network_disconnect(self, req: Request) -> Response:
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get("Container"), str):
            raise InvalidParameter('invalid network disconnect config: expected '
                                   '{"Container": "<name or id>", "Force": false}')
        self.backend.network_disconnect(req.params["name"], body["Container"],
                                        bool(body.get("Force")))
        return Response(200)

    def network_prune(self, req: Request) -> Response:
        return json_response({"NetworksDeleted": self.backend.network_prune()})
