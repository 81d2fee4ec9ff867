"""Checkpoint cp09 -- chapter 09, dockerd and the Engine API (labkit/dockerd/: httputils.py,
router.py, oci.py).

Graded with `labkit grade cp09`. The first group tests one exercise each, in this process:
the router against a recording backend (the Backend protocol's point, as in moby: a thin
handler decodes, calls ONE backend method, encodes), the version prefix and the limits of
config.json as plain functions. The last one runs the real docker CLI through a private lab
whose labkit-dockerd is the graded workspace's program: `docker run` creates, attaches,
waits and starts through your router; the limits of `docker run -m --pids-limit --cpus` are
read back from the kernel's cgroup files of the running container, never from the code under
test; and the Engine API is spoken directly, over the unix socket, for what the CLI hides.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading

import pytest

from labkit.course.grading import checkpoint
from labkit.lab.implementations import resolve_module

# the docker CLI on PATH: 28 here, Debian's 20.10 on a fresh machine (vagrant/setup.sh)
DOCKER = shutil.which("docker") or "docker"


def module(name: str):
    """labkit.dockerd.<name> as this grading run configured it (reference or workspace)."""
    return resolve_module("dockerd", f"labkit.dockerd.{name}")


class Recorder:
    """A backend that records each call and answers from a small table: the router's part of
    the Backend protocol, without containerd behind it."""

    def __init__(self, errors):
        self.errors = errors
        self.calls: list[tuple] = []
        self.release = threading.Event()

    def container_inspect(self, name):
        self.calls.append(("container_inspect", name))
        if name == "missing":
            raise self.errors.NotFound(f"No such container: {name}")
        return {"Id": name, "State": {"Status": "created"}}

    def container_remove(self, name, force, volumes):
        self.calls.append(("container_remove", name, force, volumes))

    def container_start(self, name):
        self.calls.append(("container_start", name))

    def image_inspect(self, name):
        self.calls.append(("image_inspect", name))
        return {"Id": "sha256:" + "1" * 64, "RepoTags": [name]}

    def container_create(self, name, config):
        self.calls.append(("container_create", name, config))
        return module("backend").CreateResult("c" * 64, ["one warning"])

    def container_wait(self, name, condition):
        self.calls.append(("container_wait", name, condition))
        result = module("backend").WaitResult(3)

        def waiter():
            self.release.wait(10)
            return result
        return waiter


@pytest.fixture
def api():
    """(router, backend, Request, errors) from the graded package."""
    errors = module("errors")
    backend = Recorder(errors)
    return module("router").Router(backend), backend, module("httputils").Request, errors


def request(Request, method, path, query=None, body=b"", **params):
    """A request as dispatch hands it to a handler: `params` are its route's named groups."""
    return Request(method, path, dict(query or {}), {}, body, params=params)


def answer(errors, call):
    """(status, JSON body) of a handler's answer; a DaemonError it raises is what dispatch
    would make of it (its status, {"message": ...})."""
    try:
        response = call()
    except errors.DaemonError as e:
        return e.status, {"message": e.message}
    body = json.loads(response.body) if response.body else None
    return response.status, body


# --- one exercise at a time ----------------------------------------------------------------

@checkpoint("cp09", points=2, hint="split_version: /v1.41/containers/json -> ('1.41', "
            "'/containers/json'); no prefix -> (None, path); compare versions as numbers "
            "(_version_tuple: 1.9 is older than 1.24); out of range -> InvalidParameter naming "
            "the minimum or maximum")
def test_split_version():
    httputils, errors = module("httputils"), module("errors")
    split = httputils.split_version
    assert split("/v1.41/containers/create") == ("1.41", "/containers/create")
    assert split(f"/v{httputils.API_VERSION}/containers/abc/wait") == \
        (httputils.API_VERSION, "/containers/abc/wait")
    assert split(f"/v{httputils.MIN_API_VERSION}/_ping") == (httputils.MIN_API_VERSION, "/_ping")
    assert split("/_ping") == (None, "/_ping"), "the CLI's first request has no version"
    assert split("/images/v1.41/json") == (None, "/images/v1.41/json"), \
        "only a prefix is a version"
    for old in ("/v1.9/version", "/v1.12/version", "/v0.99/version"):
        with pytest.raises(errors.InvalidParameter, match=r"too old.*" + httputils.MIN_API_VERSION):
            split(old)
    for new in ("/v1.99/version", "/v2.0/version", "/v1.100/version"):
        with pytest.raises(errors.InvalidParameter, match=r"too new.*" + httputils.MAX_API_VERSION):
            split(new)


