"""Import rules: each layer knows the one below only through its protocol (labkit.wire).

Every import statement of labkit's source is followed — at module level and inside functions,
found with `ast` without importing anything — starting from every module of a daemon's
package (its entry, `labkit.<layer>.main`, among them). The closure of modules a daemon can
load must not hold what the rules below forbid; a failure names the offending module and the
chain of imports, file and line, that reaches it:

    labkit-containerd  no labkit.runc, labkit.shim (the shim's implementation), labkit.dockerd,
                       labkit.cli, labkit.course or labkit.lab
    labkit-shim        no labkit.runc, labkit.containerd (containerd's implementation),
                       labkit.course or labkit.dockerd
    labkit-dockerd     no labkit.shim, labkit.runc, labkit.course, labkit.lab, labkit.cli or
                       containerd's server side (server, tasks, metadata, snapshots, content,
                       apply, pull)
    labkit-runc        no other layer
    labkit-ctr         a client: only labkit.wire, containerd's client (labkit.containerd.client),
                       the registry client (labkit.distribution) and the shared helpers —
                       an allow-list, as it must work against a real containerd too

What the layers share — containerd's gRPC API, the shim protocol, runc's command line — is in
labkit.wire, which imports no layer; the layer choice belongs to the lab (labkit.lab), which
the course may import but never the reverse. Those two rules are checked here as well.
"""

from __future__ import annotations

import ast
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest

import labkit

PACKAGE_DIR = Path(labkit.__file__).resolve().parent
ROOT = PACKAGE_DIR.parent

SERVER_SIDE = [f"labkit.containerd.{m}" for m in
               ("server", "tasks", "metadata", "snapshots", "content", "apply", "pull")]

# daemon's package -> the packages and modules its closure must not hold
RULES: dict[str, list[str]] = {
    "labkit.containerd": ["labkit.runc", "labkit.shim", "labkit.dockerd", "labkit.cli",
                          "labkit.course", "labkit.lab"],
    "labkit.shim": ["labkit.runc", "labkit.containerd", "labkit.course", "labkit.dockerd"],
    "labkit.dockerd": ["labkit.shim", "labkit.runc", "labkit.course", "labkit.lab", "labkit.cli",
                       *SERVER_SIDE],
    "labkit.runc": ["labkit.cli", "labkit.client", "labkit.dockerd", "labkit.containerd",
                    "labkit.shim", "labkit.registry", "labkit.distribution", "labkit.images",
                    "labkit.lab", "labkit.course"],
}
# Not daemons, but the same idea: the wire belongs to no layer; the lab sits below the course.
OTHER_RULES: dict[str, list[str]] = {
    "labkit.wire": ["labkit.cli", "labkit.client", "labkit.dockerd", "labkit.containerd",
                    "labkit.shim", "labkit.runc", "labkit.lab", "labkit.course"],
    "labkit.lab": ["labkit.course"],
}


@dataclass(frozen=True)
class Edge:
    """`importer` imports `module` at `line`."""
    importer: str
    module: str
    line: int


def module_file(name: str) -> Path | None:
    """labkit.a.b -> labkit/a/b.py or labkit/a/b/__init__.py, if it is labkit's source."""
    path = ROOT.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def with_parents(name: str) -> list[str]:
    """Importing labkit.a.b runs labkit/__init__, labkit/a/__init__, then labkit/a/b."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def imports_of(name: str) -> list[Edge]:
    """Every labkit module `name`'s source imports, wherever the statement is."""
    path = module_file(name)
    if path is None:
        return []
    is_package = path.name == "__init__.py"
    edges: list[Edge] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:   # relative: from the importer's package
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [module]
            # `from labkit.runc import cgroups` imports the module labkit.runc.cgroups too
            targets += [f"{module}.{alias.name}" for alias in node.names
                        if module_file(f"{module}.{alias.name}") is not None]
        for target in targets:
            if target == "labkit" or target.startswith("labkit."):
                edges += [Edge(name, m, node.lineno) for m in with_parents(target)
                          if module_file(m) is not None and m != name]
    return edges


def package_modules(package: str) -> list[str]:
    directory = ROOT.joinpath(*package.split("."))
    if not directory.is_dir():
        return [package]
    return sorted(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                  for p in directory.rglob("*.py"))


def closure(starts: list[str]) -> dict[str, Edge | None]:
    """Every module reachable from `starts`, each with the import that first reached it."""
    reached: dict[str, Edge | None] = {}
    queue: deque[str] = deque()
    for start in starts:
        for m in with_parents(start):
            if m not in reached:
                reached[m] = None
                queue.append(m)
    while queue:
        current = queue.popleft()
        for edge in imports_of(current):
            if edge.module not in reached:
                reached[edge.module] = edge
                queue.append(edge.module)
    return reached


