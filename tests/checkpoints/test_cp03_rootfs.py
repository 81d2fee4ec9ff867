"""Checkpoint cp03 -- chapter 03, the root filesystem (labkit/runc/mounts.py).

Graded with `labkit grade cp03`. Each test runs the student's function in a child process
that has its own PRIVATE mount namespace (conftest.in_child), on tmpfs mounts the test makes
there: whatever the function mounts dies with the child, and the host's mount table is
compared before and after. The truth comes from the kernel: /proc/self/mountinfo (field 5 the
mount point, field 6 the per-mount flags, field 7 the propagation), statvfs(3) flags, EROFS
on a write, st_rdev of a device node. The last checkpoint runs `docker run` through a private
lab whose runtime mounts with the student's module.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from labkit import procfs, syscalls
from labkit.course.grading import checkpoint
from labkit.lab.implementations import resolve_module

pytestmark = pytest.mark.root

FLAGS_OF = {"nosuid": os.ST_NOSUID, "nodev": os.ST_NODEV, "noexec": os.ST_NOEXEC,
            "ro": os.ST_RDONLY}


@pytest.fixture
def mounts():
    """Chapter 03's module as configured: labkit.runc.mounts, or the workspace's copy."""
    return resolve_module("rootfs", "labkit.runc.mounts")


@pytest.fixture
def scratch():
    """An empty directory under /tmp, removed afterwards (with anything a wrong answer left)."""
    path = tempfile.mkdtemp(prefix="lk-cp03-", dir="/tmp")
    leaked = []
    try:
        yield path
    finally:
        # (only below `path`: other programs on the host mount and unmount meanwhile)
        leaked = sorted((m for m in mount_points() if m.startswith(path + "/")), reverse=True)
        for target in leaked:                                        # deepest first
            syscalls.umount2(target, syscalls.MNT_DETACH)
        shutil.rmtree(path, ignore_errors=True)
    assert not leaked, f"mounts made in the child reached the host's mount table: {leaked}"


def mount_points() -> set[str]:
    return {m.mount_point for m in procfs.mountinfo()}


def mount_at(path: str) -> procfs.Mount:
    """The topmost mount at `path` in the caller's mount table."""
    found = [m for m in procfs.mountinfo() if m.mount_point == os.path.realpath(path)]
    assert found, f"nothing is mounted at {path}"
    return found[-1]


def flags(path: str) -> set[str]:
    """The statvfs flags of the mount holding `path`, by name."""
    f = os.statvfs(path).f_flag
    return {name for name, bit in FLAGS_OF.items() if f & bit}


def writable(path: str) -> bool:
    """Can a file be created in the directory `path`? (EROFS: no; anything else is raised.)"""
    probe = os.path.join(path, ".cp03-probe")
    try:
        Path(probe).write_text("x")
    except OSError as e:
        if e.errno != errno.EROFS:
            raise
        return False
    os.unlink(probe)
    return True


def tmpfs(path: str, flags: int = 0) -> str:
    """A small tmpfs at `path` (made if missing): call it in the child, it dies with it."""
    os.makedirs(path, exist_ok=True)
    syscalls.mount("tmpfs", path, "tmpfs", flags, "size=1m,mode=755")
    return path


# --- mount_entry: one entry of config.json's "mounts" -----------------------------------------

@checkpoint("cp03", points=2, hint="mount_entry, a filesystem entry (tmpfs, proc …): create the "
            "mount point (make_mountpoint), then ONE mount(source, target, type, flags, data): "
            "the flags from the options (nosuid, nodev, noexec …), the rest of them joined as "
            "the data string ('mode=1777,size=64k'); the target is the `target` secure_join "
            "gave, inside the rootfs even through a symlink (man 2 mount)")
