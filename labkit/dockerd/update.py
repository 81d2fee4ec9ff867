"""`docker update`: new limits and restart policy for a container (moby's daemon/update.go).

    docker update -m 256m --pids-limit 50 --cpus 0.5 --restart on-failure:3 web
      POST /containers/web/update  {"Memory": 268435456, "PidsLimit": 50,
                                    "NanoCpus": 500000000, "RestartPolicy": {…}, …}
      1. merge: a field that is zero (or absent) keeps the container's value, as in moby —
         the CLI sends every field of the struct, set or not; PidsLimit is the exception
         (moby: a pointer): 0 or -1 sets "no limit"
      2. check the result as create does (oci.resources: the ranges, Nano CPUs against
         CPU period/quota; validate.check_restart_policy), so a bad value is a 400
      3. if it runs: Tasks.Update(linux.resources JSON) -> containerd -> shim.Update ->
         `<runtime> update --resources - <id>`: the runtime writes the cgroup files, and the
         kernel applies the new limits to the processes already running
      4. keep it: hostconfig.json (what inspect shows) and the spec in containerd's container
         record (Containers.Update), so the next task — a restart — starts with the new limits
      -> 200 {"Warnings": []}

The order is moby's: the running task first, then the records, so that a limit the kernel
refuses (a memory limit below what the container uses, say) changes nothing.
"""

from __future__ import annotations

import copy
import json

from labkit.dockerd import oci
from labkit.dockerd.errors import Conflict, InvalidParameter
from labkit.dockerd.remote import RemoteError, to_daemon_error
from labkit.dockerd.validate import HOST_CONFIG_TYPES, check_restart_policy, check_types
from labkit.wire.containerd import api_pb2 as pb
from google.protobuf import field_mask_pb2

# What `docker update` may change (moby's container.Resources plus RestartPolicy); a zero
# value means "unchanged".
RESOURCE_KEYS = ("Memory", "MemorySwap", "MemoryReservation", "CpuShares", "NanoCpus",
                 "CpuPeriod", "CpuQuota", "CpusetCpus", "CpusetMems", "BlkioWeight")


def merge(host_config: dict, update: dict) -> dict:
    """The HostConfig after `update` (a new dict; zero means unchanged, see the docstring)."""
    check_types(update, HOST_CONFIG_TYPES)
    merged = copy.deepcopy(host_config)
    for key in RESOURCE_KEYS:
        if update.get(key):
            merged[key] = update[key]
    if update.get("PidsLimit") is not None:
        merged["PidsLimit"] = update["PidsLimit"] if update["PidsLimit"] > 0 else 0
    # --cpus and --cpu-quota/--cpu-period replace each other, as in moby's update
    if update.get("NanoCpus") and (host_config.get("CpuQuota") or host_config.get("CpuPeriod")):
        raise Conflict("Conflicting options: Nano CPUs cannot be updated as CPU Period/Quota "
                       "has already been set")
    if (update.get("CpuQuota") or update.get("CpuPeriod")) and host_config.get("NanoCpus"):
        raise Conflict("Conflicting options: CPU Quota cannot be updated as NanoCPUs has "
                       "already been set")
    memory, swap = merged.get("Memory") or 0, merged.get("MemorySwap") or 0
    if update.get("Memory") and not update.get("MemorySwap") and swap > 0 and memory > swap:
        raise InvalidParameter("Memory limit should be smaller than already set memoryswap "
                               "limit, update the memoryswap at the same time")
    if swap > 0 and memory and swap < memory:
        raise InvalidParameter("Minimum memoryswap limit should be larger than memory limit, "
                               "see usage")
    policy = update.get("RestartPolicy") or {}
    if policy.get("Name"):
        merged["RestartPolicy"] = {"Name": policy["Name"],
                                   "MaximumRetryCount": policy.get("MaximumRetryCount") or 0}
        if merged.get("AutoRemove") and policy["Name"] != "no":
            raise InvalidParameter("Restart policy cannot be updated because AutoRemove is "
                                   "enabled for the container")
        check_restart_policy(merged)
    return merged


def task_resources(host_config: dict) -> dict:
    """linux.resources for a running task (oci.resources, which also checks the values),
    with "no limit" said outright where the old value must be undone."""
    try:
        resources = oci.resources(host_config)
    except ValueError as e:
        raise InvalidParameter(str(e)) from None
    resources.pop("devices", None)     # set once, at create: not an update's business
    resources.setdefault("pids", {"limit": -1})     # -1: "max" (no limit)
    return resources


class Update:
    """The Daemon's `docker update` (mixed into labkit.dockerd.daemon.Daemon)."""

    def container_update(self, ref: str, update: object) -> list[str]:
        if not isinstance(update, dict):
            raise InvalidParameter("invalid update config: expected a JSON object")
        with self._lock:
            c = self._get(ref)
            if c.State.Status == "removing" or c.State.Dead:
                raise Conflict(f"Container {c.ID} is marked for removal and cannot be "
                               "\"updated\"")
            merged = merge(c.HostConfig, update)
            resources = task_resources(merged)
            running = c.State.Running
        if running:
            try:
                self.ctr.call(self.ctr.tasks.Update, pb.UpdateTaskRequest(
                    container_id=c.ID, resources=json.dumps(resources).encode()))
            except RemoteError as e:
                if e.code != "NOT_FOUND":       # (not if it stopped meanwhile)
                    raise to_daemon_error(e) from None
        self._keep_spec(c.ID, merged)
        with self._lock:
            c.HostConfig = merged
            c.save(self.config.root)
        self._event(c, "update")
        return []

    def _keep_spec(self, cid: str, host_config: dict) -> None:
        """The new limits into the spec containerd keeps, for the next task (a restart)."""
        try:
            record = self.ctr.call(self.ctr.containers.Get,
                                   pb.GetContainerRequest(id=cid)).container
            spec = json.loads(record.spec)
            linux = spec.setdefault("linux", {})
            devices = (linux.get("resources") or {}).get("devices")
            new = oci.resources(host_config)
            if devices is not None:
                new["devices"] = devices
            linux["resources"] = new
            record.spec = json.dumps(spec).encode()
            self.ctr.call(self.ctr.containers.Update, pb.UpdateContainerRequest(
                container=record, update_mask=field_mask_pb2.FieldMask(paths=["spec"])))
        except RemoteError as e:
            raise to_daemon_error(e) from None
