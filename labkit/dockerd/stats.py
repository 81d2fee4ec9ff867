"""`docker stats`: what a container uses, one JSON sample a second (moby's daemon/stats*.go).

Where the numbers come from
---------------------------
dockerd reads no cgroup file itself. The container's cgroup belongs to its task, and the task
to its shim, so each sample travels the real way::

    GET /containers/c1/stats?stream=1
      dockerd     Tasks.Metrics(filters=["id==<id>"])                 (labkit-containerd)
      containerd  shim.Stats(<id>) for that task                      (its ttrpc socket)
      shim        reads /proc/<init pid>/cgroup, then the cgroup's files (labkit.shim.metrics)
                  -> Any{"io.containerd.cgroups.v1.Metrics" | "…v2.Metrics", bytes}
      containerd  passes the Any back unopened, with a timestamp
      dockerd     decodes it (labkit.wire.shim.cgroups_v1_pb2 / cgroups_v2_pb2) and adds what
                  only the host knows: the host's CPU time (/proc/stat), its CPU count and
                  memory, and the counters of the interfaces in the container's network
                  namespace (/proc/<pid>/net/dev: the netns is dockerd's, as in moby, where
                  libnetwork's sandbox answers them)

The Engine API's JSON (moby's api/types/container.StatsResponse), with how the CLI uses it::

    read, preread           this sample's time and the previous one's
    cpu_stats               cpu_usage{total_usage, usage_in_kernelmode, usage_in_usermode} ns,
                            system_cpu_usage (the host's, ns), online_cpus, throttling_data
    precpu_stats            the previous sample's cpu_stats: CPU % = Δtotal / Δsystem × cpus
    memory_stats            usage, limit (no limit: the host's memory), stats{…}: the CLI
                            shows usage − total_inactive_file (v1) or − inactive_file (v2)
    pids_stats              current, limit
    blkio_stats             io_service_bytes_recursive [{major, minor, op, value}] …
    networks                {"eth0": {rx_bytes, rx_packets, …, tx_dropped}} (lo left out)

Modes (query): stream=1 (the default) sends a sample every second until the client goes;
stream=0 waits for a second sample so that precpu_stats is filled, sends it, and ends;
stream=0&one-shot=1 sends the first sample at once (precpu_stats empty). A container that does
not run gets samples of zeros (one, when not streaming), as `docker stats -a` shows it.
"""

from __future__ import annotations

import os
import time
from typing import Iterator

from labkit import procfs
from labkit.dockerd.container import Container
from labkit.dockerd.jsonlog import ZERO_TIME, rfc3339nano
from labkit.dockerd.remote import RemoteError, to_daemon_error
from labkit.wire.containerd import api_pb2 as pb
from labkit.wire.shim import cgroups_v1_pb2, cgroups_v2_pb2
from labkit.wire.shim.protocol import METRICS_V1_URL, METRICS_V2_URL, V1_MEMORY_STAT_FIELDS

INTERVAL = 1.0          # seconds between samples (moby's stats collector ticks each second)
UNLIMITED = 1 << 62     # a limit at least this large means "none" (v1 writes 2^63-4096)

# The message's field names that memory.stat spells otherwise: the JSON shows the kernel's
# names, as moby does.
_V1_KERNEL_NAMES = {field: name for name, field in V1_MEMORY_STAT_FIELDS.items()}
_BLKIO_KEYS = ("io_service_bytes_recursive", "io_serviced_recursive", "io_queue_recursive",
               "io_service_time_recursive", "io_wait_time_recursive", "io_merged_recursive",
               "io_time_recursive", "sectors_recursive")


