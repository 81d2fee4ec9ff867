"""`labkit-runc`: the command line, shaped like runc's so that any caller of runc (the shim,
containerd's shim, dockerd via --add-runtime) can call us instead.

    labkit-runc [--root DIR] [--log FILE] [--log-format text|json] [--debug]
                [--systemd-cgroup] COMMAND [ARGS]

One verb per module (create.py, start.py, …): each has `add_arguments(parser)` and
`run(args) -> exit status`. flags.py builds the whole command line with argparse.

Every command is a process of its own, and most of its time is the interpreter starting and
importing modules: a `start` does a few milliseconds of work. So this module, which every
command imports, imports almost nothing, and the command lines the shim sends for every
container -- `create --bundle B --pid-file F [--console-socket S] ID`, `start ID`,
`state ID`, `delete [--force] ID`, after the global flags -- and `run`'s are read here,
without argparse (quick_args): importing argparse (and re, gettext, locale with it) would
cost each of them more than its work. Anything else, and anything quick_args is not sure of,
goes to flags.py. (What the verbs import is kept as lean: see labkit.quickjson.)
"""

from __future__ import annotations

import os
import sys

import labkit
from labkit.runc import log
from labkit.runc.log import ContainerError

TYPE_CHECKING = False          # types' names only for readers: every command imports this module
if TYPE_CHECKING:
    from types import ModuleType

# verb -> (its module in this package, help)
VERBS = {
    "create": ("create", "create a container, leaving its init waiting for `start`"),
    "start": ("start", "run the program of a created container"),
    "state": ("state", "print the state of a container as JSON"),
    "kill": ("kill", "send a signal to the container's init (--all: every process)"),
    "delete": ("delete", "delete a stopped container (--force: kill it first)"),
    "run": ("run", "create and start a container, wait for it unless --detach"),
    "exec": ("exec", "run another process in a running container"),
    "pause": ("pause", "freeze every process of the container (its cgroup's freezer)"),
    "resume": ("pause", "thaw a paused container"),
    "update": ("update", "change a container's cgroup limits (--resources -: JSON on stdin)"),
    "ps": ("ps", "list the processes of a container (--format json: their pids)"),
    "list": ("list", "list the containers under --root"),
    "spec": ("spec", "write a default config.json"),
    "features": ("features", "print what this runtime supports, as JSON"),
}

VERSION = f"labkit-runc version {labkit.__version__}\ncommit: labkit\nspec: 1.0.2"


def verb_module(verb: str) -> ModuleType:
    """The module of `verb`, imported now. Each call of labkit-runc is a new process that runs
    ONE verb, and the shim calls it several times per container: importing every verb's
    module (create's brings init, mounts, seccomp, process …) would make `state` or `delete`
    pay for `create`'s imports. Relative to this package, so that a student's copy of the
    runtime (labkit_student.runc) runs its own verbs."""
    name = f"{__package__}.{VERBS[verb][0]}"
    __import__(name)              # importlib.import_module, without importing importlib
    return sys.modules[name]


# --- the quick path: the shim's everyday command lines, without argparse --------------------

# global flags quick_args knows: flag -> (attribute, takes a value) (what
# flags.add_global_flags declares; --version, --rootless and the rest go to argparse)
GLOBAL_FLAGS = {"--root": ("root", True), "--log": ("log", True),
                "--log-format": ("log_format", True), "--criu": ("criu", True),
                "--debug": ("debug", False), "--systemd-cgroup": ("systemd_cgroup", False)}
# verb -> its flags quick_args reads: flag -> (attribute, takes a value). Every quick verb
# takes exactly one more word, after its flags: the container's id.
QUICK_VERBS = {
    "start": {}, "state": {},
    "delete": {"--force": ("force", False), "-f": ("force", False)},
    "create": {"--bundle": ("bundle", True), "-b": ("bundle", True),
               "--pid-file": ("pid_file", True), "--console-socket": ("console_socket", True),
               "--no-pivot": ("no_pivot", False), "--no-new-keyring": ("no_new_keyring", False)},
}
QUICK_VERBS["run"] = dict(QUICK_VERBS["create"], **{   # run takes create's flags, and these
    "--detach": ("detach", False), "-d": ("detach", False), "--keep": ("keep", False)})