def chain(reached: dict[str, Edge | None], module: str) -> str:
    steps = []
    while (edge := reached[module]) is not None:
        path = module_file(edge.importer)
        steps.append(f"{edge.importer} ({path.relative_to(ROOT)}:{edge.line}) imports {edge.module}")
        module = edge.importer
    return "\n      ".join(reversed(steps)) or f"{module} is a starting point"


def forbidden(package: str, rules: list[str]) -> list[tuple[str, str]]:
    """(offending module, its import chain) for every module the rules forbid."""
    reached = closure(package_modules(package))
    return [(m, chain(reached, m)) for m in sorted(reached)
            if any(m == rule or m.startswith(rule + ".") for rule in rules)]


def report(package: str, found: list[tuple[str, str]]) -> str:
    lines = [f"{package} reaches {len(found)} module(s) it must know only through labkit.wire:"]
    for module, how in found:
        lines.append(f"  {module}:\n      {how}")
    return "\n".join(lines)


# ------------------------------------------------------------------ the rules

@pytest.mark.parametrize("package", list(RULES))
def test_daemon_imports_only_what_its_layer_may(package: str) -> None:
    assert module_file(f"{package}.main") is not None, f"{package}.main: no such entry"
    found = forbidden(package, RULES[package])
    assert not found, report(package, found)


@pytest.mark.parametrize("package", list(OTHER_RULES))
def test_wire_and_lab_stay_below_what_uses_them(package: str) -> None:
    found = forbidden(package, OTHER_RULES[package])
    assert not found, report(package, found)


# The shared low-level helpers sit below every layer: the standard library and the kernel calls.
HELPERS = ["labkit.procfs", "labkit.mountopts", "labkit.signals", "labkit.quickjson"]
HELPERS_MAY_IMPORT = {"labkit", "labkit.syscalls"}


@pytest.mark.parametrize("helper", HELPERS)
def test_shared_helpers_import_no_layer(helper: str) -> None:
    reached = closure([helper])
    found = [(m, chain(reached, m)) for m in sorted(reached)
             if m not in HELPERS_MAY_IMPORT and m != helper]
    assert not found, f"{helper} may import only the standard library and labkit.syscalls:\n" + \
        "\n".join(f"  {module}:\n      {how}" for module, how in found)


# labkit-ctr talks to labkit-containerd or to a real containerd: only through the wires.
CTR_MAY_IMPORT = ["labkit.ctr", "labkit.wire", "labkit.distribution", "labkit.containerd.client",
                  "labkit.paths", "labkit.units"]
CTR_PACKAGES = {"labkit", "labkit.containerd"}   # parents imported on the way (their __init__)


def test_ctr_imports_only_the_wires_and_clients() -> None:
    assert module_file("labkit.ctr.main") is not None
    reached = closure(package_modules("labkit.ctr"))
    found = [(m, chain(reached, m)) for m in sorted(reached)
             if m not in CTR_PACKAGES
             and not any(m == ok or m.startswith(ok + ".") for ok in CTR_MAY_IMPORT)]
    assert not found, "labkit.ctr may import only " + ", ".join(CTR_MAY_IMPORT) + ":\n" + \
        "\n".join(f"  {module}:\n      {how}" for module, how in found)


# ------------------------------------------------------------------ the checker itself

def test_the_walk_follows_function_level_and_from_imports() -> None:
    # The shim runs its runtime through the wire's command-line client, imported at module
    # level by labkit.shim.runtime; labkit.runc.run imports create with `from … import`.
    # (labkit.runc.main imports its verbs by name, one per run: the rules above check every
    # module of a package, so no module escapes them through such an import.)
    assert "labkit.wire.runtime" in closure(["labkit.shim.main"])
    assert "labkit.runc.create" in closure(["labkit.runc.run"])
    # labkit.lab.daemons imports the containerd stubs inside a function (probe_containerd).
    edges = imports_of("labkit.lab.daemons")
    late = [e for e in edges if e.module == "labkit.wire.containerd.api_pb2_grpc"]
    assert late, edges
    source = module_file("labkit.lab.daemons").read_text().splitlines()
    assert source[late[0].line - 1].startswith("    "), "expected a function-level import"


def test_a_forbidden_import_is_named_with_its_chain() -> None:
    # The chain the report prints for something every daemon reaches: labkit.paths.
    reached = closure(["labkit.shim.main"])
    how = chain(reached, "labkit.paths")
    assert how.startswith("labkit.shim.main (labkit/shim/main.py:") and "imports labkit.paths" in how
    found = forbidden("labkit.shim", ["labkit.paths"])
    assert found and found[0][0] == "labkit.paths"
    assert "labkit.paths" in report("labkit.shim", found)
