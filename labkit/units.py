"""Human-friendly durations and sizes, as Docker prints them (a port of go-units).

In Docker, the CLI and the daemon do not each format "Up 5 seconds" or "13.3kB" their own way:
both import one small library, github.com/docker/go-units. labkit does the same — `labkit ps`
and `labkit images` (labkit.cli.output) and the daemon's container status and pull progress
(labkit.dockerd.container, labkit.dockerd.jsonmessage) all call this module, so the two ends
can never disagree, and a student comparing labkit's output with docker's sees the same words.

    human_duration(seconds)                  HumanDuration: "Less than a second", "3 minutes",
                                             "About an hour", "2 weeks" — coarse on purpose
    human_size(size)                         HumanSize: decimal units, 4 significant digits
                                             ("3.645kB", "314.1kB"), as in pull progress bars
    human_size_with_precision(size, digits)  HumanSizeWithPrecision: the same with another
                                             precision (`docker images` uses 3: "13.3kB")

Sizes are decimal (1 kB = 1000 B), as go-units' HumanSize is; only its BytesSize (not needed
by labkit) uses 1024.
"""

from __future__ import annotations

# go-units' decimapAbbrs: the unit after each division by 1000.
DECIMAL_UNITS = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]


def human_duration(seconds: float) -> str:
    """go-units HumanDuration: how long something has been, the way `docker ps` words it.

    Each step rounds coarsely on purpose: below a minute the seconds count, below an hour
    the whole minutes, above that the hours rounded to the nearest (so 1h29m is "About an
    hour"), then days, weeks, months (30 days) and years (365 days). Negative durations
    (a clock that moved back) read "Less than a second".
    """
    if seconds < 1:
        return "Less than a second"
    if seconds < 2:
        return "1 second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)  # Go: int(d.Hours() + 0.5), half an hour rounds up
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"  # Go counts years from unrounded hours


def human_size_with_precision(size: float, precision: int) -> str:
    """go-units HumanSizeWithPrecision: divide by 1000 while it is at least 1000, then print
    `precision` significant digits and the unit ("1.98MB", "13.3kB", "512B")."""
    unit = 0
    while size >= 1000 and unit < len(DECIMAL_UNITS) - 1:
        size /= 1000.0
        unit += 1
    # Go's %.*g and Python's %.*g agree: shortest of fixed and exponent form, no trailing zeros.
    return f"{size:.{precision}g}{DECIMAL_UNITS[unit]}"


def human_size(size: float) -> str:
    """go-units HumanSize: decimal units, 4 significant digits ("3.645kB", "314.1kB")."""
    return human_size_with_precision(size, 4)


def ram_in_bytes(text: str) -> int:
    """go-units RAMInBytes, as `docker run -m` reads its value: a number and an optional unit
    b, k, m, g, t, p (with or without a trailing "b", any case), BINARY multiples — for memory
    limits 1m is 1048576 bytes, unlike the decimal sizes above. ValueError names the input."""
    import re
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)b?\s*", text, re.IGNORECASE)
    if not m:
        raise ValueError(f"invalid size: {text!r}")
    power = " kmgtp".index(m.group(2).lower() or " ")
    return int(float(m.group(1)) * 1024 ** power)
