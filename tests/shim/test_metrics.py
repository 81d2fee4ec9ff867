"""labkit.shim.metrics: a cgroup's files into containerd's Metrics messages (Task.Stats).

Parsing is checked on files written here in the kernel's formats (both versions, whatever this
host runs); reading the real cgroup of this process is checked for the version the host has,
and the other version's test is skipped, saying why.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from labkit.shim import metrics
from labkit.wire.shim import cgroups_v1_pb2, cgroups_v2_pb2, messages
from labkit.wire.shim.protocol import METRICS_V1_URL, METRICS_V2_URL

V2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def test_v2_files(tmp_path):
    d = write(tmp_path / "c1", {
        "memory.current": "23068672\n", "memory.max": "67108864\n",
        "memory.swap.current": "0\n", "memory.swap.max": "max\n",
        "memory.stat": "anon 1000\nfile 22000000\ninactive_file 4096\nshmem 20971520\n"
                       "pgfault 77\nsomething_new 5\n",
        "memory.events": "low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n",
        "cpu.stat": "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 4\n"
                    "nr_throttled 1\nthrottled_usec 30\n",
        "pids.current": "3\n", "pids.max": "max\n",
        "io.stat": "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n"
                   "259:1 rbytes=1 wbytes=0 rios=1 wios=0\n"})
    m = metrics.read_v2(str(d))
    parsed = cgroups_v2_pb2.Metrics.FromString(m.SerializeToString())   # containerd's side
    assert parsed.memory.usage == 23068672 and parsed.memory.usage_limit == 64 * 2**20
    assert parsed.memory.swap_limit == 2**64 - 1                         # "max"
    assert parsed.memory.inactive_file == 4096 and parsed.memory.shmem == 20971520
    assert parsed.memory.pgfault == 77 and parsed.memory_events.oom_kill == 1
    assert (parsed.cpu.usage_usec, parsed.cpu.user_usec, parsed.cpu.system_usec) == (1500, 1000, 500)
    assert parsed.cpu.nr_throttled == 1 and parsed.cpu.throttled_usec == 30
    assert (parsed.pids.current, parsed.pids.limit) == (3, 2**64 - 1)
    assert [(e.major, e.minor, e.rbytes, e.wbytes, e.rios, e.wios) for e in parsed.io.usage] == \
        [(8, 0, 4096, 8192, 1, 2), (259, 1, 1, 0, 1, 0)]
    with pytest.raises(metrics.NoCgroup):
        metrics.read_v2(str(tmp_path / "gone"))


def test_v1_files(tmp_path):
    dirs = {
        "memory": write(tmp_path / "memory/c1", {
            "memory.usage_in_bytes": "2048\n", "memory.limit_in_bytes": "9223372036854771712\n",
            "memory.max_usage_in_bytes": "4096\n", "memory.failcnt": "0\n",
            "memory.stat": "cache 100\nrss 200\npgpgin 5\ntotal_pgmajfault 6\n"
                           "hierarchical_memsw_limit 7\ntotal_inactive_file 8\n",
            "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"}),
        "cpuacct": write(tmp_path / "cpuacct/c1", {"cpuacct.usage": "123456789\n",
                                                   "cpuacct.stat": "user 3\nsystem 2\n"}),
        "cpu": write(tmp_path / "cpu/c1", {"cpu.stat": "nr_periods 10\nnr_throttled 2\n"
                                                       "throttled_time 99\n"}),
        "pids": write(tmp_path / "pids/c1", {"pids.current": "4\n", "pids.max": "max\n"}),
        "blkio": write(tmp_path / "blkio/c1", {
            # no CFQ here: the plain file is missing, the throttle layer's counts
            "blkio.throttle.io_service_bytes_recursive": "8:0 Read 512\n8:0 Write 1024\n"
                                                          "8:0 Sync 0\nTotal 1536\n",
            "blkio.throttle.io_serviced_recursive": "8:0 Read 1\n8:0 Write 2\nTotal 3\n"}),
    }
    m = metrics.read_v1({k: str(v) for k, v in dirs.items()})
    parsed = cgroups_v1_pb2.Metrics.FromString(m.SerializeToString())
    assert parsed.memory.usage.usage == 2048 and parsed.memory.usage.max == 4096
    assert parsed.memory.cache == 100 and parsed.memory.pg_pg_in == 5
    assert parsed.memory.total_pg_maj_fault == 6 and parsed.memory.hierarchical_swap_limit == 7
    assert parsed.memory.total_inactive_file == 8 and parsed.memory_oom_control.oom_kill == 3
    assert parsed.memory.swap.usage == 0          # no memory.memsw.* files: no swap accounting
    tick = 10**9 // os.sysconf("SC_CLK_TCK")
    assert (parsed.cpu.usage.total, parsed.cpu.usage.user, parsed.cpu.usage.kernel) == \
        (123456789, 3 * tick, 2 * tick)
    assert (parsed.cpu.throttling.periods, parsed.cpu.throttling.throttled_periods,
            parsed.cpu.throttling.throttled_time) == (10, 2, 99)
    assert (parsed.pids.current, parsed.pids.limit) == (4, 0)       # "max": no limit
    assert [(e.op, e.major, e.minor, e.value) for e in parsed.blkio.io_service_bytes_recursive] \
        == [("Read", 8, 0, 512), ("Write", 8, 0, 1024), ("Sync", 8, 0, 0)]
    assert [e.value for e in parsed.blkio.io_serviced_recursive] == [1, 2]


def test_parsers_skip_what_is_not_theirs():
    assert metrics.parse_blkio("Total 5\ngarbage\n8:x Read 1\n") == []
    assert metrics.parse_io_stat("nonsense\n") == []
    assert metrics.parse_blkio(None) == [] and metrics.parse_io_stat(None) == []


def test_this_hosts_version_is_what_read_answers():
    type_url, data = metrics.read(os.getpid())
    assert type_url == (METRICS_V2_URL if V2 else METRICS_V1_URL)
    message = (messages.V2Metrics if V2 else messages.V1Metrics).FromString(data)
    usage = message.memory.usage if V2 else message.memory.usage.usage
    assert usage > 0                        # this very process uses memory
    with pytest.raises(metrics.NoCgroup):
        metrics.read(2**22 + 1)              # above pid_max's default: no such process


@pytest.mark.skipif(V2, reason="this host's /sys/fs/cgroup is cgroup v2: no v1 hierarchies")
def test_v1_hierarchies_of_this_process():
    dirs = metrics.v1_dirs(os.getpid())
    assert "memory" in dirs and os.path.exists(os.path.join(dirs["memory"], "memory.stat"))


@pytest.mark.skipif(not V2, reason="this host runs cgroup v1 (no /sys/fs/cgroup/cgroup.controllers)")
def test_v2_cgroup_of_this_process():
    directory = metrics.v2_dir(os.getpid())
    assert os.path.exists(os.path.join(directory, "cgroup.procs"))
    assert metrics.read_v2(directory).memory.usage > 0
