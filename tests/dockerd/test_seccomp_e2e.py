"""End to end: the seccomp filter of `docker run`, through the real docker CLI, labkit-dockerd
(which sends the profile), labkit-containerd, the shim and labkit-runc (which loads it).

A small static probe (sysprobe.c) is bind-mounted into busybox and makes the system calls
under test; busybox's own applets (unshare, mkdir, ls, ping) show ordinary programs.
On this kind of host the answers differ with and without the filter:

    call            default profile     unconfined (the kernel answers)
    unshare -U      EPERM               OK (where the kernel allows user namespaces)
    keyctl          EPERM               OK or ENOKEY
    init_module     EPERM               ENOSYS (no module support) or EPERM (no CAP_SYS_MODULE)
    clone3          ENOSYS (glibc falls back to clone)    EINVAL (no arguments given)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from dockerd.conftest import DOCKER, docker_cli_major

pytestmark = [pytest.mark.root, pytest.mark.e2e,
              pytest.mark.skipif(not os.path.exists(DOCKER), reason="docker CLI not installed")]

PROBE_SOURCE = Path(__file__).parent / "sysprobe.c"
CALLS = ["keyctl", "init_module", "finit_module", "delete_module", "unshare_user", "clone3",
         "personality_query", "socket_inet", "socket_vsock"]


@pytest.fixture(scope="module")
def probe_dir(tmp_path_factory) -> Path:
    if not shutil.which("gcc"):
        pytest.skip("gcc is needed to build the probe (apt-get install gcc libc6-dev)")
    out = tmp_path_factory.mktemp("sysprobe")
    subprocess.run(["gcc", "-static", "-Os", "-o", str(out / "sysprobe"), str(PROBE_SOURCE)],
                   check=True, capture_output=True)
    return out


def docker(env: dict, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([DOCKER, *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def probe(env: dict, probe_dir: Path, *options: str, calls=CALLS) -> dict[str, str]:
    """Run the probe in a fresh busybox container: {call: "OK" or the errno's name}."""
    r = docker(env, "run", "--rm", "-v", f"{probe_dir}:/probe:ro", *options, "busybox",
               "/probe/sysprobe", *calls)
    assert r.returncode == 0, r.stderr
    return dict(line.split() for line in r.stdout.splitlines())


def test_default_profile_refuses_namespaces_keyring_and_modules(docker_env, probe_dir):
    seen = probe(docker_env, probe_dir)
    assert seen == {"keyctl": "EPERM", "init_module": "EPERM", "finit_module": "EPERM",
                    "delete_module": "EPERM", "unshare_user": "EPERM", "clone3": "ENOSYS",
                    "personality_query": "OK", "socket_inet": "OK", "socket_vsock": "EPERM"}


def test_ordinary_programs_work_under_the_filter(docker_env):
    r = docker(docker_env, "run", "--rm", "busybox", "sh", "-c",
               "grep '^Seccomp:' /proc/self/status; ls / >/dev/null && echo ls-ok; "
               "mkdir /tmp/d && echo mkdir-ok; unshare -U true 2>&1; echo unshare=$?; "
               "ping -c1 -W1 127.0.0.1 >/tmp/ping 2>&1; echo ping=$?; cat /tmp/ping")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:3] == ["Seccomp:\t2", "ls-ok", "mkdir-ok"]      # 2: a filter is loaded
    assert "Operation not permitted" in lines[3] and lines[4] == "unshare=1"
    # ping opens its socket either way; it then answers, or says loopback is down
    ping = "\n".join(lines[6:])
    assert lines[5] == "ping=0" or "unreachable" in ping, ping
    assert "not permitted" not in ping and "denied" not in ping


def test_the_filter_follows_the_capabilities(docker_env, probe_dir):
    seen = probe(docker_env, probe_dir, "--cap-add", "SYS_MODULE",
                 calls=["init_module", "finit_module", "delete_module", "keyctl"])
    # the rule opened the calls: the kernel answers (ENOSYS without module support,
    # ENOEXEC/EBADF/ENOENT with it), but keyctl stays refused
    assert "EPERM" not in [seen["init_module"], seen["finit_module"], seen["delete_module"]]
    assert seen["keyctl"] == "EPERM"


