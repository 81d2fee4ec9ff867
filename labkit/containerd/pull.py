"""Transfer.Pull: from a reference to an image ready to run.

The steps, as containerd's transfer service (and dockerd's distribution code) take them:

    1. resolve   parse "busybox" -> docker.io/library/busybox:latest; GET its manifest from
                 the first endpoint that answers: for docker.io the mirrors the caller gave
                 (the lab's registry), then Docker Hub itself.
    2. select    if that is an index (a multi-platform list), pick this host's platform
                 (labkit.distribution.platforms) and fetch that manifest by digest.
    3. fetch     the config and every layer into the content store, each verified by the
                 store against its digest while it streams in.
    4. unpack    for each layer n, bottom first:
                     Prepare("extract-…", parent=chainID[n-1]) -> mounts
                     mount them on a temporary directory, apply the layer tar, unmount
                     Commit(chainID[n], "extract-…")
                 A layer whose chainID snapshot already exists is skipped: "Already exists".
    5. name      images.Create(name, target = the descriptor first resolved: index or manifest)

All of it under a *lease* (gc.py): before a blob is fetched or a snapshot looked for, it is
added to the pull's lease, so a garbage collection running meanwhile (someone's `docker rmi`)
cannot take a half-made image's parts. The blobs are labelled with what they refer to
(index -> manifest, manifest -> config and layers, config -> the top snapshot), which is what
keeps them once the image exists and the lease is gone. A pull killed half-way leaves its
lease, which expires (containerd.io/gc.expire) and is then collected with what it held.

Every step reports progress, in the order `docker pull` prints it (INTERFACES §1.5):
    resolved -> per layer waiting | exists -> downloading(current,total) -> verifying ->
    downloaded -> extracting(current,total) -> unpacked -> done(image_name, image_digest)

The work runs on its own thread, pushing events into a queue, so progress reaches the client
while a layer is still downloading (a callback cannot `yield` from inside the download).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import tempfile
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from labkit.containerd import mount as mountlib
from labkit.containerd.apply import apply_layer
from labkit.containerd.content import LocalContentStore
from labkit.containerd.errors import (AlreadyExists, ContainerdError, FailedPrecondition,
                                      Internal, InvalidArgument, NotFound, Unavailable)
from labkit.containerd.events import Exchange
from labkit.containerd.gc import (LABEL_REF_CONTENT, LABEL_REF_SNAPSHOT, LABEL_UNCOMPRESSED,
                                  RESOURCE_CONTENT, Collector, expiry_label, snapshot_resource)
from labkit.containerd.metadata import ImageRecord, MetadataStore
from labkit.containerd.snapshots import Snapshotter
from labkit.distribution import mediatypes, platforms
from labkit.distribution.client import RegistryClient, endpoint_for_domain
from labkit.distribution.errors import DigestMismatch, RegistryError, RegistryUnavailable
from labkit.distribution.layers import chain_ids
from labkit.distribution.reference import Reference, parse_reference

MAX_CONCURRENT_DOWNLOADS = 3


@dataclass
class Progress:
    """One PullProgress event (see api.proto)."""

    event: str
    desc: dict = field(default_factory=dict)
    current: int = 0
    total: int = 0
    image_name: str = ""
    image_digest: str = ""


def parse_platform(text: str) -> dict | None:
    """"linux/arm64/v8" -> {"os", "architecture", "variant"}; "" -> None (the host's)."""
    if not text:
        return None
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise InvalidArgument(f"invalid platform {text!r}: expected os/arch[/variant]")
    p = {"os": parts[0], "architecture": parts[1]}
    if len(parts) == 3:
        p["variant"] = parts[2]
    return p


def _desc(d: dict) -> dict:
    """Only the descriptor fields a record keeps."""
    out = {"mediaType": d.get("mediaType", ""), "digest": d["digest"], "size": d.get("size", 0)}
    if d.get("annotations"):
        out["annotations"] = d["annotations"]
    return out


class Puller:
    """Pulls images into one labkit-containerd's content store and snapshots."""

    def __init__(self, content: LocalContentStore, meta: MetadataStore,
                 snapshotter: Callable[[str, str], Snapshotter], exchange: Exchange,
                 tmp_dir: Path, registry: Callable[[str], RegistryClient] = RegistryClient,
                 gc: Collector | None = None, default_snapshotter: str = "overlayfs"):
        self.content, self.meta, self.exchange = content, meta, exchange
        self.gc = gc or Collector(content, meta, snapshotter, default_snapshotter)
        self.default_snapshotter = default_snapshotter
        self.snapshotter = snapshotter  # (namespace, name) -> Snapshotter
        self.tmp_dir = Path(tmp_dir)
        self.registry = registry

    def pull(self, namespace: str, reference: str, *, platform: str = "",
             mirrors: list[str] | tuple[str, ...] = (), snapshotter: str = ""
             ) -> Iterator[Progress]:
        """Pull `reference`; yields Progress events; raises a ContainerdError on failure."""
        try:
            ref = parse_reference(reference)
        except ValueError as e:
            raise InvalidArgument(str(e)) from None
        wanted = parse_platform(platform)
        snapshotter = snapshotter or self.default_snapshotter
        snap = self.snapshotter(namespace, snapshotter)
        events: queue.Queue = queue.Queue()
        done = object()

        def work() -> None:
            try:
                with self._lease(namespace) as hold:
                    self._pull(namespace, ref, wanted, list(mirrors), snap, snapshotter,
                               hold, events.put)
            except BaseException as e:  # handed to the caller's thread, raised there
                events.put(e)
            finally:
                events.put(done)

        threading.Thread(target=work, name=f"pull {ref}", daemon=True).start()
        while True:
            item = events.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                if isinstance(item, ContainerdError):
                    raise item
                raise Internal(f"pull {ref}: {item}") from item
            yield item

    @contextlib.contextmanager
    def _lease(self, ns: str):
        """A lease for one pull: yields hold(type, id); deleted when the pull ends, however
        it ends (what a failed pull fetched is then garbage, collected next time)."""
        lease = f"pull-{uuid.uuid4().hex[:16]}"
        # An hour is plenty for a lab's images; a pull killed with its daemon leaves the
        # lease behind, and the collector drops it once expired.
        self.meta.create_lease(ns, lease, {"labkit.pull": "1", **expiry_label(3600)})
        try:
            yield lambda type_, id_: self.gc.lease_resource(ns, lease, type_, id_)
        finally:
            self.meta.delete_lease(ns, lease)

    # ------------------------------------------------------------------ the steps

    def _pull(self, ns: str, ref: Reference, wanted: dict | None, mirrors: list[str],
              snap: Snapshotter, snapshotter: str, hold: Callable[[str, str], None],
              emit: Callable[[Progress], None]) -> None:
        client, top, raw = self._resolve(ref, mirrors)
        hold(RESOURCE_CONTENT, top["digest"])
        self.content.write_bytes(raw, top["digest"])
        emit(Progress("resolved", _desc(top), image_name=str(ref), image_digest=top["digest"]))

        manifest_desc, manifest = top, raw
        if top["mediaType"] in mediatypes.INDEX_TYPES:
            try:
                index = json.loads(raw)
                chosen = platforms.select_manifest(index, wanted)
            except LookupError as e:
                raise NotFound(f"{ref.familiar()}: {e}") from None
            except ValueError as e:
                raise FailedPrecondition(f"{ref.familiar()}: bad index: {e}") from None
            manifest_desc, manifest = self._registry_call(
                ref, lambda: client.resolve(ref.path, chosen["digest"]))
            hold(RESOURCE_CONTENT, manifest_desc["digest"])
            self.content.write_bytes(manifest, manifest_desc["digest"])
            # m.<its position in the index>, as containerd labels an index's children: the
            # manifests of several platforms, pulled one by one, are all kept.
            children = index.get("manifests") or []
            position = next((i for i, m in enumerate(children) if m is chosen),
                            next((i for i, m in enumerate(children)
                                  if m.get("digest") == manifest_desc["digest"]), 0))
            self.meta.set_content_labels(ns, top["digest"], {
                f"{LABEL_REF_CONTENT}.m.{position}": manifest_desc["digest"]})
        try:
            m = json.loads(manifest)
            config_desc, layers = m["config"], list(m["layers"])
        except (ValueError, KeyError, TypeError):
            raise FailedPrecondition(f"{ref.familiar()}: manifest {manifest_desc['digest']} "
                                     "is not an image manifest") from None

        for d in [config_desc, *layers]:
            hold(RESOURCE_CONTENT, d["digest"])
        self._fetch(ref, client, config_desc, None)
        try:
            config = json.loads(self.content.read_bytes(config_desc["digest"]))
            diff_ids = list(config["rootfs"]["diff_ids"])
        except (ValueError, KeyError, TypeError):
            raise FailedPrecondition(f"{ref.familiar()}: image config has no "
                                     "rootfs.diff_ids") from None
        if len(diff_ids) != len(layers):
            raise FailedPrecondition(f"{ref.familiar()}: manifest has {len(layers)} layers "
                                     f"but the config lists {len(diff_ids)} diff ids")
        chains = chain_ids(diff_ids)
        for c in chains:
            hold(snapshot_resource(snapshotter), c)
        # What refers to what, for the collector once the lease is gone (gc.py).
        self.meta.set_content_labels(ns, manifest_desc["digest"], {
            f"{LABEL_REF_CONTENT}.config": config_desc["digest"],
            **{f"{LABEL_REF_CONTENT}.l.{i}": d["digest"] for i, d in enumerate(layers)}})
        if chains:
            self.meta.set_content_labels(ns, config_desc["digest"], {
                LABEL_REF_SNAPSHOT + snapshotter: chains[-1]})
        for d, diff_id in zip(layers, diff_ids):
            self.meta.set_content_labels(ns, d["digest"], {LABEL_UNCOMPRESSED: diff_id})

        # Which layers need work? A committed snapshot for the chain id means the layer (and
        # everything below it) is unpacked already.
        present = [_exists(snap, c) for c in chains]
        for layer, have in zip(layers, present):
            emit(Progress("exists" if have else "waiting", _desc(layer), total=layer["size"]))
        # Downloads run side by side (dockerd's max-concurrent-downloads is 3, too); unpacking
        # stays in order, bottom layer first, since each layer is applied on the one below.
        missing = [layer for layer, have in zip(layers, present) if not have]
        with ThreadPoolExecutor(max_workers=MAX_CONCURRENT_DOWNLOADS,
                                thread_name_prefix=f"fetch {ref.path}") as downloads:
            fetched = [downloads.submit(self._fetch, ref, client, layer, emit) for layer in missing]
        for future in fetched:
            future.result()     # the first failure, by layer order; all have finished
        for n, (layer, have) in enumerate(zip(layers, present)):
            if not have:
                self._unpack(snap, layer, diff_ids[n], chains[n],
                             chains[n - 1] if n else "", emit)

        image = ImageRecord(name=str(ref), target=_desc(top))
        try:
            self.meta.create_image(ns, image)
            self.exchange.publish(ns, "/images/create", {"name": image.name})
        except AlreadyExists:
            self.meta.update_image(ns, image)
            self.exchange.publish(ns, "/images/update", {"name": image.name})
        emit(Progress("done", _desc(top), image_name=str(ref), image_digest=top["digest"]))

    def _resolve(self, ref: Reference, mirrors: list[str]
                 ) -> tuple[RegistryClient, dict, bytes]:
        """Try each endpoint in turn; the first that has the manifest wins."""
        endpoints = [m.rstrip("/") for m in mirrors] if ref.domain == "docker.io" else []
        endpoints.append(endpoint_for_domain(ref.domain))
        failures: list[str] = []
        not_found: RegistryError | None = None
        for endpoint in endpoints:
            try:
                client = self.registry(endpoint)
                desc, raw = client.resolve(ref.path, ref.locator)
                return client, desc, raw
            except RegistryUnavailable as e:
                failures.append(str(e))
            except ValueError as e:
                failures.append(f"{endpoint}: {e}")
            except RegistryError as e:
                if e.status in (401, 403, 404) or e.code in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN",
                                                             "UNAUTHORIZED", "DENIED"):
                    not_found = not_found or e  # a mirror may lack it: try the next endpoint
                    continue
                raise self._translate(ref, e) from None
            except OSError as e:
                failures.append(f"{endpoint}: {e}")
        if not_found is not None:
            raise self._translate(ref, not_found)
        raise Unavailable(f"pull {ref}: no registry answered: " + "; ".join(failures))

    def _registry_call(self, ref: Reference, call):
        try:
            return call()
        except RegistryUnavailable as e:
            raise Unavailable(f"pull {ref}: {e}") from None
        except RegistryError as e:
            raise self._translate(ref, e) from None

    @staticmethod
    def _translate(ref: Reference, e: RegistryError) -> ContainerdError:
        """Registry errors in Docker's words (what `docker pull` prints)."""
        if isinstance(e, DigestMismatch):
            return FailedPrecondition(f"pull {ref.familiar()}: {e}")
        if e.code == "MANIFEST_UNKNOWN":
            return NotFound(f"manifest for {ref.familiar()} not found: {e}")
        if e.code in ("NAME_UNKNOWN", "UNAUTHORIZED", "DENIED") or e.status in (401, 403, 404):
            repo = ref.familiar().rsplit("@", 1)[0].rsplit(":", 1)[0] \
                if ref.domain == "docker.io" else ref.name
            return NotFound(f"pull access denied for {repo}, repository does not exist or may "
                            f"require 'docker login': {e}")
        return Unavailable(f"pull {ref.familiar()}: {e}")

    def _fetch(self, ref: Reference, client: RegistryClient, desc: dict,
               emit: Callable[[Progress], None] | None) -> None:
        """Download one blob into the content store (unless it is there already)."""
        total = desc.get("size", 0)
        if self.content.exists(desc["digest"]):
            if emit:
                emit(Progress("downloaded", _desc(desc), total, total))
            return
        report = None
        if emit:
            report = _throttled(emit, "downloading", desc, total)
            report(0)
        try:
            with self.content.writer(desc["digest"], total) as w:
                self._registry_call(ref, lambda: client.fetch_blob(ref.path, desc, w, report))
                if emit:
                    emit(Progress("verifying", _desc(desc), total, total))
                w.commit()
        except AlreadyExists:
            pass  # another pull stored the same blob meanwhile
        if emit:
            emit(Progress("downloaded", _desc(desc), total, total))

    def _unpack(self, snap: Snapshotter, layer: dict, diff_id: str, chain: str, parent: str,
                emit: Callable[[Progress], None]) -> None:
        """Prepare -> mount -> apply -> unmount -> Commit (see the module docstring)."""
        total = layer.get("size", 0)
        key = f"extract-{uuid.uuid4().hex[:12]} {chain}"
        mounts = snap.prepare(key, parent, {"containerd.io/snapshot.ref": chain})
        committed = False
        try:
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
            self.tmp_dir.chmod(0o700)   # the layer's device nodes appear on the mount below
            target = tempfile.mkdtemp(prefix="x", dir=self.tmp_dir)
            try:
                mountlib.mount_all(mounts, target)
                try:
                    report = _throttled(emit, "extracting", layer, total)
                    report(0)
                    with self.content.open(layer["digest"]) as f:
                        apply_layer(f, target, diff_id=diff_id, progress=report)
                finally:
                    mountlib.unmount_all(target)
            finally:
                os.rmdir(target)
            try:
                snap.commit(chain, key)
                committed = True
            except AlreadyExists:
                pass  # a concurrent pull unpacked the same layer: keep theirs
        finally:
            if not committed:
                snap.remove(key)
        emit(Progress("unpacked", _desc(layer), total, total))


def _throttled(emit: Callable[[Progress], None], event: str, desc: dict, total: int
               ) -> Callable[[int], None]:
    """A progress callback that reports every ~2% (a 2 MiB layer reads in many small chunks)."""
    step = max(total // 50, 256 * 1024)
    last = [-step]

    def report(n: int) -> None:
        if n - last[0] >= step or n == total:
            last[0] = n
            emit(Progress(event, _desc(desc), n, total))
    return report


def _exists(snap: Snapshotter, key: str) -> bool:
    try:
        snap.stat(key)
        return True
    except NotFound:
        return False


__all__ = ["Puller", "Progress", "parse_platform"]
