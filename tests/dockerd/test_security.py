"""--security-opt and the seccomp profile labkit-dockerd resolves per container (no daemon).

The default profile is built from the container's capabilities, as Docker builds it: these
tests add and drop capabilities and look for the rules that come and go. The last ones
compare the result with the profile a real dockerd 20.10 sent (tests/fixtures).
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from labkit.dockerd import oci, security

REFERENCE = Path(__file__).parent.parent / "fixtures" / "dockerd-generated-config.json"


def profile(cap_add=None, cap_drop=None, machine="x86_64", kernel="6.1.0-18-amd64", opts=None):
    caps = oci.capabilities(cap_add, cap_drop)
    return security.seccomp_for(security.parse(opts), caps, machine=machine, kernel=kernel)


def allowed(p: dict) -> set[str]:
    """Names some ALLOW rule mentions with no condition on the arguments."""
    return {n for r in p["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args")
            for n in r["names"]}


def rules_for(p: dict, name: str) -> list[dict]:
    return [r for r in p["syscalls"] if name in r["names"]]


def test_default_profile_is_an_allow_list_failing_with_eperm():
    p = profile()
    assert (p["defaultAction"], p["defaultErrnoRet"]) == ("SCMP_ACT_ERRNO", errno.EPERM)
    assert p["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    everyday = {"read", "write", "openat", "execve", "mmap", "fork", "wait4", "getdents64",
                "mkdir", "chown32", "socketcall", "arch_prctl", "chroot", "ptrace"}
    assert everyday <= allowed(p)
    # what the issue saw a default container reach, and other host-wide knobs
    refused = {"unshare", "setns", "mount", "keyctl", "add_key", "request_key",
               "init_module", "finit_module", "delete_module", "kexec_load", "reboot",
               "open_by_handle_at", "bpf", "swapon", "io_uring_setup", "clock_settime"}
    assert not refused & {n for r in p["syscalls"] for n in r["names"]}


def test_default_clone_rules_refuse_new_namespaces():
    p = profile()
    (clone,) = rules_for(p, "clone")
    assert clone["args"] == [{"index": 0, "value": 0x7E020000, "op": "SCMP_CMP_MASKED_EQ"}]
    (clone3,) = rules_for(p, "clone3")      # ENOSYS: glibc falls back to clone(2)
    assert (clone3["action"], clone3["errnoRet"]) == ("SCMP_ACT_ERRNO", errno.ENOSYS)
    personas = sorted(r["args"][0]["value"] for r in rules_for(p, "personality"))
    assert personas == [0, 8, 0x20000, 0x20008, 0xFFFFFFFF]
    families = [r["args"][0] for r in rules_for(p, "socket")]
    assert {(a["op"], a["value"]) for a in families} == {
        ("SCMP_CMP_LT", 38), ("SCMP_CMP_EQ", 39), ("SCMP_CMP_GT", 40)}   # not AF_ALG, AF_VSOCK


def test_cap_sys_admin_opens_mounts_and_namespaces():
    p = profile(cap_add=["SYS_ADMIN"])
    assert {"mount", "umount2", "unshare", "setns", "clone", "clone3", "sethostname"} <= allowed(p)
    assert not any(r.get("args") for r in rules_for(p, "clone"))     # the masked rule is gone
    assert all(r["action"] == "SCMP_ACT_ALLOW" for r in rules_for(p, "clone3"))


@pytest.mark.parametrize("cap, names", [
    ("SYS_MODULE", {"init_module", "finit_module", "delete_module"}),
    ("SYS_TIME", {"settimeofday", "clock_settime"}),
    ("SYS_BOOT", {"reboot"}),
    ("DAC_READ_SEARCH", {"open_by_handle_at"}),
    ("SYS_PTRACE", {"kcmp", "pidfd_getfd", "process_madvise"}),
    ("SYS_NICE", {"mbind", "set_mempolicy"}),
])
def test_each_capability_adds_its_calls(cap, names):
    assert not names & allowed(profile())
    assert names <= allowed(profile(cap_add=[cap]))


def test_dropping_a_capability_removes_its_calls():
    assert "chroot" in allowed(profile())
    assert "chroot" not in allowed(profile(cap_drop=["SYS_CHROOT"]))
    bare = profile(cap_drop=["ALL"])                        # the everyday calls stay
    assert {"read", "execve", "setuid"} <= allowed(bare) and "chroot" not in allowed(bare)


def test_architecture_and_kernel_filters():
    arm = profile(machine="aarch64")
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert {"set_tls", "cacheflush"} <= allowed(arm)
    assert not {"arch_prctl", "modify_ldt"} & allowed(arm)
    assert "set_tls" not in allowed(profile())
    old = profile(kernel="4.4.0-210-generic")            # ptrace could bypass filters < 4.8
    assert "ptrace" not in allowed(old) and "ptrace" in allowed(profile())
    assert "architectures" not in profile(machine="riscv64")   # libseccomp: native only


def test_matches_what_a_real_dockerd_sent():
    """Docker 20.10's profile for the default capabilities (the fixture), and ours: the same
    rules, but for what Docker changed since: io_uring refused (25.0), socket() checked by
    family, calls of newer kernels added."""
    ref = json.loads(REFERENCE.read_text())["linux"]["seccomp"]
    ours = profile()

    def flat(p):
        return {(n, r["action"], r.get("errnoRet"), json.dumps(r.get("args"), sort_keys=True))
                for r in p["syscalls"] for n in r["names"]}
    assert ref["defaultAction"] == ours["defaultAction"]
    assert ref["architectures"] == ours["architectures"]
    assert {x[0] for x in flat(ref) - flat(ours)} == {
        "io_uring_setup", "io_uring_enter", "io_uring_register", "socket"}
    assert {x[0] for x in flat(ours) - flat(ref)} == {
        "socket", "process_vm_readv", "process_vm_writev", "name_to_handle_at", "pkey_alloc",
        "pkey_free", "pkey_mprotect", "cachestat", "fchmodat2", "futex_wait", "futex_wake",
        "futex_requeue", "map_shadow_stack", "mseal", "statmount", "listmount", "getxattrat",
        "listxattrat", "setxattrat", "removexattrat", "uretprobe"}


# --- --security-opt ---------------------------------------------------------------------
CUSTOM = {"defaultAction": "SCMP_ACT_ALLOW",
          "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                        "errnoRet": errno.EACCES}]}


def test_unconfined_builtin_and_privileged():
    assert profile(opts=["seccomp=unconfined"]) is None
    assert profile(opts=["seccomp:unconfined"]) is None      # the pre-17.04 spelling
    assert profile(opts=["seccomp=builtin"]) == profile()
    caps = oci.capabilities(None, None)
    assert security.seccomp_for(security.parse(None), caps, privileged=True) is None
    custom = security.parse(["seccomp=" + json.dumps(CUSTOM)])
    assert security.seccomp_for(custom, caps, privileged=True)["syscalls"]  # explicit wins


def test_custom_profile_is_resolved_like_the_default():
    p = profile(opts=["seccomp=" + json.dumps(CUSTOM)])
    assert p == {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES}]}
    gated = dict(CUSTOM, syscalls=[dict(CUSTOM["syscalls"][0], name="mkdir", names=None,
                                        excludes={"caps": ["CAP_CHOWN"]})])
    assert profile(opts=["seccomp=" + json.dumps(gated)])["syscalls"] == []
    assert profile(opts=["seccomp=" + json.dumps({"defaultAction": ""})]) is None


def test_no_new_privileges():
    assert security.parse(["no-new-privileges"]).no_new_privileges
    assert security.parse(["no-new-privileges=true"]).no_new_privileges
    assert not security.parse(["no-new-privileges=false"]).no_new_privileges
    assert security.parse(["apparmor=unconfined", "label=disable"]) == security.SecurityOptions()
    spec = oci.process_spec(args=["sh"], env=[], cwd="/", user="", tty=False,
                            no_new_privileges=True)
    assert spec["noNewPrivileges"] is True


@pytest.mark.parametrize("opts, words", [
    (["bogus"], "invalid --security-opt 'bogus'"),
    (["foo=bar"], "unknown option 'foo'"),
    (["no-new-privileges=maybe"], "expected true or false"),
    (["seccomp="], "give unconfined, builtin or a profile file"),
    (["seccomp=/etc/profile.json"], "an API client must send the JSON itself"),
    (["seccomp={"], "the profile is not JSON"),
    (["seccomp=[]"], "a profile is a JSON object"),
    (["seccomp=" + json.dumps(dict(CUSTOM, architectures=["SCMP_ARCH_X86_64"],
                                   archMap=[{"architecture": "SCMP_ARCH_X86_64"}]))],
     "both 'architectures' and 'archMap'"),
    (["seccomp=" + json.dumps({"defaultAction": "SCMP_ACT_ERNO"})], "unknown action"),
    (["seccomp=" + json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"name": "a", "names": ["b"], "action": "SCMP_ACT_ERRNO"}]})], "both 'name' and 'names'"),
    (["seccomp=" + json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["a"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 0, "value": 1, "op": "EQ"}]}]})], "unknown comparison op 'EQ'"),
    (["seccomp=" + json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["a"], "action": "SCMP_ACT_ALLOW",
         "includes": {"minKernel": "4"}}]})], "invalid minKernel '4'"),
])
def test_bad_options_are_errors_that_name_the_option(opts, words):
    with pytest.raises(ValueError) as e:
        profile(opts=opts)
    assert words in str(e.value) and "--security-opt" in str(e.value)
