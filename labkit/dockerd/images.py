"""Images as dockerd shows them, from what labkit-containerd stores (moby's `daemon/images`).

containerd keeps images as NAMES pointing at a descriptor in the content store:
"docker.io/library/busybox:latest" -> an OCI index -> (for linux/amd64) a manifest -> a config
and layers. Docker's user model is built on top:

    image ID      the digest of the config (two names with the same config are one image)
    RepoTags      the familiar names: "busybox:latest", "127.0.0.1:5000/hello-world:latest"
    RepoDigests   name@digest of what the registry served: "busybox@sha256:<index digest>"
    Size          the sum of the layers' sizes in the manifest

Pulling is containerd's work (Transfer.Pull); dockerd only turns its progress events into
Docker's JSON messages (jsonmessage.PullReporter). The blobs of an image never change,
so what was read once (manifest, config) is cached by digest.

Removing is containerd's too: `docker rmi` deletes image *names*; containerd's garbage
collector then frees the blobs and snapshots nothing refers to any more
(labkit/containerd/gc.py), before Images.Delete returns. Pruning and `docker system df`:
diskusage.py.
"""

from __future__ import annotations

import fnmatch
import json
import logging
from dataclasses import dataclass, replace
from typing import Callable, Iterator

from labkit.wire.containerd import api_pb2 as pb
from labkit.distribution.mediatypes import INDEX_TYPES
from labkit.distribution.platforms import select_manifest
from labkit.distribution.reference import Reference, parse_reference
from labkit.dockerd.container import parse_time
from labkit.dockerd.errors import (Conflict, DaemonError, InvalidParameter, NotFound,
                                   SystemError_)
from labkit.dockerd.jsonmessage import PullReporter
from labkit.dockerd.remote import Containerd, RemoteError, to_daemon_error
from labkit.dockerd.jsonlog import ZERO_TIME

log = logging.getLogger("labkit.dockerd")

# Names dockerd gives images that have no tag (labkit.dockerd.commit makes them).
DANGLING = "moby-dangling@"
BUILD_CACHE = "moby-build-cache@"


def internal_name(name: str) -> bool:
    return name.startswith((DANGLING, BUILD_CACHE))


@dataclass
class ImageRecord:
    """An image as dockerd sees it: containerd's name and descriptor, plus the parsed blobs."""

    name: str            # containerd's image name: docker.io/library/busybox:latest
    target_digest: str   # what the name points at (an index or a manifest): the repo digest
    manifest: dict
    config_digest: str   # the image ID
    config: dict
    created_at: float    # when containerd recorded the name
    manifest_digest: str = ""   # the manifest's own digest (target_digest, unless an index)

    @property
    def size(self) -> int:
        return sum(int(layer.get("size", 0)) for layer in self.manifest.get("layers", []))

    @property
    def diff_ids(self) -> list[str]:
        return list((self.config.get("rootfs") or {}).get("diff_ids") or [])