def test_mount_entry_filesystem(mounts, in_child, scratch):
    outside = os.path.join(scratch, "outside")
    os.mkdir(outside)

    def inside():
        rootfs = tmpfs(os.path.join(scratch, "rootfs"))
        os.symlink(outside, os.path.join(rootfs, "link"))     # an absolute symlink in the image
        mounts.mount_entry(rootfs, scratch, {
            "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
            "options": ["nosuid", "nodev", "noexec", "mode=1777", "size=64k"]}, {})
        mounts.mount_entry(rootfs, scratch, {
            "destination": "/proc", "type": "proc", "source": "proc",
            "options": ["nosuid", "noexec", "nodev"]}, {})
        mounts.mount_entry(rootfs, scratch, {
            "destination": "/link/run", "type": "tmpfs", "source": "tmpfs", "options": []}, {})
        shm = mount_at(f"{rootfs}/dev/shm")
        return {"shm": (shm.fstype, shm.source, sorted(flags(f"{rootfs}/dev/shm")),
                        "size=64k" in shm.super_options,
                        oct(stat.S_IMODE(os.stat(f"{rootfs}/dev/shm").st_mode))),
                "proc": (mount_at(f"{rootfs}/proc").fstype, os.path.isdir(f"{rootfs}/proc/self")),
                "link": (os.path.ismount(f"{rootfs}/{outside}/run"),
                         os.path.ismount(f"{outside}/run"))}

    seen = in_child(inside, syscalls.CLONE_NEWNS)
    assert seen["shm"] == ("tmpfs", "shm", ["nodev", "noexec", "nosuid"], True, "0o1777"), \
        f"/dev/shm: (type, source, flags, size=64k given, mode) = {seen['shm']}"
    assert seen["proc"] == ("proc", True), f"/proc: {seen['proc']}"
    assert seen["link"] == (True, False), "/link/run must be mounted at rootfs/<the link's " \
        f"target>, inside the rootfs, not at the host's directory: {seen['link']}"


@checkpoint("cp03", points=2, hint="mount_entry, a bind entry (type 'bind' or option bind/rbind): "
            "the source is a host path, a relative one is relative to the bundle; the mount "
            "point is a FILE for a file source; the bind call (MS_BIND, MS_REC for rbind) ignores "
            "ro/nosuid/…: a second call MS_BIND|MS_REMOUNT|those flags|current_flags(target) "
            "applies them, keeping the flags the mount already had (man 8 mount, 'bind mount "
            "operation')")
def test_mount_entry_bind(mounts, in_child, scratch):
    def inside():
        rootfs = tmpfs(os.path.join(scratch, "rootfs"))
        data = tmpfs(os.path.join(scratch, "data"), syscalls.MS_NOEXEC)   # noexec on the host
        Path(data, "hello").write_text("from the host\n")
        tmpfs(os.path.join(data, "sub"))                                  # a submount
        Path(scratch, "app.conf").write_text("conf\n")
        mounts.mount_entry(rootfs, scratch, {
            "destination": "/data", "type": "bind", "source": "data",     # relative: the bundle's
            "options": ["rbind", "ro", "nosuid"]}, {})
        mounts.mount_entry(rootfs, scratch, {
            "destination": "/etc/app.conf", "type": "none", "source": f"{scratch}/app.conf",
            "options": ["bind"]}, {})
        return {"data": (Path(rootfs, "data/hello").read_text(), writable(f"{rootfs}/data"),
                         sorted(flags(f"{rootfs}/data"))),
                "submount": os.path.ismount(f"{rootfs}/data/sub"),
                "host side": (writable(data), sorted(flags(data))),
                "file": (os.path.isfile(f"{rootfs}/etc/app.conf"),
                         Path(rootfs, "etc/app.conf").read_text(), writable(f"{rootfs}/etc"))}

    seen = in_child(inside, syscalls.CLONE_NEWNS)
    assert seen["data"][0] == "from the host\n", "the bind does not show the source's files"
    assert seen["data"][1:] == (False, ["noexec", "nosuid", "ro"]), \
        f"/data (rbind, ro, nosuid; the source was noexec): (writable, flags) = {seen['data'][1:]}"
    assert seen["submount"], "rbind must bind the source's submounts too (MS_REC)"
    assert seen["host side"] == (True, ["noexec"]), \
        f"the remount changed the host's source mount: {seen['host side']}"
    assert seen["file"] == (True, "conf\n", True), f"/etc/app.conf: {seen['file']}"


@checkpoint("cp03", points=1, hint="mount_entry: the propagation options (private, shared, slave, "
            "unbindable, r…) are no flags of the mount: after mounting, each is one more call "
            "mount(None, target, None, MS_SHARED …) -- mountinfo's field 7 shows the result "
            "(man 7 mount_namespaces, 'Shared subtrees')")
