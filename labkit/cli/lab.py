"""`labkit lab up|down|status|reset|images|use|workspace|grade` — a thin front end to labkit.lab.

`status` answers the two questions a student asks first: what is running (each daemon, its
PID, whether it answers, where; JupyterLab's URL with its token) and which implementation
runs each layer (reference, a real binary or the student's workspace, process layers and
in-process building blocks alike). A configuration error is shown as the one line that names
the layer and the path (exit status 2), after what can still be shown.
"""

from __future__ import annotations

import argparse
import sys

from labkit.cli.grade import course
from labkit.cli.output import table


def add_parser(sub) -> None:
    p = sub.add_parser("lab", help="control the lab: up, down, status, reset, images, use, workspace")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    verbs.add_parser("up", help="start registry, containerd, dockerd and JupyterLab (idempotent)")
    verbs.add_parser("down", help="stop the daemons and JupyterLab (containers keep running "
                                  "in their shims)")
    verbs.add_parser("status", help="which layer runs, where, whether it answers; JupyterLab's "
                                    "URL; the implementation chosen for each layer")
    verbs.add_parser("reset", help="down, stop leftover shims/containers, unmount, remove "
                                   "the lab's run, data and log directories")
    verbs.add_parser("images", help="build hello-world and busybox and push them into the "
                                    "lab registry")
    use = verbs.add_parser("use", help="choose what runs a layer: use LAYER reference|"
                                       "binary:NAME|workspace[:DIR] (restarts what must restart)")
    use.add_argument("layer", help="cli, dockerd, containerd, shim, runtime, registry, client, "
                                   "distribution, content, snapshotter, namespaces, builder, syscalls")
    use.add_argument("implementation", help="reference, binary:NAME (runc, crun …) or "
                                            "workspace[:DIR]")
    # The course's own commands (labkit.course), under the lab's name as the course text uses
    # it. `labkit lab grade` is the same as `labkit grade`.
    for verb, text in (("workspace", "generate a student workspace: workspace DIR [--force]"),
                       ("grade", "the same as `labkit grade`")):
        v = verbs.add_parser(verb, help=text, add_help=False)
        v.add_argument("rest", nargs=argparse.REMAINDER)  # the real list: main.passed_through()
        v.set_defaults(passes_through=True, words=["lab", verb])
    p.set_defaults(func=command, no_client=True)


def print_jupyter(answering: bool) -> None:
    """JupyterLab's URL (with the token) and where the configured workspaces are in it."""
    from labkit import paths
    from labkit.lab import implementations
    from labkit.lab import jupyter

    off = jupyter.disabled()
    if off:
        print(f"jupyter: off: {off}")
        return
    try:
        s = jupyter.settings()
    except jupyter.JupyterError as e:
        print(f"jupyter: {e}")
        return
    link = jupyter.url(s)
    if answering and link:
        print(f"jupyter: {link}")
    else:
        print("jupyter: not answering (`labkit lab up` starts it; its log: "
              f"{paths.LOG / (jupyter.NAME + '.log')})")
    try:
        impls = implementations.load()
    except implementations.ImplementationError:
        return      # reported with the implementations below
    workspaces = sorted({w for name in implementations.LAYERS
                         if (w := impls.workspace(name)) is not None})
    for line in jupyter.workspace_lines(workspaces, s):
        print(line)


def print_implementations() -> int:
    """The configured implementation of every layer; 2 (after the message) if the
    configuration is wrong."""
    from labkit.lab import implementations

    try:
        impls = implementations.load()
    except implementations.ImplementationError as e:
        print(f"labkit lab status: {e}", file=sys.stderr)
        return 2
    where = impls.config_path or f"{implementations.config_path()} (absent: all reference)"
    print(f"implementations (configuration: {where}; override: LABKIT_IMPL_<LAYER>):")
    rows = [[layer, choice, source] for layer, choice, source in impls.table()]
    print(table(rows, ["LAYER", "IMPLEMENTATION", "CHOSEN IN"]), end="")
    from labkit.lab.control import runs_where
    taken = [layer for layer, info in implementations.LAYERS.items()
             if info.in_process and impls.choice(layer).kind == "workspace"]
    if taken:
        print()
    for layer in taken:
        for line in runs_where(layer):
            print(line)
    return 0


def print_status() -> int:
    from labkit.lab import status

    rows = []
    jupyter_answers = False
    for s in status(optional=True):
        impl = f"{s.daemon.implementation} {s.daemon.argv[0]}"
        rows.append([s.daemon.layer, impl, str(s.pid or "-"), "yes" if s.answering else "no",
                     s.daemon.address])
        if s.daemon.layer == "jupyter":
            jupyter_answers = s.answering
    print(table(rows, ["LAYER", "IMPLEMENTATION", "PID", "ANSWERING", "ADDRESS"]), end="")
    print()
    print_jupyter(jupyter_answers)
    print()
    return print_implementations()


def command(client, args: argparse.Namespace) -> int:
    from labkit import lab
    from labkit.lab.implementations import ImplementationError

    if args.verb in ("workspace", "grade"):
        return course(args.verb, args.rest, prog="labkit lab")
    try:
        if args.verb == "up":
            problems = lab.up()
            for problem in problems:
                print(f"labkit lab up: JupyterLab did not start (the engine runs without it): "
                      f"{problem}", file=sys.stderr)
            from labkit.lab import jupyter
            if not problems and not jupyter.disabled():
                warning = jupyter.exposure_warning(jupyter.settings())
                if warning:
                    print(f"labkit lab up: warning: {warning}", file=sys.stderr)
            link = None if problems else jupyter.url()
            if link:
                print(f"jupyter: {link}")
        elif args.verb == "down":
            lab.down()
        elif args.verb == "status":
            return print_status()
        elif args.verb == "reset":
            lab.reset()
        elif args.verb == "images":
            lab.push_images()
        elif args.verb == "use":
            lab.use(args.layer, args.implementation)
    except ImplementationError as e:     # names the layer and the path
        print(f"labkit lab {args.verb}: {e}", file=sys.stderr)
        return 2
    except (lab.LabError, ValueError, OSError) as e:
        print(f"labkit lab {args.verb}: {e}", file=sys.stderr)
        return 1
    return 0
