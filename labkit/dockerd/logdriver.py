"""Log drivers: where a container's output is kept (`--log-driver`, `--log-opt`), moby's
daemon/logger.

    json-file   (the default) one JSON line per line of output in <id>-json.log, which
                `docker logs` reads back (jsonlog.py). Options:
                  max-size=10m  rotate once the file holds that much (units as Docker's:
                                k, m, g are powers of 1000; "b" or none: bytes)
                  max-file=3    keep that many files: <id>-json.log, .1, .2 (oldest last);
                                1 (the default) truncates the one file instead
    none        nothing is kept: `docker logs` says "configured logging driver does not
                support reading"; attached clients still get the output

Rotation (moby's loggerutils.LogFile): before writing an entry, if the file already holds
max-size bytes or more, .N-1 becomes .N, …, the file becomes .1, and a new file begins;
so a file may go past max-size by one entry. `docker logs` reads the rotated files first.
"""

from __future__ import annotations

import os
import re

from pathlib import Path

from labkit.dockerd.errors import InvalidParameter, NotImplemented_

DRIVERS = ("json-file", "none")
_COMMON_OPTIONS = ("env", "env-regex", "labels", "labels-regex", "tag")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)i?b?\s*$", re.IGNORECASE)


def task_log(host_config: dict, log_path: str) -> tuple[Path | None, tuple[int, int]]:
    """Where a task's output goes (None: nowhere) and its rotation, for stdio.TaskIO."""
    config = host_config.get("LogConfig") or {}
    if config.get("Type") == "none":
        return None, (-1, 1)
    return Path(log_path), rotation(config.get("Config") or {})


def check_readable(host_config: dict) -> None:
    """`docker logs` of a container whose driver keeps nothing: Docker's error."""
    if (host_config.get("LogConfig") or {}).get("Type") == "none":
        raise NotImplemented_("configured logging driver does not support reading")


def log_config(requested: dict | None) -> dict:
    """HostConfig.LogConfig checked, with the default driver: what inspect shows."""
    requested = requested or {}
    driver = requested.get("Type") or "json-file"
    options = requested.get("Config") or {}
    if not isinstance(driver, str) or driver not in DRIVERS:
        raise InvalidParameter(f"logger: no log driver named '{driver}' is registered "
                               f"(labkit-dockerd has {', '.join(DRIVERS)})")
    if not isinstance(options, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in options.items()):
        raise InvalidParameter("invalid HostConfig.LogConfig.Config: expected an object of "
                               "strings")
    if driver == "none" and options:
        raise InvalidParameter(f"unknown log opt '{sorted(options)[0]}' for none log driver")
    for key in options:
        if key not in ("max-size", "max-file", "compress") + _COMMON_OPTIONS:
            raise InvalidParameter(f"unknown log opt '{key}' for json-file log driver")
    rotation(options)  # the values, checked now rather than at the first line of output
    return {"Type": driver, "Config": dict(options)}


def rotation(options: dict) -> tuple[int, int]:
    """(max-size in bytes, -1 for no limit; max-file) of json-file options."""
    max_size = -1
    if "max-size" in options:
        m = _SIZE.match(options["max-size"])
        if not m:
            raise InvalidParameter(f"invalid max-size {options['max-size']!r}: expected a size "
                                   "such as 10m")
        max_size = int(float(m.group(1)) * 1000 ** " kmgtp".index(m.group(2).lower() or " "))
        if max_size <= 0:
            raise InvalidParameter("max-size must be a positive number")
    try:
        max_files = int(options.get("max-file", "1"))
    except ValueError:
        raise InvalidParameter(f"invalid max-file {options['max-file']!r}: expected a "
                               "number") from None
    if max_files < 1:
        raise InvalidParameter("max-file cannot be less than 1")
    if options.get("compress", "false").lower() in ("1", "t", "true"):
        raise InvalidParameter("compress=true is not supported by labkit-dockerd's json-file "
                               "driver")
    return max_size, max_files


def rotate_if_full(path: str, max_size: int, max_files: int) -> bool:
    """Before a write: rotate `path` if it holds max_size bytes or more (see above).
    True if it did (the log starts empty again)."""
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return False
    if max_size < 0 or size < max_size:
        return False
    if max_files == 1:
        os.truncate(path, 0)
        return True
    for n in range(max_files - 1, 1, -1):
        if os.path.exists(f"{path}.{n - 1}"):
            os.replace(f"{path}.{n - 1}", f"{path}.{n}")
    os.replace(path, f"{path}.1")
    return True


def files_oldest_first(path: str) -> list[str]:
    """The log and its rotated files, in the order their lines were written."""
    rotated = []
    n = 1
    while os.path.exists(f"{path}.{n}"):
        rotated.append(f"{path}.{n}")
        n += 1
    return rotated[::-1] + [path]
