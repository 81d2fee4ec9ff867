"""Layer identities: diff IDs and chain IDs.

A layer has two digests. The registry knows the *compressed* blob's digest (what the
manifest lists); the image config lists `rootfs.diff_ids`, the digests of the
*uncompressed* tars. The unpacked filesystem of layer n depends on every layer below it, so
snapshots are keyed by a *chain ID* that hashes the whole stack (image-spec config.md):

    chainID[0] = diffID[0]
    chainID[n] = "sha256:" + sha256hex(chainID[n-1] + " " + diffID[n])

Two images sharing their bottom layers share those snapshots, because the chain IDs agree.
"""

from __future__ import annotations

import hashlib


def chain_ids(diff_ids: list[str]) -> list[str]:
    """The chain ID of each layer in a stack, bottom first (see module docstring)."""
    # BEGIN SOLUTION chapter="06" hint="image-spec config.md, \"Layer ChainID\""
    # TODO: return the chain ID of each layer, bottom first (see the module docstring)
    # HINT: the first is the diff ID itself; then sha256 of "<previous chain ID> <diff ID>"
    # HINT: refuse an entry that is not "algorithm:hex" with ValueError
    result: list[str] = []
    for diff_id in diff_ids:
        if not isinstance(diff_id, str) or ":" not in diff_id:
            raise ValueError(f"invalid diff id {diff_id!r}: expected \"sha256:<hex>\"")
        if not result:
            result.append(diff_id)
        else:
            joined = f"{result[-1]} {diff_id}".encode()
            result.append("sha256:" + hashlib.sha256(joined).hexdigest())
    return result
    # END SOLUTION


def sha256_digest(data: bytes) -> str:
    """"sha256:<hex>" of some bytes: the content address of a blob or manifest."""
    return "sha256:" + hashlib.sha256(data).hexdigest()
