"""What the metadata instructions do to an image config (ENV, CMD, LABEL, WORKDIR …).

They run nothing and add no files: each one is a new image config and an empty layer in the
history. `config_change` is used by the builder (labkit.dockerd.builder.steps) and by `docker
commit --change "CMD [...]"` (labkit.dockerd.commit): one meaning for each instruction.
"""

from __future__ import annotations

import json
import posixpath

from labkit.dockerd.builder.dockerfile import (DockerfileError, Instruction, expand,
                                               key_values, words)


# Instructions that change only the image config (and `docker commit --change` accepts).
METADATA = {"ENV", "LABEL", "MAINTAINER", "CMD", "ENTRYPOINT", "WORKDIR", "USER", "EXPOSE",
            "VOLUME", "STOPSIGNAL", "SHELL", "ONBUILD", "HEALTHCHECK"}


def config_change(config: dict, shell: list[str], ins: Instruction, env: dict[str, str],
                  escape: str = "\\") -> tuple[dict, str]:
    """What a metadata instruction changes in an image config, and its history text:
    `ENV A=1` -> ({"Env": [..., "A=1"]}, "ENV A=1"). Pure; the builder and `docker commit
    --change` both use it."""
    text = ins.args if isinstance(ins.args, str) else ""
    if ins.cmd == "ENV":
        pairs = key_values(text, env, escape, "ENV", ins.line)
        current = list(config.get("Env") or [])
        for k, v in pairs:
            current = [e for e in current if e.partition("=")[0] != k] + [f"{k}={v}"]
        return {"Env": current}, "ENV " + " ".join(f"{k}={v}" for k, v in pairs)
    if ins.cmd == "LABEL":
        pairs = key_values(text, env, escape, "LABEL", ins.line)
        return ({"Labels": {**(config.get("Labels") or {}), **dict(pairs)}},
                "LABEL " + " ".join(f"{k}={v}" for k, v in pairs))
    if ins.cmd in ("CMD", "ENTRYPOINT"):
        value = list(ins.args) if ins.json else ([*shell, text] if text else None)
        key = "Cmd" if ins.cmd == "CMD" else "Entrypoint"
        return {key: value}, f"{ins.cmd} {json.dumps(value)}"
    if ins.cmd == "WORKDIR":
        path = posixpath.normpath(posixpath.join(config.get("WorkingDir") or "/",
                                                 expand(text, env, escape)))
        return {"WorkingDir": path}, f"WORKDIR {path}"
    if ins.cmd in ("USER", "STOPSIGNAL"):
        value = expand(text, env, escape)
        return {"User" if ins.cmd == "USER" else "StopSignal": value}, f"{ins.cmd} {value}"
    if ins.cmd == "EXPOSE":
        ports = dict(config.get("ExposedPorts") or {})
        for port in words(text, env, escape):
            ports[port if "/" in port else f"{port}/tcp"] = {}
        return {"ExposedPorts": ports}, f"EXPOSE {' '.join(sorted(ports))}"
    if ins.cmd == "VOLUME":
        paths = list(ins.args) if ins.json else words(text, env, escape)
        return ({"Volumes": {**(config.get("Volumes") or {}), **{p: {} for p in paths}}},
                f"VOLUME {json.dumps(paths)}")
    if ins.cmd == "SHELL":
        return {"Shell": list(ins.args)}, f"SHELL {json.dumps(ins.args)}"
    if ins.cmd == "ONBUILD":
        return {"OnBuild": [*(config.get("OnBuild") or []), text]}, ins.original
    if ins.cmd == "HEALTHCHECK":
        return {"Healthcheck": _healthcheck(ins, shell)}, ins.original
    if ins.cmd == "MAINTAINER":
        return {}, f"MAINTAINER {text}"
    raise DockerfileError(f"{ins.cmd} does not change the image config (not one of "
                     f"{', '.join(sorted(METADATA))})")


def _healthcheck(ins: Instruction, shell: list[str]) -> dict:
    text = ins.args if isinstance(ins.args, str) else ""
    if text.strip().upper() == "NONE":
        return {"Test": ["NONE"]}
    kind, _, rest = text.partition(" ")
    if kind.upper() != "CMD":
        raise DockerfileError(f"Dockerfile line {ins.line}: HEALTHCHECK needs CMD or NONE")
    rest = rest.strip()
    try:
        test = ["CMD", *json.loads(rest)] if rest.startswith("[") else ["CMD-SHELL", rest]
    except ValueError:
        test = ["CMD-SHELL", rest]
    check = {"Test": test}
    for flag, field_ in (("interval", "Interval"), ("timeout", "Timeout"),
                         ("start-period", "StartPeriod"), ("retries", "Retries")):
        if flag in ins.flags:
            check[field_] = int(ins.flags[flag]) if flag == "retries" else \
                _duration(ins.flags[flag])
    return check


def _duration(text: str) -> int:
    units = {"ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
    for unit in ("ms", "s", "m", "h"):
        if text.endswith(unit) and text[:-len(unit)].replace(".", "", 1).isdigit():
            return int(float(text[:-len(unit)]) * units[unit])
    raise DockerfileError(f"invalid duration {text!r} (e.g. 30s, 1m30s is not supported: 90s)")