def test_mount_entry_propagation(mounts, in_child, scratch):
    def inside():
        rootfs = tmpfs(os.path.join(scratch, "rootfs"))
        for name, options in (("shared", ["rshared"]), ("private", ["private"]),
                              ("unbindable", ["nosuid", "unbindable"])):
            mounts.mount_entry(rootfs, scratch, {"destination": f"/{name}", "type": "tmpfs",
                                                 "source": "tmpfs", "options": options}, {})
        return {name: sorted(tag.split(":")[0] for tag in mount_at(f"{rootfs}/{name}").optional)
                for name in ("shared", "private", "unbindable")}

    seen = in_child(inside, syscalls.CLONE_NEWNS)
    assert seen == {"shared": ["shared"], "private": [], "unbindable": ["unbindable"]}, \
        f"propagation (mountinfo field 7) of each entry: {seen}"


# --- pivot_root --------------------------------------------------------------------------------

@checkpoint("cp03", points=3, hint="enter_root(rootfs): pivot_root(2), not chroot -- open '/' and "
            "rootfs, fchdir to the new root, pivot_root('.', '.'), fchdir to the old root, make "
            "it rslave and umount2('.', MNT_DETACH), then chdir('/'): afterwards the mount table "
            "holds only the rootfs and what was mounted in it, and the chroot escape "
            "(chroot a subdirectory, chdir('..') repeatedly, chroot('.')) finds nothing of the host")
def test_enter_root(mounts, in_child, scratch):
    def inside():
        rootfs = tmpfs(os.path.join(scratch, "rootfs"))
        Path(rootfs, "marker").write_text("the new root\n")
        os.mkdir(os.path.join(rootfs, "proc"))
        syscalls.mount("proc", os.path.join(rootfs, "proc"), "proc")
        mounts.enter_root(rootfs, False)
        seen = {"cwd": os.getcwd(), "root": sorted(os.listdir("/")),
                "host still there": os.path.exists(scratch),
                "mount points": sorted(m.mount_point for m in procfs.mountinfo())}
        # The classic escape from a chroot: it works against chroot, not against pivot_root.
        os.mkdir("/jail")
        os.chroot("/jail")
        for _ in range(64):
            os.chdir("..")
        os.chroot(".")
        seen["after the escape"] = sorted(os.listdir("/"))
        return seen

    seen = in_child(inside, syscalls.CLONE_NEWNS)
    assert seen["root"] == ["marker", "proc"], f"'/' after enter_root lists {seen['root']}"
    assert seen["cwd"] == "/", f"the working directory after enter_root is {seen['cwd']!r}"
    assert not seen["host still there"], "the host's files are still reachable"
    assert seen["mount points"] == ["/", "/proc"], "after enter_root the mount table must hold " \
        f"only the new root and its mounts (the old root detached): {seen['mount points']}"
    assert seen["after the escape"] == ["jail", "marker", "proc"], \
        f"the chroot escape reached {seen['after the escape']}"


# --- /dev ----------------------------------------------------------------------------------------

@checkpoint("cp03", points=2, hint="populate_dev: mknod(2) each of DEFAULT_DEVICES as a character "
            "device (S_IFCHR) with its major and minor in rootfs/dev, mode 0666 -- "
            "make_device(path, 'c', major, minor) does mknod, chmod and chown (man 4 null: "
            "null 1:3, zero 1:5, full 1:7, random 1:8, urandom 1:9, tty 5:0)")
def test_populate_dev(mounts, in_child, scratch):
    def inside():
        os.umask(0o022)                 # as any caller's: the modes must not depend on it
        rootfs = tmpfs(os.path.join(scratch, "rootfs"))
        tmpfs(os.path.join(rootfs, "dev"))
        mounts.populate_dev(rootfs, [{"path": "/dev/extra/mine", "type": "c", "major": 1,
                                      "minor": 3, "fileMode": 0o600, "uid": 0, "gid": 0}])
        dev = os.path.join(rootfs, "dev")
        nodes = {}
        for name in sorted(os.listdir(dev)):
            st = os.lstat(os.path.join(dev, name))
            if stat.S_ISCHR(st.st_mode):
                nodes[name] = (os.major(st.st_rdev), os.minor(st.st_rdev), oct(st.st_mode & 0o777))
        with open(os.path.join(dev, "zero"), "rb") as f:
            zeros = f.read(4)
        with open(os.path.join(dev, "null"), "wb") as f:
            f.write(b"gone")
        try:
            with open(os.path.join(dev, "full"), "wb", buffering=0) as f:
                f.write(b"x")
            full = "written"
        except OSError as e:
            full = errno.errorcode[e.errno]
        return {"nodes": nodes, "zeros": zeros, "full": full,
                "links": {n: os.readlink(os.path.join(dev, n)) for n in ("fd", "stdin", "ptmx")},
                "extra": oct(os.stat(os.path.join(dev, "extra/mine")).st_mode & 0o777)}

    seen = in_child(inside, syscalls.CLONE_NEWNS)
    expected = {"null": (1, 3, "0o666"), "zero": (1, 5, "0o666"), "full": (1, 7, "0o666"),
                "random": (1, 8, "0o666"), "urandom": (1, 9, "0o666"), "tty": (5, 0, "0o666")}
    assert seen["nodes"] == expected, f"character devices in /dev (major, minor, mode): {seen['nodes']}"
    assert (seen["zeros"], seen["full"]) == (b"\0\0\0\0", "ENOSPC"), seen
    assert seen["links"] == {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "ptmx": "pts/ptmx"}
    assert seen["extra"] == "0o600"


