"""labkit-dockerd stays in small rooms: short modules, short functions, one Daemon behind Backend.

`docker run` is the course's central story and labkit/dockerd is where students read it,
so the package keeps moby's shape (one module per verb, see labkit/dockerd/core.py) and
these limits: no module over 400 lines, no function over 60 (every function of the
package counts, the ones on the `docker run` path — create, start, attach, wait, remove,
monitor, the router and the server — among them).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import labkit.dockerd
from labkit.dockerd.backend import Backend
from labkit.dockerd.daemon import Daemon

PACKAGE = Path(labkit.dockerd.__file__).parent
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
# The modules `docker run` goes through, each of which must exist (a rename must update this).
RUN_PATH = ["router", "httputils", "server", "create", "imageconfig", "etcfiles", "validate",
            "network", "oci", "attach", "wait", "start", "monitor", "remove", "stdio", "jsonlog"]


def _functions(path: Path) -> list[tuple[str, int]]:
    """(qualified name, length in lines) of every function and method in a module."""
    out = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([child.lineno] + [d.lineno for d in child.decorator_list])
                out.append((prefix + child.name, child.end_lineno - first + 1))
                visit(child, prefix + child.name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
    visit(ast.parse(path.read_text()), "")
    return out


def test_the_run_path_modules_exist():
    assert {p.stem for p in MODULES} >= set(RUN_PATH)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_module_is_short(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, (f"labkit/dockerd/{path.name} has {lines} lines (at most "
                                       f"{MAX_MODULE_LINES}): split it by what its parts do")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_functions_are_short(path):
    long = [f"{name} ({n} lines)" for name, n in _functions(path) if n > MAX_FUNCTION_LINES]
    assert not long, (f"labkit/dockerd/{path.name}: over {MAX_FUNCTION_LINES} lines: "
                      + ", ".join(long))


def test_the_limits_can_fail(tmp_path):
    """The measurement sees a long function (a check that cannot fail would prove nothing)."""
    body = "\n".join(f"        x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    module = tmp_path / "long.py"
    module.write_text(f"class C:\n    @staticmethod\n    def f():\n{body}\n")
    assert _functions(module) == [("C.f", MAX_FUNCTION_LINES + 2)]


def test_daemon_implements_every_backend_method():
    """Every room is mixed in: the Daemon has each method the router may call."""
    wanted = [name for name, value in vars(Backend).items()
              if callable(value) and not name.startswith("_")]
    assert len(wanted) > 30
    missing = [name for name in wanted if not callable(getattr(Daemon, name, None))]
    assert not missing, f"Daemon lacks Backend methods: {missing}"
