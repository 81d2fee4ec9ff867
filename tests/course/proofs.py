"""The proof that a chapter's checkpoints grade, written once for every chapter.

A checkpoint that cannot fail is a bug, and so is one that fails on a correct solution. Each
chapter's tests/course/test_cpNN_proofs.py calls `chapter_proofs` with what is its own -- the
layers its workspace is graded as, its docker-through-your-code checkpoint and the error that
one must show on a blank workspace, and one seeded bug per checkpoint -- and gets four proofs:

    test_reference_gets_full_marks       the reference: every checkpoint passes, full marks,
                                         and every checkpoint has its seeded bug
    test_fresh_workspace_fails_every_checkpoint
                                         a blank workspace: 0 points; docker, through it, fails
                                         naming the function not done yet, without a traceback
    test_the_chapters_solution_alone_gets_full_marks
                                         only this chapter and its prerequisites solved (every
                                         other exercise blank): full marks -- the chapter needs
                                         no later chapter's work
    test_seeded_bug_is_caught[CHECKPOINT]
                                         that solution with one realistic mistake, graded with
                                         only CHECKPOINT selected: it fails (a prerequisite
                                         outside the run does not block, so the checkpoint
                                         itself must notice)

Generating and solving a workspace takes seconds, so each is made once per chapter (module
fixtures) and copied for each proof; the copy's bin/ wrappers, which name their workspace's
directory, are pointed at the copy.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

import pytest

from labkit.course import syllabus
from labkit.course.grading import grade, skeleton_problems
from labkit.course.workspace import STUDENT_PACKAGE, generate_workspace, solve_chapters

# How docker's error names the exercise that stopped it.
EXERCISE = re.compile(r"exercise in (\S+)\(\) \(labkit_student/(\S+\.py)\): not done yet")

# A seeded bug: (the mistake, the file, text of the solved file, what it becomes); or, where a
# chapter's bugs all go into one file, (the mistake, text, what it becomes)
Mutation = tuple[str, str, str, str] | tuple[str, str, str]


def with_prerequisites(number: str) -> set[str]:
    """The chapter and every chapter it builds on, transitively."""
    found, todo = set(), [number]
    while todo:
        n = todo.pop()
        if n not in found:
            found.add(n)
            todo += syllabus.chapter(n).prerequisites
    return found


def copy_of(workspace: Path, dest: Path) -> Path:
    """A copy of `workspace` at `dest` whose bin/ wrappers run the copy, not the original."""
    shutil.copytree(workspace, dest, symlinks=True)
    for wrapper in (dest / "bin").iterdir():
        wrapper.write_text(wrapper.read_text().replace(str(workspace), str(dest)))
    return dest


def mutate(workspace: Path, rel: str, mutation: tuple[str, str, str]) -> None:
    """Put the seeded bug into the workspace's copy of labkit/`rel`."""
    mistake, old, new = mutation
    target = workspace / STUDENT_PACKAGE / rel
    source = target.read_text()
    assert source.count(old) == 1, \
        f"{mistake}: the mutation's text must occur once in {target}: {old!r}"
    target.write_text(source.replace(old, new))


