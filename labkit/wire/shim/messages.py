"""The shim protocol's messages for the shim itself: task.proto and events.proto, by hand.

The same messages as task_pb2 and events_pb2 (generated from task.proto and events.proto,
which containerd's side uses), declared for labkit.wire.protowire, so that labkit-shim -- one
process per container -- does not load the protobuf runtime at all (protowire's docstring has
the numbers). Each class is a message of the .proto with the same name, fields, numbers and
kinds: tests/shim/test_protowire.py compares every one with the generated descriptors and
round-trips messages between the two encoders.

    messages.CreateTaskResponse(pid=42).SerializeToString()  ==
        task_pb2.CreateTaskResponse(pid=42).SerializeToString()
"""

from __future__ import annotations

from labkit.wire.protowire import Any, Empty, Enum, Field, Message, Timestamp

__all__ = ["Any", "Empty", "Timestamp", "Status", "UNKNOWN", "CREATED", "RUNNING", "STOPPED",
           "PAUSED", "PAUSING"]

# -- containerd.task.v2 (task.proto) ----------------------------------------------------------

Status = Enum(UNKNOWN=0, CREATED=1, RUNNING=2, STOPPED=3, PAUSED=4, PAUSING=5)
UNKNOWN, CREATED, RUNNING, STOPPED, PAUSED, PAUSING = range(6)


def _message(full_name: str, *fields: Field) -> type[Message]:
    name = full_name.rpartition(".")[2]
    cls = type(name, (Message,), {"full_name": full_name, "FIELDS": fields, "__module__": __name__})
    globals()[name] = cls
    __all__.append(name)
    return cls


def _s(name: str, number: int) -> Field:
    return Field(name, number, "string")


def _u(name: str, number: int) -> Field:
    return Field(name, number, "uint32")


def _b(name: str, number: int) -> Field:
    return Field(name, number, "bool")


def _ts(name: str, number: int) -> Field:
    return Field(name, number, "message", Timestamp)


T = "containerd.task.v2."
Mount = _message(T + "Mount", _s("type", 1), _s("source", 2), _s("target", 3),
                 Field("options", 4, "string", repeated=True))
ProcessInfo = _message(T + "ProcessInfo", _u("pid", 1), Field("info", 2, "message", Any))
RuncOptions = _message(T + "RuncOptions", _b("no_pivot_root", 1), _b("no_new_keyring", 2),
                       _s("shim_cgroup", 3), _u("io_uid", 4), _u("io_gid", 5),
                       _s("binary_name", 6), _s("root", 7), _b("systemd_cgroup", 9),
                       _s("criu_image_path", 10), _s("criu_work_path", 11))
CreateTaskRequest = _message(T + "CreateTaskRequest", _s("id", 1), _s("bundle", 2),
                             Field("rootfs", 3, "message", Mount, repeated=True),
                             _b("terminal", 4), _s("stdin", 5), _s("stdout", 6), _s("stderr", 7),
                             _s("checkpoint", 8), _s("parent_checkpoint", 9),
                             Field("options", 10, "message", Any), _s("oom_path", 11))
CreateTaskResponse = _message(T + "CreateTaskResponse", _u("pid", 1))
DeleteRequest = _message(T + "DeleteRequest", _s("id", 1), _s("exec_id", 2))
DeleteResponse = _message(T + "DeleteResponse", _u("pid", 1), _u("exit_status", 2),
                          _ts("exited_at", 3))
ExecProcessRequest = _message(T + "ExecProcessRequest", _s("id", 1), _s("exec_id", 2),
                              _b("terminal", 3), _s("stdin", 4), _s("stdout", 5), _s("stderr", 6),
                              Field("spec", 7, "message", Any))
StateRequest = _message(T + "StateRequest", _s("id", 1), _s("exec_id", 2))
StateResponse = _message(T + "StateResponse", _s("id", 1), _s("bundle", 2), _u("pid", 3),
                         Field("status", 4, "enum"), _s("stdin", 5), _s("stdout", 6),
                         _s("stderr", 7), _b("terminal", 8), _u("exit_status", 9),
                         _ts("exited_at", 10), _s("exec_id", 11))
