"""labkit.quickjson: json's C parser and serializer without the json package (labkit-runc's
start-up). It must give what json gives, values, text and error messages alike."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from labkit import quickjson

DOCUMENTS = [
    '{"ociVersion": "1.0.2", "process": {"args": ["sh", "-c", "echo \\u00e9 \\"x\\""], '
    '"env": [], "user": {"uid": 0, "gid": 0}}, "linux": {"resources": {"memory": '
    '{"limit": 67108864, "swappiness": -1}, "cpu": {"shares": 1.5e3}}}, "x": [true, false, null]}',
    '  [] ', '"text"', "12", "-0.5", "1E+2", "NaN", "[Infinity, -Infinity]", '{"a": 1}\n\n',
    '{"a": {"a": {"a": "\\ud83d\\ude00"}}}', '{"k": 1, "k": 2}',
]


@pytest.mark.parametrize("text", DOCUMENTS)
def test_reads_what_json_reads(text):
    assert repr(quickjson.loads(text)) == repr(json.loads(text))
    assert repr(quickjson.loads(text.encode())) == repr(json.loads(text.encode()))


@pytest.mark.parametrize("text", ["", "   ", "{", '{"a" 1}', "[1,]", '{"a":1} x',
                                  '{"a":1}\n\n  x', "\n\n  x", '"\x01"', '"abc', "tru", "[1 2]"])
def test_errors_say_what_json_says(text):
    with pytest.raises(ValueError) as ours:
        quickjson.loads(text)
    with pytest.raises(ValueError) as theirs:
        json.loads(text)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("value", [
    {"a": [1, 2.5, "é\n\"\\", None, True, False, {}], "b": -3}, [], "x", 0, 1e300,
    {"id": "c1", "pid": 1234, "cgroup_paths": {"": "/sys/fs/cgroup/labkit/c1"}},
    {"k": float("inf")}, {1: "an int key"},
])
def test_writes_what_json_writes(value):
    assert quickjson.dumps(value) == json.dumps(value, separators=(",", ":"))
    assert quickjson.loads(quickjson.dumps(value)) == json.loads(json.dumps(value))


def test_refuses_what_json_refuses():
    with pytest.raises(TypeError, match="Object of type object is not JSON serializable"):
        quickjson.dumps({"a": object()})
    looped: list = []
    looped.append(looped)
    with pytest.raises(ValueError, match="Circular reference"):
        quickjson.dumps(looped)


def test_file_round_trip(tmp_path):
    path = tmp_path / "state.json"
    with open(path, "w") as f:
        quickjson.dump({"id": "c1", "annotations": {"é": "ü"}}, f)
    with open(path) as f:
        assert quickjson.load(f) == {"id": "c1", "annotations": {"é": "ü"}}


def test_errors_in_a_process_that_never_imported_json():
    """_json finds json.decoder's JSONDecodeError only among the modules already imported: in
    labkit-runc, where nothing imports json, a mistake must still be a ValueError in json's
    words, not a SystemError."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = ("import sys; from labkit import quickjson\n"
            "for text in ('{', '[1 2]', '\"\\x01\"', '{\"a\" 1}', ''):\n"
            "    try:\n"
            "        quickjson.loads(text)\n"
            "    except ValueError as e:\n"
            "        print(type(e).__name__, e)\n")
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=repo))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "JSONDecodeError Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        "JSONDecodeError Expecting ',' delimiter: line 1 column 4 (char 3)",
        "JSONDecodeError Invalid control character at: line 1 column 2 (char 1)",
        "JSONDecodeError Expecting ':' delimiter: line 1 column 6 (char 5)",
        "ValueError Expecting value: line 1 column 1 (char 0)"]
