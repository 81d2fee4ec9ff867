"""The shim's contract suite: labkit-shim driven through its real protocol, over each runtime.

Each test launches `labkit-shim … start` on a busybox bundle (as containerd would), talks to
it with ShimClient over ttrpc, and checks what containerd relies on: stdio reaches the fifos,
Wait returns the exit status, State follows created → running → stopped, Kill and Delete
work, runtime errors come back as "OCI runtime create failed: …", and the shim and its
container outlive the process that launched them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

import pytest

from labkit.wire.shim.client import ShimClient, ShimError
from labkit.wire.shim.launch import delete_shim, start_shim
from labkit.shim.main import socket_path
from labkit.wire.shim.protocol import SERVICE
from labkit.wire.ttrpc import Client, Code, RPCError

from support import cgroup_dirs

from .conftest import NAMESPACE, alive, base_spec, wait_until

pytestmark = pytest.mark.root


def labkit_only(shim, why: str) -> None:
    """Skip a check where containerd's own shim behaves differently (observed, 1.6.20)."""
    if shim.real:
        pytest.skip(f"containerd-shim-runc-v2 differs: {why}")


def test_echo_reaches_stdout_and_stderr_fifos_and_wait_returns_status(shim):
    client, bundle = shim.launch("echo", ["sh", "-c", "echo hello; echo oops >&2; exit 3"])
    out, err, out_reader, err_reader = shim.outputs()
    with client:
        pid = client.create("echo", bundle, stdout=str(out), stderr=str(err))
        assert pid > 0
        assert client.start("echo") == pid
        status, exited_at = client.wait("echo", timeout=10)
    assert status == 3
    assert abs((datetime.now(timezone.utc) - exited_at).total_seconds()) < 30
    assert out_reader.result() == b"hello\n"
    assert err_reader.result() == b"oops\n"


def test_state_moves_from_created_to_running_to_stopped(shim):
    client, bundle = shim.launch("states", ["sleep", "60"])
    with client:
        pid = client.create("states", bundle)
        s = client.state("states")
        assert (s.id, s.status, s.pid, s.exited_at) == ("states", "created", pid, None)
        assert s.bundle == str(bundle)
        assert alive(pid)
        client.start("states")
        assert client.state("states").status == "running"
        client.kill("states", signal.SIGKILL)
        status, exited_at = client.wait("states", timeout=10)
        assert status == 128 + signal.SIGKILL
        s = client.state("states")
        assert (s.status, s.exit_status, s.exited_at) == ("stopped", status, exited_at)
        assert not alive(pid)


def test_wait_blocks_while_other_calls_are_answered(shim):
    client, bundle = shim.launch("waiter", ["sleep", "60"])
    with client:
        client.create("waiter", bundle)
        client.start("waiter")
        result = []
        waiter = threading.Thread(target=lambda: result.append(client.wait("waiter", timeout=20)))
        waiter.start()
        time.sleep(0.3)
        # The same connection answers State while Wait is outstanding (ttrpc multiplexing).
        assert client.state("waiter").status == "running"
        assert waiter.is_alive() and not result
        client.kill("waiter", signal.SIGKILL)
        waiter.join(10)
        assert result and result[0][0] == 137


def test_kill_of_a_stopped_task_is_not_found(shim):
    client, bundle = shim.launch("gone", ["true"])
    with client:
        client.create("gone", bundle)
        client.start("gone")
        assert client.wait("gone", timeout=10)[0] == 0
        with pytest.raises(ShimError) as e:
            client.kill("gone", signal.SIGTERM)
        assert e.value.code == Code.NOT_FOUND


def test_pids_lists_the_init(shim):
    client, bundle = shim.launch("pids", ["sleep", "60"])
    with client:
        pid = client.create("pids", bundle)
        client.start("pids")
        assert pid in client.pids("pids")
        client.kill("pids", signal.SIGKILL, all=True)
        client.wait("pids", timeout=10)


def test_delete_reports_the_exit_and_forgets_the_task(shim):
    client, bundle = shim.launch("del", ["sh", "-c", "exit 7"])
    with client:
        pid = client.create("del", bundle)
        client.start("del")
        _, exited_at = client.wait("del", timeout=10)
        assert client.delete("del") == (pid, 7, exited_at)
        with pytest.raises(ShimError) as e:
            client.state("del")
        assert e.value.code == Code.NOT_FOUND
    assert not (shim.runtime_root / NAMESPACE / "del").exists(), "the runtime's state was not deleted"