# --- after pivot_root: read-only and masked paths ----------------------------------------------

@checkpoint("cp03", points=2, hint="readonly_path(path): bind the path onto itself (MS_BIND|MS_REC), "
            "then remount that bind MS_BIND|MS_REMOUNT|MS_RDONLY|MS_REC|current_flags(path): a "
            "remount replaces the mount's flags, so nosuid/nodev/noexec must be passed again; a "
            "missing path is skipped (FileNotFoundError), the rest of the tree stays writable")
def test_readonly_path(mounts, in_child, scratch):
    def inside():
        top = tmpfs(os.path.join(scratch, "proc"),
                    syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC)
        for d in ("sys", "sys/kernel", "net"):
            os.mkdir(os.path.join(top, d))
        tmpfs(os.path.join(top, "sys/kernel"))          # a submount: MS_REC covers it
        mounts.readonly_path(os.path.join(top, "sys"))
        mounts.readonly_path(os.path.join(top, "no/such/path"))
        return {"sys": (writable(f"{top}/sys"), sorted(flags(f"{top}/sys"))),
                "submount": os.path.ismount(f"{top}/sys/kernel"),
                "net": writable(f"{top}/net"), "top": writable(top)}

    seen = in_child(inside, syscalls.CLONE_NEWNS)
    assert seen["sys"] == (False, ["nodev", "noexec", "nosuid", "ro"]), \
        f"the read-only path: (writable, flags) = {seen['sys']} (the mount was nosuid,nodev,noexec)"
    assert seen["submount"], "the mounts below the path must stay visible (bind with MS_REC)"
    assert seen["net"] and seen["top"], "only the path itself may become read-only"


@checkpoint("cp03", points=2, hint="mask_path(path): a directory is hidden under an empty "
            "READ-ONLY tmpfs (MS_RDONLY), a file under a bind mount of /dev/null (it reads as "
            "empty and is a character device 1:3); a path that does not exist is left alone "
            "(runtime-spec config-linux.md, 'Masked Paths')")
def test_mask_path(mounts, in_child, scratch):
    def inside():
        top = tmpfs(os.path.join(scratch, "proc"))
        os.makedirs(os.path.join(top, "acpi/battery"))
        Path(top, "kcore").write_text("the kernel's memory\n")
        for name in ("acpi", "kcore", "no-such-file"):
            mounts.mask_path(os.path.join(top, name))
        st = os.stat(os.path.join(top, "kcore"))
        return {"dir": (os.listdir(f"{top}/acpi"), writable(f"{top}/acpi")),
                "file": (Path(top, "kcore").read_text(), stat.S_ISCHR(st.st_mode),
                         st.st_rdev == os.stat("/dev/null").st_rdev),
                "missing": os.path.lexists(f"{top}/no-such-file")}

    seen = in_child(inside, syscalls.CLONE_NEWNS)
    assert seen["dir"] == ([], False), f"the masked directory: (entries, writable) = {seen['dir']}"
    assert seen["file"] == ("", True, True), f"the masked file: (content, chr, is /dev/null) = {seen['file']}"
    assert not seen["missing"], "mask_path created a path that did not exist"


@checkpoint("cp03", points=1, hint="bad input: a bind whose source does not exist is an "
            "OSError with errno ENOENT naming the source, raised BEFORE anything is created "
            "in the rootfs; a filesystem the kernel does not know is the kernel's error "
            "(ENODEV), not swallowed", depends=["test_mount_entry_bind"])
