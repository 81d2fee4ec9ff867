"""`labkit-runc features`: what this runtime supports, as JSON (the OCI "features" document).

Callers (containerd, for instance) use it to know which mount options, namespaces and hooks
they may use. Everything listed here is implemented; AppArmor and SELinux are not, and
seccomp only where libseccomp is installed.
"""

from __future__ import annotations

import argparse
import json
import sys

import prctl

from labkit.mountopts import FLAGS, PROPAGATION
from labkit.namespaces import NAMESPACES
from labkit.runc import seccomp


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def document() -> dict:
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.0.2",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer",
                  "poststart", "poststop"],
        "mountOptions": sorted(set(FLAGS) | set(PROPAGATION)),
        "linux": {
            "namespaces": sorted(NAMESPACES),
            "capabilities": sorted("CAP_" + name.upper() for name in prctl.ALL_CAP_NAMES),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": {"enabled": seccomp.available(),
                        "actions": sorted(seccomp._ACTIONS), "operators": sorted(seccomp._COMPARE),
                        "knownFlags": sorted(seccomp._FLAGS)},
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {"org.opencontainers.runc.version": "labkit"},
    }


def run(args: argparse.Namespace) -> int:
    sys.stdout.write(json.dumps(document(), indent=2) + "\n")
    return 0
