"""Every chapter runs top to bottom, unattended: each notebooks/*.ipynb is executed with
nbclient in a kernel from this virtualenv (as root), against a private lab (conftest.py),
and any cell that raises fails the test with that cell's source and traceback.

A new chapter is picked up by adding its notebook; nothing here names a chapter."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = 120   # seconds; a cell that takes longer is stuck, not slow


def _failed_cell(nb) -> str:
    """The first cell whose outputs hold an error: its number, source and traceback."""
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                # IPython colours its tracebacks with ANSI escapes: drop them for the pytest log
                trace = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(out.get("traceback", [])))
                return f"cell {i}:\n{cell.source}\n--- {out.get('ename')}: {out.get('evalue')}\n{trace}"
    return ""


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks/*.ipynb found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stored_without_outputs(path):
    """Outputs make every diff unreadable (and leak one machine's PIDs and paths)."""
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"{path.name}: clear the outputs of cells {dirty} before committing"
    # nbformat 4.5: every cell has a unique id (without one, nbformat warns, and will refuse)
    import json
    cells = json.loads(path.read_text())["cells"]
    ids = [c.get("id") for c in cells]
    assert None not in ids and len(set(ids)) == len(ids), f"{path.name}: cells without a unique id"


@pytest.mark.root
@pytest.mark.slow
def test_the_kernel_sees_the_private_lab(notebook_lab):
    """The notebooks must run against the private lab, never the one in use on this host."""
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(cells=[new_code_cell("from labkit import paths; print(paths.RUN, paths.REGISTRY_ADDR)")])
    NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3").execute(env=notebook_lab.env)
    printed = nb.cells[0].outputs[0]["text"].split()
    assert printed == [notebook_lab.env["LABKIT_RUN_DIR"], notebook_lab.env["LABKIT_REGISTRY_ADDR"]]


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, notebook_lab):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute(env=notebook_lab.env)   # the kernel sees the private lab's LABKIT_* paths
    except CellTimeoutError as e:
        pytest.fail(f"{path.name}: a cell ran longer than {CELL_TIMEOUT}s\n{e}", pytrace=False)
    except CellExecutionError as e:
        pytest.fail(f"{path.name}: {_failed_cell(nb) or e}", pytrace=False)
    ran = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    assert ran and all(c.get("execution_count") for c in ran), "some code cells did not run"


# chapter -> (its layers' environment variables, the student's file, the functions it asks for)
UNSOLVED = {
    "01": ("LABKIT_IMPL_NAMESPACES", "labkit_student/namespaces.py",
           ("namespace_flags", "set_hostname", "mount_proc", "exit_status", "make_mounts_private",
            "network_interfaces", "join_namespace")),
    "02": ("LABKIT_IMPL_CGROUPS", "labkit_student/runc/cgroups.py",
           ("is_v2", "memory_limit_file", "pids_max", "shares_to_weight", "join", "freeze",
            "destroy")),
    "03": ("LABKIT_IMPL_ROOTFS", "labkit_student/runc/mounts.py",
           ("mount_entry", "enter_root", "populate_dev", "readonly_path")),
    # the runtime layer: the whole labkit_student.runc package (its cgroups and mounts too)
    "04": ("LABKIT_IMPL_RUNTIME", "labkit_student/runc/process.py",
           ("Container.status", "run_hook", "find_executable", "set_identity")),
    "05": ("LABKIT_IMPL_SHIM", "labkit_student/shim/reaper.py",
           ("become_subreaper", "reap", "open_output", "record_exit",
            "TaskService.Create")),
    "06": ("LABKIT_IMPL_DISTRIBUTION", "labkit_student/distribution/client.py",
           ("RegistryClient.resolve", "split_domain", "select_manifest", "chain_ids")),
    # two in-process layers (space-separated variables): the content store and the snapshotter
    "07": ("LABKIT_IMPL_CONTENT LABKIT_IMPL_SNAPSHOTTER", "labkit_student/containerd/snapshots.py",
           ("OverlaySnapshotter.mounts", "_LocalWriter.commit", "Ingest.write")),
    "08": ("LABKIT_IMPL_NETWORK", "labkit_student/dockerd/net/ipam.py",
           ("choose_subnet", "allocate")),
    # a process layer: the kernel imports the workspace's labkit_student.dockerd (the lab's
    # labkit-dockerd stays the reference)
    "09": ("LABKIT_IMPL_DOCKERD", "labkit_student/dockerd/router.py",
           ("split_version", "dispatch", "container_create", "container_wait", "resources")),
    "10": ("LABKIT_IMPL_CLI", "labkit_student/cli/run.py",
           ("container_config", "create", "attach_wait_start", "copy_output",
            "start_error_status")),
    "11": ("LABKIT_IMPL_BUILDER", "labkit_student/dockerd/builder/steps.py",
           ("layer_tar", "cache_key", "cache_lookup", "run_step")),
}


@pytest.mark.parametrize("chapter", sorted(UNSOLVED))
def test_run_all_goes_on_past_unsolved_exercises(chapter, fresh_notebook_lab, tmp_path):
    """A chapter with a fresh workspace (nothing solved): Run All reaches the end, each cell
    that needs an exercise saying which one is not done yet instead of stopping there."""
    from labkit.course.workspace import generate_workspace
    variable, student_file, functions = UNSOLVED[chapter]
    path = next(p for p in NOTEBOOKS if p.name.startswith(f"{chapter}-"))
    generate_workspace(tmp_path / "ws")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    env = dict(fresh_notebook_lab.env,
               **{v: f"workspace:{tmp_path / 'ws'}" for v in variable.split()})
    try:
        client.execute(env=env)
    except CellExecutionError as e:
        pytest.fail(f"{path.name}: {_failed_cell(nb) or e}", pytrace=False)
    said = "\n".join(out.get("text", "") for c in nb.cells for out in c.get("outputs", []))
    for function in functions:
        assert f"exercise in {function}() ({student_file}): not done yet" in said \
            or f"{function}: not done yet" in said, function