# what argparse gives each verb's flags when they are absent (create.add_arguments & co)
QUICK_DEFAULTS = {
    "start": {}, "state": {}, "delete": {"force": False},
    "create": {"bundle": ".", "pid_file": None, "console_socket": None, "no_pivot": False,
               "no_new_keyring": False, "preserve_fds": 0, "pidfd_socket": None},
}
QUICK_DEFAULTS["run"] = dict(QUICK_DEFAULTS["create"], detach=False, keep=False)


class Args:
    """A command line as quick_args read it: its flags as attributes, as argparse.Namespace
    (and types.SimpleNamespace) has them."""

    def __init__(self, **flags):
        self.__dict__.update(flags)


def quick_args(argv: list[str]) -> Args | None:
    """`argv` read as flags.parse would read it, if it has one of the simple shapes

        [GLOBAL FLAG …] start|state ID        [GLOBAL FLAG …] delete [--force|-f] ID
        [GLOBAL FLAG …] create|run [--bundle B] [--pid-file F] [--console-socket S]
                                   [--no-pivot] [--no-new-keyring] [run: --detach --keep] ID
        --version

    with each flag spelt out (`--root DIR` or `--root=DIR`); else None, and argparse decides
    (an abbreviation, --help, a flag in another place, a mistake to report …)."""
    if argv in (["--version"], ["-v"]):
        return Args(version=True)
    args = {"version": False, "root": None, "log": None, "log_format": "text",
            "debug": False, "systemd_cgroup": False, "rootless": None, "criu": None}
    words = list(argv)
    if not _read_flags(words, GLOBAL_FLAGS, args) or not words or words[0] not in QUICK_VERBS \
            or args["log_format"] not in ("text", "json"):
        return None
    verb = args["command"] = words.pop(0)
    args.update(QUICK_DEFAULTS[verb])
    if not _read_flags(words, QUICK_VERBS[verb], args) \
            or len(words) != 1 or words[0].startswith("-"):
        return None
    args["id"] = words[0]
    return Args(**args)


def _read_flags(words: list[str], known: dict[str, tuple[str, bool]], into: dict) -> bool:
    """Take the flags at the front of `words` (flag -> (attribute, takes a value)) into
    `into`, up to the first word that is not a flag; False if one is not in `known`, or is
    not spelt as quick_args is sure argparse reads it."""
    while words and words[0].startswith("-"):
        flag, equals, value = words.pop(0).partition("=")
        if flag not in known:
            return False
        name, takes_value = known[flag]
        if not takes_value:
            if equals:
                return False
            value = True
        elif not equals:
            if not words or words[0].startswith("-"):
                return False                     # argparse says what is missing
            value = words.pop(0)
        into[name] = value
    return True


def default_root() -> str:
    """--root when the command line gives none: the lab's (labkit.paths, imported only then:
    it brings pathlib & co, and the shim always gives --root)."""
    from labkit import paths
    return str(paths.RUNTIME_ROOT)


# --- running one command ---------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit status. Without `argv` (as the program: the console
    script, `python -m labkit.runc.main`) the command line is sys.argv, and main does not
    return: it ends the process with the status, skipping the interpreter's clean-up at exit.
    That clean-up (freeing every object of every module imported, ~4 ms, a tenth of a whole
    `run`) buys a process that is about to vanish nothing: the kernel takes back its memory
    and closes its files anyway. What is still buffered in stdout and stderr is written first;
    everything else labkit-runc writes, it has closed before returning here."""
    if argv is not None:
        return command(argv)
    status = command(sys.argv[1:])
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):      # a closed pipe: nobody is reading any more
            status = status or 1
    os._exit(status)


def command(argv: list[str]) -> int:
    """One labkit-runc command line, without the program's name; its exit status."""
    args, unknown, parser = quick_args(argv), [], None
    if args is None:
        from labkit.runc import flags
        try:
            args, unknown, parser = flags.parse(argv)
        except flags.UsageError as e:
            flags.configure_log_after(argv)
            log.error(str(e))
            return 1
    if args.version:
        print(VERSION)
        return 0
    if args.root is None:
        args.root = default_root()
    try:
        log.configure(args.log, args.log_format, args.debug)
        if unknown:
            log.debug(f"ignoring unknown flags: {' '.join(unknown)}")
        if not args.command:
            parser.print_help(sys.stderr)
            return 1
        return verb_module(args.command).run(args)
    except ContainerError as e:
        log.error(str(e))
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as e:                     # a bug or an unforeseen failure: still one line
        if args.debug:
            import traceback           # only on this path: a bug, with --debug
            traceback.print_exc()
        log.error(f"{args.command}: {type(e).__name__}: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