class ImageService:
    """Image lookups, listing, inspection, removal and pulls, on labkit-containerd."""

    def __init__(self, ctr: Containerd, mirrors: list[str]) -> None:
        self.ctr = ctr
        self.mirrors = mirrors
        self._cache: dict[str, tuple[dict, str, dict]] = {}  # target digest -> parsed blobs

    def _read_json(self, digest: str) -> dict:
        try:
            return json.loads(self.ctr.read_blob(digest))
        except RemoteError as e:
            raise to_daemon_error(e) from None
        except ValueError as e:
            raise SystemError_(f"content {digest} is not valid JSON: {e}") from None

    def _load(self, image: pb.Image) -> ImageRecord:
        target = image.target
        cached = self._cache.get(target.digest)
        if cached is None:
            document = self._read_json(target.digest)
            manifest_digest = target.digest
            if target.media_type in INDEX_TYPES or "manifests" in document:
                try:
                    chosen = select_manifest(document)
                except (LookupError, ValueError) as e:
                    raise NotFound(f"image {image.name}: {e}") from None
                manifest_digest = chosen["digest"]
                document = self._read_json(manifest_digest)
            config_digest = (document.get("config") or {}).get("digest", "")
            if not config_digest:
                raise SystemError_(f"image {image.name}: manifest {target.digest} has no config")
            cached = (document, config_digest, self._read_json(config_digest), manifest_digest)
            self._cache[target.digest] = cached
        manifest, config_digest, config, manifest_digest = cached
        created = image.created_at.seconds + image.created_at.nanos / 1e9
        return ImageRecord(image.name, target.digest, manifest, config_digest, config, created,
                           manifest_digest)

    def all(self) -> list[ImageRecord]:
        try:
            images = self.ctr.call(self.ctr.images.List, pb.ListImagesRequest()).images
        except RemoteError as e:
            raise to_daemon_error(e) from None
        records = []
        for image in images:
            try:
                records.append(self._load(image))
            except DaemonError as e:
                log.warning("skipping image %s: %s", image.name, e)
        return records

    def find(self, name: str) -> ImageRecord:
        return self.lookup(name)[0]

    def lookup(self, name: str) -> tuple[ImageRecord, bool]:
        """By reference (busybox, 127.0.0.1:5000/x:1) or by image ID (sha256:..., a prefix);
        the record, and whether it was found by ID."""
        ref: Reference | None = None
        try:
            ref = parse_reference(name)
        except ValueError as e:
            if not looks_like_id(name):
                raise InvalidParameter(str(e)) from None
        if ref is not None:
            try:
                image = self.ctr.call(self.ctr.images.Get, pb.GetImageRequest(name=str(ref))).image
                return self._load(image), False
            except RemoteError as e:
                if e.code != "NOT_FOUND":
                    raise to_daemon_error(e) from None
            if ref.digest:  # busybox@sha256:...: any name of that repository with that digest
                record = self._by_repo_digest(ref)
                if record is not None:
                    return record, False
        if looks_like_id(name):
            wanted = name if name.startswith("sha256:") else "sha256:" + name
            matches = {r.config_digest: r for r in self.all()
                       if r.config_digest.startswith(wanted)}
            if len(matches) == 1:
                return next(iter(matches.values())), True
        raise NotFound(f"No such image: {ref.familiar() if ref else name}")

    def _by_repo_digest(self, ref: Reference) -> ImageRecord | None:
        for record in self.all():
            try:
                other = parse_reference(record.name)
            except ValueError:
                continue
            if other.name == ref.name and record.target_digest == ref.digest:
                return record
        return None

    def pull(self, from_image: str, tag: str, platform_: str) -> Iterator[dict]:
        try:
            ref = parse_reference(from_image)
        except ValueError as e:
            raise InvalidParameter(str(e)) from None
        if tag:
            if tag.startswith("sha256:"):
                ref = replace(ref, digest=tag)
            elif not ref.digest:
                ref = replace(ref, tag=tag)
        had_digest = None
        try:
            had_digest = self.ctr.call(self.ctr.images.Get,
                                       pb.GetImageRequest(name=str(ref))).image.target.digest
        except RemoteError as e:
            if e.code != "NOT_FOUND":
                raise to_daemon_error(e) from None
            if ref.digest and self._by_repo_digest(ref) is not None:
                had_digest = ref.digest  # pulled before under its tag: it is up to date
        reporter = PullReporter(repository=ref.path, tag=ref.tag or ref.digest or "latest",
                                familiar=ref.familiar(), had_digest=had_digest)
        request = pb.PullRequest(reference=str(ref), platform=platform_,
                                 mirrors=list(self.mirrors),
                                 snapshotter=self.ctr.snapshotter)

        def messages() -> Iterator[dict]:
            try:
                for p in self.ctr.stream(self.ctr.transfer.Pull, request):
                    yield from reporter.event(p.event, p.desc.media_type, p.desc.digest,
                                              p.current, p.total, p.image_digest)
            except RemoteError as e:
                raise to_daemon_error(e) from None
        return messages()

    def by_id(self, with_build_cache: bool) -> dict[str, list[ImageRecord]]:
        """Every image, its containerd names grouped by image ID."""
        by_id: dict[str, list[ImageRecord]] = {}
        for r in self.all():
            if with_build_cache or not r.name.startswith(BUILD_CACHE):
                by_id.setdefault(r.config_digest, []).append(r)
        return by_id

    def forget(self, name: str) -> None:
        """Drop one containerd name (containerd collects what nothing else references)."""
        try:
            self.ctr.call(self.ctr.images.Delete, pb.DeleteImageRequest(name=name))
        except RemoteError as e:
            if e.code != "NOT_FOUND":
                raise to_daemon_error(e) from None

    def untag(self, records: list[ImageRecord]) -> list[dict]:
        """Drop these names; the "Untagged" lines `docker rmi` and `image prune` print."""
        result = []
        for r in records:
            self.forget(r.name)
            if "@" not in r.name:
                result.append({"Untagged": familiar(r.name)})
            result.append({"Untagged": repo_digest(r.name, r.target_digest)})
        return result

    def list(self, filters: dict[str, list[str]] | None = None,
             all_: bool = False) -> list[dict]:
        """`docker images [busybox]`: one item per image ID. Filters: reference (a glob on
        "repo" or "repo:tag", as `docker images busybox` sends), dangling, label. A build's
        intermediate images (commit.BUILD_CACHE names) only with `all_` (`docker images -a`)."""
        filters = filters or {}
        unknown = set(filters) - {"reference", "dangling", "label"}
        if unknown:
            raise InvalidParameter(f"invalid filter '{sorted(unknown)[0]}'")
        by_id = self.by_id(with_build_cache=all_)
        out = []
        for image_id, records in by_id.items():
            first = records[0]
            if not image_matches(records, first, filters):
                continue
            out.append({
                "Id": image_id,
                "ParentId": "",
                "RepoTags": sorted({familiar(r.name) for r in records
                                    if "@" not in r.name}),
                "RepoDigests": sorted({repo_digest(r.name, r.target_digest)
                                       for r in records if not internal_name(r.name)}),
                "Created": int(parse_time(first.config.get("created", "")) or first.created_at),
                "Size": first.size,
                "SharedSize": -1,
                "Containers": -1,
                "Labels": (first.config.get("config") or {}).get("Labels") or {},
            })
        return sorted(out, key=lambda i: -i["Created"])

    def tag(self, source: str, repo: str, tag: str) -> str:
        """`docker tag`: one more name in containerd for the same target (the image's
        index or manifest), replacing what that name pointed at. The new name, familiar."""
        record = self.find(source)
        try:
            ref = parse_reference(f"{repo}:{tag or 'latest'}" if repo else "")
        except ValueError as e:
            raise InvalidParameter(str(e)) from None
        if ref.digest:
            raise InvalidParameter("refusing to create a tag with a digest reference")
        try:
            image = self.ctr.call(self.ctr.images.Get, pb.GetImageRequest(name=record.name)).image
            self.ctr.call(self.ctr.images.Delete, pb.DeleteImageRequest(name=str(ref)))
        except RemoteError as e:
            if e.code != "NOT_FOUND":
                raise to_daemon_error(e) from None
        new = pb.Image(name=str(ref), labels=dict(image.labels), target=image.target)
        try:
            self.ctr.call(self.ctr.images.Create, pb.CreateImageRequest(image=new))
        except RemoteError as e:
            raise to_daemon_error(e) from None
        return ref.familiar()

    def history(self, name: str) -> list[dict]:
        """`docker history`: the config's history, newest first; entries that made a layer
        get that layer's size (the others, like ENV or CMD, changed only the config)."""
        rec = self.find(name)
        layers = list(rec.manifest.get("layers", []))
        entries = []
        for item in rec.config.get("history") or []:
            size = 0
            if not item.get("empty_layer") and layers:
                size = int(layers.pop(0).get("size", 0))
            entries.append({"Id": "<missing>", "Created": int(parse_time(item.get("created", ""))),
                            "CreatedBy": item.get("created_by", ""), "Tags": None,
                            "Size": size, "Comment": item.get("comment", "")})
        entries.reverse()
        if not entries:
            entries = [{"Id": "<missing>", "Created": 0, "CreatedBy": "", "Tags": None,
                        "Size": rec.size, "Comment": ""}]
        tags = sorted({familiar(r.name) for r in self.all()
                       if r.config_digest == rec.config_digest and "@" not in r.name})
        entries[0].update(Id=rec.config_digest, Tags=tags or None)
        return entries

    def inspect(self, name: str) -> dict:
        rec = self.find(name)
        same = [r for r in self.all() if r.config_digest == rec.config_digest]
        return {
            "Id": rec.config_digest,
            "RepoTags": sorted({familiar(r.name) for r in same if "@" not in r.name}),
            "RepoDigests": sorted({repo_digest(r.name, r.target_digest) for r in same}),
            "Parent": "",
            "Comment": "",
            "Created": rec.config.get("created", ""),
            "DockerVersion": "",
            "Author": rec.config.get("author", ""),
            "Config": rec.config.get("config") or {},
            "Architecture": rec.config.get("architecture", ""),
            "Os": rec.config.get("os", ""),
            "Size": rec.size,
            "GraphDriver": {"Name": self.ctr.snapshotter, "Data": None},
            "RootFS": {"Type": "layers", "Layers": rec.diff_ids},
            "Metadata": {"LastTagTime": ZERO_TIME},  # the CLI parses it: never ""
        }

    def remove(self, name: str, force: bool,
               users: Callable[[str], list[str]]) -> list[dict]:
        """`docker rmi`: untag (and delete when no name is left). `users(image_id)` names
        the containers created from an image: they block its removal unless forced."""
        rec, by_id = self.lookup(name)
        all_records = [r for r in self.all() if r.config_digest == rec.config_digest]
        short = rec.config_digest.split(":")[-1][:12]
        users_ = users(rec.config_digest)
        if by_id:  # the image itself: every name pointing at it goes
            targets = all_records
            if len(targets) > 1 and not force:
                raise Conflict(f"conflict: unable to delete {short} (must be forced) - image is "
                               "referenced in multiple repositories")
        else:
            targets = [rec]
        remaining = [r for r in all_records if r not in targets]
        if users_ and not remaining and not force:
            user = users_[0][:12]
            what = f'unable to remove repository reference "{name}"' if not by_id \
                else f"unable to delete {short}"
            raise Conflict(f"conflict: {what} (must force) - container {user} is using its "
                           f"referenced image {short}")
        result = self.untag(targets)
        if not remaining:
            result.append({"Deleted": rec.config_digest})
        return result


