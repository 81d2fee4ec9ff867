"""A small in-memory Backend for the router tests: "containers" that, when started,
print their Cmd joined by spaces and exit 0 (or with the code given by Cmd ["exit", N]).

It is deliberately simple but honest about the interface's contract: waiters are
registered when container_wait is called, attach streams end when the output ends.
"""

from __future__ import annotations

import queue
import secrets
import threading
from typing import Iterator

from labkit.dockerd.backend import CreateResult, Logs, WaitResult
from labkit.dockerd.errors import Conflict, InvalidParameter, NotFound, NotModified
from labkit.dockerd.jsonlog import LogEntry, rfc3339nano
from labkit.stdcopy import STDOUT


class FakeAttach:
    def __init__(self, tty: bool) -> None:
        self.tty = tty
        self.q: queue.Queue = queue.Queue()
        self.stdin = bytearray()
        self.stdin_closed = threading.Event()

    def output(self) -> Iterator[tuple[int, bytes]]:
        while (item := self.q.get()) is not None:
            yield item

    def write_stdin(self, data: bytes) -> None:
        self.stdin += data

    def close_stdin(self) -> None:
        self.stdin_closed.set()

    def close(self) -> None:
        pass


class FakeContainer:
    def __init__(self, cid: str, name: str, config: dict) -> None:
        self.id, self.name, self.config = cid, name, config
        self.status = "created"
        self.exit_code = 0
        self.attaches: list[FakeAttach] = []
        self.log: list[LogEntry] = []
        self.exited = threading.Condition()
        self.exits = 0


