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