def test_unconfined_has_no_filter(docker_env, probe_dir):
    seen = probe(docker_env, probe_dir, "--security-opt", "seccomp=unconfined")
    assert seen["keyctl"] != "EPERM" and seen["clone3"] == "EINVAL"
    assert seen["unshare_user"] == "OK" or _userns_disabled()
    r = docker(docker_env, "run", "--rm", "--security-opt", "seccomp=unconfined", "busybox",
               "sh", "-c", "grep '^Seccomp:' /proc/self/status; unshare -U true && echo userns")
    assert r.stdout.splitlines()[0] == "Seccomp:\t0"
    assert r.stdout.splitlines()[1:] == ["userns"] or _userns_disabled()


def _userns_disabled() -> bool:
    return Path("/proc/sys/user/max_user_namespaces").read_text().strip() == "0"


def test_custom_profile_from_a_file(docker_env, tmp_path):
    """The CLI reads the file and sends its compacted content; mkdir fails with its errno."""
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                             "errnoRet": 13, "comment": "EACCES"}]}
    path = tmp_path / "no-mkdir.json"
    path.write_text(json.dumps(profile, indent=4))
    r = docker(docker_env, "run", "--name", "e2e-seccomp-file", "--security-opt",
               f"seccomp={path}", "busybox", "sh", "-c",
               "mkdir /tmp/x; echo mkdir=$?; touch /tmp/y && echo touch-ok")
    try:
        assert r.returncode == 0, r.stderr
        assert "Permission denied" in r.stderr
        assert r.stdout.splitlines() == ["mkdir=1", "touch-ok"]
        inspect = json.loads(docker(docker_env, "inspect", "e2e-seccomp-file").stdout)[0]
        assert inspect["HostConfig"]["SecurityOpt"] == [
            "seccomp=" + json.dumps(profile, separators=(",", ":"))]
    finally:
        docker(docker_env, "rm", "-f", "e2e-seccomp-file")


def test_exec_gets_the_containers_filter(docker_env):
    r = docker(docker_env, "run", "-d", "--name", "e2e-seccomp-exec", "busybox", "sleep", "60")
    assert r.returncode == 0, r.stderr
    try:
        r = docker(docker_env, "exec", "e2e-seccomp-exec", "sh", "-c",
                   "grep '^Seccomp:' /proc/self/status; "
                   "unshare -U true 2>/dev/null || echo refused")
        assert r.stdout.splitlines() == ["Seccomp:\t2", "refused"], r.stderr
    finally:
        docker(docker_env, "rm", "-f", "e2e-seccomp-exec")


@pytest.mark.parametrize("option, words", [
    ("foo=bar", "invalid --security-opt 'foo=bar': unknown option 'foo'"),
    ("seccomp=builtin", None),
])
def test_security_opt_errors_are_400s_naming_the_option(docker_env, option, words):
    if option == "seccomp=builtin":
        if docker_cli_major(docker_env) < 23:
            pytest.skip("a docker CLI before 23 (Debian's 20.10) reads seccomp=<value> as a "
                        "file on the client side (builtin: CLI 23+ pass it to the daemon)")
    r = docker(docker_env, "run", "--rm", "--security-opt", option, "busybox", "true")
    if words is None:
        assert r.returncode == 0, r.stderr
    else:
        assert r.returncode == 125 and f"Error response from daemon: {words}" in r.stderr


def test_a_bad_profile_file_is_a_400(docker_env, tmp_path):
    path = tmp_path / "typo.json"
    path.write_text('{"defaultAction": "SCMP_ACT_ALOW"}')
    r = docker(docker_env, "create", "--security-opt", f"seccomp={path}", "busybox", "true")
    assert r.returncode != 0
    assert ("Error response from daemon: invalid --security-opt seccomp profile: unknown action "
            "'SCMP_ACT_ALOW'") in r.stderr
