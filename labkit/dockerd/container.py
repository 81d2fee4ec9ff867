"""dockerd's record of a container: what it is, what state it is in, and how it is shown.

containerd knows a container as metadata (image, spec, snapshot) and a task; the user
model — name, Docker-style Config and HostConfig, exit code, log file — is dockerd's, kept
as JSON under `<root>/containers/<id>/` (config.v2.json and hostconfig.json, the names
dockerd uses), so it survives a daemon restart.

States, as `docker ps` shows them:

    created ──start──▶ running ──exit──▶ exited ──start──▶ running ...
       │                                   │
       └───────────── rm ──────────────────┴──▶ (removed: the record is deleted)

A failed start leaves the container "created" with State.Error set and an exit code
(127 for "executable file not found", as Docker does).
"""

from __future__ import annotations

import calendar
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from labkit.dockerd.jsonlog import ZERO_TIME
from labkit.units import human_duration


@dataclass
class State:
    Status: str = "created"          # created | running | paused | exited | removing | dead
    Running: bool = False
    Paused: bool = False
    Restarting: bool = False
    OOMKilled: bool = False
    Dead: bool = False
    Pid: int = 0
    ExitCode: int = 0
    Error: str = ""
    StartedAt: str = ZERO_TIME
    FinishedAt: str = ZERO_TIME


@dataclass
class Container:
    ID: str
    Name: str                        # without the leading "/"
    Created: str                     # RFC3339Nano
    Path: str
    Args: list[str]
    Config: dict                     # Docker's container Config (merged with the image's)
    HostConfig: dict
    Image: str                       # the image ID: sha256 of its config
    ImageRef: str                    # the fully qualified reference it was created from
    Runtime: str                     # the runtime's name (labkit-runc, runc, crun, ...)
    State: State = field(default_factory=State)
    LogPath: str = ""
    HostnamePath: str = ""
    HostsPath: str = ""
    ResolvConfPath: str = ""
    RestartCount: int = 0
    HasBeenManuallyStopped: bool = False  # by docker stop/kill (restart.py); not in inspect
    MountPoints: list[dict] = field(default_factory=list)  # volumes, as inspect shows them
    NetworkSettings: dict = field(default_factory=dict)    # networks and ports (network.py)

    # ---- persistence

    @staticmethod
    def dir_for(root: Path, cid: str) -> Path:
        return root / "containers" / cid

    def save(self, root: Path) -> None:
        d = self.dir_for(root, self.ID)
        d.mkdir(parents=True, exist_ok=True)
        record = asdict(self)
        host_config = record.pop("HostConfig")
        _write_atomic(d / "config.v2.json", record)
        _write_atomic(d / "hostconfig.json", host_config)

    @classmethod
    def load(cls, directory: Path) -> "Container":
        record = json.loads((directory / "config.v2.json").read_text())
        record["HostConfig"] = json.loads((directory / "hostconfig.json").read_text())
        record["State"] = State(**record.get("State", {}))
        return cls(**record)

    # ---- views

    @property
    def tty(self) -> bool:
        return bool(self.Config.get("Tty"))

    def inspect(self) -> dict:
        """GET /containers/{id}/json. State, Config, HostConfig and NetworkSettings must be
        objects, never null: the CLI dereferences them (INTERFACES.md §1.6)."""
        return {
            "Id": self.ID,
            "Created": self.Created,
            "Path": self.Path,
            "Args": self.Args,
            "State": asdict(self.State),
            "Image": self.Image,
            "ResolvConfPath": self.ResolvConfPath,
            "HostnamePath": self.HostnamePath,
            "HostsPath": self.HostsPath,
            "LogPath": self.LogPath,
            "Name": "/" + self.Name,
            "RestartCount": self.RestartCount,
            "Driver": "overlayfs",
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "ExecIDs": None,
            "HostConfig": self.HostConfig,
            "GraphDriver": {"Name": "overlayfs", "Data": None},
            "Mounts": self.MountPoints,
            "Config": self.Config,
            "NetworkSettings": self.network_settings(),
            "labkit": {"Runtime": self.Runtime, "ImageRef": self.ImageRef},
        }

    def summary(self, image_name: str, now: float | None = None) -> dict:
        """One item of GET /containers/json (docker ps)."""
        command = " ".join([self.Path] + list(self.Args))
        return {
            "Id": self.ID,
            "Names": ["/" + self.Name],
            "Image": image_name,
            "ImageID": self.Image,
            "Command": command,
            "Created": int(parse_time(self.Created)),
            "Ports": self.port_summary(),
            "Labels": self.Config.get("Labels") or {},
            "State": self.State.Status,
            "Status": self.status_text(now),
            "HostConfig": {"NetworkMode": self.HostConfig.get("NetworkMode") or "default"},
            "NetworkSettings": {"Networks": self.NetworkSettings.get("Networks") or {}},
            "Mounts": self.MountPoints,
        }

    def network_settings(self) -> dict:
        """NetworkSettings as inspect shows it: Docker's keys, the top-level address fields
        for the default bridge (the old API's), Networks per network (network.py)."""
        settings = {"Bridge": "", "SandboxID": "", "HairpinMode": False, "SandboxKey": "",
                    "Ports": {}, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
                    "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
                    "EndpointID": "", "Gateway": "", "GlobalIPv6Address": "",
                    "GlobalIPv6PrefixLen": 0, "IPAddress": "", "IPPrefixLen": 0,
                    "IPv6Gateway": "", "MacAddress": "", "Networks": {}}
        settings.update(self.NetworkSettings)
        if not self.State.Running:
            settings["Ports"] = {}
        return settings

    def port_summary(self) -> list[dict]:
        """`docker ps`'s Ports: published ones with their host side, exposed ones without."""
        out = []
        for key, bindings in (self.NetworkSettings.get("Ports") or {}).items():
            port, _, proto = key.partition("/")
            if not bindings:
                out.append({"PrivatePort": int(port), "Type": proto})
            for b in bindings or []:
                out.append({"IP": b["HostIp"], "PrivatePort": int(port),
                            "PublicPort": int(b["HostPort"]), "Type": proto})
        return out if self.State.Running else []

    def status_text(self, now: float | None = None) -> str:
        """"Up 5 seconds", "Up 5 seconds (Paused)", "Exited (0) 3 seconds ago", "Created"."""
        now = time.time() if now is None else now
        s = self.State
        if s.Status in ("running", "paused"):
            up = "Up " + human_duration(now - parse_time(s.StartedAt))
            return up + " (Paused)" if s.Paused else up
        if s.Status == "restarting":
            return (f"Restarting ({s.ExitCode}) "
                    f"{human_duration(now - parse_time(s.FinishedAt))} ago")
        if s.Status == "exited":
            return f"Exited ({s.ExitCode}) {human_duration(now - parse_time(s.FinishedAt))} ago"
        if s.Status == "removing":
            return "Removal In Progress"
        return s.Status.capitalize()


def parse_time(rfc3339: str) -> float:
    """Unix seconds of an RFC3339(Nano) UTC time as Docker writes them; 0 for the zero time."""
    if not rfc3339 or rfc3339.startswith("0001-"):
        return 0.0
    base, _, frac = rfc3339.rstrip("Z").partition(".")
    seconds = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    return seconds + (float("0." + frac) if frac else 0.0)


def _write_atomic(path: Path, obj: object) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)