@checkpoint("cp09", points=4, hint="dispatch: split_version first; then the first route of "
            "self.routes whose method equals req.method and whose pattern matches req.path; "
            "req.params = match.groupdict(); no route -> error_response(404, 'page not found')")
def test_dispatch(api):
    router, backend, Request, errors = api

    def dispatch(method, path, **kw):
        req = request(Request, method, path, **kw)
        response = router.dispatch(req)
        return response.status, (json.loads(response.body) if response.body else None), req

    status, body, req = dispatch("GET", "/v1.41/containers/web/json")
    assert status == 200, body
    assert body["Id"] == "web" and backend.calls[-1] == ("container_inspect", "web")
    assert (req.api_version, req.path) == ("1.41", "/containers/web/json")
    status, body, req = dispatch("GET", "/containers/db/json")
    assert status == 200 and backend.calls[-1] == ("container_inspect", "db"), \
        "an unversioned path is served too"
    assert req.api_version is None
    dispatch("DELETE", "/v1.41/containers/web", query={"force": "1"})
    assert backend.calls[-1] == ("container_remove", "web", True, False), \
        "DELETE /containers/{name}: the method chooses the route"
    dispatch("POST", "/v1.41/containers/web/start")
    assert backend.calls[-1] == ("container_start", "web")
    status, _, _ = dispatch("GET", "/v1.41/images/127.0.0.1:5000/hello-world/json")
    assert (status, backend.calls[-1]) == (200, ("image_inspect", "127.0.0.1:5000/hello-world")), \
        "an image's name may hold slashes: the route's pattern says so"
    calls = len(backend.calls)
    for method, path in (("GET", "/v1.41/containers/web/start"), ("PUT", "/v1.41/containers/web"),
                         ("GET", "/v1.41/no/such/route")):
        status, body, _ = dispatch(method, path)
        assert (status, body) == (404, {"message": "page not found"}), f"{method} {path}"
    assert len(backend.calls) == calls, "no handler runs for a request no route matches"
    status, body, _ = dispatch("GET", "/v1.41/containers/missing/json")
    assert (status, body) == (404, {"message": "No such container: missing"}), \
        "the backend's error, with its status"
    status, body, _ = dispatch("GET", "/v1.99/containers/web/json")
    assert status == 400 and "too new" in body["message"]


@checkpoint("cp09", points=3, hint="container_create: 201 and {'Id': result.id, 'Warnings': "
            "result.warnings} from self.backend.container_create(name or None, config); the "
            "name's leading '/' dropped; a name _CONTAINER_NAME refuses, an empty body or one "
            "that is not a JSON object: InvalidParameter (400)")
def test_container_create(api):
    router, backend, Request, errors = api
    config = {"Image": "busybox", "Cmd": ["echo", "hi"], "HostConfig": {"Memory": 0}}
    body = json.dumps(config).encode()
    create = router.container_create
    status, answer_body = answer(errors, lambda: create(request(Request, "POST",
                                                                "/containers/create", body=body)))
    assert status == 201, f"a created container is 201 Created, not {status}"
    assert answer_body == {"Id": "c" * 64, "Warnings": ["one warning"]}
    assert backend.calls == [("container_create", None, config)], backend.calls
    response = create(request(Request, "POST", "/containers/create", {"name": "/web"}, body))
    assert response.content_type == "application/json"
    assert backend.calls[-1][1] == "web", "?name=/web creates the container named web"
    calls = len(backend.calls)
    for query, data, words in (({"name": "a b"}, body, "Invalid container name"),
                               ({"name": "-x"}, body, "Invalid container name"),
                               ({}, b"", "config cannot be empty"),
                               ({}, b"[1, 2]", "")):
        status, reply = answer(errors, lambda: create(request(Request, "POST", "/containers/create",
                                                             query, data)))
        assert status == 400 and words in reply["message"], (query, data, status, reply)
    assert len(backend.calls) == calls, "a refused request never reaches the backend"


