"""Protocol buffers by hand: the proto3 wire format for the few messages a shim speaks.

Theory of operation
-------------------
Why not google.protobuf? A shim lives as long as its container, one per container: whatever
it imports, every container pays for. The protobuf runtime (its C extension, its descriptor
pool, the generated modules) costs a Python process ~5 MB, more than half of what
containerd's own shim uses in all. The shim needs a dozen small messages, and their encoding
fits on one page, so labkit's shim encodes them itself (labkit.wire.shim.messages declares
them); containerd's side keeps the generated code. Both put the same bytes on the wire:
tests/shim/test_protowire.py checks every declaration against the .proto's own descriptors.

The wire format (https://protobuf.dev/programming-guides/encoding/): a message is a sequence
of fields, each a key followed by a value; fields at their default (0, "", False, empty) are
not sent at all (proto3). The key is a varint, `field_number << 3 | wire_type`::

    wire type 0  VARINT  int32, int64, uint32, uint64, bool, enum: base 128, 7 bits a byte,
                         least significant group first, high bit set on all but the last byte
                         (300 -> ac 02); a negative int32/int64 is its 64-bit two's complement
    wire type 2  LEN     string, bytes, a sub-message, a repeated one: a varint length, then
                         that many bytes
    wire type 1, 5       I64, I32: fixed 8 or 4 bytes (no field here uses them; skipped on read)

    CreateTaskResponse{pid: 300}   ->  08 ac 02     (field 1, VARINT; 300)
    StartRequest{id: "web"}        ->  0a 03 77 65 62   (field 1, LEN; 3 bytes "web")

A repeated field is its key and value again for every element. A reader skips the fields it
does not know, which is how old and new versions of a protocol understand each other.

The API is the part of generated protobuf classes the shim uses, so the code reads the same:
`Msg(field=value)`, attributes, `SerializeToString()`, `Msg.FromString(data)`,
`ParseFromString`, `HasField`, `CopyFrom`; Timestamp has FromDatetime/ToDatetime.
"""

from __future__ import annotations

from datetime import datetime, timezone

VARINT, I64, LEN, I32 = 0, 1, 2, 5

_SCALARS = {"string": "", "bytes": b"", "bool": False, "int32": 0, "int64": 0, "uint32": 0,
            "uint64": 0, "enum": 0}
_MASK64 = (1 << 64) - 1


class DecodeError(ValueError):
    """Bytes that are not a valid encoding of the message."""


def encode_varint(value: int) -> bytes:
    value &= _MASK64           # a negative number: its 64-bit two's complement (10 bytes)
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(data: bytes, pos: int) -> tuple[int, int]:
    """(value, position after it) of the varint at data[pos]."""
    result = shift = 0
    while True:
        if pos >= len(data):
            raise DecodeError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise DecodeError("varint longer than 10 bytes")


class Field:
    """One field of a message: name, number, kind ("string", "uint32", "message" …)."""

    __slots__ = ("name", "number", "kind", "message", "repeated")

    def __init__(self, name: str, number: int, kind: str, message: type | None = None,
                 repeated: bool = False):
        if kind not in _SCALARS and kind != "message":
            raise ValueError(f"field {name}: unknown kind {kind!r}")
        if repeated and kind not in ("string", "bytes", "message"):
            raise ValueError(f"field {name}: repeated {kind} (packed) is not supported")
        self.name, self.number, self.kind, self.message, self.repeated = \
            name, number, kind, message, repeated

    def default(self):
        if self.repeated:
            return []
        return None if self.kind == "message" else _SCALARS[self.kind]


