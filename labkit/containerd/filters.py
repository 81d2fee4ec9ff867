"""containerd's filter syntax: which images, blobs, leases or tasks a List call returns.

Every containerd List takes `filters`, a list of strings; an object is returned if it
matches ANY of them. One string is selectors joined by commas, ALL of which must hold:

    labels."containerd.io/gc.root"                the label is present (any value)
    name==docker.io/library/busybox:latest        equal
    digest!=sha256:…                              not equal
    topic~=|^/tasks/|      labels.x~="^a.*"       the value matches a regular expression
    labels."x"==y,digest==sha256:…                both

A field path is names separated by dots; a name with dots or other odd characters is quoted
("…", Go escapes). A value is a bare word (no spaces or commas) or quoted with "…", /…/ or
|…| (the last two are handy for regular expressions, which are full of quotes).

    match = parse(['labels."role"==web', "name==x"])
    match(lambda path: ...)      # the lookup returns (value, present) for a field path

Each service supplies the lookup for its objects (`fields_of(…)` below builds one from a
dict of plain fields and a labels dict), so this module is the one parser for them all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from labkit.containerd.errors import InvalidArgument

Lookup = Callable[[tuple[str, ...]], tuple[str, bool]]

_BARE_FIELD = re.compile(r"[A-Za-z0-9_]+")
_QUOTES = {'"': '"', "/": "/", "|": "|"}
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "/": "/", "|": "|"}


@dataclass
class Selector:
    path: tuple[str, ...]
    op: str = ""        # "" (present) | "==" | "!=" | "~="
    value: str = ""

    def matches(self, lookup: Lookup) -> bool:
        value, present = lookup(self.path)
        if self.op == "":
            return present
        if self.op == "==":
            return present and value == self.value
        if self.op == "!=":
            return not present or value != self.value
        return present and re.search(self.value, value) is not None


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text, self.i = text, 0

    def error(self, what: str) -> InvalidArgument:
        return InvalidArgument(f"filter {self.text!r}: {what} at position {self.i}")

    def peek(self) -> str:
        return self.text[self.i] if self.i < len(self.text) else ""

    def skip_space(self) -> None:
        while self.peek().isspace():
            self.i += 1

    def quoted(self) -> str:
        close = _QUOTES[self.peek()]
        self.i += 1
        out = []
        while True:
            c = self.peek()
            if not c:
                raise self.error("unterminated quote")
            self.i += 1
            if c == close:
                return "".join(out)
            if c == "\\" and close == '"':
                e = self.peek()
                self.i += 1
                out.append(_ESCAPES.get(e, "\\" + e))
            else:
                out.append(c)

    def field(self) -> str:
        if self.peek() == '"':
            return self.quoted()
        m = _BARE_FIELD.match(self.text, self.i)
        if not m:
            raise self.error("expected a field name")
        self.i = m.end()
        return m.group()

    def value(self) -> str:
        if self.peek() in _QUOTES:
            return self.quoted()
        start = self.i
        while self.peek() and self.peek() not in ", \t":
            self.i += 1
        if self.i == start:
            raise self.error("expected a value")
        return self.text[start:self.i]


def _parse_one(text: str) -> list[Selector]:
    s = _Scanner(text)
    selectors = []
    while True:
        s.skip_space()
        path = [s.field()]
        while s.peek() == ".":
            s.i += 1
            path.append(s.field())
        s.skip_space()
        op = s.text[s.i:s.i + 2]
        sel = Selector(tuple(path))
        if op in ("==", "!=", "~="):
            s.i += 2
            s.skip_space()
            sel.op, sel.value = op, s.value()
            if op == "~=":
                try:
                    re.compile(sel.value)
                except re.error as e:
                    raise s.error(f"bad regular expression ({e})") from None
        selectors.append(sel)
        s.skip_space()
        if not s.peek():
            return selectors
        if s.peek() != ",":
            raise s.error("expected ',' or an operator (==, !=, ~=)")
        s.i += 1


def parse(filters: list[str] | tuple[str, ...]) -> Callable[[Lookup], bool]:
    """A predicate over lookups: True if any filter matches (no filters: everything)."""
    alternatives = [_parse_one(f) for f in filters if f.strip()]
    if not alternatives:
        return lambda lookup: True
    return lambda lookup: any(all(sel.matches(lookup) for sel in alt) for alt in alternatives)


def fields_of(fields: dict[str, str], labels: dict[str, str] | None = None) -> Lookup:
    """A lookup for an object with plain fields ({"name": …, "target.digest": …}) and labels
    (`labels.<key>`, also spelt `labels."<key>"`)."""
    labels = labels or {}

    def lookup(path: tuple[str, ...]) -> tuple[str, bool]:
        if len(path) >= 2 and path[0] == "labels":
            key = ".".join(path[1:])   # labels.a.b and labels."a.b" name the same label
            return labels.get(key, ""), key in labels
        key = ".".join(path)
        return fields.get(key, ""), key in fields
    return lookup


def matching(filters, items, lookup_of: Callable[[object], Lookup]) -> list:
    """The items that match `filters` (a List call's request.filters)."""
    match = parse(list(filters))
    return [i for i in items if match(lookup_of(i))]