def image_matches(records: list[ImageRecord], first: ImageRecord,
                   filters: dict[str, list[str]]) -> bool:
    tags = {familiar(r.name) for r in records if "@" not in r.name}
    for pattern in filters.get("reference", []):
        names = tags | {t.rsplit(":", 1)[0] for t in tags}
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            return False
    for value in filters.get("dangling", []):
        if (value.lower() in ("true", "1")) != (not tags):
            return False
    labels = (first.config.get("config") or {}).get("Labels") or {}
    for value in filters.get("label", []):
        key, eq, wanted = value.partition("=")
        if key not in labels or (eq and labels[key] != wanted):
            return False
    return True


def familiar(name: str) -> str:
    """containerd's name -> what Docker shows: "busybox:latest"."""
    try:
        return parse_reference(name).familiar()
    except ValueError:
        return name


def repo_digest(name: str, digest: str) -> str:
    """ "docker.io/library/busybox:latest", sha256:... -> "busybox@sha256:..." """
    try:
        r = parse_reference(name)
    except ValueError:
        return f"{name}@{digest}"
    return Reference(r.domain, r.path, None, digest).familiar()


def looks_like_id(name: str) -> bool:
    hexpart = name[len("sha256:"):] if name.startswith("sha256:") else name
    return 0 < len(hexpart) <= 64 and all(ch in "0123456789abcdef" for ch in hexpart)