def empty_sample(name: str = "", id: str = "") -> dict:
    """A sample of zeros: what a container that does not run shows."""
    cpu = {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
           "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}
    return {"name": name, "id": id, "read": ZERO_TIME, "preread": ZERO_TIME,
            "pids_stats": {}, "blkio_stats": {k: None for k in _BLKIO_KEYS},
            "num_procs": 0, "storage_stats": {}, "cpu_stats": dict(cpu),
            "precpu_stats": dict(cpu), "memory_stats": {}}


def from_metrics(type_url: str, data: bytes, machine_memory: int) -> dict:
    """cpu_stats, memory_stats, pids_stats, blkio_stats from a shim's Metrics message."""
    if type_url == METRICS_V1_URL:
        return _from_v1(cgroups_v1_pb2.Metrics.FromString(data), machine_memory)
    if type_url == METRICS_V2_URL:
        return _from_v2(cgroups_v2_pb2.Metrics.FromString(data), machine_memory)
    raise ValueError(f"unknown metrics type {type_url!r}")


def _limit(value: int, machine_memory: int) -> int:
    """A memory limit as the API shows it: no limit is the host's memory (moby caps it)."""
    if machine_memory and (value == 0 or value > machine_memory):
        return machine_memory
    return value


def _from_v1(m, machine_memory: int) -> dict:
    # every counter, zeros too (proto3 does not send them; the CLI looks for
    # total_inactive_file to tell v1 from v2)
    stats = {_V1_KERNEL_NAMES.get(f.name, f.name): getattr(m.memory, f.name)
             for f in m.memory.DESCRIPTOR.fields if f.type == f.TYPE_UINT64}
    memory = {"usage": m.memory.usage.usage, "max_usage": m.memory.usage.max,
              "failcnt": m.memory.usage.failcnt, "stats": stats,
              "limit": _limit(m.memory.usage.limit, machine_memory)}
    blkio = {key: [{"major": e.major, "minor": e.minor, "op": e.op, "value": e.value}
                   for e in getattr(m.blkio, name)] or None
             for key, name in zip(_BLKIO_KEYS, (
                 "io_service_bytes_recursive", "io_serviced_recursive", "io_queued_recursive",
                 "io_service_time_recursive", "io_wait_time_recursive", "io_merged_recursive",
                 "io_time_recursive", "sectors_recursive"))}
    cpu = {"cpu_usage": {"total_usage": m.cpu.usage.total,
                         "usage_in_kernelmode": m.cpu.usage.kernel,
                         "usage_in_usermode": m.cpu.usage.user},
           "throttling_data": {"periods": m.cpu.throttling.periods,
                               "throttled_periods": m.cpu.throttling.throttled_periods,
                               "throttled_time": m.cpu.throttling.throttled_time}}
    pids = {"current": m.pids.current}
    if 0 < m.pids.limit < UNLIMITED:
        pids["limit"] = m.pids.limit
    return {"cpu_stats": cpu, "memory_stats": memory, "pids_stats": pids, "blkio_stats": blkio}


def _from_v2(m, machine_memory: int) -> dict:
    stats = {f.name: getattr(m.memory, f.name) for f in m.memory.DESCRIPTOR.fields
             if f.name not in ("usage", "usage_limit", "swap_usage", "swap_limit")}
    limit = m.memory.usage_limit if m.memory.usage_limit < UNLIMITED else 0
    memory = {"usage": m.memory.usage, "stats": stats, "limit": _limit(limit, machine_memory)}
    # v2's io.stat counts bytes and operations per device, read and write apart
    service_bytes, serviced = [], []
    for e in m.io.usage:
        service_bytes += [{"major": e.major, "minor": e.minor, "op": "read", "value": e.rbytes},
                          {"major": e.major, "minor": e.minor, "op": "write", "value": e.wbytes}]
        serviced += [{"major": e.major, "minor": e.minor, "op": "read", "value": e.rios},
                     {"major": e.major, "minor": e.minor, "op": "write", "value": e.wios}]
    blkio = {key: None for key in _BLKIO_KEYS}
    blkio.update(io_service_bytes_recursive=service_bytes or None,
                 io_serviced_recursive=serviced or None)
    cpu = {"cpu_usage": {"total_usage": m.cpu.usage_usec * 1000,
                         "usage_in_kernelmode": m.cpu.system_usec * 1000,
                         "usage_in_usermode": m.cpu.user_usec * 1000},
           "throttling_data": {"periods": m.cpu.nr_periods,
                               "throttled_periods": m.cpu.nr_throttled,
                               "throttled_time": m.cpu.throttled_usec * 1000}}
    pids = {"current": m.pids.current}
    if 0 < m.pids.limit < UNLIMITED:
        pids["limit"] = m.pids.limit
    return {"cpu_stats": cpu, "memory_stats": memory, "pids_stats": pids, "blkio_stats": blkio}


def networks(pid: int) -> dict | None:
    """The counters of the container's interfaces, loopback left out (None: no interface)."""
    out = {}
    for name, counters in procfs.net_dev(pid).items():
        if name != "lo":
            out[name] = {k: counters[k] for k in (
                "rx_bytes", "rx_packets", "rx_errors", "rx_dropped",
                "tx_bytes", "tx_packets", "tx_errors", "tx_dropped")}
    return out or None


def machine_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


class Stats:
    """The Daemon's `docker stats` (mixed into labkit.dockerd.daemon.Daemon)."""

    def container_stats(self, ref: str, stream: bool, one_shot: bool) -> Iterator[dict]:
        """Check the container now (a 404 before the 200), then the samples."""
        c = self._get(ref)
        return self._stats(c, stream, one_shot)

    def _stats(self, c: Container, stream: bool, one_shot: bool) -> Iterator[dict]:
        previous = None
        while True:
            sample = self._sample(c)
            if sample is None:                        # not running (or it just stopped)
                if self._gone(c):
                    return
                # zeros, as `docker stats -a` shows a stopped container; while streaming,
                # one a second (each write also tells whether the client is still there)
                yield empty_sample("/" + c.Name, c.ID)
                if not stream:
                    return
                previous = None
                time.sleep(INTERVAL)
                continue
            if previous is not None:
                sample["precpu_stats"], sample["preread"] = previous["cpu_stats"], previous["read"]
            if stream or one_shot or previous is not None:
                yield sample
                if not stream:
                    return
            previous = sample
            time.sleep(INTERVAL)

    def _gone(self, c: Container) -> bool:
        with self._lock:
            return self._containers.get(c.ID) is not c

    def _sample(self, c: Container) -> dict | None:
        """One sample of a running container, or None if it does not run."""
        with self._lock:
            running, pid = c.State.Running, c.State.Pid
            network_mode = c.HostConfig.get("NetworkMode") or ""
        if not running:
            return None
        try:
            response = self.ctr.call(self.ctr.tasks.Metrics,
                                     pb.MetricsRequest(filters=[f"id=={c.ID}"]))
        except RemoteError as e:
            if e.code in ("NOT_FOUND", "FAILED_PRECONDITION"):
                return None
            raise to_daemon_error(e) from None
        metric = next((m for m in response.metrics if m.id == c.ID), None)
        if metric is None:
            return None                               # its task stopped meanwhile
        sample = empty_sample("/" + c.Name, c.ID)
        sample.update(from_metrics(metric.data.type_url, metric.data.value, machine_memory()))
        sample["read"] = rfc3339nano(metric.timestamp.seconds * 10**9 + metric.timestamp.nanos)
        sample["cpu_stats"]["system_cpu_usage"] = procfs.system_cpu_ns()
        sample["cpu_stats"]["online_cpus"] = len(os.sched_getaffinity(0))
        sample["num_procs"] = 0
        if network_mode != "host":
            nets = networks(pid)
            if nets:
                sample["networks"] = nets
        return sample

