"""Fuzzing the Engine API: malformed requests get a clean 4xx, never a 500 or a hang.

A daemon whose socket gives root must not be brought down, or into a state where it answers
500, by what a client sends. hypothesis generates requests to the main endpoints of
labkit-dockerd on the private stack of conftest.py:

    containers  create (wrong-typed Config/HostConfig fields, odd names, any JSON at all),
                start, inspect, logs, wait, exec (create and start)
    images      list, inspect, history, remove
    networks    create, inspect, connect, remove
    volumes     create, inspect, remove
    everywhere  names with traversal ("../../etc"), bad query values, deep-nested JSON,
                bodies over the daemon's limits

and checks, after every request, that the answer is < 500 (JSON-decodable when it is an
error) and that /_ping still answers 200: the daemon keeps serving.

Reproducible and bounded for CI: `derandomize=True` makes hypothesis draw the same examples
on every run (no database, no seed to keep), and `max_examples` keeps the whole file near a
minute on a slow host. LABKIT_FUZZ_EXAMPLES=N explores more (a developer's long run; with
derandomize off then, so each run tries new inputs).

What a successful request made (a container, a volume, a network) is removed at once: the
stack is shared, and test_e2e.py checks that nothing is left behind.
"""

from __future__ import annotations

import json
import os
import re
import socket
from urllib.parse import quote, urlencode

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import (HealthCheck, assume, event, given, settings,  # noqa: E402
                        strategies as st)
from hypothesis.control import currently_in_test_context  # noqa: E402

from dockerd.httpunix import UnixHTTPConnection  # noqa: E402
from labkit.dockerd.validate import CONFIG_TYPES, HOST_CONFIG_TYPES  # noqa: E402

pytestmark = [pytest.mark.root, pytest.mark.e2e]

