"""Starting a shim and cleaning up after a dead one, as containerd does (its "shim manager").

    start_shim(...)  runs `<shim> -namespace NS -address A -publish-binary B -id ID start` in
                     the bundle and returns the address the shim printed;
    delete_shim(...) runs `<shim> … -id ID delete` in the bundle, for a shim that is gone.

The shim binary can be labkit-shim or any shim v2 binary that speaks ttrpc (a student's, or
containerd-shim-runc-v2: then the address points into /run/containerd/s).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from labkit.wire.shim.protocol import ShimError
from labkit.wire.ttrpc import Code

__all__ = ["start_shim", "delete_shim", "ShimError"]


def _binary(shim_binary: str) -> str:
    found = shutil.which(shim_binary)
    if found:
        return found
    # labkit's commands live next to the interpreter (the lab's virtualenv).
    candidate = Path(sys.executable).parent / shim_binary
    if "/" not in shim_binary and candidate.exists():
        return str(candidate)
    raise ShimError(Code.NOT_FOUND, f"shim binary {shim_binary!r} not found")


def _publish_binary() -> str:
    return shutil.which("labkit-containerd") or str(Path(sys.executable).parent / "labkit-containerd")


def _run(shim_binary: str, verb: str, id: str, namespace: str, bundle: Path,
         containerd_address: str, debug: bool = False) -> bytes:
    bundle = Path(bundle)
    if not bundle.is_dir():
        raise ShimError(Code.INVALID_ARGUMENT, f"bundle {bundle} is not a directory")
    argv = [_binary(shim_binary), "-namespace", namespace, "-address", containerd_address,
            "-publish-binary", _publish_binary(), "-id", id]
    if debug:
        argv.append("-debug")
    argv.append(verb)
    # The environment containerd gives its shims. TTRPC_ADDRESS is where the shim sends its
    # events (/tasks/exit …): only named when a ttrpc socket really listens next to the gRPC one.
    env = dict(os.environ, NAMESPACE=namespace, GRPC_ADDRESS=containerd_address, MAX_SHIM_VERSION="2")
    env.pop("TTRPC_ADDRESS", None)
    if os.path.exists(containerd_address + ".ttrpc"):
        env["TTRPC_ADDRESS"] = containerd_address + ".ttrpc"
    try:
        proc = subprocess.run(argv, cwd=bundle, env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise ShimError(Code.DEADLINE_EXCEEDED, f"{shim_binary} {verb} did not finish within 60 s") from None
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()
        raise ShimError(Code.UNKNOWN, f"{shim_binary} {verb} failed (exit status {proc.returncode}): "
                                      f"{detail[-1] if detail else 'no message'}")
    return proc.stdout


def start_shim(shim_binary: str = "labkit-shim", *, id: str, namespace: str, bundle: Path,
               containerd_address: str, debug: bool = False) -> str:
    """Launch a shim for container `id` and return its address ("unix:///run/labkit/s/<hex>")."""
    out = _run(shim_binary, "start", id, namespace, bundle, containerd_address, debug)
    address = out.decode(errors="replace").strip()
    if address.startswith("{"):
        # containerd 2.x's bootstrap form: {"version": 2|3, "address": …, "protocol": "ttrpc"}
        import json
        address = json.loads(address).get("address", "")
    if not address:
        raise ShimError(Code.UNKNOWN, f"{shim_binary} start printed no address")
    return address


def delete_shim(shim_binary: str = "labkit-shim", *, id: str, namespace: str, bundle: Path,
                containerd_address: str) -> None:
    """Clean up after a dead shim: `runtime delete --force`, unmount the rootfs."""
    _run(shim_binary, "delete", id, namespace, bundle, containerd_address)
