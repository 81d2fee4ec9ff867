"""`docker push`: an image from containerd's content store to a registry (moby's
`distribution/push_v2.go`).

    docker push 127.0.0.1:5000/me/app:1
      -> POST /images/127.0.0.1:5000/me/app/push?tag=1   (X-Registry-Auth: base64 JSON)

The name says where: its domain is the registry (127.0.0.1 and localhost speak plain HTTP, as
Docker's default insecure registries), its path the repository. Blobs go before the manifest
that names them (a registry refuses a manifest whose blobs it lacks): every layer, then the
config, each skipped when the registry already has it (HEAD), then the manifest under the tag.
The CLI shows the usual lines, one per layer:

    The push refers to repository [127.0.0.1:5000/me/app]
    5f70bf18a086: Pushed            (or "Layer already exists")
    1: digest: sha256:… size: 528
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Iterator

from labkit.distribution.client import RegistryClient
from labkit.distribution.errors import RegistryError
from labkit.distribution.reference import parse_reference
from labkit.dockerd.errors import InvalidParameter
from labkit.dockerd.images import ImageRecord


def registry_auth(header: str) -> tuple[str | None, str | None]:
    """(username, password) from X-Registry-Auth (base64url of {"username", "password"});
    (None, None) when there is none. A malformed header is a 400 that says so."""
    if not header:
        return None, None
    try:
        padded = header + "=" * (-len(header) % 4)
        config = json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, binascii.Error) as e:
        raise InvalidParameter(f"invalid X-Registry-Auth header: {e}") from None
    if not isinstance(config, dict):
        raise InvalidParameter("invalid X-Registry-Auth header: expected a JSON object")
    return config.get("username") or None, config.get("password") or None


class Push:
    """The Daemon's `docker push` (mixed into labkit.dockerd.daemon.Daemon)."""

    def image_push(self, name: str, tag: str, auth_header: str) -> Iterator[dict]:
        try:
            ref = parse_reference(f"{name}:{tag}" if tag and ":" not in name.rsplit("/", 1)[-1]
                                  else name)
        except ValueError as e:
            raise InvalidParameter(str(e)) from None
        record = self.images.find(str(ref))
        username, password = registry_auth(auth_header)
        client = RegistryClient(ref.domain, username=username, password=password)
        return self._push_messages(client, ref, record)

    def _push_messages(self, client: RegistryClient, ref, record: ImageRecord) -> Iterator[dict]:
        yield {"status": f"The push refers to repository [{ref.domain}/{ref.path}]"}
        manifest = record.manifest
        try:
            for layer in reversed(manifest.get("layers") or []):
                short = layer["digest"].split(":", 1)[1][:12]
                yield {"status": "Preparing", "progressDetail": {}, "id": short}
                if client.blob_exists(ref.path, layer["digest"]):
                    yield {"status": "Layer already exists", "progressDetail": {}, "id": short}
                    continue
                yield {"status": "Pushing", "progressDetail": {"current": 0,
                                                               "total": layer["size"]},
                       "id": short}
                client.push_blob(ref.path, self.ctr.read_blob(layer["digest"]), layer["digest"])
                yield {"status": "Pushed", "progressDetail": {}, "id": short}
            config = manifest["config"]
            if not client.blob_exists(ref.path, config["digest"]):
                client.push_blob(ref.path, self.ctr.read_blob(config["digest"]),
                                 config["digest"])
            raw = self.ctr.read_blob(record.manifest_digest)
            media = manifest.get("mediaType") or "application/vnd.oci.image.manifest.v1+json"
            digest = client.push_manifest(ref.path, ref.tag or "latest", raw, media)
        except (RegistryError, OSError) as e:
            raise InvalidParameter(f"push to {ref.domain} failed: {e}") from None
        yield {"status": f"{ref.tag or 'latest'}: digest: {digest} size: {len(raw)}"}
        yield {"progressDetail": {}, "aux": {"Tag": ref.tag or "latest", "Digest": digest,
                                             "Size": len(raw)}}
        self.event_bus.publish("image", "push", f"{ref.familiar()}", {"name": ref.familiar()})
