"""Workspace generation: solution regions become TODO + HINT + NotImplementedError, the result
always imports, generation is idempotent and never loses a student's edits."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from labkit.course.workspace import (MANIFEST, REFERENCE_PACKAGE, WorkspaceError,
                                     generate_workspace, own_package_imports, strip_solutions)
from .helpers import run_python


def test_regions_become_exercises(sample_pkg: Path, short_tmp: Path) -> None:
    report = generate_workspace(short_tmp / "ws", sample_pkg)
    text = (short_tmp / "ws" / "labkit_student" / "ns.py").read_text()
    for secret in ("SECRET-", "socket.sethostname(name)\n", "0x04000000", "return x + y"):
        assert secret not in text, f"solution text {secret!r} leaked into the workspace"
    lines = text.splitlines()
    # a region inside a function: TODO, HINTs, raise -- at the BEGIN line's indentation (in an `if`)
    i = lines.index("        # TODO: check the name, then return it")
    assert lines[i + 1] == "        # HINT: sethostname(2)"
    assert lines[i + 2] == "        # HINT: Python wraps it: socket.sethostname"
    assert lines[i + 3].startswith("        raise NotImplementedError(")
    assert "sethostname()" in lines[i + 3]
    assert lines[i + 4] == '    return "empty"'            # code after the region is kept
    # a nested function inside a method
    j = next(n for n, line in enumerate(lines) if "Runtime.outer.inner()" in line and "TODO" in line)
    assert lines[j].startswith("            # TODO:")
    assert lines[j + 1] == "            # HINT: runc(8)"
    assert lines[j + 2].startswith("            raise NotImplementedError(")
    # a region at class level: the method keeps decorator, signature and docstring
    assert "    @staticmethod\n    def create(x: int,\n               y: int) -> int:\n" \
           '        """Add two numbers."""\n        # TODO: implement Runtime.create()\n' \
           '        # HINT: runtime-spec, section "Lifecycle"\n        raise NotImplementedError(' in text
    # regions at module level: constants become None, a class keeps its outline
    assert "CLONE_NEWUTS = None  # TODO" in text and "LIMIT: int = None  # TODO" in text
    assert "# HINT: unshare(2): the CLONE_NEW* flags" in text
    assert "class Helper:\n    \"\"\"Helps.\"\"\"\n    value = None" in text
    assert "    def go(self):\n        # TODO: implement Helper.go()\n" in text
    # the docstring that quotes a marker is untouched
    assert '    # BEGIN SOLUTION\n"""' in text
    ast.parse(text)
    assert {e.function for e in report.exercises} >= {"sethostname()", "Runtime.outer.inner()",
                                                      "Runtime.create()", "main()"}
    for exercise in report.exercises:   # each exercise points at its TODO line
        generated = (short_tmp / "ws" / exercise.file).read_text().splitlines()
        assert "# TODO" in generated[exercise.line - 1]


def test_workspace_layout_and_import(sample_pkg: Path, short_tmp: Path) -> None:
    ws = short_tmp / "ws"
    generate_workspace(ws, sample_pkg)
    assert (ws / "labkit_student" / "spec.json").read_text() == '{"ociVersion": "1.0.2"}\n'
    assert not (ws / "labkit_student" / "course").exists()
    assert json.loads((ws / MANIFEST).read_text())["files"]
    # the skeleton imports, and calling an exercise raises NotImplementedError (never ImportError)
    result = run_python("""
        import labkit_student.ns as ns
        assert ns.sethostname("") == "empty"
        for call in (lambda: ns.sethostname("x"), lambda: ns.Runtime().outer(),
                     lambda: ns.Runtime.create(1, 2), lambda: ns.Helper().go()):
            try:
                call()
            except NotImplementedError as e:
                print("NIE", e)
        """, env={"PYTHONPATH": str(ws)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("NIE ") == 4
    assert "see its TODO and HINT lines" in result.stdout


def test_process_layer_wrapper_runs_the_workspace(sample_pkg: Path, short_tmp: Path) -> None:
    ws = short_tmp / "ws"
    generate_workspace(ws, sample_pkg)
    wrapper = ws / "bin" / "labkit-runc"
    assert os.access(wrapper, os.X_OK)
    # the solved main() is replaced, so the wrapper reaches the student's NotImplementedError
    result = run_python(f"""
        import subprocess
        from labkit.lab.implementations import resolve_binary
        program = resolve_binary("runtime")
        assert str(program) == {str(wrapper)!r}, program
        out = subprocess.run([program, "state", "c1"], capture_output=True, text=True)
        print(out.returncode, out.stdout, out.stderr)
        """, env={"LABKIT_IMPL_RUNTIME": f"workspace:{ws}"})
    assert result.returncode == 0, result.stderr
    assert "runtime state c1" in result.stdout
    assert "NotImplementedError: exercise in main()" in result.stdout


def test_regenerating_is_idempotent(sample_pkg: Path, short_tmp: Path) -> None:
    ws = short_tmp / "ws"
    first = generate_workspace(ws, sample_pkg)
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in ws.rglob("*") if p.is_file()}
    again = generate_workspace(ws, sample_pkg)
    assert again.written == [] and sorted(again.unchanged) == sorted(first.written)
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in ws.rglob("*") if p.is_file()} == before