def test_delete_of_a_created_task_kills_its_init(shim):
    client, bundle = shim.launch("never", ["sleep", "60"])
    with client:
        pid = client.create("never", bundle)
        got_pid, status, _ = client.delete("never")
        assert got_pid == pid and not alive(pid)
        if not shim.real:       # containerd's shim reports 0 here, though the init was killed
            assert status == 137


def test_delete_of_a_running_task_is_refused(shim):
    client, bundle = shim.launch("busy", ["sleep", "60"])
    with client:
        client.create("busy", bundle)
        client.start("busy")
        with pytest.raises(ShimError) as e:
            client.delete("busy")
        # labkit-shim says FAILED_PRECONDITION; containerd's shim UNKNOWN ("cannot delete a
        # running process"). Either way the task must be left alone.
        assert e.value.code in (Code.FAILED_PRECONDITION, Code.UNKNOWN)
        assert client.state("busy").status == "running"
        client.kill("busy", signal.SIGKILL)
        client.wait("busy", timeout=10)


def test_create_failure_carries_the_runtime_message(shim):
    client, bundle = shim.launch("missing", ["nosuchcommand"])
    with client:
        with pytest.raises(ShimError) as e:
            client.create("missing", bundle)
        assert e.value.code == Code.UNKNOWN
        assert e.value.message.startswith("OCI runtime create failed: ")
        assert "executable file" in e.value.message and "not found" in e.value.message
        with pytest.raises(ShimError) as e:
            client.state("missing")
        assert e.value.code == Code.NOT_FOUND


def test_unknown_methods_are_unimplemented(shim):
    client, bundle = shim.launch("unimpl", ["true"])
    with client:
        raw = Client(socket_path(shim.shims["unimpl"][0]))
        try:
            with pytest.raises(RPCError) as e:
                raw.call(SERVICE, "Frobnicate", b"")
            assert e.value.code == Code.UNIMPLEMENTED
            with pytest.raises(RPCError) as e:
                raw.call("containerd.task.v3.Task", "State", b"")
            assert e.value.code == Code.UNIMPLEMENTED
        finally:
            raw.close()


def test_terminal_output_and_resize(shim):
    client, bundle = shim.launch("tty", ["sh", "-c", "tty; stty size"], terminal=True)
    out = shim.fifo("out")
    reader = shim.reader(out)
    with client:
        client.create("tty", bundle, stdout=str(out), terminal=True)
        assert client.state("tty").status == "created"
        client.resize_pty("tty", width=100, height=40)   # before start: the first size it sees
        client.start("tty")
        assert client.wait("tty", timeout=10)[0] == 0
    # A terminal turns "\n" into "\r\n" (the onlcr output flag).
    assert reader.result().split(b"\r\n")[:2] == [b"/dev/pts/0", b"40 100"]


def test_start_again_returns_the_running_shim(shim):
    client, bundle = shim.launch("again", ["true"])
    with client:
        address = start_shim(shim.shim_binary, id="again", namespace=NAMESPACE, bundle=bundle,
                             containerd_address=shim.containerd_address)
        assert address == shim.shims["again"][0]
        assert (bundle / "address").read_text() == address
        assert client.connect()["shim_pid"] == shim.shims["again"][1]


def test_stdout_keeps_flowing_after_the_reader_goes_away_and_returns(shim):
    client, bundle = shim.launch("ticker", ["sh", "-c", "while true; do echo tick; sleep 0.05; done"])
    out, err = shim.fifo("out"), shim.fifo("err")
    shim.reader(err)
    # containerd always has a reader on the fifo when it creates a task (its own shim waits
    # for one); this one leaves once it has read a line.
    first = os.open(out, os.O_RDONLY | os.O_NONBLOCK)
    with client:
        client.create("ticker", bundle, stdout=str(out), stderr=str(err))
        client.start("ticker")
        os.set_blocking(first, True)
        with open(first, "rb", buffering=0) as f:
            assert f.read(5) == b"tick\n"
        for _ in range(2):  # a reader comes, reads, goes away; the container must not notice
            time.sleep(0.5)
            assert client.state("ticker").status == "running"
            with open(out, "rb", buffering=0) as f:
                assert f.read(5) == b"tick\n"
        client.kill("ticker", signal.SIGKILL)
        assert client.wait("ticker", timeout=10)[0] == 137


def _fds(pid: int) -> set[str]:
    """What the process's open fds point at ("pipe:[123]", a path …)."""
    links = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            links.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:
            pass
    return links


