"""The builder's Backend, made of the daemon's own parts (moby's `builder/dockerfile` backend).

Each thing the builder asks for is something `docker` could ask for too:

    base            `docker pull` when the image is missing (or --pull), then the image
    run             `docker create` (Entrypoint cleared, the step's command) + `start` +
                    `wait`, its output streamed into the build's messages
    commit_*        `docker commit` (labkit.dockerd.commit): containerd's Diff of the
                    container's snapshot, or a tar of the copied files, or a config alone
    stage_files     the files of an image (COPY --from): containerd's Diff of its snapshot
                    against nothing is a tar of the whole filesystem, read in place
    cache_get/put   a small JSON index in dockerd's root: parent image -> step key -> image

The images a build makes on the way are kept under hidden names (commit.BUILD_CACHE) so that
the next build finds them; `docker image prune -a` and `docker builder prune` remove them.
"""

from __future__ import annotations

import io
import json
import tarfile
import threading
from pathlib import Path
from typing import Callable, Iterator

from labkit.dockerd.builder.context import Context, ContextError, file_of
from labkit.dockerd.builder.steps import (BuildError, FileToCopy, Image, Options, build,
                                          short)
from labkit.dockerd.commit import ImageWriter
from labkit.dockerd.images import BUILD_CACHE
from labkit.dockerd.errors import DaemonError, InvalidParameter, NotFound
from labkit.dockerd.jsonmessage import error_message
from labkit.dockerd.images import ImageRecord

CACHE_FILE = "build-cache.json"


class DaemonBuildBackend:
    """builder.Backend over a labkit-dockerd `Daemon` (its create/start/wait/logs/remove)."""

    def __init__(self, daemon, writer: ImageWriter, root: Path) -> None:
        self.daemon, self.writer = daemon, writer
        self.cache_path = root / CACHE_FILE
        self._lock = threading.Lock()

    # -- images ------------------------------------------------------------------------------

    def _record(self, image: Image) -> ImageRecord | None:
        return self.daemon.images.find(image.id) if image.id else None

    def _image(self, record: ImageRecord) -> Image:
        return Image(record.config_digest, record.config.get("config") or {})

    def base(self, name: str, pull: bool, emit: Callable[[dict], None]) -> Image:
        if not pull:
            try:
                return self._image(self.daemon.images.find(name))
            except NotFound:
                pass
        for message in self.daemon.images.pull(name, "", ""):
            emit(message)
        return self._image(self.daemon.images.find(name))

    def tag(self, image: Image, name: str) -> None:
        from labkit.distribution.reference import parse_reference
        self.writer.tag(self._record(image), str(parse_reference(name)))

    # -- running a step ------------------------------------------------------------------------

    def run(self, parent: Image, config: dict, argv: list[str],
            emit: Callable[[dict], None]) -> tuple[str, int]:
        request = {"Image": parent.id, "Cmd": argv, "Entrypoint": [],
                   "Env": config.get("Env") or [], "WorkingDir": config.get("WorkingDir", ""),
                   "User": config.get("User", ""), "Labels": {"labkit.build": "step"},
                   "HostConfig": {"NetworkMode": "none"}}
        cid = self.daemon.container_create(None, request).id
        emit({"stream": f" ---> Running in {short(cid)}\n"})
        waiter = self.daemon.container_wait(cid, "next-exit")
        self.daemon.container_start(cid)
        logs = self.daemon.container_logs(cid, True, True, True, None, 0, 0)
        for entry in logs.entries:
            emit({"stream": entry.data.decode("utf-8", "replace")})
        return cid, waiter().status_code

    def remove_container(self, container: str) -> None:
        try:
            self.daemon.container_remove(container, True, True)
        except DaemonError:
            pass

    def commit_container(self, container: str, parent: Image, config: dict,
                         created_by: str) -> Image:
        return self._image(self.writer.from_snapshot(
            self._record(parent), container, config, created_by, hidden=True))

    def commit_files(self, parent: Image, files: list[FileToCopy], config: dict,
                     created_by: str) -> Image:
        return self._image(self.writer.from_tar(self._record(parent), layer_tar(files),
                                                config, created_by, hidden=True))

    def commit_config(self, parent: Image, config: dict, created_by: str) -> Image:
        return self._image(self.writer.config_only(self._record(parent), config, created_by,
                                                   hidden=True))

    def stage_files(self, image: Image, source: str) -> list[tuple[str, FileToCopy]]:
        context = Context(self.writer.filesystem_tar(self._record(image)), ignore_file=False)
        return [(rel, file_of(context, m)) for rel, m in context.select(source)]

    # -- the cache index -----------------------------------------------------------------------

    def _load(self) -> dict:
        try:
            return json.loads(self.cache_path.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def cache_get(self, parent: str, key: str) -> Image | None:
        with self._lock:
            image_id = self._load().get(parent, {}).get(key)
        if not image_id:
            return None
        try:
            return self._image(self.daemon.images.find(image_id))
        except NotFound:          # pruned since: not a hit
            return None

    def cache_put(self, parent: str, key: str, image: Image) -> None:
        with self._lock:
            index = self._load()
            index.setdefault(parent, {})[key] = image.id
            tmp = self.cache_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(index))
            tmp.replace(self.cache_path)


