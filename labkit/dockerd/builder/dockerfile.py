"""Reading a Dockerfile: text in, instructions out (no I/O, nothing run).

Theory of operation
-------------------
The classic builder reads a Dockerfile in three passes, and so does this module:

1. **Parser directives** (`parse`): only at the very top, lines `# name=value` (`escape`,
   `syntax`). The first blank line, ordinary comment or instruction ends them. `# escape=``
   makes the backtick the escape character (for Windows paths); it defaults to `\\`.
2. **Logical lines**: a line ending with the escape character continues on the next one.
   Comment lines (`#` first) are dropped, even in the middle of a continued instruction, and so
   are empty lines there. Each logical line is one instruction: a keyword (any case), optional
   `--flag=value` words, and its arguments.
3. **Arguments**: RUN, CMD, ENTRYPOINT, COPY, ADD, VOLUME, SHELL and HEALTHCHECK CMD accept a
   JSON array (the *exec form*: `["echo", "hi"]`) or plain text (the *shell form*: `echo hi`,
   which the builder hands to `/bin/sh -c`). `Instruction.json` says which one it was.

Variables (`expand`, `words`) are substituted by the builder, not the parser, because their
values (ARG, ENV) change from step to step: `$name`, `${name}`, `${name:-default}` (default
when unset or empty), `${name:+alternative}` (alternative when set and not empty); inside
single quotes nothing is replaced; the escape character keeps a `$` literal. RUN, CMD and
ENTRYPOINT are never expanded here: their shell does it when the container runs.

Errors are `DockerfileError`, whose message names the line: "Dockerfile line 3: unknown
instruction: RUUN".
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

# Every instruction the classic builder knows, and which of them may take the exec form.
INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY",
                "ENTRYPOINT", "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL",
                "HEALTHCHECK", "SHELL"}
EXEC_FORM = {"RUN", "CMD", "ENTRYPOINT", "COPY", "ADD", "VOLUME", "SHELL"}
# The --flags each instruction accepts (the classic builder's set).
FLAGS = {"FROM": {"platform"}, "COPY": {"from", "chown", "chmod"}, "ADD": {"chown", "chmod"},
         "HEALTHCHECK": {"interval", "timeout", "start-period", "start-interval", "retries"}}
DIRECTIVES = {"escape", "syntax", "check"}

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9_-]*)\s*=\s*(.*?)\s*$")


class DockerfileError(ValueError):
    """A Dockerfile that cannot be read; the message names the line and what is wrong."""


@dataclass
class Instruction:
    """One instruction as written: `COPY --chown=1:1 a b` → cmd "COPY",
    flags {"chown": "1:1"}, args "a b" (or a list, for the exec form), line 4."""

    cmd: str                           # upper case
    args: str | list[str]              # the shell form's text, or the exec form's list
    line: int                          # where it starts (1-based)
    original: str                      # the logical line, continuation joined, for messages
    flags: dict[str, str] = field(default_factory=dict)
    json: bool = False                 # exec form

    def __str__(self) -> str:          # as `docker build` prints it: "RUN echo hi"
        return self.original


@dataclass
class Dockerfile:
    instructions: list[Instruction]
    directives: dict[str, str]
    escape: str = "\\"


def parse(text: str | bytes) -> Dockerfile:
    """The instructions of a Dockerfile (see the module docstring for the rules)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise DockerfileError(f"the Dockerfile is not UTF-8 text: {e}") from None
    lines = text.splitlines()
    directives, first = _directives(lines)
    escape = directives.get("escape", "\\")
    instructions: list[Instruction] = []
    i = first
    while i < len(lines):
        start = i
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = []
        while _continues(line, escape):
            parts.append(_strip_continuation(line, escape))
            # comment and empty lines inside a continued instruction are skipped
            while i < len(lines) and (not lines[i].strip() or lines[i].lstrip().startswith("#")):
                i += 1
            if i == len(lines):
                line = ""
                break
            line = lines[i]
            i += 1
        parts.append(line)
        instructions.append(_instruction("".join(parts).strip(), start + 1))
    if not instructions:
        raise DockerfileError("the Dockerfile has no instructions (file with no instructions)")
    first_real = next(x for x in instructions if x.cmd != "ARG")
    if first_real.cmd != "FROM":
        raise DockerfileError(f"Dockerfile line {first_real.line}: the first instruction must "
                              f"be FROM (only ARG may come before it), not {first_real.cmd}")
    return Dockerfile(instructions, directives, escape)


def _directives(lines: list[str]) -> tuple[dict[str, str], int]:
    found: dict[str, str] = {}
    for n, line in enumerate(lines):
        m = _DIRECTIVE.match(line.strip()) if line.strip() else None
        if not m or m.group(1).lower() not in DIRECTIVES:
            return found, n
        name, value = m.group(1).lower(), m.group(2)
        if name in found:
            raise DockerfileError(f"Dockerfile line {n + 1}: only one {name} parser directive "
                                  "can be used")
        if name == "escape" and value not in ("\\", "`"):
            raise DockerfileError(f"Dockerfile line {n + 1}: invalid escape token {value!r}: "
                                  "it must be \\ or `")
        found[name] = value
    return found, len(lines)


def _continues(line: str, escape: str) -> bool:
    return line.rstrip().endswith(escape) and not line.lstrip().startswith("#")


def _strip_continuation(line: str, escape: str) -> str:
    return line.rstrip()[:-1]


