"""labkit.client — a small Docker Engine API client (what the docker CLI does on the wire).

The Engine API is plain HTTP/1.1, usually over a unix socket (/run/docker.sock for a real
dockerd, /run/labkit/docker.sock for the lab). This client talks to labkit-dockerd and to a
real dockerd alike; the `labkit` CLI and the lab tooling use it.

Modules, from the one nearest the user to the one nearest the socket:

    api         `Client`: one method per Engine API call the CLI needs (ping, create, attach,
                wait, start, stop, kill, logs, exec, pull, push, tag, build, list, remove,
                version, info), version negotiation, errors; `_messages` is the one reader of
                JSON message streams (pull, push, build), `_frames` of output streams
    streams     protocol logic without I/O: the multiplexed stdout/stderr frames of attach and
                logs, and the JSON message stream of pull and build
    transport   `DOCKER_HOST` parsing and an http.client connection over AF_UNIX

A worked example (the `docker run hello-world` flow, see labkit.cli.run for the whole of it):

    c = Client("unix:///run/labkit/docker.sock")
    c.ping()                                   # HEAD /_ping -> Api-Version -> /v1.41/...
    cid = c.create_container({"Image": "hello-world"})["Id"]
    att = c.attach(cid)                        # 101 UPGRADED: the socket is raw from now on
    waiter = c.wait(cid)                       # headers now, {"StatusCode": N} at exit
    c.start(cid)
    for frame in att.frames(): ...             # (1, b"Hello from Docker!\\n"), ...
    status = waiter.result()["StatusCode"]
"""

from labkit.client.api import APIError, Attachment, Client, DaemonNotRunning, Waiter
from labkit.client.streams import Frame, FrameDecoder, JSONStreamDecoder
from labkit.client.transport import DockerHost, default_host, parse_host

__all__ = [
    "APIError", "Attachment", "Client", "DaemonNotRunning", "Waiter",
    "Frame", "FrameDecoder", "JSONStreamDecoder",
    "DockerHost", "default_host", "parse_host",
]
