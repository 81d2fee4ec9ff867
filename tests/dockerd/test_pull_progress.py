"""`docker pull` on a terminal draws a progress bar per layer, from labkit's pull events.

The chain: the registry client calls progress(bytes so far) while a blob streams
(labkit.distribution.client.fetch_blob) -> labkit-containerd's Transfer.Pull sends
"downloading"/"extracting" events with current and total -> labkit-dockerd writes them as
JSON messages with progressDetail on POST /images/create -> the docker CLI, on a terminal
wider than 110 columns, draws `[=====>      ]` for each layer (docker/cli jsonmessage.go).
The CLI runs under script(1) here, on a pseudo-terminal set to 150 columns.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile

import pytest

from dockerd.conftest import DOCKER
from labkit.distribution import mediatypes as mt
from labkit.distribution.client import RegistryClient

pytestmark = [pytest.mark.root, pytest.mark.e2e,
              pytest.mark.skipif(not os.path.exists(DOCKER), reason="docker CLI not installed"),
              pytest.mark.skipif(shutil.which("script") is None, reason="script(1) not installed")]


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_layers(url: str, repository: str, n: int, size: int) -> list[str]:
    """An image of `n` plain-tar layers of `size` random bytes each; their digests."""
    client = RegistryClient(url)
    blobs = []
    for i in range(n):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            data = os.urandom(size)
            info = tarfile.TarInfo(f"layer{i}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        blob = buf.getvalue()
        client.push_blob(repository, blob, sha(blob))
        blobs.append({"mediaType": mt.OCI_LAYER_TAR, "digest": sha(blob), "size": len(blob)})
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": [b["digest"] for b in blobs]}}
                        ).encode()
    client.push_blob(repository, config, sha(config))
    manifest = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                           "config": {"mediaType": mt.OCI_CONFIG, "digest": sha(config),
                                      "size": len(config)}, "layers": blobs}).encode()
    client.push_manifest(repository, "latest", manifest, mt.OCI_MANIFEST)
    return [b["digest"] for b in blobs]


def test_docker_pull_draws_a_progress_bar_per_layer(stack, docker_env):
    digests = push_layers(stack.registry.url, "progress/three", 3, 1 << 20)
    name = f"{stack.registry.url.split('://')[1]}/progress/three"
    r = subprocess.run(["script", "-qec", f"stty cols 150 rows 40; {DOCKER} pull {name}",
                        "/dev/null"], env=docker_env, capture_output=True, text=True, timeout=120)
    screen = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", r.stdout)
    assert r.returncode == 0, screen[-2000:]
    for digest in digests:
        short = digest.split(":")[1][:12]
        bars = re.findall(rf"{short}: Downloading \[(=*)>? *\]", screen)
        assert bars, f"no download bar for layer {short}:\n{screen[-2000:]}"
        assert any(0 < len(b) < 50 for b in bars), f"layer {short}: no bar between empty and full"
        assert re.search(rf"{short}: Extracting \[", screen), short
        assert f"{short}: Pull complete" in screen, short
    subprocess.run([DOCKER, "rmi", name], env=docker_env, capture_output=True, timeout=60)
