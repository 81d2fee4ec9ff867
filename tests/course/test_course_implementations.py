"""The implementations configuration: file + environment, and errors that name layer and path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import labkit.paths
from labkit.lab import implementations
from labkit.lab.implementations import ImplementationError, LAYERS, load
from labkit.course.workspace import generate_workspace

from .helpers import run_python


@pytest.fixture
def workspace(sample_pkg: Path, short_tmp: Path) -> Path:
    ws = short_tmp / "ws"
    generate_workspace(ws, sample_pkg)
    return ws


def test_default_is_the_reference_everywhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(labkit.paths, "ETC", tmp_path)     # no implementations.toml there
    impls = load(environ={})
    assert impls.config_path is None
    assert [row[0] for row in impls.table()] == list(LAYERS)
    assert {kind for _, kind, _ in impls.table()} == {"reference"}
    assert impls.resolve_module("syscalls", "labkit.paths") is labkit.paths
    assert impls.resolve_binary("runtime").name == "labkit-runc"


def test_file_and_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, workspace: Path) -> None:
    runc = shutil.which("runc")
    assert runc, "runc is installed on this machine"
    config = tmp_path / "implementations.toml"
    config.write_text(f'workspace = "{workspace}"\n[layers]\nruntime = "binary:runc"\n'
                      'syscalls = "workspace"\nshim = "reference"\n')
    monkeypatch.setattr(labkit.paths, "ETC", tmp_path)
    impls = load(environ={})
    assert impls.config_path == config
    assert impls.choice("runtime").kind == "binary" and impls.resolve_binary("runtime") == Path(runc)
    assert impls.workspace("syscalls") == workspace
    assert impls.choice("syscalls").source == str(config)
    # the environment wins over the file, one layer at a time
    impls = load(environ={"LABKIT_IMPL_RUNTIME": f"workspace:{workspace}"})
    assert impls.resolve_binary("runtime") == workspace / "bin" / "labkit-runc"
    assert impls.choice("runtime").source == "LABKIT_IMPL_RUNTIME"
    assert impls.choice("syscalls").kind == "workspace"
    # LABKIT_IMPLEMENTATIONS names the file to read instead of ETC/implementations.toml
    monkeypatch.setattr(labkit.paths, "ETC", tmp_path / "nothing-here")
    impls = load(environ={"LABKIT_IMPLEMENTATIONS": str(config)})
    assert impls.config_path == config


def test_relative_workspace_is_relative_to_the_file(tmp_path: Path, sample_pkg: Path) -> None:
    generate_workspace(tmp_path / "conf" / "ws", sample_pkg)
    (tmp_path / "conf" / "i.toml").write_text('[layers]\ncontent = "workspace:ws"\n')
    impls = load(tmp_path / "conf" / "i.toml", environ={})
    assert impls.workspace("content") == tmp_path / "conf" / "ws"


def test_workspace_module_is_imported_from_the_workspace(workspace: Path) -> None:
    result = run_python("""
        from labkit.lab.implementations import resolve_module
        import labkit.paths
        ns = resolve_module("content", "labkit.ns")
        print(ns.__name__, ns.__file__)
        try:
            ns.sethostname("x")
        except NotImplementedError:
            print("not implemented yet")
        assert resolve_module("syscalls", "labkit.paths") is labkit.paths   # other layers: reference
        """, env={"LABKIT_IMPL_CONTENT": f"workspace:{workspace}"})
    assert result.returncode == 0, result.stderr
    assert f"labkit_student.ns {workspace}/labkit_student/ns.py" in result.stdout
    assert "not implemented yet" in result.stdout


def test_syntax_error_in_workspace_names_file_and_line(workspace: Path) -> None:
    broken = workspace / "labkit_student" / "ns.py"
    broken.write_text("def f(:\n")
    result = run_python("""
        from labkit.lab.implementations import resolve_module
        try:
            resolve_module("content", "labkit.ns")
        except SyntaxError as e:
            print(e.filename, e.lineno)
        """, env={"LABKIT_IMPL_CONTENT": f"workspace:{workspace}"})
    assert result.stdout.strip() == f"{broken} 1", result.stderr


@pytest.mark.parametrize("environ, words", [
    ({"LABKIT_IMPL_RUNTIME": "workspace:/nonexistent/ws"},
     ["layer 'runtime'", "/nonexistent/ws", "does not exist"]),
    ({"LABKIT_IMPL_SYSCALLS": "workspace:/tmp"}, ["layer 'syscalls'", "/tmp is not a labkit workspace"]),
    ({"LABKIT_IMPL_RUNTIME": "binary:no-such-runtime"}, ["layer 'runtime'", "'no-such-runtime'", "PATH"]),
    ({"LABKIT_IMPL_RUNTIME": "binary:/nonexistent/runc"}, ["layer 'runtime'", "/nonexistent/runc"]),
    ({"LABKIT_IMPL_SYSCALLS": "binary:runc"}, ["layer 'syscalls'", "in-process"]),
    ({"LABKIT_IMPL_SHIM": "student"}, ["layer 'shim'", "unknown implementation kind 'student'"]),
    ({"LABKIT_IMPL_SHIM": "workspace"}, ["layer 'shim'", "needs a directory"]),
    ({"LABKIT_IMPL_RUNC": "reference"}, ["LABKIT_IMPL_RUNC", "unknown layer"]),
    ({"LABKIT_IMPLEMENTATIONS": "/nonexistent/impl.toml"}, ["/nonexistent/impl.toml", "does not exist"]),
])
def test_bad_environment_is_named(environ: dict[str, str], words: list[str]) -> None:
    with pytest.raises(ImplementationError) as err:
        load(environ=environ)
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize("text, words", [
    ('[layers]\nruntime = "workspace:missing-ws"\n', ["layer 'runtime'", "missing-ws", "does not exist"]),
    ('[layers]\nruntimes = "reference"\n', ["unknown layer 'runtimes'", "implementations.toml"]),
    ('[layers]\nruntime = 3\n', ["layer 'runtime'", "expected a string"]),
    ('[layers\n', ["implementations.toml is not valid TOML"]),
    ('layer = 1\n', ["unknown key(s) layer"]),
])
def test_bad_file_is_named(tmp_path: Path, text: str, words: list[str]) -> None:
    config = tmp_path / "implementations.toml"
    config.write_text(text)
    with pytest.raises(ImplementationError) as err:
        load(config, environ={})
    for word in words:
        assert word in str(err.value)


def test_missing_module_in_workspace(workspace: Path) -> None:
    impls = load(environ={"LABKIT_IMPL_SNAPSHOTTER": f"workspace:{workspace}"})
    with pytest.raises(ImplementationError) as err:
        impls.resolve_module("snapshotter", "labkit.containerd.snapshots")
    message = str(err.value)
    assert "layer 'snapshotter'" in message
    assert f"{workspace}/labkit_student/containerd/snapshots.py" in message
    with pytest.raises(ImplementationError, match="has no program .*labkit-shim"):
        load(environ={"LABKIT_IMPL_SHIM": f"workspace:{workspace}"}).resolve_binary("shim")
    with pytest.raises(ImplementationError, match="not part of labkit"):
        impls.resolve_module("snapshotter", "os.path")


def test_module_level_helpers_read_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(labkit.paths, "ETC", tmp_path)
    monkeypatch.setenv("LABKIT_IMPL_RUNTIME", "binary:crun")
    assert implementations.resolve_binary("runtime") == Path(shutil.which("crun") or "crun")


def test_use_edits_the_file_keeping_comments_and_refuses_bad_values(tmp_path):
    """`labkit lab use` (implementations.use): the layer's line is replaced or added, the
    teacher's comments and other layers stay; a bad value changes nothing."""
    from labkit.lab import implementations as impl
    path = tmp_path / "implementations.toml"
    ws = tmp_path / "ws"
    (ws / "labkit_student").mkdir(parents=True)
    (ws / "labkit_student" / "__init__.py").write_text("")
    path.write_text(f'# the class default\nworkspace = "{ws}"\n\n[layers]\n# mind crun\n'
                    'runtime = "binary:runc"\n')
    choice = impl.use("namespaces", "workspace", path)
    assert (choice.kind, choice.value) == ("workspace", str(ws))
    assert impl.use("runtime", "reference", path).kind == "reference"
    text = path.read_text()
    assert text == (f'# the class default\nworkspace = "{ws}"\n\n[layers]\n# mind crun\n'
                    'runtime = "reference"\nnamespaces = "workspace"\n')
    for layer, bad, message in (("namespaces", "binary:runc", "in-process"),
                                ("runtime", "binary:no-such-runtime", "not on PATH"),
                                ("nosuch", "reference", "unknown layer"),
                                ("shim", "workspace:/nonexistent", "does not exist")):
        with pytest.raises(impl.ImplementationError, match=message):
            impl.use(layer, bad, path)
        assert path.read_text() == text
    fresh = tmp_path / "new" / "implementations.toml"
    impl.use("namespaces", f"workspace:{ws}", fresh)
    assert impl.load(fresh, environ={}).choice("namespaces").value == str(ws)