class Message:
    """A proto3 message; subclasses list their FIELDS and their protobuf `full_name`."""

    FIELDS: tuple[Field, ...] = ()
    full_name = ""

    def __init__(self, **values):
        for f in self.FIELDS:
            object.__setattr__(self, f.name, f.default())
        for name, value in values.items():
            f = self._field(name)
            if f.repeated:
                value = list(value)
            elif f.kind == "message" and value is not None and not isinstance(value, f.message):
                raise TypeError(f"{type(self).__name__}.{name} takes a {f.message.__name__}")
            object.__setattr__(self, name, value)

    @classmethod
    def _field(cls, name: str) -> Field:
        for f in cls.FIELDS:
            if f.name == name:
                return f
        raise AttributeError(f"{cls.__name__} has no field {name!r}")

    def __getattribute__(self, name: str):
        value = object.__getattribute__(self, name)
        if value is None and not name.startswith("_"):
            # Reading a sub-message gives one to fill in, as generated code does
            # (`resp.exited_at.FromDatetime(t)`).
            for f in type(self).FIELDS:
                if f.name == name and f.kind == "message":
                    value = f.message()
                    object.__setattr__(self, name, value)
        return value

    def __setattr__(self, name: str, value) -> None:
        f = self._field(name)
        if f.kind == "message" and not f.repeated and value is not None:
            raise AttributeError(f"assign to the fields of {type(self).__name__}.{name}, "
                                 "or use CopyFrom, as with generated protobuf code")
        object.__setattr__(self, name, list(value) if f.repeated else value)

    def HasField(self, name: str) -> bool:
        self._field(name)
        return object.__getattribute__(self, name) is not None

    def CopyFrom(self, other: "Message") -> None:
        self.ParseFromString(other.SerializeToString())

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.SerializeToString() == other.SerializeToString()

    def __repr__(self) -> str:
        shown = []
        for f in self.FIELDS:
            value = object.__getattribute__(self, f.name)
            if value not in (None, [], _SCALARS.get(f.kind)):
                shown.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

    # -- encoding ---------------------------------------------------------------------------
    def SerializeToString(self) -> bytes:
        out = bytearray()
        for f in self.FIELDS:
            value = object.__getattribute__(self, f.name)
            for item in (value if f.repeated else (value,)):
                if f.kind == "message":
                    if item is None:
                        continue
                    data = item.SerializeToString()
                    out += encode_varint(f.number << 3 | LEN) + encode_varint(len(data)) + data
                elif f.kind in ("string", "bytes"):
                    if not item and not f.repeated:
                        continue
                    data = item.encode() if f.kind == "string" else bytes(item)
                    out += encode_varint(f.number << 3 | LEN) + encode_varint(len(data)) + data
                elif item:
                    out += encode_varint(f.number << 3 | VARINT) + encode_varint(int(item))
        return bytes(out)

    # -- decoding ---------------------------------------------------------------------------
    @classmethod
    def FromString(cls, data: bytes):
        message = cls()
        message.ParseFromString(data)
        return message

    def ParseFromString(self, data: bytes) -> None:
        for f in self.FIELDS:
            object.__setattr__(self, f.name, f.default())
        by_number = {f.number: f for f in self.FIELDS}
        data = bytes(data)
        pos = 0
        while pos < len(data):
            key, pos = decode_varint(data, pos)
            number, wire = key >> 3, key & 7
            if wire == VARINT:
                value, pos = decode_varint(data, pos)
            elif wire == LEN:
                size, pos = decode_varint(data, pos)
                if pos + size > len(data):
                    raise DecodeError(f"field {number}: {size} bytes announced, {len(data) - pos} left")
                value, pos = data[pos:pos + size], pos + size
            elif wire in (I64, I32):
                pos += 8 if wire == I64 else 4
                continue
            else:
                raise DecodeError(f"field {number}: wire type {wire} is not proto3's")
            f = by_number.get(number)
            if f is None:
                continue                                   # an unknown field: skip it
            expected = LEN if f.kind in ("string", "bytes", "message") else VARINT
            if wire != expected:
                raise DecodeError(f"{type(self).__name__}.{f.name}: wire type {wire}, expected {expected}")
            if f.kind == "message":
                value = f.message.FromString(value)
            elif f.kind == "string":
                try:
                    value = value.decode()
                except UnicodeDecodeError:
                    raise DecodeError(f"{type(self).__name__}.{f.name}: not UTF-8") from None
            elif f.kind == "bool":
                value = bool(value)
            elif f.kind in ("int32", "int64") and value >= 1 << 63:
                value -= 1 << 64
            elif f.kind == "uint32":
                value &= 0xFFFFFFFF
            if f.repeated:
                object.__getattribute__(self, f.name).append(value)
            else:
                object.__setattr__(self, f.name, value)


class Enum:
    """A proto enum's names and numbers: `Status.Name(3)` -> "STOPPED", `Status.Value("STOPPED")`."""

    def __init__(self, **values: int):
        self._values = values

    def Name(self, number: int) -> str:
        for name, value in self._values.items():
            if value == number:
                return name
        raise ValueError(f"no enum name for {number}")

    def Value(self, name: str) -> int:
        return self._values[name]


# -- the well-known types the shim protocol uses (google/protobuf/*.proto) --------------------

class Empty(Message):
    full_name = "google.protobuf.Empty"


class Any(Message):
    full_name = "google.protobuf.Any"
    FIELDS = (Field("type_url", 1, "string"), Field("value", 2, "bytes"))


class Timestamp(Message):
    full_name = "google.protobuf.Timestamp"
    FIELDS = (Field("seconds", 1, "int64"), Field("nanos", 2, "int32"))

    def FromDatetime(self, when: datetime) -> None:
        """A naive datetime is taken as UTC, as protobuf does."""
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        delta = when - datetime(1970, 1, 1, tzinfo=timezone.utc)
        self.seconds = delta.days * 86400 + delta.seconds
        self.nanos = delta.microseconds * 1000

    def ToDatetime(self, tzinfo=None) -> datetime:
        when = datetime.fromtimestamp(self.seconds, timezone.utc).replace(
            microsecond=self.nanos // 1000)
        return when.astimezone(tzinfo) if tzinfo is not None else when.replace(tzinfo=None)
