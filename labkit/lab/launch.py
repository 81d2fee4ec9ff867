"""Run a labkit program with some of its in-process layers taken from a student's workspace.

Theory of operation
-------------------
An engine process never asks which implementation runs a layer: labkit-runc simply does
`from labkit import namespaces` and calls `namespaces.namespace_flags(...)`. To make it call a
student's chapter-01 code instead, the lab *wraps* the program (the engine stays unaware, as
LD_PRELOAD leaves a C program unaware):

    python -m labkit.lab.launch --layer namespaces=/root/ws -- labkit.runc.main:main create …

puts a finder in front of Python's import system that answers `labkit.namespaces` (and, for
a package layer, every module below it) with the workspace's `labkit_student.namespaces`,
then runs the entry point with the remaining arguments as its command line. Every other
module stays labkit's reference.

The lab writes one small shell script per program it hands down (LIB/bin/labkit-runc,
LIB/bin/labkit-shim, …: see `write_wrapper`; under LIB, because systemd mounts /run noexec)
and passes their paths where it would pass the programs' own: containerd's --shim, dockerd's --default-runtime, which dockerd sends down in
the task options as real dockerd does. So the choice travels by the real protocols, and
`docker run` executes the student's function in the runtime that creates the container.

A student function that is not written yet raises NotImplementedError("exercise in
namespace_flags() (labkit_student/namespaces.py): not done yet …"); the runtime reports it
as its error, and the docker CLI shows it as "OCI runtime create failed: …".
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import shlex
import sys
from pathlib import Path

from labkit.lab.implementations import LAYERS, STUDENT_PACKAGE


class _Alias(importlib.abc.Loader):
    """A loader whose module is one that is already imported (the student's)."""

    def __init__(self, module) -> None:
        self.module = module

    def create_module(self, spec):
        return self.module

    def exec_module(self, module) -> None:
        pass


class WorkspaceFinder(importlib.abc.MetaPathFinder):
    """Answers `labkit.X` with `labkit_student.X` from a workspace, for the chosen layers."""

    def __init__(self, overrides: dict[str, Path]) -> None:
        # reference module or package -> workspace directory
        self.overrides = {LAYERS[layer].reference: Path(ws) for layer, ws in overrides.items()}

    def find_spec(self, fullname, path=None, target=None):
        for reference, workspace in self.overrides.items():
            if fullname == reference or fullname.startswith(reference + "."):
                if str(workspace) not in sys.path:
                    sys.path.insert(0, str(workspace))
                student = importlib.import_module(STUDENT_PACKAGE + fullname[len("labkit"):])
                return importlib.util.spec_from_loader(fullname, _Alias(student),
                                                       is_package=hasattr(student, "__path__"))
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