def test_output_written_while_nobody_reads_waits_for_the_next_reader(shim):
    """A container that prints and exits while its reader is away (dockerd restarting) keeps
    its output: the shim closes its end of a fifo only once a reader has taken what is in it.
    Closing the fifo's last open end would throw the output away."""
    labkit_only(shim, "it holds the container's pipes until Delete, so this test cannot tell "
                "when its copy ended (not checked there)")
    client, bundle = shim.launch("unread", ["sh", "-c", "read x; echo bye; echo oops >&2; exit 4"])
    out, err, stdin = shim.fifo("out"), shim.fifo("err"), shim.fifo("in")
    # The readers are there at Create, as dockerd is, and go away, as a killed dockerd does.
    readers = [os.open(path, os.O_RDONLY | os.O_NONBLOCK) for path in (out, err)]
    writer = os.open(stdin, os.O_RDWR)
    with client:
        pid = client.create("unread", bundle, stdin=str(stdin), stdout=str(out), stderr=str(err))
        container_pipes = {os.readlink(f"/proc/{pid}/fd/{n}") for n in (1, 2)}
        assert all(p.startswith("pipe:") for p in container_pipes)
        client.start("unread")
        for fd in readers:
            os.close(fd)
        os.write(writer, b"go\n")
        assert client.wait("unread", timeout=10)[0] == 4
        # The shim has read the container's pipes to their end (it closed its ends of them):
        # the output is in the fifos, and nobody reads them.
        shim_pid = shim.shims["unread"][1]
        assert wait_until(lambda: not container_pipes & _fds(shim_pid), timeout=10)
        out_reader, err_reader = shim.reader(out), shim.reader(err)
        assert out_reader.result() == b"bye\n"   # and then EOF: the shim let go once read
        assert err_reader.result() == b"oops\n"
        client.delete("unread")
    os.close(writer)


def test_shim_and_container_survive_the_launcher(shim):
    bundle = shim.bundle("orphan", ["sleep", "60"])
    # A throwaway process plays containerd: it launches the shim, starts the task, and dies.
    script = (
        "import sys; from pathlib import Path\n"
        "from labkit.wire.shim.launch import start_shim\n"
        "from labkit.wire.shim.client import ShimClient\n"
        f"a = start_shim({shim.shim_binary!r}, id='orphan', namespace={NAMESPACE!r}, bundle=Path({str(bundle)!r}),"
        f" containerd_address={shim.containerd_address!r})\n"
        "c = ShimClient(a); c.create('orphan', Path(sys.argv[1])); c.start('orphan')\n"
        "print(a, flush=True)\n"
        "import os; os._exit(0)\n")
    launcher = subprocess.run([sys.executable, "-c", script, str(bundle)], capture_output=True,
                              text=True, timeout=60)
    assert launcher.returncode == 0, launcher.stderr
    address = launcher.stdout.strip()
    shim.ids.append("orphan")
    with ShimClient(address) as client:
        shim_pid = client.connect()["shim_pid"]
        shim.shims["orphan"] = (address, shim_pid)
        s = client.state("orphan")
        assert s.status == "running" and alive(s.pid)
        client.kill("orphan", signal.SIGKILL)
        assert client.wait("orphan", timeout=10)[0] == 137


def test_shutdown_exits_only_when_no_task_remains(shim):
    client, bundle = shim.launch("bye", ["true"])
    address, shim_pid = shim.shims["bye"]
    with client:
        client.create("bye", bundle)
        client.shutdown()                      # a task remains: ignored
        time.sleep(0.3)
        assert alive(shim_pid) and client.state("bye").status == "created"
        client.delete("bye")
        client.shutdown()
    assert wait_until(lambda: not alive(shim_pid)), "the shim did not exit after Shutdown"
    assert not os.path.exists(socket_path(address)), "the shim left its socket behind"


def test_delete_command_cleans_up_after_a_dead_shim(shim):
    labkit_only(shim, "its `delete` leaves the container running here (runc delete exits 255)")
    client, bundle = shim.launch("dead", ["sleep", "60"])
    address, shim_pid = shim.shims["dead"]
    with client:
        pid = client.create("dead", bundle)
        client.start("dead")
    os.kill(shim_pid, signal.SIGKILL)          # the shim dies, the container does not
    assert wait_until(lambda: not alive(shim_pid))
    assert alive(pid)
    delete_shim(id="dead", namespace=NAMESPACE, bundle=bundle,
                containerd_address=shim.containerd_address)
    assert wait_until(lambda: not alive(pid)), "delete did not kill the container"
    assert not (shim.runtime_root / NAMESPACE / "dead").exists()
    assert not os.path.exists(socket_path(address))