KillRequest = _message(T + "KillRequest", _s("id", 1), _s("exec_id", 2), _u("signal", 3),
                       _b("all", 4))
ResizePtyRequest = _message(T + "ResizePtyRequest", _s("id", 1), _s("exec_id", 2),
                            _u("width", 3), _u("height", 4))
CloseIORequest = _message(T + "CloseIORequest", _s("id", 1), _s("exec_id", 2), _b("stdin", 3))
PidsRequest = _message(T + "PidsRequest", _s("id", 1))
PauseRequest = _message(T + "PauseRequest", _s("id", 1))
ResumeRequest = _message(T + "ResumeRequest", _s("id", 1))
PidsResponse = _message(T + "PidsResponse", Field("processes", 1, "message", ProcessInfo,
                                                  repeated=True))
StartRequest = _message(T + "StartRequest", _s("id", 1), _s("exec_id", 2))
StartResponse = _message(T + "StartResponse", _u("pid", 1))
WaitRequest = _message(T + "WaitRequest", _s("id", 1), _s("exec_id", 2))
WaitResponse = _message(T + "WaitResponse", _u("exit_status", 1), _ts("exited_at", 2))
ConnectRequest = _message(T + "ConnectRequest", _s("id", 1))
ConnectResponse = _message(T + "ConnectResponse", _u("shim_pid", 1), _u("task_pid", 2),
                           _s("version", 3))
ShutdownRequest = _message(T + "ShutdownRequest", _s("id", 1), _b("now", 2))
UpdateTaskRequest = _message(T + "UpdateTaskRequest", _s("id", 1),
                             Field("resources", 2, "message", Any))
StatsRequest = _message(T + "StatsRequest", _s("id", 1))
StatsResponse = _message(T + "StatsResponse", Field("stats", 1, "message", Any))


# -- io.containerd.cgroups.v1 and .v2 (cgroups_v1.proto, cgroups_v2.proto): Stats' payload ----

def _u64s(names: str, first: int = 1) -> tuple[Field, ...]:
    """uint64 fields numbered from `first` in the order named (memory.stat's long lists)."""
    return tuple(Field(n, i, "uint64") for i, n in enumerate(names.split(), first))


def _m(name: str, number: int, message: type[Message], repeated: bool = False) -> Field:
    return Field(name, number, "message", message, repeated=repeated)


def _cgroup_message(full_name: str, *fields: Field) -> type[Message]:
    """As _message, under the module-level name <V1|V2><Name> (both versions have a
    Metrics, a PidsStat …)."""
    version, name = full_name.split(".")[-2:]
    cls = type(name, (Message,), {"full_name": full_name, "FIELDS": fields,
                                  "__module__": __name__})
    alias = version.upper() + name
    globals()[alias] = cls
    __all__.append(alias)
    return cls


C1 = "io.containerd.cgroups.v1."
_v1_entry = _cgroup_message(C1 + "MemoryEntry", *_u64s("limit usage max failcnt"))
_v1_blkio_entry = _cgroup_message(C1 + "BlkIOEntry", _s("op", 1), _s("device", 2),
                                  *_u64s("major minor value", 3))
