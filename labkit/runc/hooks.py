"""OCI hooks (runtime-spec config.md, "POSIX-platform Hooks"): programs the runtime runs at
points of a container's life, each given the container's state as JSON on its stdin.

    prestart, createRuntime   by the runtime (create.py), once init's namespaces exist
    createContainer           by init, in the container's namespaces, before pivot_root
    startContainer            by init, after `start`, just before the program
    poststart                 by the runtime (start.py), once the program has run
    poststop                  by the runtime (delete.py), once the container is gone

A module of its own, imported by init, start and delete: `start` and `delete` then need
none of what init imports (mounts, seccomp, capabilities …), which each of those short
commands would otherwise pay for at every call.
"""

from __future__ import annotations

from labkit.runc.log import ContainerError


def run_hooks(hooks: list[dict] | None, state: dict, warn=None) -> None:
    """Run OCI hooks: `path` with `args` and `env`, the container's state JSON on stdin.

    A hook that fails (or outlives its `timeout`) fails the container: the first failure
    raises ContainerError and the hooks after it do not run. Except with `warn` (the spec's
    rule for poststart and poststop): each failure is reported through warn(message), and
    the remaining hooks and the lifecycle go on as if it had succeeded."""
    for hook in hooks or []:
        if warn is None:
            run_hook(hook, state)
            continue
        try:
            run_hook(hook, state)
        except ContainerError as e:
            warn(str(e))


def run_hook(hook: dict, state: dict) -> None:
    """One hook; ContainerError says how it failed."""
    # Imported here: most containers have no hooks, and they cost every command ~5 ms. (Init
    # imports them before pivot_root when it will need them: init.py, step 6.)
    import json
    import subprocess
    # BEGIN SOLUTION chapter="04" hint="runtime-spec config.md, 'POSIX-platform Hooks'; the state: runtime.md, 'State'"
    # TODO: run hook["path"] with hook["args"] (args[0] is only its name) and hook["env"]
    # TODO: (nothing else of ours), the state as JSON on its stdin, within hook["timeout"]
    # TODO: seconds if given; any failure is a ContainerError that names the hook's path
    # HINT: subprocess.run(argv, executable=path, env=_env_dict(...),
    # HINT: input=json.dumps(state).encode(), capture_output=True, timeout=...);
    # HINT: a non-zero exit: say its status and its stderr
    argv = hook.get("args") or [hook["path"]]
    try:
        result = subprocess.run(argv, executable=hook["path"], env=_env_dict(hook.get("env")),
                                input=json.dumps(state).encode(), capture_output=True,
                                timeout=hook.get("timeout"))
    except subprocess.TimeoutExpired:
        raise ContainerError(f"hook {hook['path']}: timed out after {hook.get('timeout')}s") \
            from None
    except OSError as e:
        raise ContainerError(f"hook {hook['path']}: {e.strerror.lower()}") from None
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace").strip()
        raise ContainerError(f"hook {hook['path']} exited with status {result.returncode}"
                             + (f": {stderr}" if stderr else ""))
    # END SOLUTION


def _env_dict(env: list[str] | None) -> dict[str, str]:
    return dict(e.split("=", 1) for e in env or [] if "=" in e)