EXPLORE = int(os.environ.get("LABKIT_FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=EXPLORE or 100, derandomize=not EXPLORE, database=None,
                deadline=None, print_blob=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
TIMEOUT = 15.0   # seconds an answer may take before the request counts as a hang

# ---------------------------------------------------------------- the requests' pieces

json_value = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
    | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=12)

# Names a client might put into a path: traversal, separators, NULs, very long, unicode.
# Never a real image's name: image remove must not delete the stack's busybox.
hostile_names = st.sampled_from([
    "..", "../..", "../../../etc/passwd", "./x", "a/../../b", "%2e%2e", "..%2f..%2fetc",
    "/", "//", "\\..\\..", "x\x00y", "-rf", ".", "~root", "$(id)", "a" * 300, "é😀",
    "sha256:" + "0" * 64, "0" * 64, "fuzz:latest", "fuzz@sha256:" + "f" * 64,
]) | st.text(min_size=1, max_size=40)


def could_name_a_real_object(name: str) -> bool:
    """Whether a destructive call by `name` might reach something real: an ID prefix (the
    stack's images, the exited container below) or an image's name."""
    bare = name.strip("/").removeprefix("sha256:")
    return bool(re.fullmatch(r"[0-9a-f]*", bare)) or bare.startswith(("busybox", "hello-world"))


def path_segment(name: str, raw: bool) -> str:
    """`name` percent-encoded into one path segment, or (raw) with its slashes left as they
    are, so traversal reaches the router as real path segments too."""
    return quote(name, safe="/" if raw else "")


QUERY_KEYS = ["name", "all", "limit", "filters", "t", "signal", "condition", "follow", "tail",
              "since", "until", "timestamps", "stdout", "stderr", "force", "v", "h", "w",
              "size", "details", "fromImage", "tag", "repo", "platform", "detachKeys"]
queries = st.dictionaries(st.sampled_from(QUERY_KEYS),
                          st.one_of(st.text(max_size=30), st.integers().map(str),
                                    json_value.map(json.dumps)), max_size=4)


# A value of each kind validate.py names, so that a body is often right enough to get past
# the type checks and into what create does with its values.
from labkit.dockerd.validate import B, I, O, OL, S, SL, SM  # noqa: E402
RIGHT = {
    S: st.text(max_size=20) | st.sampled_from(["", "/", "host", "none", "bridge", "default",
                                               "SIGKILL", "root", "1000:1000", "0-1"]),
    B: st.booleans(),
    I: st.integers(min_value=-2**63, max_value=2**63 - 1) | st.integers(-1, 10**9),
    O: st.dictionaries(st.text(max_size=12), json_value, max_size=3),
    SL: st.lists(st.text(max_size=20), max_size=3),
    SM: st.dictionaries(st.text(max_size=12), st.text(max_size=12), max_size=3),
    OL: st.lists(st.dictionaries(st.text(max_size=12), json_value, max_size=3), max_size=2),
}


def typed_fields(types: dict[str, str]) -> st.SearchStrategy[dict]:
    """Objects of a few of the API's own fields, each of its right type four times in five,
    of any type else."""
    def of(kind: str) -> st.SearchStrategy:
        return st.integers(0, 4).flatmap(lambda n: json_value if n == 0 else RIGHT[kind])
    return st.lists(st.sampled_from(sorted(types)), max_size=4, unique=True).flatmap(
        lambda keys: st.fixed_dictionaries({k: of(types[k]) for k in keys}))


# A create body: an image the stack has (so the request gets past "no such image" and into
# the checks that matter), wrong-typed fields in Config and in HostConfig.
create_bodies = st.builds(
    lambda config, host, image, extra: {**config, **extra, "Image": image, "HostConfig": host},
    typed_fields(CONFIG_TYPES),
    typed_fields(HOST_CONFIG_TYPES) | typed_fields(HOST_CONFIG_TYPES) | json_value,
    st.sampled_from(["busybox", "hello-world"]) | st.sampled_from(["busybox"]) | json_value,
    st.dictionaries(st.sampled_from(["Cmd", "Entrypoint", "Env", "Labels", "NetworkingConfig",
                                     "Healthcheck", "ExposedPorts", "Volumes"]),
                    json_value, max_size=3))

# Bodies any endpoint might be sent: valid JSON of any shape, not JSON at all, deep nesting.
raw_bodies = st.one_of(
    json_value.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=64),
    st.integers(min_value=1000, max_value=200_000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(min_value=1000, max_value=100_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
)


# ---------------------------------------------------------------- sending and checking

class Api:
    """Requests to the stack's dockerd, each checked: status < 500, and the daemon still
    answers /_ping. Whatever a request created is removed by `cleanup`."""

    def __init__(self, stack) -> None:
        self.stack = stack
        self.created: list[str] = []   # paths to DELETE afterwards
        self.volumes = self.volume_names()   # those there before: any other is ours

    def send(self, method: str, path: str, body: bytes | None = None,
             headers: dict | None = None) -> tuple[int, bytes]:
        conn = UnixHTTPConnection(str(self.stack.socket), timeout=TIMEOUT)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            status, data = r.status, r.read()
        except socket.timeout:
            pytest.fail(f"{method} {path[:200]} hung: no answer in {TIMEOUT} s")
        finally:
            conn.close()
        assert status < 500, (f"{method} {path[:200]} ({len(body or b'')} bytes of body "
                              f"{(body or b'')[:200]!r}) answered {status}: {data[:500]!r}")
        if currently_in_test_context():   # --hypothesis-show-statistics counts them
            event(f"{method} {path.split('?')[0].split('/')[1]}: {status}")
        if status >= 400:   # an error the CLI can read: {"message": ...}
            assert "message" in json.loads(data), data[:200]
        self.alive()
        return status, data

    def alive(self) -> None:
        assert self.stack.daemons["dockerd"].poll() is None, "labkit-dockerd exited"
        conn = UnixHTTPConnection(str(self.stack.socket), timeout=TIMEOUT)
        try:
            conn.request("GET", "/_ping")
            r = conn.getresponse()
            assert (r.status, r.read()) == (200, b"OK"), "dockerd no longer answers /_ping"
        finally:
            conn.close()

    def create(self, kind: str, path: str, body: bytes, key: str) -> int:
        """POST a create request; a success is noted for removal by its `key` (Id, Name)."""
        status, data = self.send("POST", path, body, {"Content-Type": "application/json"})
        if status == 201:
            self.created.append(f"/{kind}/{quote(json.loads(data)[key], safe='')}")
        return status

    def volume_names(self) -> set[str]:
        status, data = self.send("GET", "/volumes")
        return {v["Name"] for v in json.loads(data)["Volumes"] or []}

    def cleanup(self) -> None:
        """Remove what the requests made: containers, networks, volumes (also those a
        container's Binds or Mounts named)."""
        while self.created:
            path = self.created.pop()
            self.send("DELETE", path + ("?force=1&v=1" if path.startswith("/containers") else ""))
        for name in self.volume_names() - self.volumes:
            self.send("DELETE", f"/volumes/{quote(name, safe='')}")


@pytest.fixture(scope="module")
def api(stack):
    """The checked client; the stack's images pulled first, so that a create body gets past
    "no such image" into the checks that matter."""
    a = Api(stack)
    for image in ("busybox", "hello-world"):
        status, data = a.send("POST", f"/images/create?fromImage={image}&tag=latest")
        assert status == 200 and b'"error' not in data, data[-300:]
    yield a
    a.cleanup()


@pytest.fixture(scope="module")
def exited(api):
    """A container that ran `true` and exited: logs and inspect of a real one."""
    body = json.dumps({"Image": "busybox", "Cmd": ["true"]}).encode()
    assert api.create("containers", "/containers/create?name=fuzz-exited", body, "Id") == 201
    assert api.send("POST", "/containers/fuzz-exited/start")[0] == 204
    status, data = api.send("POST", "/containers/fuzz-exited/wait")
    assert status == 200 and json.loads(data)["StatusCode"] == 0
    return "fuzz-exited"


# ---------------------------------------------------------------- the properties

@FUZZ
@given(body=create_bodies, query=queries)
def test_create_with_wrong_typed_fields(api, body, query):
    query.pop("name", None)   # two names in one run would clash: names are fuzzed below
    try:
        api.create("containers", f"/containers/create?{urlencode(query)}",
                   json.dumps(body).encode(), "Id")
    finally:
        api.cleanup()


@FUZZ
@given(name=hostile_names, body=raw_bodies)
def test_create_with_any_name_and_any_body(api, name, body):
    try:
        api.create("containers", f"/containers/create?{urlencode({'name': name})}", body, "Id")
    finally:
        api.cleanup()


CONTAINER_CALLS = [("POST", "/start"), ("GET", "/json"), ("GET", "/logs"), ("POST", "/wait"),
                   ("POST", "/exec"), ("GET", "/top"), ("POST", "/kill"), ("POST", "/rename"),
                   ("DELETE", "")]


@FUZZ
@given(name=hostile_names, raw=st.booleans(), call=st.sampled_from(CONTAINER_CALLS),
       query=queries, body=st.none() | raw_bodies)
def test_container_calls_on_hostile_names(api, name, raw, call, query, body):
    """No container has these names: each call is a 4xx (404 mostly), whatever the query."""
    method, suffix = call
    if suffix in ("/kill", "/rename", ""):
        assume(not could_name_a_real_object(name))
    if suffix == "/wait":   # a wait on a container that does exist may rightly block
        query["condition"] = query.get("condition", "not-running")
    api.send(method, f"/containers/{path_segment(name, raw)}{suffix}?{urlencode(query)}", body)


@FUZZ
@given(query=queries, call=st.sampled_from([("GET", "/json"), ("GET", "/logs"),
                                            ("POST", "/exec"), ("GET", "/top")]),
       body=create_bodies | raw_bodies.map(lambda b: b[:4096]))
def test_calls_on_an_exited_container(api, exited, query, call, body):
    """Bad query values (tail, since, follow...) and exec configs on a real container."""
    method, suffix = call
    query.pop("follow", None) if suffix != "/logs" else None
    payload = json.dumps(body).encode() if isinstance(body, dict) else body
    api.send(method, f"/containers/{exited}{suffix}?{urlencode(query)}", payload)


@FUZZ
@given(kind=st.sampled_from(["exec", "images", "volumes", "networks"]),
       suffix=st.sampled_from(["/json", "/start", "/history", "/connect", ""]),
       method=st.sampled_from(["GET", "POST", "DELETE", "PUT"]),
       name=hostile_names, raw=st.booleans(), query=queries, body=st.none() | raw_bodies)
def test_other_objects_by_hostile_names(api, kind, suffix, method, name, raw, query, body):
    if method == "DELETE" or suffix in ("/start", "/connect"):
        assume(not could_name_a_real_object(name))
    # not a pull from a registry a generated name picks, nor a network with a generated subnet
    assume(name.strip("/") not in ("create", "prune"))
    query.pop("fromImage", None)
    api.send(method, f"/{kind}/{path_segment(name, raw)}{suffix}?{urlencode(query)}", body)


@FUZZ
@given(body=st.dictionaries(
    st.sampled_from(["Name", "Driver", "Labels", "DriverOpts", "Options", "Internal",
                     "Attachable", "EnableIPv6", "CheckDuplicate", "Scope"]),
    json_value | hostile_names, max_size=5) | json_value,
       ipam=st.none() | json_value.filter(lambda v: not isinstance(v, dict))
       | st.fixed_dictionaries({"Config": st.lists(st.dictionaries(
           st.sampled_from(["Subnet", "Gateway", "IPRange"]),
           json_value.filter(lambda v: not isinstance(v, str)), min_size=1), max_size=2)}))
def test_network_and_volume_create(api, body, ipam):
    """Network create never gets a subnet it could route (only wrong-typed ones): the stack's
    bridges live in the host's network namespace."""
    if isinstance(body, dict) and ipam is not None:
        body["IPAM"] = ipam
    payload = json.dumps(body).encode()
    try:
        api.create("networks", "/networks/create", payload, "Id")
        api.create("volumes", "/volumes/create", payload, "Name")
    finally:
        api.cleanup()


@FUZZ
@given(path=st.sampled_from(["/containers/json", "/images/json", "/networks", "/volumes",
                             "/events", "/containers/prune", "/images/create", "/info"]),
       query=queries, version=st.sampled_from(["", "/v1.45", "/v0.1", "/v99.0", "/v1.24"]))
def test_bad_query_parameters(api, path, query, version):
    """filters, limit, since... of any value; prune only with a filter that matches nothing."""
    method = "POST" if path.endswith(("prune", "create")) else "GET"
    if path == "/images/create":   # a pull goes nowhere but the stack's registry mirror
        query["fromImage"] = "127.0.0.1:1/fuzz-none"
    if path == "/events":          # a stream that ends at once
        query["until"] = "1"
    if method == "POST":
        query["filters"] = json.dumps({"label": ["fuzz-nothing-has-this"]})
    api.send(method, f"{version}{path}?{urlencode(query)}")


def test_oversized_and_broken_bodies(api):
    """A body over the limits (claimed or sent), a broken Content-Length or chunk size: a 4xx,
    and the daemon serves on."""
    huge = b'{"Image": "busybox", "Env": ["' + b"x" * (3 * 1024 * 1024) + b'"]}'
    assert api.send("POST", "/containers/create", huge)[0] == 413
    assert api.send("POST", "/containers/create", b"",
                    {"Content-Length": str(2**40)})[0] == 413
    assert api.send("POST", "/containers/create", b"", {"Content-Length": "-1"})[0] == 400
    assert api.send("POST", "/containers/create", b"", {"Content-Length": "x"})[0] == 400
    assert api.send("POST", "/containers/create", b"zz\r\n",
                    {"Transfer-Encoding": "chunked"})[0] == 400