def test_reference_changes_reach_untouched_files(sample_pkg: Path, short_tmp: Path) -> None:
    ws = short_tmp / "ws"
    generate_workspace(ws, sample_pkg)
    (sample_pkg / "extra.py").write_text("X = 1\n")
    (sample_pkg / "spec.json").write_text("{}\n")
    report = generate_workspace(ws, sample_pkg)
    assert sorted(report.written) == ["labkit_student/extra.py", "labkit_student/spec.json"]
    (sample_pkg / "extra.py").unlink()
    report = generate_workspace(ws, sample_pkg)
    assert report.removed == ["labkit_student/extra.py"]
    assert not (ws / "labkit_student" / "extra.py").exists()


def test_refuses_to_overwrite_student_edits(sample_pkg: Path, short_tmp: Path) -> None:
    ws = short_tmp / "ws"
    generate_workspace(ws, sample_pkg)
    mine = ws / "labkit_student" / "ns.py"
    solved = mine.read_text().replace("CLONE_NEWUTS = None", "CLONE_NEWUTS = 0x04000000")
    mine.write_text(solved)
    (ws / "notes.txt").write_text("my notes\n")           # the student's own file: never touched
    with pytest.raises(WorkspaceError) as err:
        generate_workspace(ws, sample_pkg)
    assert "labkit_student/ns.py" in str(err.value) and "--force" in str(err.value)
    assert mine.read_text() == solved
    report = generate_workspace(ws, sample_pkg, force=True)
    assert report.backup is not None
    assert (report.backup / "labkit_student" / "ns.py").read_text() == solved
    assert "CLONE_NEWUTS = None" in mine.read_text()
    assert (ws / "notes.txt").read_text() == "my notes\n"


def test_existing_files_without_manifest_count_as_edits(sample_pkg: Path, short_tmp: Path) -> None:
    ws = short_tmp / "ws"
    (ws / "labkit_student").mkdir(parents=True)
    (ws / "labkit_student" / "ns.py").write_text("# my own work\n")
    with pytest.raises(WorkspaceError, match="refusing to overwrite 1 file"):
        generate_workspace(ws, sample_pkg)
    assert (ws / "labkit_student" / "ns.py").read_text() == "# my own work\n"


@pytest.mark.parametrize("source, message", [
    ("def f():\n    # BEGIN SOLUTION\n    return 1\n", "m.py:2: '# BEGIN SOLUTION' is never closed"),
    ("def f():\n    return 1\n    # END SOLUTION\n", "m.py:3: '# END SOLUTION' without a BEGIN"),
    ("def f():\n    # BEGIN SOLUTION\n    # BEGIN SOLUTION\n    return 1\n    # END SOLUTION\n",
     "m.py:3: solution regions cannot nest"),
    ("def f():\n    x = 1  # BEGIN SOLUTION\n    return x\n    # END SOLUTION\n",
     "m.py:2: '# BEGIN SOLUTION' must be alone"),
    ('def f():\n    # BEGIN SOLUTION hint=unquoted\n    return 1\n    # END SOLUTION\n',
     "m.py:2: cannot read"),
    ("# BEGIN SOLUTION\nif True:\n# END SOLUTION\n    pass\n", "m.py"),
])
def test_bad_markers_are_named(source: str, message: str) -> None:
    with pytest.raises(WorkspaceError) as err:
        strip_solutions(source, "m.py")
    assert message in str(err.value)


def test_module_without_regions_is_copied_verbatim() -> None:
    source = "X = 1  # a comment\n"
    assert strip_solutions(source, "m.py") == (source, [])


