""".dockerignore: which files of a build context are left out (moby `patternmatcher`).

Wire knowledge shared by both ends, as labkit.stdcopy is: `labkit build` (the client) leaves
the ignored files out of the context tar it sends, and the daemon's builder
(labkit.dockerd.builder.context) applies the same patterns again, as dockerd does for clients
that do not. One matcher, so the two can never disagree. Imports nothing of labkit.

The rules: one pattern per line, `#` comments, `!pattern` re-includes; `*` and `?` stay
inside one path component, `**` crosses any number of them; a pattern that names a directory
covers everything below it; the *last* matching line decides.

    >>> pats = ignore_patterns("*.log\\n!keep.log\\nbuild/\\n")
    >>> [p for p in ("a.log", "keep.log", "build/x/y", "src/a.log") if ignored(p, pats)]
    ['a.log', 'build/x/y']
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Pattern:
    text: str
    exclusion: bool          # "!pattern": put back what an earlier line left out
    regex: re.Pattern


def ignore_patterns(text: str) -> list[Pattern]:
    patterns = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exclusion = line.startswith("!")
        if exclusion:
            line = line[1:].strip()
        line = posixpath.normpath(line.lstrip("/")) if line.strip("/") else "."
        patterns.append(Pattern(line, exclusion, re.compile(_regex(line))))
    return patterns


def _regex(pattern: str) -> str:
    out, i = ["^"], 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):       # "**/" : zero or more directories
                i += 1
                out.append("(?:.*/)?")
            else:
                out.append(".*")
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(ch))
            else:
                out.append(fnmatch.translate(pattern[i:end + 1])[4:-3])
                i = end
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    out.append("$")
    return "".join(out)


def ignored(path: str, patterns: list[Pattern]) -> bool:
    """Is the context path `path` ("a/b/c") left out by these patterns?"""
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    verdict = False
    for p in patterns:
        if any(p.regex.match(prefix) for prefix in prefixes):
            verdict = not p.exclusion
    return verdict


__all__ = ["Pattern", "ignore_patterns", "ignored"]
