"""labkit.lab.launch: a chosen in-process layer is the workspace's file, under the reference's name.

The module inside a package case (labkit.containerd.snapshots, and chapter 02's
labkit.runc.cgroups) is the one that matters: the student's file must run among the
*reference* modules of its package, never drag in the student's package (whose other
chapters' exercises are blank)."""

import subprocess
import sys
import textwrap

import pytest

from labkit.course.workspace import generate_workspace
from labkit.lab.launch import reference_imports


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    dest = tmp_path_factory.mktemp("ws")
    generate_workspace(dest)
    return dest


def _probe(workspace, layer, code):
    """Run `code` in a fresh interpreter with `layer` taken from `workspace` by the launcher."""
    script = (f"import sys\nfrom labkit.lab import launch\n"
              f"launch.install({{{layer!r}: {str(workspace)!r}}})\n" + textwrap.dedent(code))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_reference_imports_points_only_import_statements_back():
    source = ("from labkit_student.runc import log\n"
              "import labkit_student.runc.cgroups as cg\n"
              "from labkit_student.runc.container import (\n    Container,\n)\n"
              "MESSAGE = 'see labkit_student/runc/cgroups.py'\n")
    out = reference_imports(source)
    assert "from labkit.runc import log" in out
    assert "import labkit.runc.cgroups as cg" in out
    assert "from labkit.runc.container import (" in out
    assert "'see labkit_student/runc/cgroups.py'" in out      # strings are left alone


def test_a_module_inside_a_package_is_the_students_file_among_reference_modules(workspace):
    out = _probe(workspace, "snapshotter", """
        import labkit.containerd.snapshots as s, labkit.containerd.metadata as m
        print(s.__file__); print(m.__file__)
        print(sorted(n for n in sys.modules if n.startswith("labkit_student")))
    """).splitlines()
    assert out[0] == str(workspace / "labkit_student/containerd/snapshots.py")
    assert "labkit_student" not in out[1]                     # its sibling stays the reference
    assert out[2] == "[]"                                     # no student package dragged in


def test_a_top_level_module_layer_is_the_students_file(workspace):
    out = _probe(workspace, "namespaces", """
        from labkit import namespaces
        print(namespaces.__file__)
        try:
            namespaces.namespace_flags(["pid"])
        except NotImplementedError as e:
            print(e)
    """).splitlines()
    assert out[0] == str(workspace / "labkit_student/namespaces.py")
    assert "exercise in namespace_flags()" in out[1]


def test_a_missing_workspace_file_says_which_and_what_to_do(tmp_path):
    (tmp_path / "labkit_student").mkdir()
    script = ("from labkit.lab import launch; launch.install({'namespaces': %r}); "
              "import labkit.namespaces" % str(tmp_path))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0
    assert "has no labkit_student/namespaces(.py)" in done.stderr
    assert "labkit lab workspace" in done.stderr


def test_a_package_layer_inside_a_package_is_the_students_package(workspace):
    """Chapter 11's builder, labkit.dockerd.builder, is loaded into labkit-dockerd: all of its
    modules are the workspace's, the rest of labkit.dockerd stays the reference."""
    out = _probe(workspace, "builder", """
        from labkit.dockerd.builder import steps, backend
        import labkit.dockerd.commit as commit
        print(steps.__file__); print(backend.__file__); print(commit.__file__)
        print(sorted(n for n in sys.modules if n.startswith("labkit_student")))
        try:
            steps.cache_key("RUN true", {})
        except NotImplementedError as e:
            print(e)
    """).splitlines()
    assert out[0] == str(workspace / "labkit_student/dockerd/builder/steps.py")
    assert out[1] == str(workspace / "labkit_student/dockerd/builder/backend.py")
    assert "labkit_student" not in out[2]
    assert out[3] == "[]"
    assert "exercise in cache_key()" in out[4]


def test_the_launcher_imports_no_layer_before_its_finder():
    """A module imported before `install` stays the reference for good: importing the
    launcher (and with it the labkit.lab package) must import no in-process layer's module.
    (labkit.lab.delegation once imported labkit.runc.cgroups at its top, and a blank cgroups
    workspace then ran the reference under `docker run`: the cp02 proofs caught it.)"""
    from labkit.lab.implementations import LAYERS
    layers = sorted(info.reference for info in LAYERS.values() if info.in_process)
    code = ("import sys, labkit.lab.launch; "
            f"print([m for m in {layers!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]", out.stdout
