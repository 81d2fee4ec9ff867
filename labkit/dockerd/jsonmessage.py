"""Docker's JSON message stream, as `docker pull` (and build) reads it (moby `pkg/jsonmessage`).

The daemon answers `POST /images/create` with 200 at once, then sends one JSON object per
progress step, each followed by "\\r\\n", in a chunked body:

    {"status":"Pulling from library/busybox","id":"latest"}
    {"status":"Pulling fs layer","progressDetail":{},"id":"a1b2c3d4e5f6"}
    {"status":"Downloading","progressDetail":{"current":3645,"total":314132},
     "progress":"[>      ]  3.645kB/314.1kB","id":"a1b2c3d4e5f6"}
    {"status":"Verifying Checksum", ...} {"status":"Download complete", ...}
    {"status":"Extracting", ...} {"status":"Pull complete", ...}
    {"status":"Digest: sha256:..."}
    {"status":"Status: Downloaded newer image for busybox:latest"}

A message with an "id" owns one line of the terminal (the CLI redraws it in place); a
message without one ends the block. An error AFTER the 200 can no longer change the status
code, so it travels in the stream: {"errorDetail":{"message":"..."},"error":"..."}.

`PullReporter` translates labkit-containerd's `Transfer.Pull` progress events (see
api.proto: resolved, waiting, downloading, verifying, downloaded, extracting, unpacked,
exists, done) into these messages. It is pure: events in, dicts out.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Iterator

from labkit.dockerd.errors import DaemonError
from labkit.units import human_size

log = logging.getLogger("labkit.dockerd")


def encode(message: dict) -> bytes:
    """One message as it goes on the wire: compact JSON and CRLF."""
    return json.dumps(message, separators=(",", ":")).encode() + b"\r\n"


def error_message(text: str) -> dict:
    return {"errorDetail": {"message": text}, "error": text}


def stream(messages: Iterator[dict], what: str) -> Iterator[bytes]:
    """The body of a 200 that streams `messages` (a pull, a build). After the 200 the only
    way to report a failure is inside the stream: a last error message, which the CLI prints
    and turns into its exit status."""
    try:
        for message in messages:
            yield encode(message)
    except DaemonError as e:
        yield encode(error_message(e.message))
    except Exception as e:           # a bug or a lower layer's surprise: say it, don't hang
        log.exception("%s failed", what)
        yield encode(error_message(f"{what} failed: {e}"))


def progress_bar(current: int, total: int) -> str:
    """The "progress" string: a 50-column bar and the byte counts, as moby formats it."""
    if total <= 0:
        return f"{human_size(current):>8}"
    half_percent = min(50, int(current / total * 100) // 2)
    bar = "[" + "=" * half_percent + ">" + " " * (50 - half_percent) + "] "
    return bar + f"{human_size(current):>8}/{human_size(total)}"


# Layer media types carry "layer" (OCI) or "rootfs.diff" (Docker): only layers get a line.
def is_layer(media_type: str) -> bool:
    return "layer" in media_type or "rootfs.diff" in media_type


@dataclass
class PullReporter:
    """Turns Transfer.Pull events into Docker's pull messages.

    `repository`: the name as "Pulling from <repository>" shows it (library/busybox);
    `tag`: the id of that first line; `familiar`: the name for the final status
    (busybox:latest); `had_digest`: the digest of the image before the pull, if it
    existed, to tell "Downloaded newer image" from "Image is up to date".
    """

    repository: str
    tag: str
    familiar: str
    had_digest: str | None = None
    _announced: bool = False
    _seen_layers: set[str] = field(default_factory=set)

    def event(self, kind: str, media_type: str = "", digest: str = "", current: int = 0,
              total: int = 0, image_digest: str = "") -> list[dict]:
        out: list[dict] = []
        if not self._announced:
            self._announced = True
            out.append({"status": f"Pulling from {self.repository}", "id": self.tag})
        if kind == "done":
            if image_digest:
                out.append({"status": f"Digest: {image_digest}"})
            if self.had_digest and self.had_digest == image_digest:
                out.append({"status": f"Status: Image is up to date for {self.familiar}"})
            else:
                out.append({"status": f"Status: Downloaded newer image for {self.familiar}"})
            return out
        if kind == "resolved" or not digest or not is_layer(media_type):
            return out
        short = digest.split(":", 1)[-1][:12]
        if digest not in self._seen_layers:
            self._seen_layers.add(digest)
            if kind != "exists":
                out.append({"status": "Pulling fs layer", "progressDetail": {}, "id": short})
        if kind in ("downloading", "extracting"):
            out.append({"status": "Downloading" if kind == "downloading" else "Extracting",
                        "progressDetail": {"current": current, "total": total},
                        "progress": progress_bar(current, total), "id": short})
        else:
            status = {"waiting": "Waiting", "verifying": "Verifying Checksum",
                      "downloaded": "Download complete", "unpacked": "Pull complete",
                      "exists": "Already exists"}.get(kind)
            if status:
                out.append({"status": status, "progressDetail": {}, "id": short})
        return out
