"""The syllabus (labkit/course/syllabus.toml) is the one list of chapters: the READMEs, the
notebooks (headings, chapter mentions, "Next" cells), the slide decks and the checkpoints'
points must agree with it."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from labkit.course import syllabus

REPO = syllabus.REPO
MENTION = re.compile(r"\b[Cc]hapters? (\d\d)\b")


def _keywords(c: syllabus.Chapter) -> set[str]:
    words = re.findall(r"[a-z_]{4,}", (c.title + " " + c.slug + " " + c.layer).lower())
    return set(words) - {"their", "with", "what", "why", "whole", "the", "from"}


def _texts() -> dict[str, str]:
    """Every text a student reads that may name a chapter: READMEs, decks, notebook cells."""
    texts = {"README.md": (REPO / "README.md").read_text(),
             "notebooks/README.md": (REPO / "notebooks/README.md").read_text()}
    for deck in sorted((REPO / "slides").glob("*.md")):
        texts[f"slides/{deck.name}"] = deck.read_text()
    for nb in sorted((REPO / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        texts[f"notebooks/{nb.name}"] = "\n".join("".join(c["source"]) for c in cells)
    return texts


def test_the_whole_course_is_planned():
    chapters = syllabus.chapters()
    assert [c.number for c in chapters] == [f"{n:02d}" for n in range(len(chapters))]
    assert len(chapters) >= 12, "chapters 00-11 at least (tour … building images)"
    layers = [c.layer for c in chapters if c.layer]
    assert len(layers) == len(set(layers)), "one chapter per layer"
    for c in chapters:
        assert c.status in ("written", "planned")
        for p in c.prerequisites:
            assert p < c.number, f"chapter {c.number} cannot build on later chapter {p}"
        assert all(re.fullmatch(r"labkit(\.\w+)+:\w+", f) for f in c.functions), c.functions
        if c.written:
            assert c.notebook.is_file() and c.slides.is_file(), c.name
        if c.number != "00":
            assert c.checkpoint == f"cp{c.number}" and c.layer and c.functions


def test_readme_tables_list_the_written_chapters():
    readme = (REPO / "README.md").read_text()
    assert syllabus.readme_table() in readme, "README's chapter table is not the syllabus's"
    nb_readme = (REPO / "notebooks/README.md").read_text()
    for c in syllabus.chapters():
        assert (f"`{c.name}.ipynb`" in nb_readme) == c.written, c.name


def test_notebooks_open_with_their_chapter_and_point_to_the_next():
    for c in syllabus.chapters():
        if not c.written:
            continue
        cells = json.loads(c.notebook.read_text())["cells"]
        heading = "".join(cells[0]["source"]).splitlines()[0]
        assert c.number in heading and c.title.lower() in heading.lower(), heading
        nxt = syllabus.next_chapter(c)
        last = "".join(cells[-1]["source"])
        assert last.startswith("## Next"), f"{c.notebook.name} ends without a 'Next' cell"
        if nxt is None:            # the last chapter: the course ends, back to the tour
            first = syllabus.chapters()[0]
            assert "last chapter" in last and f"`{first.name}.ipynb`" in last, last
            continue
        assert f"Chapter {nxt.number} — {nxt.title}" in last and f"`{nxt.name}.ipynb`" in last


def _sentences(text: str) -> list[str]:
    """Text cut into sentences (and list items, table cells, clauses joined by ", and")."""
    text = re.sub(r"\n\s*\n|\n\s*[-*] |\|", " ¶ ", text).replace("\n", " ")
    return re.split(r"\.\s| ¶ |, and |; ", text)


@pytest.mark.parametrize("name, text", sorted(_texts().items()))
def test_chapter_mentions_match_the_syllabus(name, text):
    """A sentence naming "chapter NN" must say something of chapter NN's title:
    "chapter 03 limits it with cgroups" fails (cgroups is chapter 02)."""
    by_number = {c.number: c for c in syllabus.chapters()}
    for sentence in _sentences(text):
        for m in MENTION.finditer(sentence):
            number = m.group(1)
            assert number in by_number, f"{name}: chapter {number} is not in the syllabus"
            assert any(w in sentence.lower() for w in _keywords(by_number[number])), (
                f"{name}: '{sentence.strip()[:200]}' names chapter {number}, which is "
                f"'{by_number[number].title}'")


def _checkpoint_points(path: Path) -> int:
    total = 0
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "checkpoint":
            kw = {k.arg: k.value for k in node.keywords}
            total += ast.literal_eval(kw["points"]) if "points" in kw else 1
    return total


def test_checkpoint_points_are_the_syllabus_points():
    for c in syllabus.chapters():
        files = sorted((REPO / "tests/checkpoints").glob(f"test_{c.checkpoint}_*.py")) \
            if c.checkpoint else []
        if c.written and c.checkpoint:
            assert files, f"no checkpoint file for {c.checkpoint}"
            assert sum(_checkpoint_points(f) for f in files) == c.points, c.checkpoint
        elif not c.written:
            assert not files and c.points == 0


def test_every_exercise_names_its_chapter_and_is_in_the_syllabus(tmp_path):
    """Each `# BEGIN SOLUTION` region says chapter="NN"; a written chapter's exercises are
    exactly the engine functions the syllabus lists for it."""
    from labkit.course.workspace import plan_workspace
    _, exercises, _ = plan_workspace(tmp_path / "ws")
    by_number = {c.number: c for c in syllabus.chapters()}
    found: dict[str, set[str]] = {}
    for e in exercises:
        assert e.chapter in by_number, f"{e.file}:{e.line} {e.function}: chapter {e.chapter!r}"
        module = e.file.removesuffix(".py").replace("/", ".").replace("labkit_student", "labkit", 1)
        # a method is listed by its own name ("client:resolve" for RegistryClient.resolve())
        function = (e.function or '').removesuffix('()').rpartition('.')[2]
        found.setdefault(e.chapter, set()).add(f"{module}:{function}")
    for c in syllabus.chapters():
        if c.written and c.layer:
            assert found.get(c.number) == set(c.functions), c.number
