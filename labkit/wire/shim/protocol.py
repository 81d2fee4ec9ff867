"""Names and constants of the shim v2 protocol, which both containerd and a shim must agree on.

A shim serves SERVICE on its socket; containerd serves EVENTS_SERVICE on <its socket>.ttrpc,
where shims forward their events, each under its topic (TOPICS). Errors are gRPC status codes
(labkit.wire.ttrpc.Code) with a message: ShimError, on both sides of the wire.
"""

from __future__ import annotations

from labkit.wire.ttrpc import RPCError

# The ttrpc service every shim v2 serves (containerd's api/runtime/task/v2/shim.proto).
SERVICE = "containerd.task.v2.Task"
# The ttrpc service containerd serves for its shims' events, and the metadata key that names
# the namespace on a ttrpc call (gRPC calls use "containerd-namespace").
EVENTS_SERVICE = "containerd.services.events.ttrpc.v1.Events"
TTRPC_NAMESPACE_KEY = "containerd-namespace-ttrpc"

# How containerd wraps an exec's OCI process spec in ExecProcessRequest.spec (a JSON Any).
PROCESS_SPEC_URL = "types.containerd.io/opencontainers/runtime-spec/1/Process"
# How containerd wraps the runtime options in CreateTaskRequest.options (task_pb2.RuncOptions:
# binary_name, root …): the runc shim's options message.
RUNC_OPTIONS_URL = "containerd.runc.v1.Options"
# How containerd wraps the new limits in UpdateTaskRequest.resources: the OCI
# linux.resources object as JSON (`docker update` -> Tasks.Update -> the shim's Update).
LINUX_RESOURCES_URL = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"
# What a shim's Stats answer holds, by the host's cgroup version: the message's full name is
# its type URL (cgroups_v1.proto, cgroups_v2.proto). containerd passes it on unopened.
METRICS_V1_URL = "io.containerd.cgroups.v1.Metrics"
METRICS_V2_URL = "io.containerd.cgroups.v2.Metrics"

# cgroup v1's memory.stat names that the v1 Metrics message spells otherwise (the shim reads
# the kernel's names into the message; dockerd shows the kernel's names again, as moby does).
V1_MEMORY_STAT_FIELDS = {"pgpgin": "pg_pg_in", "pgpgout": "pg_pg_out", "pgfault": "pg_fault",
                         "pgmajfault": "pg_maj_fault", "total_pgpgin": "total_pg_pg_in",
                         "total_pgpgout": "total_pg_pg_out", "total_pgfault": "total_pg_fault",
                         "total_pgmajfault": "total_pg_maj_fault",
                         "hierarchical_memsw_limit": "hierarchical_swap_limit"}

# The topic each task event is published under, by the event's protobuf name (which is also
# the type URL of the Any that carries it in an Envelope).
TOPICS = {
    "containerd.events.TaskCreate": "/tasks/create",
    "containerd.events.TaskStart": "/tasks/start",
    "containerd.events.TaskExit": "/tasks/exit",
    "containerd.events.TaskDelete": "/tasks/delete",
    "containerd.events.TaskExecAdded": "/tasks/exec-added",
    "containerd.events.TaskExecStarted": "/tasks/exec-started",
    "containerd.events.TaskPaused": "/tasks/paused",
    "containerd.events.TaskResumed": "/tasks/resumed",
}


class ShimError(RPCError):
    """An error a shim returns: a gRPC status code and a message (see labkit.wire.ttrpc.Code)."""