def test_refuses_destination_inside_reference(sample_pkg: Path) -> None:
    with pytest.raises(WorkspaceError, match="inside the reference package"):
        generate_workspace(sample_pkg / "ws", sample_pkg)


def test_the_real_reference_makes_an_importable_workspace(short_tmp: Path) -> None:
    """Every module of labkit, stripped, still compiles (whatever regions the layers add)."""
    ws = short_tmp / "ws"
    report = generate_workspace(ws, REFERENCE_PACKAGE)
    for path in (ws / "labkit_student").rglob("*.py"):
        compile(path.read_text(), str(path), "exec", dont_inherit=True)
    assert report.written


def test_imports_within_a_package_point_at_the_students_package() -> None:
    source = ("from labkit.runc.container import Container\n"
              "from labkit.runc import (cgroups,\n    log)\n"
              "import labkit.runc.state as state\n"
              "import labkit.runc.state\n"               # binds `labkit`: left alone
              "from labkit import syscalls\n"            # another layer: the reference
              "from labkit.wire.shim import task_pb2\n"
              "NAME = 'labkit.runc.container'\n"         # not an import
              "def f():\n    from labkit.runc.init import run  # late import\n    return run\n")
    out = own_package_imports(source, "runc", "m.py").splitlines()
    assert out[0] == "from labkit_student.runc.container import Container"
    assert out[1:3] == ["from labkit_student.runc import (cgroups,", "    log)"]
    assert out[3] == "import labkit_student.runc.state as state"
    assert out[4:7] == ["import labkit.runc.state", "from labkit import syscalls",
                        "from labkit.wire.shim import task_pb2"]
    assert out[7] == "NAME = 'labkit.runc.container'"
    assert out[9] == "    from labkit_student.runc.init import run  # late import"


def test_students_package_uses_its_own_modules(sample_pkg: Path, short_tmp: Path) -> None:
    (sample_pkg / "runc" / "helper.py").write_text('WHO = "reference"\n')
    (sample_pkg / "runc" / "who.py").write_text("from labkit.runc.helper import WHO\n")
    ws = short_tmp / "ws"
    generate_workspace(ws, sample_pkg)
    (ws / "labkit_student" / "runc" / "helper.py").write_text('WHO = "student"\n')
    result = run_python("import labkit_student.runc.who as w; print(w.WHO)", env={"PYTHONPATH": str(ws)})
    assert result.stdout.strip() == "student", result.stderr


def test_cli_workspace_errors_are_one_line(sample_pkg: Path, short_tmp: Path) -> None:
    (short_tmp / "afile").write_text("x")
    for dest, words in ((short_tmp / "afile", "exists and is not a directory"),
                        (Path("/proc/labkit-ws"), "/proc/labkit-ws")):
        proc = subprocess.run([sys.executable, "-m", "labkit.course", "workspace", str(dest),
                               "--source", str(sample_pkg)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2
        assert proc.stderr.startswith("error: ") and words in proc.stderr
        assert "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "labkit.course", "workspace", str(short_tmp / "ok"),
                           "--source", str(sample_pkg)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "exercise labkit_student/ns.py:" in proc.stdout


def test_solve_chapters_fills_in_only_those_chapters(tmp_path: Path, short_tmp: Path) -> None:
    """A workspace where chapter "05" is done: its regions carry the solution, the regions of
    other chapters (and untagged ones) stay exercises -- what a chapter's proof grades."""
    from labkit.course.workspace import solve_chapters

    pkg = tmp_path / "labkit"
    (pkg / "shim").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "shim" / "__init__.py").write_text("")
    (pkg / "shim" / "reaper.py").write_text(
        "from labkit.shim import other\n\n\n"
        "def reap():\n"
        '    # BEGIN SOLUTION chapter="05" hint="waitpid(2)"\n'
        "    return 'SOLVED-05'\n"
        "    # END SOLUTION\n\n\n"
        "def later():\n"
        '    # BEGIN SOLUTION chapter="07" hint="x"\n'
        "    return 'SOLVED-07'\n"
        "    # END SOLUTION\n")
    (pkg / "shim" / "other.py").write_text("")
    ws = short_tmp / "ws"
    generate_workspace(ws, pkg)
    changed = solve_chapters(ws, {"05"}, pkg)
    assert changed == ["labkit_student/shim/reaper.py"]
    text = (ws / "labkit_student" / "shim" / "reaper.py").read_text()
    assert "return 'SOLVED-05'" in text and "SOLVED-07" not in text
    assert "exercise in later()" in text
    assert "from labkit_student.shim import other" in text     # still the student's package