@checkpoint("cp09", points=3, hint="container_wait: condition from the query (default "
            "'not-running'; not one of not-running/next-exit/removed: InvalidParameter); call "
            "self.backend.container_wait(name, condition) BEFORE returning; StreamResponse(200, "
            "JSON, body()) where body() yields json.dumps(waiter().to_json()) + newline")
def test_container_wait(api):
    router, backend, Request, errors = api
    response = router.container_wait(request(Request, "POST", "/containers/web/wait",
                                             {"condition": "next-exit"}, name="web"))
    assert backend.calls == [("container_wait", "web", "next-exit")], \
        "the wait is registered when the request arrives, before the headers go out"
    assert response.status == 200 and response.content_type == "application/json"
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.extend(response.chunks), daemon=True)
    reader.start()
    reader.join(0.3)
    assert reader.is_alive() and not chunks, \
        "the body is written when the container exits, not before"
    backend.release.set()
    reader.join(10)
    assert not reader.is_alive()
    assert len(chunks) == 1 and chunks[0].endswith(b"\n"), chunks
    assert json.loads(chunks[0]) == {"StatusCode": 3, "Error": None}
    router.container_wait(request(Request, "POST", "/containers/db/wait", name="db"))
    assert backend.calls[-1] == ("container_wait", "db", "not-running"), "the default condition"
    router.container_wait(request(Request, "POST", "/containers/db/wait", {"condition": "removed"},
                                     name="db"))
    assert backend.calls[-1] == ("container_wait", "db", "removed")
    status, reply = answer(errors, lambda: router.container_wait(
        request(Request, "POST", "/containers/db/wait", {"condition": "soon"}, name="db")))
    assert status == 400 and backend.calls[-1][2] == "removed", (status, reply)


@checkpoint("cp09", points=3, hint="resources: Memory -> memory.limit (a negative one or under "
            "6 MiB: ValueError), PidsLimit > 0 -> pids.limit, CpuShares -> cpu.shares, NanoCpus "
            "-> cpu.period 100000 and cpu.quota NanoCpus*100000//10**9, CpuQuota/CpuPeriod as "
            "given (NanoCpus with either: ValueError); no key for what is not limited")
def test_resources():
    oci = module("oci")
    plain = oci.resources({})
    assert plain == {"devices": oci.DEVICE_RULES}, f"nothing limited, nothing said: {plain}"
    assert set(oci.resources({"Memory": 0, "PidsLimit": 0, "NanoCpus": 0, "CpuShares": 0})) == \
        {"devices"}, "0 means no limit"
    limits = oci.resources({"Memory": 64 * 2**20, "PidsLimit": 20, "NanoCpus": 1_500_000_000,
                            "CpuShares": 512})
    assert limits["memory"] == {"limit": 64 * 2**20}
    assert limits["pids"] == {"limit": 20}
    assert limits["cpu"] == {"shares": 512, "period": 100000, "quota": 150000}, \
        "--cpus 1.5: 150000us of CPU per 100000us period"
    assert oci.resources({"NanoCpus": 500_000_000})["cpu"] == {"period": 100000, "quota": 50000}
    assert oci.resources({"CpuQuota": 20000, "CpuPeriod": 50000})["cpu"] == \
        {"quota": 20000, "period": 50000}
    assert "pids" not in oci.resources({"PidsLimit": -1}), "-1: unlimited"
    for bad, words in (({"Memory": 2**20}, "Minimum memory"), ({"Memory": -5}, "Minimum memory"),
                       ({"NanoCpus": 10**9, "CpuQuota": 50000}, "conflicting")):
        with pytest.raises(ValueError, match=words):
            oci.resources(bad)


# --- the proof: docker run through your dockerd ----------------------------------------------

