"""Unit tests of labkit-runc's pieces, without root: the syscall module's errors and its
recording fake, mount option parsing, secure path resolution, signals, the log format,
config checks, status derivation and the crun launcher."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from labkit import procfs, syscalls
from labkit.runc import cgroups, config, log, mounts
from labkit.runc.container import Container
from labkit.runc.kill import parse_signal
from labkit.runc.log import ContainerError
from labkit.wire.runtime import runtime_argv
from support import base_spec


class Recorder:
    """A stand-in for the kernel: records each call instead of making it."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        def record(*args):
            self.calls.append((name, *args))
            return 0
        return record


@pytest.fixture
def recorder():
    fake = Recorder()
    previous = syscalls.use(fake)
    try:
        yield fake
    finally:
        syscalls.use(previous)


# --- syscalls ----------------------------------------------------------------------------
def test_syscall_errors_name_the_call_and_argument():
    with pytest.raises(OSError) as e:
        syscalls.umount2("/no/such/mount/point")
    assert e.value.strerror.startswith("umount2 /no/such/mount/point: E")
    assert e.value.errno in (1, 2, 22)           # EPERM (not root), ENOENT or EINVAL


def test_enter_root_makes_the_pivot_root_dance(recorder, tmp_path):
    cwd = os.getcwd()
    try:
        mounts.enter_root(str(tmp_path), no_pivot=False)
    finally:
        os.chdir(cwd)
    assert recorder.calls == [
        ("pivot_root", ".", "."),
        ("mount", None, ".", None, syscalls.MS_SLAVE | syscalls.MS_REC, None),
        ("umount2", ".", syscalls.MNT_DETACH),
    ]


def test_mount_entry_splits_flags_from_data(recorder, tmp_path):
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    m = {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k", "rprivate"]}
    mounts.mount_entry(str(rootfs), str(tmp_path), m, {})
    target = str(rootfs / "dev/shm")
    assert os.path.isdir(target)                 # the mount point was created
    assert recorder.calls == [
        ("mount", "shm", target, "tmpfs",
         syscalls.MS_NOSUID | syscalls.MS_NOEXEC | syscalls.MS_NODEV, "mode=1777,size=65536k"),
        ("mount", None, target, None, syscalls.MS_PRIVATE | syscalls.MS_REC, None),
    ]


def test_readonly_bind_needs_a_remount(recorder, tmp_path):
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    (tmp_path / "file.conf").write_text("x")
    m = {"destination": "/etc/app.conf", "type": "bind", "source": "file.conf",
         "options": ["rbind", "ro"]}
    mounts.mount_entry(str(rootfs), str(tmp_path), m, {})
    target = str(rootfs / "etc/app.conf")
    assert os.path.isfile(target)                # a FILE mount point for a file source
    first, second = recorder.calls
    assert first == ("mount", str(tmp_path / "file.conf"), target, None,
                     syscalls.MS_BIND | syscalls.MS_REC, None)
    assert second[0] == "mount" and second[4] & syscalls.MS_REMOUNT
    assert second[4] & syscalls.MS_RDONLY and second[4] & syscalls.MS_BIND


# --- mounts --------------------------------------------------------------------------------
def test_parse_options():
    o = mounts.parse_options(["ro", "nosuid", "rw", "mode=755", "rslave", "tmpcopyup"])
    assert o.flags == syscalls.MS_NOSUID            # "rw" after "ro" wins
    assert o.data == "mode=755"
    assert o.propagation == [syscalls.MS_SLAVE | syscalls.MS_REC]


def test_secure_join_never_leaves_the_root(tmp_path):
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "abs").symlink_to("/etc")
    (root / "up").symlink_to("../../../../..")
    assert mounts.secure_join(str(root), "/abs/passwd") == str(root / "etc/passwd")
    assert mounts.secure_join(str(root), "/up/etc") == str(root / "etc")
    assert mounts.secure_join(str(root), "/../../x/./y") == str(root / "x/y")
    (root / "loop").symlink_to("loop")
    with pytest.raises(OSError):
        mounts.secure_join(str(root), "/loop/x")


# --- small pieces ----------------------------------------------------------------------------
@pytest.mark.parametrize("text,number", [("9", 9), ("KILL", 9), ("SIGTERM", 15), ("term", 15),
                                         ("SIGUSR1", signal.SIGUSR1)])
def test_parse_signal(text, number):
    assert parse_signal(text) == number


@pytest.mark.parametrize("text", ["FOO", "0", "999", "-1", ""])
def test_parse_signal_rejects(text):
    with pytest.raises(ContainerError, match="unknown signal"):
        parse_signal(text)


