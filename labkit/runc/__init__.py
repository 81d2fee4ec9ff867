"""L1: `labkit-runc`, a runc-compatible OCI runtime.

An OCI runtime turns a *bundle* (config.json + a root filesystem) into a running
container, and nothing more: no images, no networks, no logs. It is a short-lived command,
called once per step of a container's life by the shim (L2):

    create  ->  (created: namespaces built, init waiting)  ->  start  ->  (running)
            ->  the program exits  ->  (stopped)  ->  delete

Modules, from the command line down to the kernel:

    main        the CLI: one verb per module, runc's error reporting, the shim's everyday
                command lines read without argparse
    flags       the whole command line, with argparse (global flags, each verb's, --help)
    create      fork the container's init and follow it until it is ready
    start, state, kill, delete, run, exec, ps, pause, update, list,
                spec, features   the other verbs
    container   <root>/<id>/state.json and the derived status (created/running/stopped)
    config      reading and checking config.json
    init        the container's init, step by step (with the sync-protocol diagram)
    hooks       OCI hooks: run by create, init, start and delete
    mounts      rootfs mounts, /dev, pivot_root, masked and read-only paths
    process     env, executable lookup, rlimits, user ids, capabilities
    console     the pty and the --console-socket hand-over
    seccomp     the system-call filter (linux.seccomp, compiled by libseccomp)
    cgroups     cgroup v1/v2 drivers: directories, every linux.resources field, the
                freezer, the v2 device filter (eBPF)
    log         runc's log format (--log, --log-format json)
    v1only      run crun on a cgroup-v1 hybrid host (a private mount namespace); a program,
                started by its command line (`python -m labkit.runc.v1only crun …`)

    network     `lo` up in a new network namespace (one ioctl), as runc does

The kernel calls Python lacks come from labkit.syscalls.

DIFFERENCES from runc 1.1 (measured with the OCI runtime-tools validation suite and
tests/runc; labkit-runc follows the runtime spec where runc 1.1 does not):
  - prestart hooks get status "created" (runc: "creating"); poststart hooks run after
    `start` with status "running" (runc 1.1 runs them at the end of create), once the
    program has had its first go: it waits for something, ends, or has had 0.1 s of CPU
    (crun runs them as soon as execve begins, and they race with it). A failing
    poststart hook is a warning (runc fails `start` and kills the container); after a
    failing poststop hook the next ones still run (runc stops at the first).
  - linux.rootfsPropagation shared/rshared: the container's root really is shared after
    pivot_root (runc leaves it private), but only within the container: it is set up as a
    slave of the host first, so the host's new mounts reach the container and the
    container's never reach the host. "unbindable" works (runc fails to bind the rootfs).
  - a hostname with a uts namespace joined by path is refused when that namespace is the
    runtime's own (it would rename the host); runc 1.1 only checks that one is listed.
  - no mount namespace: like runc, the container shares the runtime's mount table and is
    chroot'ed into its rootfs; unlike runc, delete detaches what it mounted there.
  - an unknown capability name (CAP_TEST) is an error (runc warns and skips it); one Linux
    has but this kernel does not know (above /proc/sys/kernel/cap_last_cap) is skipped with
    a warning, as in runc.
  - linux.resources: a field this host cannot apply (its controller is not mounted, the
    kernel lacks its file, or the cgroup version has no such limit) is refused by name;
    runc ignores several of them quietly (net_cls/net_prio on v2, a missing blkio.weight).
    memory.kernel is ignored with a warning on both versions, as in runc 1.2.
  - cgroup v2 under systemd: no systemd driver (no D-Bus); the containers' cgroups go under
    the delegated subtree the runtime runs in (cgroups.v2_base), or the root with a warning.
    `labkit lab up` starts containerd (and so the shims and runtimes) in one
    (labkit.lab.delegation); controllers are enabled only from the delegated cgroup down.
  - not supported: apparmorProfile, selinuxLabel (a warning each), linux.intelRdt,
    checkpoint/restore.

What labkit-runc may import: its own modules, labkit.namespaces (chapter 01), labkit.syscalls,
labkit.securejoin and the shared low-level helpers below every layer (labkit.paths,
labkit.procfs …); never another layer, the lab or the course. Its callers drive it only by its
command line (labkit.wire.runtime, go-runc's role). tests/test_import_rules.py checks this.
"""
