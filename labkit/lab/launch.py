"""Run a labkit program with some of its in-process layers taken from a student's workspace.

Theory of operation
-------------------
An engine process never asks which implementation runs a layer: labkit-runc simply does
`from labkit import namespaces` and calls `namespaces.namespace_flags(...)`. To make it call a
student's chapter-01 code instead, the lab *wraps* the program (the engine stays unaware, as
LD_PRELOAD leaves a C program unaware):

    python -m labkit.lab.launch --layer namespaces=/root/ws -- labkit.runc.main:main create …

puts a finder in front of Python's import system that answers `labkit.namespaces` (and, for
a package layer, every module below it) with the workspace's file
`labkit_student/namespaces.py`, loaded under the reference's name and importing the reference
for everything else (`WorkspaceFinder`, `_StudentSource`); then it runs the entry point with the remaining arguments as its command line. Every other
module stays labkit's reference.

The lab writes one small shell script per program it hands down (LIB/bin/labkit-runc,
LIB/bin/labkit-shim, …: see `write_wrapper`; under LIB, because systemd mounts /run noexec)
and passes their paths where it would pass the programs' own: containerd's --shim, dockerd's --default-runtime, which dockerd sends down in
the task options as real dockerd does. So the choice travels by the real protocols, and
`docker run` executes the student's function in the runtime that creates the container.

The reference labkit-runc is handed down through LIB/bin too, as a script that starts it
without the site module (`write_program`: the shim runs the runtime several times per
container, and site is a large part of each start-up).

A student function that is not written yet raises NotImplementedError("exercise in
namespace_flags() (labkit_student/namespaces.py): not done yet …"); the runtime reports it
as its error, and the docker CLI shows it as "OCI runtime create failed: …".
"""

from __future__ import annotations

import ast
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import re
import shlex
import sys
from pathlib import Path

from labkit.lab.implementations import LAYERS, STUDENT_PACKAGE


class _StudentSource(importlib.machinery.SourceFileLoader):
    """Loads a workspace file *under the reference's name*, its imports pointed back.

    The workspace generator pointed a package's own imports at the student's package
    (`from labkit_student.runc import log`). Run as `labkit.runc.cgroups` among the reference
    modules, the file must import theirs: `from labkit.runc import log`. Otherwise one chosen
    module would drag in the student's whole package, with other chapters' exercises blank."""

    def source_to_code(self, data, path, *, _optimize=-1):
        return compile(reference_imports(importlib.util.decode_source(data), path), path, "exec",
                       dont_inherit=True, optimize=_optimize)


def reference_imports(source: str, filename: str = "<workspace>") -> str:
    """`labkit_student.X` -> `labkit.X` in the import statements of `source` (nothing else)."""
    tree = ast.parse(source, filename)
    lines = source.splitlines(keepends=True)
    rows = {row for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
            for row in range(node.lineno, (node.end_lineno or node.lineno) + 1)}
    for row in rows:
        lines[row - 1] = _STUDENT.sub("labkit", lines[row - 1])
    return "".join(lines)


_STUDENT = re.compile(rf"\b{STUDENT_PACKAGE}\b")


class WorkspaceFinder(importlib.abc.MetaPathFinder):
    """Answers `labkit.X` with the workspace's file `labkit_student/X.py`, for the chosen layers.

    A module layer (labkit.namespaces, labkit.runc.cgroups) is one file; a package layer
    (labkit.distribution) answers for every module below it too. The student's module *is*
    `labkit.X` in this process: its tracebacks name the student's file."""

    def __init__(self, overrides: dict[str, Path]) -> None:
        # reference module or package -> workspace directory
        self.overrides = {LAYERS[layer].reference: Path(ws) for layer, ws in overrides.items()}

    def find_spec(self, fullname, path=None, target=None):
        for reference, workspace in self.overrides.items():
            if fullname == reference or fullname.startswith(reference + "."):
                base = Path(workspace, STUDENT_PACKAGE, *fullname.split(".")[1:])
                for file, package in ((base / "__init__.py", True), (base.with_suffix(".py"), False)):
                    if file.is_file():
                        return importlib.util.spec_from_file_location(
                            fullname, file, loader=_StudentSource(fullname, str(file)),
                            submodule_search_locations=[str(base)] if package else None)
                raise ImportError(f"the workspace {workspace} has no {base.relative_to(workspace)}"
                                  f"(.py): regenerate it with `labkit lab workspace {workspace}`",
                                  name=fullname)
        return None


