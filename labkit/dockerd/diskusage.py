"""What images take on disk, and pruning them: `docker system df`, `docker image prune`.

containerd knows what is on disk: each blob's size (Content.List) and each unpacked layer's
(Snapshots.Usage, of the committed snapshots). An image is made of its blobs (index,
manifest, config, compressed layers) and its snapshots (one per layer, named by chain id);
two images sharing a layer share that blob and that snapshot. So:

    Size          all of an image's parts         SharedSize   the parts another image has too
    LayersSize    every part of every image, each counted once

Pruning deletes image names (Images.Delete); containerd's garbage collector frees what no
image, container or lease still refers to (labkit/containerd/gc.py). The space reclaimed is
measured, not estimated: what containerd held before and no longer holds after.
"""

from __future__ import annotations

from typing import Callable

from labkit.distribution.layers import chain_ids
from labkit.dockerd.errors import InvalidParameter
from labkit.dockerd.images import ImageRecord, ImageService, image_matches
from labkit.dockerd.remote import Containerd, RemoteError, to_daemon_error
from labkit.wire.containerd import api_pb2 as pb


def on_disk(ctr: Containerd) -> tuple[dict[str, int], dict[str, int]]:
    """What containerd holds: {blob digest: size}, {committed snapshot: bytes}."""
    try:
        blobs = {i.digest: i.size for i in ctr.call(
            ctr.content.List, pb.ListContentRequest()).info}
        snaps = {}
        for s in ctr.call(ctr.snapshots.List, pb.ListSnapshotsRequest(
                snapshotter=ctr.snapshotter)).info:
            if s.kind == pb.COMMITTED:
                snaps[s.name] = ctr.call(ctr.snapshots.Usage, pb.SnapshotUsageRequest(
                    snapshotter=ctr.snapshotter, key=s.name)).size
    except RemoteError as e:
        raise to_daemon_error(e) from None
    return blobs, snaps


def image_parts(ctr: Containerd, records: list[ImageRecord]) -> set[str]:
    """The blobs (digests) and snapshots (chain ids, "snapshot:<id>") of an image."""
    parts: set[str] = set()
    for r in records:
        parts |= {r.target_digest, r.config_digest}
        parts |= {layer["digest"] for layer in r.manifest.get("layers", [])}
        parts |= {"snapshot:" + c for c in chain_ids(r.diff_ids)}
        try:   # the manifest chosen from an index is a blob of its own: the index's label
               # containerd.io/gc.ref.content.m.<i> names it (the puller sets it)
            target = ctr.call(ctr.images.Get, pb.GetImageRequest(name=r.name)).image
            labels = ctr.call(ctr.content.Info, pb.InfoRequest(
                digest=target.target.digest)).info.labels
            parts |= {v for k, v in labels.items()
                      if k.startswith("containerd.io/gc.ref.content.m.")}
        except RemoteError:
            pass
    return parts


def disk_usage(images: ImageService, containers_of: Callable[[str], int]
               ) -> tuple[int, list[dict]]:
    """For `docker system df`: (LayersSize, the images with Size, SharedSize, Containers).
    An image's Size here is what it takes on disk: its blobs (index, manifest, config,
    compressed layers) and its unpacked layers (snapshots); SharedSize the part of that
    another image uses too; LayersSize all of it, each byte once."""
    blobs, snaps = on_disk(images.ctr)
    size_of = lambda part: (snaps.get(part[len("snapshot:"):], 0)
                            if part.startswith("snapshot:") else blobs.get(part, 0))
    # a build's intermediate images (the build cache) count in LayersSize, not as images
    by_id = images.by_id(with_build_cache=True)
    parts = {image_id: image_parts(images.ctr, records) for image_id, records in by_id.items()}
    users: dict[str, int] = {}
    for p in parts.values():
        for part in p:
            users[part] = users.get(part, 0) + 1
    listed = {i["Id"]: i for i in images.list()}
    out = []
    for image_id, p in parts.items():
        if image_id not in listed:
            continue
        item = dict(listed.get(image_id) or {"Id": image_id})
        item["Size"] = sum(size_of(x) for x in p)
        item["SharedSize"] = sum(size_of(x) for x in p if users[x] > 1)
        item["Containers"] = containers_of(image_id)
        out.append(item)
    return sum(size_of(x) for x in users), out


def prune(images: ImageService, filters: dict[str, list[str]],
          users: Callable[[str], list[str]]) -> dict:
    """`docker image prune [-a]`: delete the images no container uses; with dangling=true
    (the CLI's default, without -a) only those without a tag. SpaceReclaimed is what
    containerd freed: the blobs and unpacked layers there before and gone after."""
    unknown = set(filters) - {"dangling", "label"}
    if unknown:
        raise InvalidParameter(f"invalid filter '{sorted(unknown)[0]}'")
    # For prune, dangling=false (what `-a` sends) means "not only dangling ones", where
    # `docker images --filter dangling=false` means "only tagged ones".
    only_dangling = any(v.lower() in ("true", "1") for v in filters.get("dangling", []))
    others = {k: v for k, v in filters.items() if k != "dangling"}
    blobs, snaps = on_disk(images.ctr)
    # a build's intermediate images (hidden names) go with -a only: they are not "dangling"
    # (they have children)
    by_id = images.by_id(with_build_cache=not only_dangling)
    deleted: list[dict] = []
    for image_id, records in by_id.items():
        tagged = any("@" not in r.name for r in records)
        if users(image_id) or (only_dangling and tagged) or \
                not image_matches(records, records[0], others):
            continue
        deleted += images.untag(records)
        deleted.append({"Deleted": image_id})
    after_blobs, after_snaps = on_disk(images.ctr)
    reclaimed = sum(size for d, size in blobs.items() if d not in after_blobs) + \
        sum(size for s, size in snaps.items() if s not in after_snaps)
    return {"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed}