def test_json_log_is_runcs_format(tmp_path):
    path = tmp_path / "log.json"
    try:
        log.configure(str(path), "json")
        log.warning("first")
        log.error("container does not exist")
    finally:
        log.configure(None)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["level"] for r in records] == ["warning", "error"]
    assert records[1]["msg"] == "container does not exist"
    assert records[1]["time"].endswith("Z")
    assert path.read_text().startswith('{"level":"warning","msg":"first","time":')


@pytest.mark.parametrize("change,message", [
    (lambda s: s["process"].update(args=[]), "process.args"),
    (lambda s: s.pop("root"), "root.path"),
    (lambda s: s["mounts"].append({"destination": "relative"}), "not an absolute path"),
    (lambda s: s["linux"]["namespaces"].append({"type": "time-travel"}), "unknown namespace"),
    (lambda s: s["linux"].update(namespaces=[{"type": "mount"}]), "UTS namespace"),
    (lambda s: s["process"].update(env=["NOEQUALS"]), "KEY=value"),
    (lambda s: s["linux"]["namespaces"].append({"type": "user"}), "uidMappings"),
])
def test_config_mistakes_are_clear(change, message):
    spec = base_spec(["true"])
    change(spec)
    with pytest.raises(ContainerError, match=message):
        config.validate(spec)


def test_status_is_derived_from_the_kernel(tmp_path):
    child = subprocess.Popen(["sleep", "30"])
    try:
        start_time = procfs.stat(child.pid).start_time
        c = Container(id="c", state_dir=str(tmp_path), bundle="/b", rootfs="/b/rootfs",
                      pid=child.pid, start_time=start_time)
        os.mkfifo(c.fifo_path)
        assert c.status() == "created"
        os.unlink(c.fifo_path)
        assert c.status() == "running"
        c.start_time += 1                           # as if the pid had been reused
        assert c.status() == "stopped"
        c.start_time -= 1
        child.kill()
        child.wait()
        assert c.status() == "stopped" and c.oci_state()["pid"] == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_unknown_container_wording(tmp_path):
    with pytest.raises(ContainerError, match="^container does not exist$"):
        Container.load(str(tmp_path), "nope")
    with pytest.raises(ContainerError, match="invalid id format"):
        Container.load(str(tmp_path), "../etc")


def test_cgroup_helpers():
    assert cgroups.normalize("system.slice:docker:abc", "abc") == "/system.slice/docker-abc.scope"
    assert cgroups.normalize("/docker/abc", "abc") == "/docker/abc"
    assert cgroups._device_rule({"allow": False, "access": "rwm"}) == "a"
    assert cgroups._device_rule({"type": "c", "major": 1, "minor": 3, "access": "rwm"}) == "c 1:3 rwm"
    assert cgroups._device_rule({"type": "c", "major": 136, "access": "rwm"}) == "c 136:* rwm"


def test_crun_goes_through_v1only_by_its_command_line():
    # The runtime client never imports labkit.runc: it runs v1only as a program, which hides
    # the cgroup2 mount on a hybrid host and otherwise just execs crun.
    assert runtime_argv("/usr/bin/crun") == [sys.executable, "-m", "labkit.runc.v1only", "/usr/bin/crun"]
    assert runtime_argv("/usr/bin/runc") == ["/usr/bin/runc"]