def chapter_proofs(number: str, *, layers: Iterable[str], proof: str,
                   blank_error: Iterable[str | re.Pattern], mutations: dict[str, Mutation],
                   solved_layers: Iterable[str] | None = None, file: str = "",
                   under: str = "") -> dict[str, object]:
    """The fixtures and four proofs of chapter `number` ("01"), for the calling test module's
    globals: `globals().update(chapter_proofs(...))`.

    layers:        the layers graded from the workspace (labkit lab use LAYER workspace)
    proof:         the checkpoint that runs docker through the student's code
    blank_error:   what that checkpoint's message holds on a blank workspace (strings, or
                   patterns searched for)
    mutations:     checkpoint -> its seeded bug; every checkpoint of the chapter has one
    file, under:   where the bugs go: the one `file` under labkit/ of three-part bugs; the
                   directory under labkit/ that four-part bugs name their files in
    solved_layers: the layers graded from the solved workspace (default `layers`; more when a
                   prerequisite's layer is to come from the student's work too)
    """
    cp = f"cp{number}"
    chapter_info = syllabus.chapter(number)
    layers, solved_layers = list(layers), list(solved_layers or layers)

    def where(mutation: Mutation) -> tuple[str, tuple[str, str, str]]:
        if len(mutation) == 3:
            return file, mutation
        mistake, name, old, new = mutation
        return (f"{under}/{name}" if under else name), (mistake, old, new)

    @pytest.fixture(autouse=True)
    def graded_as_told(monkeypatch):
        """Whatever the machine's configuration says, these proofs grade what they are told
        to: every layer the reference, but those a test hands grade() a workspace for."""
        from labkit.lab.implementations import LAYER_ENV_PREFIX, LAYERS
        for layer in LAYERS:
            monkeypatch.setenv(LAYER_ENV_PREFIX + layer.upper(), "reference")

    @pytest.fixture(scope="module")
    def workspaces():
        """A blank workspace and one with this chapter (and its prerequisites) solved, made
        once (short paths: they end up in messages and wrapper scripts)."""
        base = Path(tempfile.mkdtemp(prefix=f"lk-{cp}-", dir="/tmp"))
        try:
            generate_workspace(base / "blank")
            solve_chapters(copy_of(base / "blank", base / "solved"), with_prerequisites(number))
            yield base / "blank", base / "solved"
        finally:
            shutil.rmtree(base, ignore_errors=True)

    def test_reference_gets_full_marks(tmp_path):
        report = grade([cp], out_dir=tmp_path, quiet=True)
        chapter = report.chapters[cp]
        assert chapter.status == "graded", chapter.error
        assert [t.name for t in chapter.tests if t.outcome != "passed"] == [], \
            report.output[-3000:]
        assert chapter.max == chapter_info.points and report.full_marks
        # Every checkpoint of the chapter has its seeded bug.
        assert sorted(t.name for t in chapter.tests) == sorted(mutations)

    def test_fresh_workspace_fails_every_checkpoint(workspaces, tmp_path):
        report = grade([cp], workspaces[0], out_dir=tmp_path, layers=layers, quiet=True)
        chapter = report.chapters[cp]
        assert skeleton_problems(report) == []
        assert chapter.points == 0 and len(chapter.tests) == len(mutations)
        assert all(t.outcome in ("failed", "blocked") for t in chapter.tests), \
            {t.name: t.outcome for t in chapter.tests}
        # the proof: docker through the blank workspace fails, naming the function, briefly
        found = next(t for t in chapter.tests if t.name == proof)
        assert found.outcome == "failed"
        for expected in blank_error:
            if isinstance(expected, re.Pattern):
                assert expected.search(found.message), (expected.pattern, found.message)
            else:
                assert expected in found.message, found.message
        assert "Traceback" not in found.message

    def test_the_chapters_solution_alone_gets_full_marks(workspaces, tmp_path):
        report = grade([cp], workspaces[1], out_dir=tmp_path / "grade", layers=solved_layers,
                       quiet=True)
        chapter = report.chapters[cp]
        assert [t.name for t in chapter.tests if t.outcome != "passed"] == [], \
            report.output[-3000:]
        assert chapter.points == chapter.max == chapter_info.points

    @pytest.mark.parametrize("test_name", sorted(mutations))
    def test_seeded_bug_is_caught(test_name, workspaces, tmp_path):
        mutated = copy_of(workspaces[1], tmp_path / "ws")
        mutate(mutated, *where(mutations[test_name]))
        # Only the targeted test (pytest -k matches substrings: exclude longer names with it).
        longer = [f"not {other}" for other in mutations
                  if other != test_name and test_name in other]
        report = grade([cp], mutated, out_dir=tmp_path / "grade", layers=layers, quiet=True,
                       pytest_args=["-k", " and ".join([test_name, *longer])])
        outcomes = {t.name: t.outcome for t in report.chapters[cp].tests}
        assert outcomes == {test_name: "failed"}, \
            f"{mutations[test_name][0]}: {outcomes}\n{report.output[-3000:]}"

    return {"graded_as_told": graded_as_told, "workspaces": workspaces,
            "test_reference_gets_full_marks": test_reference_gets_full_marks,
            "test_fresh_workspace_fails_every_checkpoint":
                test_fresh_workspace_fails_every_checkpoint,
            "test_the_chapters_solution_alone_gets_full_marks":
                test_the_chapters_solution_alone_gets_full_marks,
            "test_seeded_bug_is_caught": test_seeded_bug_is_caught}
