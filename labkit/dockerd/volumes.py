"""Named volumes: directories dockerd owns, mounted into containers (moby's `volume/local`).

A bind mount (-v /host/path:/data) shows the container a directory the USER chose. A named
volume (-v mydata:/data) is the same mechanism — a bind mount — of a directory DOCKERD
chooses and manages: <root>/volumes/<name>/_data. It outlives the containers that use it,
which is how data survives `docker rm`:

    docker volume create mydata          ->  mkdir <root>/volumes/mydata/_data
    docker run -v mydata:/data busybox   ->  bind <root>/volumes/mydata/_data on /data
    docker volume rm mydata              ->  409 while a container uses it, else rm -rf

An anonymous volume (`-v /data`, an image's VOLUME, `--mount type=volume` without a
source) is the same, under a random 64-hex name and labelled com.docker.volume.anonymous
(as Docker 23+ does): `docker rm -v` and `docker run --rm` remove it with its container,
and `docker volume prune` removes unused ones (named ones too only with `--all`).

Only the "local" driver exists here, and without options (Docker's local driver can also
mount a device or tmpfs through `-o`).
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import threading
from pathlib import Path
from typing import Callable

from labkit.dockerd.errors import Conflict, InvalidParameter, NotFound
from labkit.dockerd.jsonlog import rfc3339nano

ANONYMOUS = "com.docker.volume.anonymous"  # the label of a volume made without a name

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


class VolumeStore:
    def __init__(self, root: Path) -> None:
        self.root = root / "volumes"
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def _dir(self, name: str) -> Path:
        if not _NAME.match(name):
            raise InvalidParameter(f"create {name}: \"{name}\" includes invalid characters for a "
                                   "local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are "
                                   "allowed")
        return self.root / name

    def _view(self, name: str) -> dict:
        d = self._dir(name)
        meta = json.loads((d / "opts.json").read_text())
        return {"Name": name, "Driver": "local", "Mountpoint": str(d / "_data"),
                "CreatedAt": meta.get("CreatedAt", ""), "Labels": meta.get("Labels") or {},
                "Scope": "local", "Options": {}}

    def create(self, name: str | None, driver: str = "local", labels: dict | None = None,
               options: dict | None = None) -> dict:
        """Create a volume (idempotent, as in Docker: an existing one is returned)."""
        if driver not in ("", "local"):
            raise NotFound(f"error looking up volume plugin {driver}: plugin \"{driver}\" not "
                           "found (labkit-dockerd has the local driver only)")
        if options:
            raise InvalidParameter("volume options (-o) are not supported by labkit-dockerd's "
                                   "local driver")
        if labels is not None and not (isinstance(labels, dict) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in labels.items())):
            raise InvalidParameter("invalid Labels: expected an object of strings")
        name = name or secrets.token_hex(32)  # an anonymous volume gets a random name
        d = self._dir(name)
        with self._lock:
            if not (d / "opts.json").exists():
                (d / "_data").mkdir(parents=True, exist_ok=True)
                (d / "opts.json").write_text(json.dumps({"CreatedAt": rfc3339nano(),
                                                         "Labels": labels or {}}))
        return self._view(name)

    def get(self, name: str) -> dict:
        if not (self._dir(name) / "opts.json").exists():
            raise NotFound(f"get {name}: no such volume")
        return self._view(name)

    def list(self) -> list[dict]:
        return [self._view(d.name) for d in sorted(self.root.iterdir())
                if (d / "opts.json").exists()]

    def is_anonymous(self, name: str) -> bool:
        try:
            return ANONYMOUS in self.get(name)["Labels"]
        except (NotFound, InvalidParameter, OSError, ValueError):
            return False

    def prune(self, filters: dict[str, list[str]], users: Callable[[str], list[str]]
              ) -> tuple[list[str], int]:
        """`docker volume prune`: the unused anonymous volumes (all unused ones with the
        filter all=true), matching any label filters. (names removed, bytes freed)"""
        unknown = set(filters) - {"all", "label", "label!"}
        if unknown:
            raise InvalidParameter(f"invalid filter '{sorted(unknown)[0]}'")
        every = any(v.lower() in ("1", "true") for v in filters.get("all", []))
        removed, freed = [], 0
        for volume in self.list():
            labels = volume["Labels"]
            if not (every or ANONYMOUS in labels) or not _labels_match(labels, filters):
                continue
            size = _size(Path(volume["Mountpoint"]))
            try:
                self.remove(volume["Name"], False, users)
            except Conflict:
                continue  # in use
            removed.append(volume["Name"])
            freed += size
        return removed, freed

    def path(self, name: str) -> str:
        """Where a volume's data lives (created on first use, as `docker run -v name:...`)."""
        return self.create(name)["Mountpoint"]

    def remove(self, name: str, force: bool, users: Callable[[str], list[str]]) -> None:
        d = self._dir(name)
        if not (d / "opts.json").exists():
            if force:
                return
            raise NotFound(f"get {name}: no such volume")
        using = users(name)
        if using:
            raise Conflict(f"remove {name}: volume is in use - [{', '.join(using)}]")
        with self._lock:
            shutil.rmtree(d)


def _labels_match(labels: dict, filters: dict[str, list[str]]) -> bool:
    """label=k / label=k=v must all hold, label!=... must all not."""
    def holds(spec: str) -> bool:
        key, eq, value = spec.partition("=")
        return key in labels and (not eq or labels[key] == value)
    return (all(holds(f) for f in filters.get("label", []))
            and not any(holds(f) for f in filters.get("label!", [])))


def _size(directory: Path) -> int:
    """Bytes used by the files under a directory (what `docker system df` counts)."""
    total = 0
    for path in directory.rglob("*"):
        try:
            if path.is_file() and not path.is_symlink():
                total += path.lstat().st_size
        except OSError:
            pass
    return total