class FakeBackend:
    IMAGES = {"busybox", "busybox:latest"}

    def __init__(self) -> None:
        self.containers: dict[str, FakeContainer] = {}
        self.calls: list[str] = []
        self.started = threading.Event()
        self.start_delay = 0.0

    def _get(self, ref: str) -> FakeContainer:
        ref = ref.lstrip("/")
        for c in self.containers.values():
            if c.id == ref or c.name == ref or (len(ref) >= 1 and c.id.startswith(ref)):
                return c
        raise NotFound(f"No such container: {ref}")

    def version(self) -> dict:
        return {"Version": "0.1.0-labkit", "ApiVersion": "1.45", "MinAPIVersion": "1.24",
                "Os": "linux", "Arch": "amd64", "KernelVersion": "test", "GitCommit": "fake",
                "GoVersion": "python", "Components": []}

    def events(self, since, until, filters):
        return iter([{"Type": "container", "Action": "create", "Actor": {"ID": "x", "Attributes": {}},
                      "time": 1, "timeNano": 10**9}])

    def info(self) -> dict:
        return {"Containers": len(self.containers), "ServerVersion": "0.1.0-labkit"}

    def container_create(self, name, config):
        self.calls.append("create")
        image = config.get("Image") or ""
        if image not in self.IMAGES:
            raise NotFound(f"No such image: {image}:latest")
        if name and any(c.name == name for c in self.containers.values()):
            raise Conflict(f'Conflict. The container name "/{name}" is already in use')
        cid = secrets.token_hex(32)
        self.containers[cid] = FakeContainer(cid, name or "fake_" + cid[:6], config)
        return CreateResult(cid, [])

    def container_start(self, ref):
        self.calls.append("start")
        c = self._get(ref)
        if c.status == "running":
            raise NotModified("container already started")
        cmd = c.config.get("Cmd") or []
        if cmd and cmd[0] == "nosuchcmd":
            raise InvalidParameter('failed to create task: OCI runtime create failed: exec: '
                                   '"nosuchcmd": executable file not found in $PATH')
        c.status = "running"
        self.started.set()

        def run():
            import time
            time.sleep(self.start_delay)
            if cmd[:1] == ["exit"]:
                code, out = int(cmd[1]), b""
            else:
                code, out = 0, (" ".join(cmd) + "\n").encode()
            if out:
                c.log.append(LogEntry(STDOUT, out, rfc3339nano()))
                for a in c.attaches:
                    a.q.put((STDOUT, out))
            for a in c.attaches:
                a.q.put(None)
            with c.exited:
                c.status, c.exit_code = "exited", code
                c.exits += 1
                c.exited.notify_all()

        threading.Thread(target=run, daemon=True).start()

    def container_stop(self, ref, timeout, signal):
        if self._get(ref).status != "running":
            raise NotModified("not running")

    def container_restart(self, ref, timeout, signal):
        self.calls.append("restart")
        self._get(ref).status = "exited"  # the fake's stop: there is no process to signal
        self.container_start(ref)

    def container_kill(self, ref, signal):
        c = self._get(ref)
        if c.status != "running":
            raise Conflict(f"Container {c.id} is not running")

    def container_remove(self, ref, force, volumes):
        c = self._get(ref)
        if c.status == "running" and not force:
            raise Conflict(f"You cannot remove a running container {c.id}")
        with c.exited:
            del self.containers[c.id]
            c.status = "removed"
            c.exited.notify_all()

    def container_wait(self, ref, condition):
        c = self._get(ref)
        self.calls.append("wait")
        seen = c.exits

        def waiter() -> WaitResult:
            with c.exited:
                if condition == "removed":
                    c.exited.wait_for(lambda: c.status == "removed", timeout=10)
                elif condition == "next-exit":
                    c.exited.wait_for(lambda: c.exits > seen, timeout=10)
                else:
                    c.exited.wait_for(lambda: c.status != "running", timeout=10)
                return WaitResult(c.exit_code)

        return waiter

    def container_attach(self, ref, stdin, stdout, stderr, logs, stream):
        c = self._get(ref)
        self.calls.append("attach")
        a = FakeAttach(bool(c.config.get("Tty")))
        c.attaches.append(a)
        return a

    def container_logs(self, ref, follow, stdout, stderr, tail, since, until):
        c = self._get(ref)
        entries = c.log if tail is None else c.log[-tail:] if tail else []
        return Logs(bool(c.config.get("Tty")), iter(list(entries)))

    def container_resize(self, ref, height, width):
        self._get(ref)

    def container_inspect(self, ref):
        c = self._get(ref)
        return {"Id": c.id, "Name": "/" + c.name, "State": {"Status": c.status},
                "Config": c.config, "HostConfig": {}, "NetworkSettings": {}}

    def container_top(self, ref):
        c = self._get(ref)
        return {"Titles": ["PID", "CMD"], "Processes": [["1", " ".join(c.config.get("Cmd", []))]]}

    def container_list(self, all, filters, limit):
        return [{"Id": c.id, "Names": ["/" + c.name], "State": c.status}
                for c in self.containers.values() if all or c.status == "running"]

    def container_prune(self, filters):
        gone = [c.id for c in self.containers.values() if c.status != "running"]
        for cid in gone:
            del self.containers[cid]
        return gone

    def exec_create(self, ref, config):
        c = self._get(ref)
        if c.status != "running":
            raise Conflict(f"Container {c.id} is not running")
        exec_id = secrets.token_hex(32)
        self.execs = getattr(self, "execs", {})
        self.execs[exec_id] = (c, config)
        return exec_id

    def exec_start(self, exec_id, detach):
        if exec_id not in getattr(self, "execs", {}):
            raise NotFound(f"No such exec instance: {exec_id}")
        if detach:
            return None
        c, config = self.execs[exec_id]
        a = FakeAttach(bool(config.get("Tty")))
        a.q.put((STDOUT, ("exec " + " ".join(config["Cmd"]) + "\n").encode()))
        a.q.put(None)
        return a

    def exec_resize(self, exec_id, height, width):
        pass

    def exec_inspect(self, exec_id):
        if exec_id not in getattr(self, "execs", {}):
            raise NotFound(f"No such exec instance: {exec_id}")
        c, config = self.execs[exec_id]
        return {"ID": exec_id, "Running": False, "ExitCode": 0, "ContainerID": c.id}

    def network_list(self, filters=None):
        return [{"Name": "none", "Id": "0" * 64, "Driver": "null"}]

    def network_inspect(self, name):
        raise NotFound(f"network {name} not found")

    def volume_create(self, name, driver, labels, options):
        return {"Name": name or "anon", "Driver": driver}

    def volume_list(self):
        return []

    def volume_inspect(self, name):
        raise NotFound(f"get {name}: no such volume")

    def volume_remove(self, name, force):
        raise NotFound(f"get {name}: no such volume")

    def volume_users(self, name):
        return []

    def volume_prune(self, filters):
        return [], 0

    def image_pull(self, from_image, tag, platform):
        if "bad ref" in from_image:
            raise InvalidParameter("invalid reference format")

        def gen():
            yield {"status": "Pulling from library/busybox", "id": tag or "latest"}
            if "missing" in from_image:
                raise NotFound(f"manifest for {from_image}:{tag} not found")
            yield {"status": "Status: Downloaded newer image for busybox:latest"}

        return gen()

    def image_list(self, filters, all_=False):
        return [{"Id": "sha256:" + "ab" * 32, "RepoTags": ["busybox:latest"]}]

    def image_inspect(self, name):
        if name not in self.IMAGES and name != "127.0.0.1:5000/x":
            raise NotFound(f"No such image: {name}")
        return {"Id": "sha256:" + "ab" * 32, "RepoTags": [name]}

    def image_history(self, name):
        return [{"Id": "sha256:" + "ab" * 32, "CreatedBy": "fake", "Size": 1}]

    def image_remove(self, name, force):
        return [{"Untagged": name}]