def engine(sock: str, method: str, path: str, body: bytes = b"") -> tuple[int, dict, bytes]:
    """One raw HTTP/1.1 request over the unix socket: (status, headers, body). The docker CLI
    hides the Engine API; this is it, as curl --unix-socket would send it."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect(sock)
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json"
                  f"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, rest


def cgroup_limits(pid: int) -> dict[str, str]:
    """memory, pids and cpu limits of `pid`'s cgroup, read from the kernel's files (v2 or v1)."""
    groups = {}
    for line in open(f"/proc/{pid}/cgroup"):
        _, controllers, path = line.rstrip("\n").split(":", 2)
        for c in controllers.split(",") if controllers else [""]:
            groups[c] = path

    def read(*parts: str) -> str:
        with open(os.path.join("/sys/fs/cgroup", *parts)) as f:
            return f.read().strip()

    if "" in groups and os.path.exists("/sys/fs/cgroup/cgroup.controllers"):      # v2
        base = groups[""].lstrip("/")
        quota, period = read(base, "cpu.max").split()
        return {"memory": read(base, "memory.max"), "pids": read(base, "pids.max"),
                "cpu": f"{quota} {period}"}
    cpu = groups.get("cpu", groups.get("cpu,cpuacct", "")).lstrip("/")
    return {"memory": read("memory", groups["memory"].lstrip("/"), "memory.limit_in_bytes"),
            "pids": read("pids", groups["pids"].lstrip("/"), "pids.max"),
            "cpu": f"{read('cpu', cpu, 'cpu.cfs_quota_us')} {read('cpu', cpu, 'cpu.cfs_period_us')}"}


@checkpoint("cp09", points=5, hint="labkit-dockerd is your workspace's program: `docker run` "
            "must create (201), attach, wait and start through your router, give the exit "
            "status and both streams back, and run with the limits of -m/--pids-limit/--cpus "
            "(the docker error names the function that is not done yet)")
@pytest.mark.root
def test_docker_run_through_your_dockerd(private_lab):
    assert shutil.which("docker"), "no docker CLI on PATH (vagrant/setup.sh installs Debian's docker.io)"
    with private_lab() as env:
        def docker(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([DOCKER, *args], env=env, capture_output=True, text=True,
                                  timeout=120)

        pulled = docker("pull", "busybox")          # first: its progress is not the run's stderr
        assert pulled.returncode == 0, _docker_error(pulled.stderr)
        run = docker("run", "--rm", "busybox", "sh", "-c", "echo to stdout; echo to stderr >&2; exit 3")
        assert run.returncode == 3, _docker_error(run.stderr)
        assert (run.stdout, run.stderr) == ("to stdout\n", "to stderr\n"), \
            "attach: each stream to its own side"
        hello = docker("run", "--rm", "hello-world")
        assert hello.returncode == 0 and "Hello from labkit!" in hello.stdout, \
            _docker_error(hello.stderr)

        started = docker("run", "-d", "--name", "cp09-limits", "-m", "64m", "--pids-limit", "20",
                         "--cpus", "0.5", "busybox", "sleep", "60")
        try:
            assert started.returncode == 0, _docker_error(started.stderr)
            pid = int(docker("inspect", "-f", "{{.State.Pid}}", "cp09-limits").stdout)
            assert cgroup_limits(pid) == {"memory": str(64 * 2**20), "pids": "20",
                                          "cpu": "50000 100000"}, \
                "the kernel's limits of the running container (its cgroup files)"
        finally:
            docker("rm", "-f", "cp09-limits")

        bad = docker("create", "--name", "cp09 bad", "busybox")
        assert bad.returncode != 0 and "Invalid container name" in bad.stderr, bad.stderr

        # the Engine API itself: versions, a route no one serves, create's and wait's answers
        sock = env["DOCKER_HOST"].removeprefix("unix://")
        status, headers, _ = engine(sock, "HEAD", "/_ping")
        assert status == 200 and headers.get("api-version"), (status, headers)
        status, _, body = engine(sock, "GET", "/v1.99/version")
        assert status == 400 and b"too new" in body, (status, body)
        status, _, body = engine(sock, "GET", "/v1.41/containers/nothing/here")
        assert (status, json.loads(body)) == (404, {"message": "page not found"})
        config = json.dumps({"Image": "busybox", "Cmd": ["sh", "-c", "exit 7"]}).encode()
        status, _, body = engine(sock, "POST", "/v1.41/containers/create?name=cp09-raw", config)
        assert status == 201, (status, body)
        cid = json.loads(body)["Id"]
        try:
            status, _, _ = engine(sock, "POST", f"/v1.41/containers/{cid}/start")
            assert status == 204
            waited = docker("wait", "cp09-raw")
            assert waited.stdout.strip() == "7", _docker_error(waited.stderr)
        finally:
            docker("rm", "-f", cid)


def _docker_error(stderr: str) -> str:
    """The line of docker's error that says what failed (the rest is the pull's progress)."""
    lines = [line for line in stderr.splitlines() if "Error" in line or "error" in line]
    return lines[-1] if lines else stderr.strip()[-500:]
