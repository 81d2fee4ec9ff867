"""L1: `labkit-runc`, a runc-compatible OCI runtime.

An OCI runtime turns a *bundle* (config.json + a root filesystem) into a running
container, and nothing more: no images, no networks, no logs. It is a short-lived command,
called once per step of a container's life by the shim (L2):

    create  ->  (created: namespaces built, init waiting)  ->  start  ->  (running)
            ->  the program exits  ->  (stopped)  ->  delete

Modules, from the command line down to the kernel:

    main        the CLI: global flags, one verb per module, runc's error reporting
    create      fork the container's init and follow it until it is ready
    start, state, kill, delete, run, exec, ps, pause, update, list,
                spec, features   the other verbs
    container   <root>/<id>/state.json and the derived status (created/running/stopped)
    config      reading and checking config.json
    init        the container's init, step by step (with the sync-protocol diagram)
    mounts      rootfs mounts, /dev, masked and read-only paths
    process     env, executable lookup, rlimits, user ids, capabilities
    console     the pty and the --console-socket hand-over
    seccomp     the system-call filter (linux.seccomp, compiled by libseccomp)
    cgroups     cgroup v1/v2 directories and limits
    log         runc's log format (--log, --log-format json)
    v1only      run crun on a cgroup-v1 hybrid host (a private mount namespace); a program,
                started by its command line (`python -m labkit.runc.v1only crun …`)

The kernel calls Python lacks come from labkit.syscalls.

What labkit-runc may import: its own modules, labkit.namespaces (chapter 01), labkit.syscalls,
labkit.securejoin and the shared low-level helpers below every layer (labkit.paths,
labkit.procfs …); never another layer, the lab or the course. Its callers drive it only by its
command line (labkit.wire.runtime, go-runc's role). tests/test_import_rules.py checks this.
"""