def test_bad_input(mounts, in_child, scratch):
    def inside():
        rootfs = tmpfs(os.path.join(scratch, "rootfs"))
        before = sorted(os.listdir(rootfs))
        out = {}
        for name, entry in (
                ("bind", {"destination": "/data/x", "type": "bind",
                          "source": f"{scratch}/no-such-dir", "options": ["rbind", "ro"]}),
                ("fstype", {"destination": "/weird", "type": "cp03-no-such-fs",
                            "source": "none", "options": []})):
            try:
                mounts.mount_entry(rootfs, scratch, entry, {})
                out[name] = "accepted"
            except OSError as e:
                out[name] = (errno.errorcode.get(e.errno or 0), str(e))
        out["created"] = sorted(set(os.listdir(rootfs)) - set(before) - {"weird"})
        out["mounted"] = sorted(m.mount_point for m in procfs.mountinfo()
                                if m.mount_point.startswith(rootfs + "/"))
        return out

    seen = in_child(inside, syscalls.CLONE_NEWNS)
    assert seen["bind"] != "accepted" and seen["bind"][0] == "ENOENT", f"missing source: {seen['bind']}"
    assert "no-such-dir" in seen["bind"][1], f"the error must name the source: {seen['bind'][1]}"
    assert seen["fstype"] != "accepted" and seen["fstype"][0] == "ENODEV", seen["fstype"]
    assert seen["created"] == [], f"a failed entry left {seen['created']} in the rootfs"
    assert seen["mounted"] == [], f"a failed entry left mounts: {seen['mounted']}"


# --- the proof: docker run through your rootfs code ------------------------------------------

# What the container prints, one line each, and what it must be.
PROBE = r"""
cat /data/hello
touch /data/new 2>/dev/null && echo data-rw || echo data-ro
touch /new 2>/dev/null && echo root-rw || echo root-ro
touch /dev/shm/new && echo shm-rw
awk '$5 == "/proc/sys" {split($6, o, ","); print "proc-sys-" o[1]}' /proc/self/mountinfo
stat -c %t:%T /proc/timer_list 2>/dev/null || echo absent
ls /sys/firmware | wc -l
stat -c %F:%t:%T /dev/null /dev/zero /dev/urandom
awk '$5 == "/"' /proc/self/mountinfo | wc -l
ls /
"""


@checkpoint("cp03", points=3, hint="labkit-runc builds every container's filesystem with your "
            "mount_entry (each of config.json's mounts), populate_dev, enter_root (pivot_root), "
            "readonly_path and mask_path: `docker run --read-only -v DIR:/data:ro busybox …` must "
            "show busybox's root alone, read-only, /data read-only, /proc/sys read-only, "
            "/proc/timer_list and /sys/firmware masked, /dev's devices, through a lab whose "
            "rootfs layer is your workspace (the docker error names the function not done yet)")
def test_docker_run_through_your_rootfs(private_lab, scratch):
    import subprocess

    docker = shutil.which("docker")
    assert docker, "no docker CLI on PATH (vagrant/setup.sh installs Debian's docker.io)"
    data = os.path.join(scratch, "data")
    os.mkdir(data)
    Path(data, "hello").write_text("from the host\n")
    with private_lab() as env:
        run = subprocess.run([docker, "run", "--rm", "--read-only", "-v", f"{data}:/data:ro",
                              "busybox", "sh", "-c", PROBE], env=env,
                             capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, _docker_error(run.stderr)
    lines = run.stdout.splitlines()
    timer_list = "1:3" if os.path.exists("/proc/timer_list") else "absent"
    assert lines[:9] == ["from the host", "data-ro", "root-ro", "shm-rw", "proc-sys-ro",
                         timer_list, "0", "character special file:1:3",
                         "character special file:1:5"], run.stdout
    assert lines[9:11] == ["character special file:1:9", "1"], \
        f"/dev/urandom, then how many mounts are at '/' (1: the old root is gone): {run.stdout}"
    root = lines[11:]
    assert "bin" in root and "data" in root and "work" not in root and "opt" not in root, \
        f"'/' in the container is not busybox's root: {root}"
    assert not os.path.exists(os.path.join(data, "new")), "the container wrote into /data"


def _docker_error(stderr: str) -> str:
    """The line of docker's error that says what failed (the rest is the pull's progress)."""
    lines = [line for line in stderr.splitlines() if "Error" in line or "error" in line]
    return (lines[-1] if lines else stderr.strip()[-500:])
