"""`--format`: the small part of Go's text/template that `docker inspect --format` users write.

Supported (everything else is a ValueError that says so, never a silently wrong answer):

    {{.State.Status}}            a field path from the top ("{{.}}" is the whole object)
    {{json .Config}}             the value as compact JSON (`{{json .}}` too)
    {{index .Config.Labels "k"}} a map key or list index that is not a Go identifier
    {{upper .Name}} {{lower …}}  case (docker's template functions)
    {{join .Config.Cmd " "}}     a list joined with a separator
    text outside {{ }}           as it is; "\\n" is not interpreted (as in Go)

Values print as Go prints them through the template: strings bare, true/false, integers
without a decimal point, a list as [a b], a map as map[k:v] with sorted keys, null as <nil>,
and a field that is absent as <no value>.
"""

from __future__ import annotations

import json
import re
import shlex

_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.S)
MISSING = object()


def go_string(value) -> str:
    """A value as text/template prints it."""
    if value is MISSING:
        return "<no value>"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_string(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, list):
        return "[" + " ".join(go_string(v) for v in value) + "]"
    return str(value)


def _lookup(obj, path: str):
    if path == ".":
        return obj
    if not path.startswith("."):
        raise ValueError(f"template: unsupported argument {path!r} (only .Field.Path and \"strings\")")
    for name in path[1:].split("."):
        if isinstance(obj, dict):
            obj = obj.get(name, MISSING)
        elif obj is MISSING or obj is None:
            return MISSING
        else:
            raise ValueError(f"template: can't evaluate field {name} in {go_string(obj)!r}")
    return obj


def _argument(obj, token: str):
    if token.startswith('"'):
        return json.loads(token)
    if token.lstrip("-").isdigit():
        return int(token)
    return _lookup(obj, token)


def _action(obj, text: str) -> str:
    words = shlex.split(text, posix=False)
    if not words:
        raise ValueError("template: empty action {{}}")
    if words[0].startswith("."):
        if len(words) != 1:
            raise ValueError(f"template: unsupported action {{{{{text}}}}}")
        return go_string(_lookup(obj, words[0]))
    fn, args = words[0], [_argument(obj, w) for w in words[1:]]
    if fn == "json" and len(args) == 1:
        return json.dumps(None if args[0] is MISSING else args[0], separators=(",", ":"))
    if fn == "index" and len(args) >= 2:
        value = args[0]
        for key in args[1:]:
            try:
                value = value[key]
            except (KeyError, IndexError, TypeError):
                return go_string(MISSING) if isinstance(value, dict) else "<nil>"
        return go_string(value)
    if fn in ("upper", "lower") and len(args) == 1:
        s = go_string(args[0])
        return s.upper() if fn == "upper" else s.lower()
    if fn == "join" and len(args) == 2:
        return args[1].join(go_string(v) for v in (args[0] or []))
    raise ValueError(f"template: unsupported action {{{{{text}}}}}: labkit supports .Field.Path, "
                     "json, index, upper, lower and join")


def render(template: str, obj) -> str:
    """Render `template` for `obj` (a decoded inspect answer)."""
    out, pos = [], 0
    for m in _ACTION.finditer(template):
        out.append(template[pos:m.start()])
        out.append(_action(obj, m.group(1)))
        pos = m.end()
    out.append(template[pos:])
    return "".join(out)