def _instruction(text: str, line: int) -> Instruction:
    keyword, rest = re.match(r"(\S+)\s*(.*)", text, re.S).groups()
    cmd = keyword.upper()
    if cmd not in INSTRUCTIONS:
        raise DockerfileError(f"Dockerfile line {line}: unknown instruction: {keyword}")
    rest = rest.strip()
    flags: dict[str, str] = {}
    while rest.startswith("--") and cmd in FLAGS:
        word, _, after = rest.partition(" ")
        name, eq, value = word[2:].partition("=")
        if name not in FLAGS[cmd]:
            raise DockerfileError(f"Dockerfile line {line}: unknown flag for {cmd}: --{name}")
        if not eq:
            raise DockerfileError(f"Dockerfile line {line}: --{name} needs a value "
                                  f"(--{name}=VALUE)")
        flags[name] = value
        rest = after.strip()
    if rest.startswith("--") and cmd not in FLAGS and cmd != "RUN":
        raise DockerfileError(f"Dockerfile line {line}: {cmd} takes no flags: "
                              f"{rest.split()[0]}")
    args: str | list[str] = rest
    exec_form = False
    if cmd in EXEC_FORM and rest.startswith("["):
        try:
            value = json.loads(rest)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            args, exec_form = value, True
    if cmd == "SHELL" and not exec_form:
        raise DockerfileError(f"Dockerfile line {line}: SHELL requires the arguments to be in "
                              'JSON form: SHELL ["executable", "parameters"]')
    if not rest and cmd not in ("CMD", "ENTRYPOINT", "RUN"):
        raise DockerfileError(f"Dockerfile line {line}: {cmd} requires at least one argument")
    return Instruction(cmd, args, line, f"{cmd} {text[len(keyword):].strip()}".strip(), flags,
                       exec_form)


# -- variables ------------------------------------------------------------------------------

def words(text: str, env: dict[str, str], escape: str = "\\") -> list[str]:
    """`text` split into words at unquoted blanks, quotes removed, variables expanded:
    `a="b c" $X` with X=1 → ["a=b c", "1"]. ENV, LABEL, ARG, COPY … arguments."""
    out: list[str] = []
    current: list[str] = []
    in_word = False
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in " \t\n":
            if in_word:
                out.append("".join(current))
                current, in_word = [], False
            i += 1
            continue
        in_word = True
        if ch == escape and i + 1 < len(text):
            current.append(text[i + 1])
            i += 2
        elif ch == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise DockerfileError(f"unexpected end of statement while looking for matching "
                                      f"single-quote in: {text}")
            current.append(text[i + 1:end])
            i = end + 1
        elif ch == '"':
            i = _double_quoted(text, i + 1, env, escape, current)
        elif ch == "$":
            value, i = _variable(text, i, env, escape)
            current.append(value)
        else:
            current.append(ch)
            i += 1
    if in_word:
        out.append("".join(current))
    return out


def expand(text: str, env: dict[str, str], escape: str = "\\") -> str:
    """`text` with its variables expanded and quotes removed, blanks kept as one word."""
    return " ".join(words(text, env, escape)) if text.strip() else ""


def _double_quoted(text: str, i: int, env: dict[str, str], escape: str, out: list[str]) -> int:
    while i < len(text):
        ch = text[i]
        if ch == '"':
            return i + 1
        if ch == escape and i + 1 < len(text) and text[i + 1] in ('"', "$", escape):
            out.append(text[i + 1])
            i += 2
        elif ch == "$":
            value, i = _variable(text, i, env, escape)
            out.append(value)
        else:
            out.append(ch)
            i += 1
    raise DockerfileError(f"unexpected end of statement while looking for matching "
                          f"double-quote in: {text}")


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _variable(text: str, i: int, env: dict[str, str], escape: str) -> tuple[str, int]:
    """The value of the variable at text[i] == "$", and where the text goes on."""
    if text.startswith("${", i):
        end = _closing_brace(text, i + 2)
        body = text[i + 2:end]
        m = _NAME.match(body)
        if not m:
            raise DockerfileError(f"bad substitution: ${{{body}}} in: {text}")
        name, rest = m.group(), body[m.end():]
        value = env.get(name)
        if rest == "":
            return value or "", end + 1
        if rest.startswith(":-"):
            return (value if value else expand(rest[2:], env, escape)), end + 1
        if rest.startswith(":+"):
            return (expand(rest[2:], env, escape) if value else ""), end + 1
        raise DockerfileError(f"unsupported modifier ({rest[:2]}) in substitution: "
                              f"${{{body}}} in: {text}")
    m = _NAME.match(text, i + 1)
    if not m:
        return "$", i + 1
    return env.get(m.group(), ""), m.end()


def _closing_brace(text: str, i: int) -> int:
    depth = 1
    while i < len(text):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise DockerfileError(f"missing '}}' in substitution in: {text}")


def key_values(text: str, env: dict[str, str], escape: str, what: str,
               line: int) -> list[tuple[str, str]]:
    """ENV and LABEL: `a=1 b="two words"` → [("a", "1"), ("b", "two words")]; the old form
    `ENV name some value` (no `=` in the first word) → [("name", "some value")]."""
    first = text.split(None, 1)
    if first and "=" not in first[0]:
        if len(first) < 2:
            raise DockerfileError(f"Dockerfile line {line}: {what} must have two arguments")
        return [(first[0], expand(first[1], env, escape))]
    pairs = []
    for word in words(text, env, escape):
        name, eq, value = word.partition("=")
        if not eq or not name:
            raise DockerfileError(f"Dockerfile line {line}: {what} names can not be blank "
                                  f"and need a value: {word!r} (expected name=value)")
        pairs.append((name, value))
    return pairs
