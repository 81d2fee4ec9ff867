"""labkit.wire.protowire and the shim's hand-declared messages put the same bytes on the wire as
the protobuf code generated from task.proto, events.proto and ttrpc.proto.

Two checks: every declaration has exactly the fields of the generated descriptor (names,
numbers, kinds, repeated, the sub-message's type), so a .proto edited without its declaration
fails here; and filled-in messages encoded by either side decode identically on the other.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from google.protobuf.descriptor import FieldDescriptor

from labkit.wire import protowire, ttrpc, ttrpc_pb2
from labkit.wire.shim import cgroups_v1_pb2, cgroups_v2_pb2, events_pb2, messages, task_pb2

KINDS = {FieldDescriptor.TYPE_STRING: "string", FieldDescriptor.TYPE_BYTES: "bytes",
         FieldDescriptor.TYPE_BOOL: "bool", FieldDescriptor.TYPE_INT32: "int32",
         FieldDescriptor.TYPE_INT64: "int64", FieldDescriptor.TYPE_UINT32: "uint32",
         FieldDescriptor.TYPE_UINT64: "uint64", FieldDescriptor.TYPE_ENUM: "enum",
         FieldDescriptor.TYPE_MESSAGE: "message"}

GENERATED = [getattr(task_pb2, name) for name in task_pb2.DESCRIPTOR.message_types_by_name] + \
    [getattr(events_pb2, name) for name in events_pb2.DESCRIPTOR.message_types_by_name] + \
    [getattr(ttrpc_pb2, name) for name in ttrpc_pb2.DESCRIPTOR.message_types_by_name] + \
    [getattr(m, name) for m in (cgroups_v1_pb2, cgroups_v2_pb2)
     for name in m.DESCRIPTOR.message_types_by_name]


def declared(generated) -> type[protowire.Message]:
    name, package = generated.DESCRIPTOR.name, generated.DESCRIPTOR.file.package
    if package == "ttrpc":
        return getattr(ttrpc, name)
    if package.startswith("io.containerd.cgroups."):     # V1Metrics, V2PidsStat …
        return getattr(messages, package.rpartition(".")[2].upper() + name)
    return getattr(messages, name)


@pytest.mark.parametrize("generated", GENERATED, ids=lambda g: g.DESCRIPTOR.full_name)
def test_declaration_matches_the_proto(generated):
    lite = declared(generated)
    assert lite.full_name == generated.DESCRIPTOR.full_name
    theirs = {f.number: (f.name, KINDS[f.type], f.is_repeated,
                         f.message_type.full_name if f.message_type else None)
              for f in generated.DESCRIPTOR.fields}
    ours = {f.number: (f.name, f.kind, f.repeated, f.message.full_name if f.message else None)
            for f in lite.FIELDS}
    assert ours == theirs


def test_status_enum_matches():
    for value in task_pb2.Status.values():
        assert messages.Status.Name(value) == task_pb2.Status.Name(value)
    assert messages.STOPPED == task_pb2.STOPPED and messages.CREATED == task_pb2.CREATED


WHEN = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)


def samples():
    """(generated message, the same as the shim declares it): every kind of field, set."""
    create = task_pb2.CreateTaskRequest(
        id="web", bundle="/run/b", terminal=True, stdin="/f/0", stdout="/f/1", stderr="ü/2",
        rootfs=[task_pb2.Mount(type="overlay", source="overlay", options=["lowerdir=/a", "ro"]),
                task_pb2.Mount(type="bind", source="/x", target="/y")],
        options=task_pb2.google_dot_protobuf_dot_any__pb2.Any(
            type_url="containerd.runc.v1.Options",
            value=task_pb2.RuncOptions(binary_name="runc", root="/r", systemd_cgroup=True).SerializeToString()))
    lite_create = messages.CreateTaskRequest(
        id="web", bundle="/run/b", terminal=True, stdin="/f/0", stdout="/f/1", stderr="ü/2",
        rootfs=[messages.Mount(type="overlay", source="overlay", options=["lowerdir=/a", "ro"]),
                messages.Mount(type="bind", source="/x", target="/y")],
        options=messages.Any(type_url="containerd.runc.v1.Options",
                             value=messages.RuncOptions(binary_name="runc", root="/r",
                                                        systemd_cgroup=True).SerializeToString()))
    yield create, lite_create
    state = task_pb2.StateResponse(id="web", pid=4294967295, status=task_pb2.STOPPED, exit_status=137)
    state.exited_at.FromDatetime(WHEN)
    lite_state = messages.StateResponse(id="web", pid=4294967295, status=messages.STOPPED, exit_status=137)
    lite_state.exited_at.FromDatetime(WHEN)
    yield state, lite_state
    yield (task_pb2.PidsResponse(processes=[task_pb2.ProcessInfo(pid=1), task_pb2.ProcessInfo(pid=300)]),
           messages.PidsResponse(processes=[messages.ProcessInfo(pid=1), messages.ProcessInfo(pid=300)]))
    event = events_pb2.ForwardRequest()
    event.envelope.namespace, event.envelope.topic = "moby", "/tasks/exit"
    event.envelope.timestamp.FromDatetime(datetime(1969, 12, 31, 23, 59, 59, tzinfo=timezone.utc))
    event.envelope.event.type_url, event.envelope.event.value = "containerd.events.TaskExit", b"\x08\x01"
    lite_event = messages.ForwardRequest()
    lite_event.envelope.namespace, lite_event.envelope.topic = "moby", "/tasks/exit"
    lite_event.envelope.timestamp.FromDatetime(datetime(1969, 12, 31, 23, 59, 59, tzinfo=timezone.utc))
    lite_event.envelope.event.type_url, lite_event.envelope.event.value = "containerd.events.TaskExit", b"\x08\x01"
    yield event, lite_event
    request = ttrpc_pb2.Request(service="s", method="m", payload=b"\x00\xff", timeout_nano=5 * 10**9,
                                metadata=[ttrpc_pb2.KeyValue(key="k", value="v")])
    yield request, ttrpc.Request(service="s", method="m", payload=b"\x00\xff", timeout_nano=5 * 10**9,
                                 metadata=[ttrpc.KeyValue(key="k", value="v")])
    response = ttrpc_pb2.Response(payload=b"")
    response.status.code, response.status.message = 5, "not found"
    lite_response = ttrpc.Response()
    lite_response.status.code, lite_response.status.message = 5, "not found"
    yield response, lite_response
    yield task_pb2.KillRequest(id="c", signal=9, all=True), messages.KillRequest(id="c", signal=9, all=True)
    v1 = cgroups_v1_pb2.Metrics(pids=cgroups_v1_pb2.PidsStat(current=3, limit=2**63))
    v1.memory.total_inactive_file, v1.memory.usage.usage = 4096, 2**40
    v1.blkio.io_service_bytes_recursive.add(op="Read", major=8, minor=0, value=512)
    v1.cpu.usage.total = 10**12
    lite_v1 = messages.V1Metrics(pids=messages.V1PidsStat(current=3, limit=2**63))
    lite_v1.memory.total_inactive_file, lite_v1.memory.usage.usage = 4096, 2**40
    lite_v1.blkio.io_service_bytes_recursive.append(
        messages.V1BlkIOEntry(op="Read", major=8, minor=0, value=512))
    lite_v1.cpu.usage.total = 10**12
    yield v1, lite_v1
    v2 = cgroups_v2_pb2.Metrics(io=cgroups_v2_pb2.IOStat(usage=[cgroups_v2_pb2.IOEntry(
        major=259, rbytes=7, wios=1)]))
    v2.memory.usage_limit, v2.cpu.usage_usec = 2**63, 5
    lite_v2 = messages.V2Metrics(io=messages.V2IOStat(usage=[messages.V2IOEntry(
        major=259, rbytes=7, wios=1)]))
    lite_v2.memory.usage_limit, lite_v2.cpu.usage_usec = 2**63, 5
    yield v2, lite_v2
    update = task_pb2.UpdateTaskRequest(id="c")
    update.resources.type_url, update.resources.value = "t/LinuxResources", b'{"pids":{"limit":9}}'
    lite_update = messages.UpdateTaskRequest(id="c")
    lite_update.resources.type_url, lite_update.resources.value = "t/LinuxResources", b'{"pids":{"limit":9}}'
    yield update, lite_update


@pytest.mark.parametrize("generated, lite", list(samples()), ids=lambda m: type(m).__name__)
def test_both_encoders_agree(generated, lite):
    data = generated.SerializeToString()
    assert lite.SerializeToString() == data
    assert type(lite).FromString(data) == lite
    assert type(generated).FromString(lite.SerializeToString()) == generated


def test_defaults_unknown_fields_and_errors():
    assert messages.StartRequest().SerializeToString() == b""
    assert messages.StateResponse().exited_at.ToDatetime() == datetime(1970, 1, 1)
    assert not messages.WaitResponse().HasField("exited_at")
    # a field this side does not know (a newer containerd) is skipped
    newer = task_pb2.StartRequest(id="a").SerializeToString() + protowire.encode_varint(99 << 3) + b"\x01"
    assert messages.StartRequest.FromString(newer).id == "a"
    assert protowire.encode_varint(300) == b"\xac\x02"
    assert protowire.encode_varint(-1) == b"\xff" * 9 + b"\x01"
    with pytest.raises(protowire.DecodeError):
        messages.StartRequest.FromString(b"\x0a\x05ab")          # 5 bytes announced, 2 there
    with pytest.raises(protowire.DecodeError):
        messages.StartRequest.FromString(b"\x08\x01")            # id is a string, not a varint
    with pytest.raises(AttributeError):
        messages.StartRequest(bogus=1)