def _process(args: list[str]) -> dict:
    return base_spec(args)["process"]


def test_exec_runs_a_second_process_in_the_container(shim):
    client, bundle = shim.launch("host", ["sleep", "60"])
    out, err, reader, _ = shim.outputs("exec-")
    with client:
        init = client.create("host", bundle)
        client.start("host")
        client.exec("host", "e1", _process(["sh", "-c", "echo in exec; exit 9"]), stdout=str(out),
                    stderr=str(err))
        assert client.state("host", exec_id="e1").status == "created"
        pid = client.start("host", exec_id="e1")
        assert pid > 0 and pid != init
        status, exited_at = client.wait("host", exec_id="e1", timeout=10)
        assert status == 9
        assert reader.result() == b"in exec\n"
        assert client.delete("host", exec_id="e1") == (pid, 9, exited_at)
        with pytest.raises(ShimError) as e:
            client.state("host", exec_id="e1")
        assert e.value.code == Code.NOT_FOUND
        assert client.state("host").status == "running"     # the init is untouched
        client.kill("host", signal.SIGKILL)
        client.wait("host", timeout=10)


def test_exec_can_be_killed_alone(shim):
    client, bundle = shim.launch("host2", ["sleep", "60"])
    with client:
        client.create("host2", bundle)
        client.start("host2")
        client.exec("host2", "sleeper", _process(["sleep", "60"]))
        client.start("host2", exec_id="sleeper")
        client.kill("host2", signal.SIGKILL, exec_id="sleeper")
        assert client.wait("host2", exec_id="sleeper", timeout=10)[0] == 137
        assert client.state("host2").status == "running"
        client.kill("host2", signal.SIGKILL)
        client.wait("host2", timeout=10)


def test_exec_needs_a_running_task(shim):
    labkit_only(shim, "it accepts an Exec while the init is only created")
    client, bundle = shim.launch("idle", ["sleep", "60"])
    with client:
        client.create("idle", bundle)
        with pytest.raises(ShimError) as e:
            client.exec("idle", "e1", _process(["true"]))
        assert e.value.code == Code.FAILED_PRECONDITION
        with pytest.raises(ShimError) as e:
            client.state("idle", exec_id="nope")
        assert e.value.code == Code.NOT_FOUND


def test_stdin_reaches_the_container_and_its_end_closes_it(shim):
    labkit_only(shim, "the writer closing the fifo does not end stdin; only CloseIO does")
    client, bundle = shim.launch("cat", ["cat"])
    stdin = shim.fifo("in")
    out, err, reader, _ = shim.outputs()
    with client:
        client.create("cat", bundle, stdin=str(stdin), stdout=str(out), stderr=str(err))
        client.start("cat")
        with open(stdin, "wb") as f:          # as dockerd does for `docker run -i`
            f.write(b"hello stdin\n")
        # closing our end is the end of input: cat sees EOF and exits
        assert client.wait("cat", timeout=10)[0] == 0
    assert reader.result() == b"hello stdin\n"


def test_close_io_ends_stdin(shim):
    labkit_only(shim, "with this fifo set-up (writer opened after the shim) input does not arrive")
    client, bundle = shim.launch("cat2", ["cat"])
    stdin = shim.fifo("in")
    out, err, reader, _ = shim.outputs()
    writer = os.open(stdin, os.O_RDWR)        # a writer that stays: only CloseIO can end input
    try:
        with client:
            client.create("cat2", bundle, stdin=str(stdin), stdout=str(out), stderr=str(err))
            client.start("cat2")
            os.write(writer, b"one line\n")
            time.sleep(0.3)
            assert client.state("cat2").status == "running"
            client.close_io("cat2")
            assert client.wait("cat2", timeout=10)[0] == 0
    finally:
        os.close(writer)
    assert reader.result() == b"one line\n"


