"""The syllabus: every chapter of the course, read from syllabus.toml beside this module.

One file lists the chapters (number, title, the layer and the engine functions the student
writes, checkpoint, points, prerequisites); the README, the notebooks' "next chapter" links,
the slide decks and `labkit grade` are read from it or checked against it by
tests/course/test_syllabus.py. A chapter a later issue will write is listed as "planned".

    >>> from labkit.course import syllabus
    >>> [c.number for c in syllabus.chapters()][:3]
    ['00', '01', '02']
    >>> syllabus.chapter("cp01").layer
    'namespaces'
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

SYLLABUS = Path(__file__).with_name("syllabus.toml")
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Chapter:
    number: str            # "01"
    slug: str              # "processes-and-namespaces"
    title: str
    layer: str             # the implementation layer the student's code replaces ("" = none)
    functions: tuple[str, ...]   # "module:function", each on the real path of `docker run`
    checkpoint: str        # "cp01" ("" = none)
    points: int
    prerequisites: tuple[str, ...]
    status: str            # "written" | "planned"

    @property
    def name(self) -> str:
        return f"{self.number}-{self.slug}"

    @property
    def notebook(self) -> Path:
        return REPO / "notebooks" / f"{self.name}.ipynb"

    @property
    def slides(self) -> Path:
        return REPO / "slides" / f"{self.name}.md"

    @property
    def written(self) -> bool:
        return self.status == "written"


@cache
def chapters() -> tuple[Chapter, ...]:
    """Every chapter, in order."""
    data = tomllib.loads(SYLLABUS.read_text())
    out = []
    for raw in data["chapter"]:
        out.append(Chapter(number=raw["number"], slug=raw["slug"], title=raw["title"],
                           layer=raw["layer"], functions=tuple(raw["functions"]),
                           checkpoint=raw["checkpoint"], points=int(raw["points"]),
                           prerequisites=tuple(raw["prerequisites"]), status=raw["status"]))
    return tuple(out)


def chapter(key: str) -> Chapter:
    """A chapter by number ("01"), checkpoint ("cp01") or layer ("namespaces")."""
    for c in chapters():
        if key in (c.number, c.checkpoint, c.layer) and key:
            return c
    known = ", ".join(c.number for c in chapters())
    raise KeyError(f"no chapter {key!r} in the syllabus (chapters: {known})")


def next_chapter(c: Chapter) -> Chapter | None:
    all_ = chapters()
    i = all_.index(c)
    return all_[i + 1] if i + 1 < len(all_) else None


def readme_table() -> str:
    """The chapter table as README.md shows it (written chapters only)."""
    rows = ["| chapter | notebook | checkpoints |", "|---|---|---|"]
    for c in chapters():
        if c.written:
            rows.append(f"| {c.number} · {c.title} | `notebooks/{c.name}.ipynb` | "
                        f"{('`' + c.checkpoint + '`') if c.checkpoint else '—'} |")
    return "\n".join(rows)
