"""`labkit grade` (the top-level verb), `labkit lab grade` (its alias), `labkit lab workspace`
and the implementations table of `labkit lab status`: run as a user runs them, in a separate
process, with their own configuration directory so that the host's /etc/labkit is not read."""

from __future__ import annotations

import json
import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from support import run_labkit, short_tmpdir


@pytest.fixture
def home():
    """A temporary directory for reports, workspaces and the configuration file."""
    with short_tmpdir("lkg-") as root:
        yield root


def labkit(home: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABKIT_")}
    env.pop("DOCKER_HOST", None)
    env.update(LABKIT_ETC_DIR=str(home / "etc"), LABKIT_RUN_DIR=str(home / "run"),
               LABKIT_LIB_DIR=str(home / "lib"), LABKIT_LOG_DIR=str(home / "log"),
               LABKIT_REGISTRY_ADDR="127.0.0.1:15999", LABKIT_JUPYTER_IP="127.0.0.1",
               LABKIT_JUPYTER_PORT="15998", **extra_env)
    return run_labkit(*args, env=env, cwd=home, timeout=300)


@pytest.mark.root
@pytest.mark.parametrize("verb", [["grade"], ["lab", "grade"]])
def test_grade_cp01_full_marks_on_the_reference(home, verb):
    out = home / "reports"
    r = labkit(home, *verb, "cp01", "--out", str(out), "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    table = r.stdout.splitlines()
    cp01 = next(line.split() for line in table if line.startswith("cp01"))
    points, total = map(int, cp01[1].split("/"))
    assert points == total > 0
    assert any(line.startswith("total") and "full marks" in line for line in table)
    report = json.loads((out / "grade.json").read_text())
    assert report["chapters"]["cp01"]["points"] == report["chapters"]["cp01"]["max"] == total
    assert report["implementations"]["namespaces"] == "reference"
    suite = ET.parse(out / "grade-junit.xml").getroot()
    cases = suite.findall(".//testcase")
    assert cases and not suite.findall(".//failure") and not suite.findall(".//error")
    assert f"reports: {out / 'grade.json'}  {out / 'grade-junit.xml'}" in r.stdout


def test_grade_with_a_misconfigured_layer_is_one_clear_message(home):
    missing = home / "no-such-workspace"
    r = labkit(home, "grade", "cp01", "--out", str(home / "reports"),
               LABKIT_IMPL_NAMESPACES=f"workspace:{missing}")
    assert r.returncode == 2
    assert "layer 'namespaces'" in r.stderr and str(missing) in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    # the same from the configuration file
    (home / "etc").mkdir()
    (home / "etc" / "implementations.toml").write_text(
        f'[layers]\nsyscalls = "workspace:{missing}"\n')
    r = labkit(home, "grade", "cp01", "--out", str(home / "reports"))
    assert r.returncode == 2
    assert "layer 'syscalls'" in r.stderr and str(missing) in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_grade_bad_chapter_and_help(home):
    r = labkit(home, "grade", "chapter1")
    assert r.returncode == 2 and "unknown chapter 'chapter1'" in r.stderr, r.stderr
    r = labkit(home, "grade", "--help")
    assert r.returncode == 0 and "--workspace" in r.stdout and "--out" in r.stdout


def test_lab_workspace_then_status_shows_it(home):
    ws = home / "ws"
    r = labkit(home, "lab", "workspace", str(ws))
    assert r.returncode == 0, r.stderr
    assert (ws / "labkit_student" / "namespaces.py").is_file()
    r = labkit(home, "lab", "status", LABKIT_IMPL_NAMESPACES=f"workspace:{ws}",
               LABKIT_IMPL_RUNTIME="binary:runc")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("implementations ("))
    assert lines[start + 1].split() == ["LAYER", "IMPLEMENTATION", "CHOSEN", "IN"]
    table_lines = lines[start + 2:]
    table_lines = table_lines[:table_lines.index("")] if "" in table_lines else table_lines
    rows = {line.split()[0]: line.split()[1:] for line in table_lines}
    # after the table, where the workspace's in-process layers run
    assert "namespaces (labkit.namespaces) runs in labkit-runc: from the workspace" in lines
    from labkit.lab.implementations import LAYERS
    assert set(rows) == set(LAYERS)      # process layers and in-process building blocks
    assert rows["namespaces"] == [f"workspace:{ws}", "LABKIT_IMPL_NAMESPACES"]
    assert rows["runtime"] == ["binary:runc", "LABKIT_IMPL_RUNTIME"]
    assert rows["snapshotter"] == ["reference", "default"]
    # outside the repository: Jupyter cannot show it, and status says so
    assert any(line.startswith(f"workspace {ws}: outside JupyterLab's root") for line in lines)


def test_status_with_a_misconfigured_layer(home):
    missing = home / "nothing"
    r = labkit(home, "lab", "status", LABKIT_IMPL_SHIM=f"workspace:{missing}")
    assert r.returncode == 2
    assert r.stderr.strip() == (f"labkit lab status: layer 'shim': workspace {missing} does not "
                                f"exist (LABKIT_IMPL_SHIM); create it with `labkit lab workspace "
                                f"{missing}`")
    assert r.stdout.startswith("LAYER")     # what runs is still shown
    r = labkit(home, "lab", "up", LABKIT_IMPL_SHIM=f"workspace:{missing}")
    assert r.returncode == 2 and "layer 'shim'" in r.stderr and "Traceback" not in r.stderr


def test_pass_through_keeps_the_arguments_in_order():
    from labkit.cli.main import passed_through

    assert passed_through(["grade", "--out", "r", "cp01"], ["grade"]) == ["--out", "r", "cp01"]
    assert passed_through(["-H", "unix:///x", "lab", "grade", "--workspace", "w"],
                          ["lab", "grade"]) == ["--workspace", "w"]
    assert passed_through(["--host=unix:///x", "lab", "workspace", "d", "--force"],
                          ["lab", "workspace"]) == ["d", "--force"]


@pytest.mark.root
def test_grade_a_fresh_workspace_options_first(home):
    ws = home / "ws"
    assert labkit(home, "lab", "workspace", str(ws)).returncode == 0
    out = home / "reports"
    r = labkit(home, "grade", "--workspace", str(ws), "--out", str(out), "--quiet", "cp01")
    assert r.returncode == 1, r.stdout + r.stderr      # points missing: not full marks
    report = json.loads((out / "grade.json").read_text())
    assert report["workspace"] == str(ws)
    assert report["chapters"]["cp01"]["points"] == 0 < report["chapters"]["cp01"]["max"]


@pytest.mark.root
def test_check_one_exercise_as_the_notebook_says(home):
    """`labkit check cp01 NAME`: the configured code (here a blank workspace for chapter 01's
    layer), only the checkpoints named like NAME, each failure once with its hint and the
    function that is not done; no traceback. The reference passes; a wrong name is an error."""
    ws = home / "ws"
    assert labkit(home, "lab", "workspace", str(ws)).returncode == 0
    r = labkit(home, "check", "cp01", "namespace_flags", LABKIT_IMPL_NAMESPACES=f"workspace:{ws}")
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "FAILED   test_namespace_flags (0/2)"
    assert "exercise in namespace_flags() (labkit_student/namespaces.py)" in lines[1]
    assert lines[2].startswith("    hint: namespace_flags:") and len(lines) == 3
    assert "Traceback" not in r.stdout + r.stderr
    blocked = labkit(home, "check", "cp01", "isolated_uts", LABKIT_IMPL_NAMESPACES=f"workspace:{ws}")
    assert blocked.stdout.startswith("BLOCKED  test_isolated_uts (0/2): needs test_namespace_flags")
    ok = labkit(home, "check", "cp01", "namespace_flags")
    assert ok.returncode == 0 and ok.stdout == "PASSED   test_namespace_flags (2/2)\n", ok.stdout
    bad = labkit(home, "check", "cp01", "no_such_exercise")
    assert bad.returncode == 2 and "no checkpoint of cp01" in bad.stderr


@pytest.mark.root
def test_grade_prints_each_failure_once_without_tracebacks(home):
    ws = home / "ws"
    assert labkit(home, "lab", "workspace", str(ws)).returncode == 0
    r = labkit(home, "grade", "cp01", "--workspace", str(ws), "--out", str(home / "reports"))
    assert r.returncode == 1
    assert "Traceback" not in r.stdout and "raise NotImplementedError" not in r.stdout
    hint = "hint: namespace_flags: uts -> CLONE_NEWUTS"
    assert r.stdout.count(hint) == 1 and r.stdout.count("test_namespace_flags (0/2)") == 1
    verbose = labkit(home, "grade", "cp01", "-v", "--workspace", str(ws), "--out", str(home / "r2"))
    assert "raise NotImplementedError" in verbose.stdout      # -v: pytest's tracebacks too