_cgroup_message(C1 + "Metrics",
                _m("pids", 2, _cgroup_message(C1 + "PidsStat", *_u64s("current limit"))),
                _m("cpu", 3, _cgroup_message(
                    C1 + "CPUStat",
                    _m("usage", 1, _cgroup_message(C1 + "CPUUsage",
                                                   *_u64s("total kernel user"))),
                    _m("throttling", 2, _cgroup_message(
                        C1 + "Throttle", *_u64s("periods throttled_periods throttled_time"))))),
                _m("memory", 4, _cgroup_message(
                    C1 + "MemoryStat",
                    *_u64s("cache rss rss_huge mapped_file dirty writeback pg_pg_in pg_pg_out "
                           "pg_fault pg_maj_fault inactive_anon active_anon inactive_file "
                           "active_file unevictable hierarchical_memory_limit "
                           "hierarchical_swap_limit total_cache total_rss total_rss_huge "
                           "total_mapped_file total_dirty total_writeback total_pg_pg_in "
                           "total_pg_pg_out total_pg_fault total_pg_maj_fault "
                           "total_inactive_anon total_active_anon total_inactive_file "
                           "total_active_file total_unevictable"),
                    _m("usage", 33, _v1_entry), _m("swap", 34, _v1_entry),
                    _m("kernel", 35, _v1_entry), _m("kernel_tcp", 36, _v1_entry))),
                _m("blkio", 5, _cgroup_message(
                    C1 + "BlkIOStat",
                    *(_m(name, i, _v1_blkio_entry, repeated=True) for i, name in enumerate(
                        "io_service_bytes_recursive io_serviced_recursive io_queued_recursive "
                        "io_service_time_recursive io_wait_time_recursive io_merged_recursive "
                        "io_time_recursive sectors_recursive".split(), 1)))),
                _m("memory_oom_control", 9, _cgroup_message(
                    C1 + "MemoryOomControl", *_u64s("oom_kill_disable under_oom oom_kill"))))

C2 = "io.containerd.cgroups.v2."
_cgroup_message(C2 + "Metrics",
                _m("pids", 1, _cgroup_message(C2 + "PidsStat", *_u64s("current limit"))),
                _m("cpu", 2, _cgroup_message(
                    C2 + "CPUStat", *_u64s("usage_usec user_usec system_usec nr_periods "
                                           "nr_throttled throttled_usec"))),
                _m("memory", 4, _cgroup_message(
                    C2 + "MemoryStat",
                    *_u64s("anon file kernel_stack slab sock shmem file_mapped file_dirty "
                           "file_writeback anon_thp inactive_anon active_anon inactive_file "
                           "active_file unevictable slab_reclaimable slab_unreclaimable pgfault "
                           "pgmajfault"),
                    *_u64s("usage usage_limit swap_usage swap_limit", 32))),
                _m("io", 6, _cgroup_message(C2 + "IOStat", _m("usage", 1, _cgroup_message(
                    C2 + "IOEntry", *_u64s("major minor rbytes wbytes rios wios")),
                    repeated=True))),
                _m("memory_events", 8, _cgroup_message(
                    C2 + "MemoryEvents", *_u64s("low high max oom oom_kill"))))

# -- containerd.events (events.proto) ---------------------------------------------------------

E = "containerd.events."
TaskIO = _message(E + "TaskIO", _s("stdin", 1), _s("stdout", 2), _s("stderr", 3),
                  _b("terminal", 4))
TaskCreate = _message(E + "TaskCreate", _s("container_id", 1), _s("bundle", 2),
                      Field("io", 4, "message", TaskIO), _s("checkpoint", 5), _u("pid", 6))
TaskStart = _message(E + "TaskStart", _s("container_id", 1), _u("pid", 2))
TaskDelete = _message(E + "TaskDelete", _s("container_id", 1), _u("pid", 2),
                      _u("exit_status", 3), _ts("exited_at", 4), _s("id", 5))
TaskExit = _message(E + "TaskExit", _s("container_id", 1), _s("id", 2), _u("pid", 3),
                    _u("exit_status", 4), _ts("exited_at", 5))
TaskPaused = _message(E + "TaskPaused", _s("container_id", 1))
TaskResumed = _message(E + "TaskResumed", _s("container_id", 1))
TaskExecAdded = _message(E + "TaskExecAdded", _s("container_id", 1), _s("exec_id", 2))
TaskExecStarted = _message(E + "TaskExecStarted", _s("container_id", 1), _s("exec_id", 2),
                           _u("pid", 3))
Envelope = _message(E + "Envelope", _ts("timestamp", 1), _s("namespace", 2), _s("topic", 3),
                    Field("event", 4, "message", Any))
ForwardRequest = _message(E + "ForwardRequest", Field("envelope", 1, "message", Envelope))
