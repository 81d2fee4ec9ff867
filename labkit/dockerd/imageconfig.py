"""The image's config merged with the request's, as moby's daemon/create.go does.

An image carries defaults for the containers made from it (its config's "config": Env,
Entrypoint, Cmd, WorkingDir, User, Labels, StopSignal). `docker run` may override each:

    Entrypoint  the request's, else the image's
    Cmd         the request's; else the image's — unless the request set an Entrypoint
                (a new entrypoint drops the image's Cmd)
    Env         the image's variables, each overridden by the request's of the same name;
                PATH added when neither sets it
    WorkingDir, User, StopSignal   the request's, else the image's (else "", "", SIGTERM)
    Labels      the image's, updated with the request's

Pure functions: a config in, a config out. `docker exec` uses merge_env too (exec.py).
"""

from __future__ import annotations

from labkit.dockerd.errors import InvalidParameter
from labkit.dockerd.oci import DEFAULT_PATH


def command(config: dict, img: dict) -> tuple[list[str], list[str], list[str]]:
    """(Entrypoint, Cmd, args) for a request `config` and an image config `img`; args is
    what the container's process runs (Entrypoint + Cmd). No command at all is a 400."""
    entrypoint = config.get("Entrypoint")
    cmd = config.get("Cmd")
    if entrypoint is None:
        entrypoint = img.get("Entrypoint") or []
        if not cmd:
            cmd = img.get("Cmd") or []
    elif not cmd:
        cmd = []  # a new entrypoint drops the image's Cmd
    args = list(entrypoint or []) + list(cmd or [])
    if not args:
        raise InvalidParameter("no command specified")
    return entrypoint, cmd, args


def merge(config: dict, img: dict, entrypoint: list[str], cmd: list[str],
          hostname: str) -> dict:
    """The container's Config as `docker inspect` shows it: the request's, with the image's
    defaults filled in (see command() for Entrypoint and Cmd)."""
    env = merge_env(img.get("Env") or [], config.get("Env") or [])
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, DEFAULT_PATH)
    merged = dict(config)
    merged.update({
        "Hostname": hostname,
        "Env": env,
        "Cmd": cmd or None,
        "Entrypoint": entrypoint or None,
        "WorkingDir": config.get("WorkingDir") or img.get("WorkingDir") or "",
        "User": config.get("User") or img.get("User") or "",
        "Labels": {**(img.get("Labels") or {}), **(config.get("Labels") or {})},
        "StopSignal": config.get("StopSignal") or img.get("StopSignal") or "SIGTERM",
        # the image's VOLUMEs and the request's `-v /path`: each gets a volume (create.py)
        "Volumes": {**(img.get("Volumes") or {}), **(config.get("Volumes") or {})} or None,
    })
    return merged


def merge_env(image_env: list[str], request_env: list[str]) -> list[str]:
    """Image variables first, each overridden by a request variable of the same name."""
    order: list[str] = []
    values: dict[str, str] = {}
    for item in list(image_env) + list(request_env):
        key = item.split("=", 1)[0]
        if key not in values:
            order.append(key)
        values[key] = item
    return [values[k] for k in order]