def layer_tar(files: list[FileToCopy]) -> bytes:
    """A layer holding `files` and the directories above them (0755, root's, as COPY makes
    missing parents).

    A layer is a diff: a tar whose members are paths relative to the root ("app/hello.sh", no
    leading "/"), each with its mode, owner and content, every directory before what it holds,
    no path twice. Applying it on top of the parent's layers gives the step's filesystem."""
    # BEGIN SOLUTION chapter="11" hint="tarfile.open(fileobj=io.BytesIO(), mode='w'); TarInfo: type DIRTYPE/SYMTYPE, mode, uid, gid, size, linkname; addfile(info, io.BytesIO(data))"
    buf = io.BytesIO()
    seen: set[str] = set()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for f in files:
            path = f.path.lstrip("/")
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                parent = "/".join(parts[:i])
                if parent and parent not in seen:
                    seen.add(parent)
                    info = tarfile.TarInfo(parent)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
            if path in seen:
                continue
            seen.add(path)
            info = tarfile.TarInfo(path)
            info.mode, info.uid, info.gid = f.mode, f.uid, f.gid
            if f.kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif f.kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, f.link
                tar.addfile(info)
            else:
                info.size = len(f.data)
                tar.addfile(info, io.BytesIO(f.data))
    return buf.getvalue()
    # END SOLUTION




class Build:
    """The Daemon's `docker build` and `docker builder prune` (mixed into Daemon)."""

    def _image_writer(self) -> ImageWriter:
        return ImageWriter(self.ctr, self.images)

    def image_build(self, context: bytes, options: Options) -> Iterator[dict]:
        """POST /build: the message stream; a failure is its last message (after the 200)."""
        try:
            ctx = Context(context)
        except ContextError as e:
            raise InvalidParameter(str(e)) from None
        backend = DaemonBuildBackend(self, self._image_writer(), self.config.root)

        def messages() -> Iterator[dict]:
            try:
                for message in build(backend, ctx, options):
                    if options.quiet and "stream" in message:
                        continue                    # -q: only the image ID, at the end
                    yield message
                    if "aux" in message:
                        if options.quiet:
                            yield {"stream": message["aux"]["ID"] + "\n"}
                        self.event_bus.publish("image", "build", message["aux"]["ID"], {})
            except BuildError as e:
                yield error_message(str(e))
        return messages()

    def build_prune(self) -> dict:
        """POST /build/prune: forget the cache index and remove the hidden step images."""
        removed, reclaimed = [], 0
        for record in self.images.all():
            if record.name.startswith(BUILD_CACHE):
                self.images.forget(record.name)
                removed.append(record.config_digest)
                reclaimed += record.size
        (self.config.root / CACHE_FILE).unlink(missing_ok=True)
        return {"CachesDeleted": removed or None, "SpaceReclaimed": reclaimed}


def build_options(query: dict[str, str], repeated: dict[str, list[str]]) -> Options:
    """POST /build's query: t (repeatable), dockerfile, buildargs and labels (JSON objects),
    nocache, pull, target (rm and forcerm: intermediate containers always go)."""
    parsed = {}
    for key in ("buildargs", "labels"):
        raw = query.get(key, "")
        try:
            value = json.loads(raw) if raw else {}
        except ValueError as e:
            raise InvalidParameter(f"invalid {key}: {e}") from None
        if not isinstance(value, dict):
            raise InvalidParameter(f"invalid {key}: expected a JSON object")
        parsed[key] = {k: "" if v is None else str(v) for k, v in value.items()}

    def flag(key: str) -> bool:
        return query.get(key, "").strip().lower() not in ("", "0", "no", "false", "none")
    return Options(dockerfile=query.get("dockerfile") or "Dockerfile",
                   tags=[t for t in repeated.get("t", []) if t],
                   build_args=parsed["buildargs"], labels=parsed["labels"],
                   target=query.get("target", ""), no_cache=flag("nocache"), pull=flag("pull"),
                   quiet=flag("q"))


__all__ = ["Build", "DaemonBuildBackend", "build_options", "layer_tar"]
