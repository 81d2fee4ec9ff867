"""JSON for a command that lives a few milliseconds: the json module's own C parser and
serializer (`_json`), without the json package around them.

labkit-runc is a new interpreter for every command the shim sends (create, start, delete,
state …), and reads or writes JSON in each of them (state.json, config.json, its log). The
json package costs such a command ~8 ms before it parses anything: json.decoder and
json.encoder import re (for the pure-Python fallbacks they keep beside the C code), and re
brings enum, functools and collections. That is as much as the whole work of `start`.
The parsing and the writing themselves are done in C either way: json.loads and json.dumps
hand plain data straight to the `_json` functions used here, so the results are the same,
byte for byte, as json.dumps(obj, separators=(",", ":")) and json.loads(text).

Plain data only (dict, list, str, int, float, bool, None), as in every file labkit-runc
reads: no object hooks, no indent (use json for a document meant for human eyes). Any other
labkit process, which lives long enough not to care, uses json.
"""

from __future__ import annotations

import _json


class _Rules:
    """What json.decoder.JSONDecoder() is, to the C scanner: the attributes it reads."""
    strict = True                 # no control characters inside strings
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict = {}

    @staticmethod
    def parse_constant(name: str) -> float:
        return float(name.replace("Infinity", "inf"))      # NaN, Infinity, -Infinity: as json


_scan = _json.make_scanner(_Rules)
_WHITESPACE = " \t\n\r"


def loads(text: str | bytes) -> object:
    """json.loads(text) for plain data; a ValueError says what and where."""
    if isinstance(text, (bytes, bytearray)):
        text = text.decode()
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        try:
            value, end = _scan(text, start)
        except SystemError:
            # Any other mistake _json reports as json.decoder.JSONDecodeError, which it looks
            # up among the modules already imported, never imports: so import it (only bad
            # input pays) and parse again, for that error with json's words.
            import json.decoder  # noqa: F401
            value, end = _scan(text, start)
    except StopIteration as e:                # json's words for it
        raise ValueError(f"Expecting value: {_where(text, e.value)}") from None
    finally:
        _Rules.memo.clear()                  # the scanner's cache of keys, as json clears it
    extra = len(text) - len(text[end:].lstrip(_WHITESPACE))
    if extra < len(text):
        raise ValueError(f"Extra data: {_where(text, extra)}")
    return value


def _where(text: str, at: int) -> str:
    line, column = text.count("\n", 0, at) + 1, at - text.rfind("\n", 0, at)
    return f"line {line} column {column} (char {at})"


def load(f) -> object:
    return loads(f.read())


def _refuse(obj: object) -> object:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def dumps(obj: object) -> str:
    """json.dumps(obj, separators=(",", ":")): compact, non-ASCII escaped."""
    encode = _json.make_encoder({}, _refuse, _json.encode_basestring_ascii, None,
                                ":", ",", False, False, True)
    return "".join(encode(obj, 0))


def dump(obj: object, f) -> None:
    f.write(dumps(obj))