def test_version_output_is_parseable():
    out = subprocess.run([sys.executable, "-m", "labkit.runc.main", "--version"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0].startswith("labkit-runc version ")
    assert out[1].startswith("commit: ") and out[2] == "spec: 1.0.2"


# --- the command line: main.quick_args reads the shim's everyday command lines as argparse does

QUICK = [
    ["start", "c1"],
    ["--root", "/run/x", "state", "c1"],
    ["--root=/run/x", "--log", "/tmp/l.json", "--log-format", "json", "start", "c-1.a_b"],
    ["--root", "/r", "--log=/tmp/l", "--log-format=text", "--systemd-cgroup", "delete", "c1"],
    ["--debug", "--criu", "/usr/sbin/criu", "delete", "--force", "c1"],
    ["--root", "/r", "delete", "-f", "c1"],
    # the shim's create, and the other spellings of create's flags
    ["--root", "/r", "--log", "/b/log.json", "--log-format", "json", "--systemd-cgroup",
     "create", "--bundle", "/b", "--pid-file", "/b/init.pid", "c1"],
    ["create", "--bundle=/b", "--pid-file=/p", "--console-socket", "/s.sock", "--no-pivot",
     "--no-new-keyring", "c1"],
    ["create", "-b", "/b", "c1"], ["create", "c1"], ["create", "--bundle", "", "c1"],
    ["run", "--bundle", "/b", "c1"], ["run", "-d", "--keep", "--pid-file", "/p", "c1"],
]
NOT_QUICK = [
    ["--rootless", "start", "c1"],           # nargs="?": argparse decides what it takes
    ["--ro", "/r", "start", "c1"],           # an abbreviation
    ["delete", "c1", "--force"],             # a flag after the id
    ["start", "--", "c1"], ["start"], ["start", "a", "b"],
    ["--root"], ["--root", "-x", "state", "c"],
    ["--log-format", "xml", "state", "c1"], ["kill", "c1"], ["--help"], ["state", "--help"],
    ["--version", "state", "c1"],
    ["create", "--preserve-fds", "2", "c1"],  # a number: argparse converts and checks it
    ["create", "c1", "--bundle", "/b"], ["create", "--bundle"], ["create", "--no-pivot=1", "c1"],
    ["create", "--bundle", "-x", "c1"], ["create", "--pid", "/p", "c1"], ["create"],
]


@pytest.mark.parametrize("argv", QUICK, ids=" ".join)
def test_quick_args_reads_what_argparse_reads(argv):
    from labkit.runc import flags, main
    quick = main.quick_args(argv)
    args, unknown, _ = flags.parse(argv)
    assert quick is not None and not unknown
    assert vars(quick) == vars(args)


@pytest.mark.parametrize("argv", NOT_QUICK, ids=" ".join)
def test_quick_args_leaves_the_rest_to_argparse(argv):
    from labkit.runc import main
    assert main.quick_args(argv) is None


def test_default_root_and_version(monkeypatch, tmp_path):
    """Without --root, the lab's (filled in by main.command, on both paths); here a private
    lab's, as LABKIT_RUN_DIR makes it (labkit.paths reads it when first imported)."""
    from labkit.runc import main
    assert main.quick_args(["state", "c1"]).root is None
    monkeypatch.setenv("LABKIT_RUN_DIR", str(tmp_path))
    for argv in (["state", "c1"], ["kill", "c1"]):
        out = subprocess.run([sys.executable, "-m", "labkit.runc.main", *argv],
                             capture_output=True, text=True)
        assert out.returncode == 1 and "container does not exist" in out.stderr, out.stderr
    (tmp_path / "runc" / "c1").mkdir(parents=True)
    (tmp_path / "runc" / "c1" / "state.json").write_text("{}")
    out = subprocess.run([sys.executable, "-m", "labkit.runc.main", "state", "c1"],
                         capture_output=True, text=True)
    assert "container does not exist" not in out.stderr, out.stderr      # found it there
    assert main.quick_args(["--version"]).version is True
    assert main.quick_args(["-v"]).version is True


def test_start_state_delete_import_neither_argparse_nor_pathlib(tmp_path):
    """What makes those commands quick (labkit.runc.main's docstring): run as the lab runs the
    runtime (python -S, labkit.lab.launch.write_program), on a container that does not exist."""
    import sysconfig
    from labkit.runc import main
    repo = os.path.dirname(os.path.dirname(os.path.dirname(main.__file__)))
    code = ("import sys; from labkit.runc.main import command; "
            f"status = command(sys.argv[1:]); "
            "print(status, sorted(m for m in ('argparse', 'pathlib', 'subprocess', 'typing') "
            "if m in sys.modules))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([repo, sysconfig.get_paths()["platlib"]]))
    for argv in (["state", "none"], ["start", "none"], ["delete", "none"],
                 ["delete", "-f", "none"]):
        out = subprocess.run([sys.executable, "-S", "-c", code, "--root", str(tmp_path), *argv],
                             capture_output=True, text=True, env=env)
        status = "0" if argv[1] == "-f" else "1"       # `delete -f` of an unknown id is fine
        assert out.stdout.split(None, 1) == [status, "[]\n"], (argv, out.stdout, out.stderr)
        assert status == "0" or "container does not exist" in out.stderr, out.stderr


# What each of the shim's commands must not import (labkit.quickjson, labkit.signals and
# labkit.runc.main, labkit.procfs say why): create needs socket and signal (so enum and
# collections), start and delete not.
HEAVY = ("argparse", "json", "re", "typing", "pathlib", "subprocess", "dataclasses")
NOT_IMPORTED_BY = {"create": HEAVY, "start": HEAVY + ("enum", "socket", "collections"),
                   "delete": HEAVY + ("enum", "socket", "collections")}


def test_create_start_delete_of_a_container_import_nothing_heavy(tmp_path):
    """A real container's create, start and delete, as the shim runs them (python -S, as
    labkit.lab.launch.write_program starts the runtime; --log in JSON): `python -X importtime`
    lists what each command imported."""
    from pathlib import Path

    from labkit.lab.implementations import LAYERS
    from labkit.lab.launch import write_program
    from support import make_bundle
    program = write_program(tmp_path / "bin" / "labkit-runc", "labkit-runc",
                            LAYERS["runtime"].entry)
    interpreter = program.read_text().splitlines()[0][2:].split()       # python -S
    bundle = make_bundle(tmp_path / "bundle", ["true"])
    root, cid = tmp_path / "root", "imports"
    common = [*interpreter, "-X", "importtime", str(program), "--root", str(root),
              "--log", str(tmp_path / "log.json"), "--log-format", "json"]
    commands = {"create": ["create", "--bundle", str(bundle), "--pid-file",
                           str(tmp_path / "pid"), cid],
                "start": ["start", cid], "delete": ["delete", cid]}
    imported = {}
    try:
        for verb, argv in commands.items():
            with open(tmp_path / f"{verb}.imports", "w+") as err:
                # stdio not a pipe: create's init inherits it, and lives on
                p = subprocess.run(common + argv, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=err, timeout=30)
                err.seek(0)
                text = err.read()
            assert p.returncode == 0, (verb, text[-2000:], Path(tmp_path / "log.json").read_text())
            imported[verb] = {line.rsplit("|", 1)[1].strip() for line in text.splitlines()
                              if line.startswith("import time:") and "|" in line}
            if verb == "start":
                pid = int((tmp_path / "pid").read_text())
                for _ in range(500):                  # `true` ends; delete wants it stopped
                    stat = procfs.stat(pid)
                    if stat is None or stat.state in procfs.EXITED_STATES:
                        break
                    time.sleep(0.01)
    finally:
        subprocess.run([*interpreter, str(program), "--root", str(root), "delete", "--force",
                        cid], capture_output=True, timeout=30)
    for verb, forbidden in NOT_IMPORTED_BY.items():
        assert "labkit.runc." + verb in imported[verb]             # the list is complete
        assert not imported[verb] & set(forbidden), (verb, sorted(imported[verb] & set(forbidden)))


def _cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labkit.runc.main", *args], capture_output=True,
                          text=True, cwd=cwd)


def test_spec_writes_a_valid_config_once(tmp_path):
    assert _cli("spec", "--bundle", str(tmp_path)).returncode == 0
    spec = json.loads((tmp_path / "config.json").read_text())
    config.validate(spec)                                   # what create would accept
    assert spec["process"]["terminal"] is True and spec["root"]["path"] == "rootfs"
    again = _cli("spec", "--bundle", str(tmp_path))
    assert again.returncode == 1 and "exists" in again.stderr


def test_features_document():
    out = _cli("features")
    doc = json.loads(out.stdout)
    assert {"mount", "pid", "user"} <= set(doc["linux"]["namespaces"])
    assert "rbind" in doc["mountOptions"] and "CAP_SYS_ADMIN" in doc["linux"]["capabilities"]


def test_list_of_an_empty_root(tmp_path):
    out = _cli("--root", str(tmp_path / "none"), "list", "--format", "json")
    assert out.returncode == 0 and json.loads(out.stdout) == []


def test_usage_mistakes_are_logged_like_errors(tmp_path):
    logfile = tmp_path / "log.json"
    out = _cli("--log", str(logfile), "--log-format", "json", "kill")
    assert out.returncode == 1
    record = json.loads(logfile.read_text().splitlines()[-1])
    assert record["level"] == "error" and "required" in record["msg"]


# --- seccomp: what libseccomp is asked to build (no filter is loaded here) -----------------
from labkit.runc import seccomp  # noqa: E402

needs_libseccomp = pytest.mark.skipif(not seccomp.available(), reason="libseccomp not installed")


@needs_libseccomp
def test_seccomp_keeps_calls_of_a_secondary_architecture():
    """chown32 exists only on 32-bit x86: natively a pseudo number, in the x86 block a rule.
    A name no architecture knows is skipped, as runc skips it."""
    if os.uname().machine != "x86_64":
        pytest.skip("the x86 family's numbers")
    pfc = seccomp.export_pfc({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": [{"names": ["chown32", "mkdir", "no_such_call"],
                      "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]})
    x86 = pfc.split("# filter for arch x86 ")[1]
    assert 'syscall "chown32" (212)' in x86 and 'syscall "mkdir" (39)' in x86
    assert "ERRNO(13)" in x86 and "no_such_call" not in pfc


@needs_libseccomp
def test_seccomp_errno_defaults_and_flags():
    pfc = seccomp.export_pfc({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
                              "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG"],
                              "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO"}]})
    assert "action ERRNO(38);" in pfc          # defaultErrnoRet
    assert "action ERRNO(1);" in pfc           # a rule's ERRNO without errnoRet: EPERM
    with pytest.raises(ContainerError, match="flag 'SECCOMP_FILTER_FLAG_NOPE' is not"):
        seccomp.export_pfc({"defaultAction": "SCMP_ACT_ALLOW",
                            "flags": ["SECCOMP_FILTER_FLAG_NOPE"]})
    with pytest.raises(ContainerError, match="SCMP_ACT_NOTIFY needs a seccomp agent"):
        seccomp.export_pfc({"defaultAction": "SCMP_ACT_NOTIFY"})