def test_pause_and_resume_freeze_the_task(shim):
    """Pause/Resume (containerd's names and fields): the runtime's freezer stops every
    process of the container; State says "paused", then "running" again; a second Pause of
    a paused task is refused, and a paused task can still be killed."""
    import json
    import uuid

    top = f"/labkit-test-{uuid.uuid4().hex[:8]}"
    client, bundle = shim.launch("pz", ["sh", "-c", "while :; do date +%s%N > /tmp/n; "
                                        "sleep 0.02; done"])
    spec = json.loads((bundle / "config.json").read_text())
    spec["linux"]["cgroupsPath"] = f"{top}/pz"
    (bundle / "config.json").write_text(json.dumps(spec))
    counter = bundle / "rootfs" / "tmp" / "n"
    try:
        with client:
            client.create("pz", bundle)
            client.start("pz")
            assert wait_until(lambda: counter.exists() and counter.read_text().strip())
            client.pause("pz")
            assert client.state("pz").status == "paused"
            frozen_at = counter.read_text()
            time.sleep(0.2)
            assert counter.read_text() == frozen_at           # nothing ran while frozen
            if not shim.real:        # (containerd's shim passes the runtime's refusal on)
                with pytest.raises(ShimError) as e:
                    client.pause("pz")
                assert e.value.code == Code.FAILED_PRECONDITION
            client.resume("pz")
            assert client.state("pz").status == "running"
            assert wait_until(lambda: counter.read_text() != frozen_at)
            client.pause("pz")
            client.kill("pz", signal.SIGKILL)                 # the runtime thaws what it kills
            status, _ = client.wait("pz", timeout=10)
            assert status == 128 + signal.SIGKILL
    finally:
        # the container first (a failed test may leave it running, even frozen), then its
        # cgroups: the top directory is this test's own
        _remove_with_cgroups(shim, "pz", top)


def _remove_with_cgroups(shim, id: str, top: str) -> None:
    """The container first (a failed test may leave it running, even frozen), then the
    cgroups under `top`, the test's own top directory."""
    try:
        shim.oci_runtime(id).delete(id, force=True)
    except Exception:
        pass
    for d in cgroup_dirs(top, every_cgroup2=True):
        for child in sorted(d.rglob("*"), reverse=True):
            if child.is_dir():
                wait_until(lambda: _rmdir(child), 5)
        if d.is_dir():
            wait_until(lambda: _rmdir(d), 5)


def _rmdir(d) -> bool:
    try:
        d.rmdir()
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False


def test_stats_and_update_read_and_change_the_tasks_cgroup(shim):
    """Stats answers the task's cgroup numbers as containerd's own Metrics message (v1 or v2,
    as the host runs: labkit's protos decode containerd's shim too); Update has the runtime
    write new limits, which the next Stats reads back. After the exit there is nothing to read."""
    import json
    import uuid

    from labkit.wire.shim import cgroups_v1_pb2, cgroups_v2_pb2
    from labkit.wire.shim.protocol import METRICS_V1_URL, METRICS_V2_URL
    v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    top = f"/labkit-test-{uuid.uuid4().hex[:8]}"
    client, bundle = shim.launch("st", ["sleep", "60"])
    spec = json.loads((bundle / "config.json").read_text())
    spec["linux"]["cgroupsPath"] = f"{top}/st"
    spec["linux"]["resources"] = {"memory": {"limit": 64 << 20}, "pids": {"limit": 30}}
    (bundle / "config.json").write_text(json.dumps(spec))

    def limits() -> tuple[int, int, int, int]:
        """(memory usage, memory limit, pids, pids limit) from the shim's Stats."""
        type_url, data = client.stats("st")
        assert type_url == (METRICS_V2_URL if v2 else METRICS_V1_URL)
        if v2:
            m = cgroups_v2_pb2.Metrics.FromString(data)
            return m.memory.usage, m.memory.usage_limit, m.pids.current, m.pids.limit
        m = cgroups_v1_pb2.Metrics.FromString(data)
        return m.memory.usage.usage, m.memory.usage.limit, m.pids.current, m.pids.limit
    try:
        with client:
            client.create("st", bundle)
            client.start("st")
            usage, memory_limit, pids, pids_limit = limits()
            assert usage > 0 and pids >= 1
            assert (memory_limit, pids_limit) == (64 << 20, 30)
            client.update("st", {"memory": {"limit": 128 << 20}, "pids": {"limit": 50}})
            assert limits()[1::2] == (128 << 20, 50)
            client.kill("st", signal.SIGKILL)
            client.wait("st", timeout=10)
            if not shim.real:       # (containerd's shim reads the emptied cgroup still)
                with pytest.raises(ShimError) as e:
                    client.stats("st")
                assert e.value.code == Code.FAILED_PRECONDITION
    finally:
        _remove_with_cgroups(shim, "st", top)
