"""The parsing and merging behind `docker stats` and `docker update`, without containers:
shim Metrics -> the Engine API's JSON (both cgroup versions), /proc/<pid>/net/dev, and the
update body merged into a HostConfig (zero keeps, bad values are 4xx)."""

from __future__ import annotations

import pytest

from labkit import procfs
from labkit.dockerd import stats, update
from labkit.dockerd.errors import Conflict, InvalidParameter
from labkit.wire.shim import cgroups_v1_pb2, cgroups_v2_pb2
from labkit.wire.shim.protocol import METRICS_V1_URL, METRICS_V2_URL

GiB = 2**30


def test_v1_metrics_as_the_api_shows_them():
    m = cgroups_v1_pb2.Metrics()
    m.memory.usage.usage, m.memory.usage.limit = 3000, 9223372036854771712   # no limit
    m.memory.total_inactive_file, m.memory.pg_pg_in = 1000, 7
    m.cpu.usage.total, m.cpu.usage.kernel, m.cpu.usage.user = 50, 20, 30
    m.pids.current = 2
    m.blkio.io_service_bytes_recursive.add(op="Read", major=8, minor=0, value=4096)
    out = stats.from_metrics(METRICS_V1_URL, m.SerializeToString(), machine_memory=8 * GiB)
    assert out["memory_stats"]["limit"] == 8 * GiB          # no limit: the host's memory
    assert out["memory_stats"]["usage"] == 3000
    assert out["memory_stats"]["stats"]["total_inactive_file"] == 1000
    assert out["memory_stats"]["stats"]["pgpgin"] == 7      # the kernel's name
    assert out["memory_stats"]["stats"]["inactive_file"] == 0   # zeros are shown too
    assert out["cpu_stats"]["cpu_usage"] == {"total_usage": 50, "usage_in_kernelmode": 20,
                                             "usage_in_usermode": 30}
    assert out["pids_stats"] == {"current": 2}
    assert out["blkio_stats"]["io_service_bytes_recursive"] == [
        {"major": 8, "minor": 0, "op": "Read", "value": 4096}]
    assert out["blkio_stats"]["sectors_recursive"] is None


def test_v2_metrics_as_the_api_shows_them():
    m = cgroups_v2_pb2.Metrics()
    m.memory.usage, m.memory.usage_limit, m.memory.inactive_file = 5000, 64 * 2**20, 100
    m.cpu.usage_usec, m.cpu.user_usec, m.cpu.system_usec = 3, 2, 1
    m.pids.current, m.pids.limit = 4, 2**64 - 1
    m.io.usage.add(major=254, minor=0, rbytes=10, wbytes=20, rios=1, wios=2)
    out = stats.from_metrics(METRICS_V2_URL, m.SerializeToString(), machine_memory=8 * GiB)
    assert out["memory_stats"]["limit"] == 64 * 2**20
    assert out["memory_stats"]["stats"]["inactive_file"] == 100
    assert "total_inactive_file" not in out["memory_stats"]["stats"]   # how the CLI tells v2
    assert out["cpu_stats"]["cpu_usage"]["total_usage"] == 3000      # µs -> ns
    assert out["pids_stats"] == {"current": 4}                        # "max": no limit shown
    assert out["blkio_stats"]["io_service_bytes_recursive"] == [
        {"major": 254, "minor": 0, "op": "read", "value": 10},
        {"major": 254, "minor": 0, "op": "write", "value": 20}]
    with pytest.raises(ValueError):
        stats.from_metrics("io.containerd.cgroups.v9.Metrics", b"", 0)


def test_net_dev():
    text = ("Inter-|   Receive                                                |  Transmit\n"
            " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets"
            " errs drop fifo colls carrier compressed\n"
            "    lo:     100       1    0    0    0     0          0         0      100       1"
            "    0    0    0     0       0          0\n"
            "  eth0:1296      16    0    1    0     0          0         0      656       8    0"
            "    0    0     0       0          0\n")
    parsed = procfs.parse_net_dev(text)
    assert set(parsed) == {"lo", "eth0"}
    assert parsed["eth0"]["rx_bytes"] == 1296 and parsed["eth0"]["rx_dropped"] == 1
    assert parsed["eth0"]["tx_packets"] == 8
    assert procfs.net_dev(2**22 + 1) == {}                 # no such process


def test_update_merge_keeps_what_is_zero():
    current = {"Memory": 64 * 2**20, "CpuShares": 0, "PidsLimit": 10, "AutoRemove": False,
               "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}}
    # the CLI sends every field; zero means "leave it"
    merged = update.merge(current, {"Memory": 0, "CpuShares": 512, "PidsLimit": None,
                                    "RestartPolicy": {"Name": "", "MaximumRetryCount": 0}})
    assert merged["Memory"] == 64 * 2**20 and merged["CpuShares"] == 512
    assert merged["PidsLimit"] == 10 and merged["RestartPolicy"]["Name"] == "no"
    assert current["CpuShares"] == 0                       # a new dict, the old one kept
    assert update.merge(current, {"PidsLimit": -1})["PidsLimit"] == 0
    assert update.task_resources(update.merge(current, {"PidsLimit": -1}))["pids"] == {"limit": -1}
    resources = update.task_resources(update.merge(current, {"NanoCpus": 500_000_000}))
    assert resources["cpu"] == {"period": 100000, "quota": 50000}
    assert "devices" not in resources


@pytest.mark.parametrize("body, error, words", [
    ({"Memory": "1g"}, InvalidParameter, "invalid Memory"),
    ({"RestartPolicy": {"Name": "sometimes"}}, InvalidParameter, "unknown policy 'sometimes'"),
    ({"RestartPolicy": {"Name": "always", "MaximumRetryCount": 2}}, InvalidParameter,
     "maximum retry count"),
    ({"MemorySwap": 2**20}, InvalidParameter, "memoryswap limit should be larger"),
    ({"CpuQuota": 50000}, Conflict, "NanoCPUs has already been set"),
])
def test_update_merge_refuses(body, error, words):
    current = {"Memory": 64 * 2**20, "NanoCpus": 10**9, "RestartPolicy": {"Name": "no"}}
    with pytest.raises(error) as e:
        update.merge(current, body)
    assert words in e.value.message


def test_update_task_resources_refuse_a_bad_value():
    with pytest.raises(InvalidParameter, match="Minimum memory limit allowed is 6MB"):
        update.task_resources({"Memory": 2**20})
    with pytest.raises(InvalidParameter, match="CPU cfs period"):
        update.task_resources({"CpuPeriod": 10})