def install(overrides: dict[str, Path]) -> None:
    """From now on, import the chosen layers from their workspaces (see the module docstring)."""
    for layer in overrides:
        if layer not in LAYERS or not LAYERS[layer].in_process:
            raise ValueError(f"layer {layer!r} is not an in-process layer "
                             f"(those are: {', '.join(n for n, l in LAYERS.items() if l.in_process)})")
    sys.meta_path.insert(0, WorkspaceFinder(overrides))


def run(entry: str, argv: list[str]) -> int:
    """Call `module:function` as a console script would, with `argv` as sys.argv."""
    module, _, function = entry.partition(":")
    sys.argv = argv
    return importlib.import_module(module).__dict__[function]()


def write_wrapper(path: Path, command: str, entry: str, overrides: dict[str, Path],
                  pythonpath: Path | None = None) -> Path:
    """A shell script at `path` that runs `entry` as `command`, with `overrides` installed."""
    layers = [f"--layer={layer}={ws}" for layer, ws in sorted(overrides.items())]
    argv = [sys.executable, "-m", "labkit.lab.launch", *layers, "--", entry, command]
    env = f"PYTHONPATH={shlex.quote(str(pythonpath))}${{PYTHONPATH:+:$PYTHONPATH}} " \
        if pythonpath else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n"
                    f"# {command} with {', '.join(f'{k} from {v}' for k, v in sorted(overrides.items()))}"
                    " (written by `labkit lab up`; see labkit.lab.launch)\n"
                    f"{env}exec {' '.join(shlex.quote(a) for a in argv)} \"$@\"\n")
    path.chmod(0o755)
    return path


def write_program(path: Path, command: str, entry: str) -> Path:
    """A Python script at `path` that runs the reference's `entry` as `command`, started
    without the site module (`python -S`): for labkit-runc, which the shim runs several times
    per container, each time a new interpreter.

    site is what makes a console script find its packages: it reads every .pth file in
    site-packages, and an editable install's (`pip install -e`) imports a finder that brings
    pathlib, importlib.util and more -- ~20 ms here, two thirds of the interpreter's start-up,
    for every `labkit-runc start`. The script puts on sys.path, by name, the two directories
    site would have found the program's modules in: labkit's own and site-packages (python-prctl).
    PYTHONPATH still comes first, so a checkout named there still wins (the tests' worktrees).
    One flag fits on a #! line (Linux passes the rest of the line as ONE argument)."""
    import sysconfig

    import labkit
    module, _, function = entry.partition(":")
    where = [str(Path(labkit.__file__).resolve().parents[1])]
    for key in ("purelib", "platlib"):
        if sysconfig.get_paths()[key] not in where:
            where.append(sysconfig.get_paths()[key])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable} -S\n"
                    f"# {command}, without the site module (written by `labkit lab up`; see "
                    "labkit.lab.launch.write_program)\n"
                    "import sys\n"
                    f"sys.path += {where!r}\n"
                    f"sys.argv[0] = {command!r}\n"
                    f"from {module} import {function}\n"
                    f"sys.exit({function}())\n")
    path.chmod(0o755)
    return path


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        print("usage: python -m labkit.lab.launch [--as=NAME] [--layer=LAYER=WORKSPACE …] -- "
              "MODULE:FUNCTION ARGV0 [ARG …]", file=sys.stderr)
        return 2
    split = argv.index("--")
    overrides = {}
    for option in argv[:split]:
        if option.startswith("--as="):
            continue            # the program's name, for /proc/<pid>/cmdline (lab.daemons.read_pid)
        layer, _, workspace = option.removeprefix("--layer=").partition("=")
        overrides[layer] = Path(workspace)
    entry, *rest = argv[split + 1:]
    install(overrides)
    return run(entry, rest)


if __name__ == "__main__":
    sys.exit(main())
