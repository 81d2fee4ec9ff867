"""Student workspaces: the reference source with its solution regions turned into exercises.

Theory of operation
-------------------
The reference code *is* the answer key. Exercise regions are marked in it with two comment
lines, and a student's workspace is generated from it -- never maintained by hand -- so the
exercises and their solutions cannot drift apart.

Marking a region (in any module of `labkit/`)::

    def sethostname(name: str) -> None:
        '''Give the new UTS namespace its own name.'''
        # BEGIN SOLUTION hint="sethostname(2): a name of at most 64 bytes, no NUL"
        # HINT: Python has it already: socket.sethostname
        # TODO: set this UTS namespace's hostname
        socket.sethostname(name)
        # END SOLUTION

Inside the region, the comment lines that come first and start with `# HINT:` or `# TODO:`
are kept for the student (a `hint="…"` on the BEGIN line is one more HINT, a `todo="…"` the
TODO); every other line of the region is the solution and is removed. The workspace gets::

    def sethostname(name: str) -> None:
        '''Give the new UTS namespace its own name.'''
        # TODO: set this UTS namespace's hostname
        # HINT: sethostname(2): a name of at most 64 bytes, no NUL
        # HINT: Python has it already: socket.sethostname
        raise NotImplementedError("exercise in sethostname() (labkit_student/...): ...")

with the indentation of the BEGIN line. That is a region *inside a function* (the usual kind).
A region at module or class level cannot raise (the module would no longer import), so there
each definition it holds is kept as a stub: decorators, signature and docstring stay, the body
becomes TODO + HINT + raise NotImplementedError; a class keeps its header and docstring and its
methods become stubs; an assignment `NAME = …` becomes `NAME = None  # TODO`; other statements
are dropped. Every generated file is checked with compile(): a workspace always imports, and a
fresh workspace fails every checkpoint with NotImplementedError, never with an ImportError.

Layout of a workspace DIR
    DIR/labkit_student/          a mirror of `labkit/` (without labkit/course, the grading machinery)
    DIR/bin/labkit-runc, …       wrapper scripts running the workspace's programs, for the process
                                 layers whose reference exists (see labkit.lab.implementations)
    DIR/.labkit-workspace.json   the manifest: a sha256 for every generated file
    DIR/.backup/<time>/          the student's edited files, saved before `--force` replaced them

Imports: inside one package of labkit (runc/, shim/, containerd/ …) the modules import each other
absolutely (`from labkit.runc.container import Container`). In the workspace those imports are
pointed at the student's own package (`from labkit_student.runc.container import …`), so the
student's runtime runs the student's init; imports of *other* packages (`from labkit import
syscalls`, `from labkit.client import Client`) stay on the reference. Choosing the workspace for
one layer therefore leaves every other layer on the reference. (Only import statements are
rewritten, and `import labkit.x.y` without `as` is left alone: it binds the name `labkit`.)

Regenerating is idempotent: files the student has not touched are brought up to date; a file
the student *has* edited (its hash differs from the manifest, or it was there before the
manifest) is never overwritten -- the generator refuses, naming the files, unless `force=True`,
which first copies them to DIR/.backup/<time>/.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import sys
import time
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

from labkit.lab.implementations import LAYERS, STUDENT_PACKAGE

REFERENCE_PACKAGE = Path(__file__).resolve().parent.parent   # the `labkit` package directory
MANIFEST = ".labkit-workspace.json"
BACKUPS = ".backup"
# The grading machinery is not an exercise; everything else of the reference is mirrored.
EXCLUDED_DIRS = {"__pycache__", "course"}
EXCLUDED_SUFFIXES = {".pyc", ".pyo"}

_BEGIN = re.compile(r"#\s*BEGIN SOLUTION\b(?P<attrs>.*)$")
_END = re.compile(r"#\s*END SOLUTION\b\s*$")
_ATTR = re.compile(r'\s*(?P<key>\w+)="(?P<value>(?:[^"\\]|\\.)*)"')
_KEPT = re.compile(r"#\s*(?P<kind>HINT|TODO):?\s?(?P<text>.*)$")


class WorkspaceError(Exception):
    """Generation refused or impossible; the message names the file (and line) and what to do."""


@dataclass
class Exercise:
    """One stripped region, as the student sees it."""

    file: str                  # path inside the workspace, e.g. labkit_student/syscalls.py
    line: int                  # line of its TODO in the generated file
    function: str | None       # the enclosing function (or the stubbed definition), if any
    hints: list[str] = field(default_factory=list)
    chapter: str | None = None  # the syllabus chapter it belongs to (`chapter="01"` on BEGIN)


@dataclass
class WorkspaceReport:
    dest: Path
    package: Path                                       # DEST/labkit_student
    written: list[str] = field(default_factory=list)    # created or brought up to date
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)    # generated before, gone from the reference
    kept: list[str] = field(default_factory=list)       # the student's files the reference dropped
    backup: Path | None = None                          # where --force saved edited files
    exercises: list[Exercise] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"workspace {self.dest}: {len(self.exercises)} exercises, "
                 f"{len(self.written)} files written, {len(self.unchanged)} unchanged"
                 + (f", {len(self.removed)} removed" if self.removed else "")]
        lines += [f"  exercise {e.file}:{e.line}" + (f"  {e.function}" if e.function else "")
                  for e in self.exercises]
        if self.backup:
            lines.append(f"your edited files were saved under {self.backup}")
        lines += [f"kept {rel}: the reference no longer has it, and you edited it" for rel in self.kept]
        lines += [f"warning: {w}" for w in self.warnings]
        from labkit.course import syllabus
        for c in syllabus.chapters():
            if c.written and c.layer:
                lines.append(f"chapter {c.number} ({c.title}): put your code under docker run "
                             f"with `labkit lab use {c.layer} workspace:{self.dest}`")
        return "\n".join(lines)


# -- stripping one module ---------------------------------------------------------------------

@dataclass
class _Region:
    begin: int                  # 1-based line numbers of the marker comments
    end: int
    indent: str
    hints: list[str]
    todo: str | None
    body_start: int             # first line of the solution proper (after kept comments)
    chapter: str | None = None


def _find_regions(source: str, filename: str) -> list[_Region]:
    """Find the marker pairs among the real comments (tokenize: a docstring quoting a marker is no marker)."""
    lines = source.splitlines()
    regions: list[_Region] = []
    open_at: int | None = None
    attrs: dict[str, str] = {}
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError) as e:
        raise WorkspaceError(f"{filename}: cannot be tokenized: {e}") from None
    for tok in tokens:
        if tok.type != tokenize.COMMENT:
            continue
        row, col = tok.start
        own_line = lines[row - 1][:col].strip() == ""
        if m := _BEGIN.match(tok.string):
            if not own_line:
                raise WorkspaceError(f"{filename}:{row}: '# BEGIN SOLUTION' must be alone on its line")
            if open_at is not None:
                raise WorkspaceError(f"{filename}:{row}: solution regions cannot nest "
                                     f"(the region opened at line {open_at} is still open)")
            open_at, attrs = row, _parse_attrs(m.group("attrs"), filename, row)
        elif _END.match(tok.string):
            if not own_line:
                raise WorkspaceError(f"{filename}:{row}: '# END SOLUTION' must be alone on its line")
            if open_at is None:
                raise WorkspaceError(f"{filename}:{row}: '# END SOLUTION' without a BEGIN")
            regions.append(_region(lines, open_at, row, attrs))
            open_at = None
    if open_at is not None:
        raise WorkspaceError(f"{filename}:{open_at}: '# BEGIN SOLUTION' is never closed by '# END SOLUTION'")
    return regions


def _parse_attrs(text: str, filename: str, row: int) -> dict[str, str]:
    attrs: dict[str, str] = {}
    rest = text.strip()
    while rest:
        m = _ATTR.match(rest)
        if not m or m.group("key") not in ("hint", "todo", "chapter"):
            raise WorkspaceError(f'{filename}:{row}: cannot read {rest!r} after BEGIN SOLUTION '
                                 '(expected chapter="NN", hint="…" or todo="…")')
        attrs[m.group("key")] = m.group("value").replace('\\"', '"')
        rest = rest[m.end():].strip()
    return attrs


def _region(lines: list[str], begin: int, end: int, attrs: dict[str, str]) -> _Region:
    marker = lines[begin - 1]
    indent = marker[: len(marker) - len(marker.lstrip())]
    hints = [attrs["hint"]] if "hint" in attrs else []
    todo = attrs.get("todo")
    row = begin + 1
    # The comment lines that open the region and say HINT/TODO are the student's; the rest is solution.
    while row < end:
        text = lines[row - 1].strip()
        m = _KEPT.match(text)
        if text == "":
            row += 1
            continue
        if not m:
            break
        if m.group("kind") == "HINT":
            hints.append(m.group("text").strip())
        else:
            todo = m.group("text").strip() if todo is None else f"{todo} {m.group('text').strip()}"
        row += 1
    return _Region(begin, end, indent, hints, todo, row, attrs.get("chapter"))


def _enclosing(tree: ast.AST, line: int) -> list[ast.AST]:
    """The chain of defs/classes (outermost first) whose body contains `line`."""
    chain: list[ast.AST] = []
    node: ast.AST = tree
    while True:
        inner = [n for n in ast.iter_child_nodes(node) if _contains(n, line)]
        if not inner:
            return chain
        node = inner[0]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            chain.append(node)


def _contains(node: ast.AST, line: int) -> bool:
    start, end = getattr(node, "lineno", None), getattr(node, "end_lineno", None)
    if start is None or end is None:
        return False
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.decorator_list:
        start = node.decorator_list[0].lineno
    return start < line <= end if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                    ast.ClassDef)) else start <= line <= end


def _raise_line(indent: str, what: str, relpath: str) -> str:
    message = f"exercise in {what} ({relpath}): not done yet -- see its TODO and HINT lines"
    return f"{indent}raise NotImplementedError({message!r})"


def _comment_lines(indent: str, todo: str, hints: list[str]) -> list[str]:
    return [f"{indent}# TODO: {todo}"] + [f"{indent}# HINT: {h}" for h in hints]


def strip_solutions(source: str, filename: str, relpath: str | None = None, *,
                    solved: frozenset[str] = frozenset()) -> tuple[str, list[Exercise]]:
    """Turn every solution region of one module into an exercise; return (new source, exercises).

    `filename` names the reference file in error messages, `relpath` the generated file in the
    exercises and NotImplementedError messages. The regions of the chapters in `solved` keep
    their solution (a workspace where those chapters are done: see `solve_chapters`). The
    result is checked with compile().
    """
    relpath = relpath or filename
    regions = [r for r in _find_regions(source, filename) if r.chapter not in solved]
    if not regions:
        return source, []
    try:
        tree = ast.parse(source, filename)
    except SyntaxError as e:
        raise WorkspaceError(f"{filename}:{e.lineno}: the reference does not parse: {e.msg}") from None
    lines = source.splitlines()
    out: list[str] = []
    exercises: list[Exercise] = []
    cursor = 1
    for region in regions:
        out.extend(lines[cursor - 1: region.begin - 1])
        chain = _enclosing(tree, region.begin)
        scope = chain[-1] if chain else None
        if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)):
            qualname = ".".join(n.name for n in chain) + "()"   # type: ignore[attr-defined]
            todo = region.todo or f"write this part of {qualname}"
            exercises.append(Exercise(relpath, len(out) + 1, qualname, list(region.hints),
                                      region.chapter))
            out.extend(_comment_lines(region.indent, todo, region.hints))
            out.append(_raise_line(region.indent, qualname, relpath))
        else:
            prefix = ".".join(n.name for n in chain)   # type: ignore[attr-defined]
            out.extend(_stub_region(lines, region, prefix, filename, relpath, len(out), exercises))
        cursor = region.end + 1
    out.extend(lines[cursor - 1:])
    text = "\n".join(out) + ("\n" if source.endswith("\n") else "")
    try:
        compile(text, relpath, "exec", dont_inherit=True)
    except SyntaxError as e:
        raise WorkspaceError(f"{filename}: stripping the solution regions leaves invalid Python "
                             f"(generated line {e.lineno}: {e.msg}); check the markers around it") from None
    return text, exercises


def _stub_region(lines: list[str], region: _Region, prefix: str, filename: str, relpath: str,
                 out_len: int, exercises: list[Exercise]) -> list[str]:
    """A module- or class-level region: keep each definition's outline, stub its body."""
    body = lines[region.body_start - 1: region.end - 1]
    width = len(region.indent)
    for n, line in enumerate(body):
        if line.strip() and not line.startswith(region.indent):
            raise WorkspaceError(f"{filename}:{region.body_start + n}: a line of the solution region "
                                 "is indented less than its '# BEGIN SOLUTION'")
    code = [line[width:] for line in body]
    try:
        module = ast.parse("\n".join(code) + "\n", filename)
    except SyntaxError as e:
        raise WorkspaceError(f"{filename}:{region.body_start - 1 + (e.lineno or 1)}: a solution region "
                             "outside a function must hold whole statements") from None
    defs = [s for s in module.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))]
    single = len(module.body) == 1 and len(defs) == 1
    todo = region.todo or "write the definitions below"
    out: list[str] = []
    if not single:
        out.extend(_comment_lines(region.indent, todo, region.hints))
        exercises.append(Exercise(relpath, out_len + 1, prefix or None, list(region.hints),
                                  region.chapter))
    start = len(out)
    for stmt in module.body:
        stub = _stub_statement(code, stmt, prefix, relpath,
                               region.todo if single else None, region.hints if single else [])
        if single:
            fn = f"{prefix + '.' if prefix else ''}{stmt.name}()"   # type: ignore[attr-defined]
            todo_line = next(i for i, s in enumerate(stub) if s.lstrip().startswith("# TODO"))
            exercises.append(Exercise(relpath, out_len + len(out) + todo_line + 1, fn,
                                      list(region.hints), region.chapter))
        out.extend(region.indent + s if s else s for s in stub)
    if len(out) == start:      # nothing left: keep the block syntactically whole
        out.append(f"{region.indent}pass")
    return out


def _stub_statement(code: list[str], stmt: ast.stmt, prefix: str, relpath: str,
                    todo: str | None, hints: list[str]) -> list[str]:
    """The outline of one statement of a region (lines indented as in the region, minus its indent)."""
    name = prefix + "." if prefix else ""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        header, inner = _outline(code, stmt)
        qual = f"{name}{stmt.name}"
        if isinstance(stmt, ast.ClassDef):
            rest = stmt.body[1:] if ast.get_docstring(stmt) is not None else stmt.body
            lines = header
            for s in rest:
                lines += _stub_statement(code, s, qual, relpath, None, [])
            if len(lines) == len(header) and ast.get_docstring(stmt) is None:
                lines.append(inner + "pass")      # a class needs a body
            return lines
        body = _comment_lines(inner, todo or f"implement {qual}()", hints)
        return header + body + [_raise_line(inner, qual + "()", relpath)]
    if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
        indent = code[stmt.lineno - 1][: stmt.col_offset]
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        names = [t.id for t in targets if isinstance(t, ast.Name)]
        if isinstance(stmt, ast.AnnAssign) and names:
            annotation = ast.get_source_segment("\n".join(code), stmt.annotation) or "object"
            return [f"{indent}{names[0]}: {annotation} = None  # TODO: give {names[0]} its value"]
        return [f"{indent}{n} = None  # TODO: give {n} its value" for n in names]
    return []   # imports, expressions …: part of the solution


def _outline(code: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
             ) -> tuple[list[str], str]:
    """(decorators + signature + docstring lines, the body's indentation) of a definition."""
    start = node.decorator_list[0].lineno if node.decorator_list else node.lineno
    first = node.body[0]
    base = code[node.lineno - 1][: node.col_offset]
    if first.lineno == node.lineno:        # `def f(): return 1` -- a one-line definition
        header = code[start - 1: first.lineno - 1] + [code[first.lineno - 1][: first.col_offset].rstrip()]
        inner = base + "    "
    else:
        header = code[start - 1: first.lineno - 1]
        # comments between the signature and the body belong to the solution
        while header and (header[-1].strip() == "" or header[-1].strip().startswith("#")):
            header.pop()
        inner = code[first.lineno - 1][: first.col_offset]
    has_doc = ast.get_docstring(node) is not None
    if has_doc and first.lineno != node.lineno:
        header += code[first.lineno - 1: first.end_lineno]
    elif has_doc:
        segment = ast.get_source_segment("\n".join(code), first) or '""""""'
        header.append(inner + segment)
    return header, inner


def own_package_imports(source: str, package: str, filename: str) -> str:
    """Point the absolute imports of `labkit.<package>` at `labkit_student.<package>`.

    Only inside import statements (found with ast, so strings and comments are untouched);
    `import labkit.<package>.x` without `as` is kept, since the code then says `labkit.…`.
    """
    try:
        tree = ast.parse(source, filename)
    except SyntaxError:
        return source                        # strip_solutions has checked it; nothing to do
    pattern = re.compile(rf"\blabkit(?=\.{re.escape(package)}\b)")
    lines = source.splitlines(keepends=True)
    spans: list[tuple[int, int, int, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and \
                (node.module == f"labkit.{package}" or node.module.startswith(f"labkit.{package}.")):
            spans.append((node.lineno, node.col_offset, node.end_lineno or node.lineno,
                          node.end_col_offset or 0))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname and (alias.name == f"labkit.{package}"
                                     or alias.name.startswith(f"labkit.{package}.")):
                    spans.append((node.lineno, node.col_offset, node.end_lineno or node.lineno,
                                  node.end_col_offset or 0))
                    break
    for start, col, end, end_col in spans:
        for row in range(start, end + 1):
            line = lines[row - 1]
            lo = col if row == start else 0
            hi = end_col if row == end else len(line)
            # col offsets are in UTF-8 bytes; import lines are ASCII in practice, check anyway
            if not line.isascii():
                continue
            lines[row - 1] = line[:lo] + pattern.sub(STUDENT_PACKAGE, line[lo:hi]) + line[hi:]
    return "".join(lines)


# -- generating a workspace -------------------------------------------------------------------

def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _wrapper(dest: Path, command: str, entry: str) -> str:
    module, _, function = entry.partition(":")
    module = STUDENT_PACKAGE + module[len("labkit"):]
    code = (f"import sys; sys.argv[0] = \"{command}\"; "
            f"from {module} import {function}; sys.exit({function}())")
    return ("#!/bin/sh\n"
            f"# {command} from this workspace (generated by `labkit lab workspace`): runs {module}:{function}\n"
            f"# Only the workspace is added to the path: the other layers stay labkit's reference.\n"
            f"PYTHONPATH={shlex.quote(str(dest))}${{PYTHONPATH:+:$PYTHONPATH}} exec "
            f"{shlex.quote(sys.executable)} -c {shlex.quote(code)} \"$@\"\n")


def plan_workspace(dest: Path, source_pkg: Path = REFERENCE_PACKAGE, *,
                   solved: frozenset[str] = frozenset()
                   ) -> tuple[dict[str, bytes], list[Exercise], list[str]]:
    """Everything a workspace holds: {path inside DEST: content}, the exercises, warnings.
    The exercises of the chapters in `solved` are left solved (see `solve_chapters`)."""
    files: dict[str, bytes] = {}
    exercises: list[Exercise] = []
    warnings: list[str] = []
    for path in sorted(source_pkg.rglob("*")):
        rel = path.relative_to(source_pkg)
        if any(part in EXCLUDED_DIRS for part in rel.parts) or not path.is_file():
            continue
        if path.suffix in EXCLUDED_SUFFIXES:
            continue
        target = str(Path(STUDENT_PACKAGE, rel))
        if path.suffix != ".py":
            files[target] = path.read_bytes()
            continue
        try:
            source = path.read_text()
        except (UnicodeDecodeError, OSError) as e:
            raise WorkspaceError(f"{path}: cannot be read as text: {e}") from None
        text, found = strip_solutions(source, str(path), target, solved=solved)
        if len(rel.parts) > 1:                  # a module inside one of labkit's packages
            text = own_package_imports(text, rel.parts[0], target)
        for ex in found:
            if not ex.hints:
                warnings.append(f"{ex.file}:{ex.line}: exercise without a HINT "
                                "(name the man page or spec section)")
        exercises += found
        files[target] = text.encode()
    if f"{STUDENT_PACKAGE}/__init__.py" not in files:
        raise WorkspaceError(f"{source_pkg} is not a Python package (no __init__.py)")
    for layer in LAYERS.values():
        if layer.command and layer.entry:
            module = layer.entry.partition(":")[0]
            if (source_pkg / Path(*module.split(".")[1:])).with_suffix(".py").is_file():
                files[f"bin/{layer.command}"] = _wrapper(dest, layer.command, layer.entry).encode()
    return files, exercises, warnings


def generate_workspace(dest: Path, source_pkg: Path = REFERENCE_PACKAGE, *,
                       force: bool = False) -> WorkspaceReport:
    """Create or update the workspace DEST from the reference package `source_pkg`.

    Refuses (WorkspaceError, nothing written) when a file the student edited would be replaced,
    unless `force`, which saves those files under DEST/.backup/<time>/ first.
    """
    dest = Path(os.path.abspath(dest))
    source_pkg = Path(source_pkg)
    if dest.exists() and not dest.is_dir():
        raise WorkspaceError(f"workspace {dest} exists and is not a directory")
    if not source_pkg.is_dir():
        raise WorkspaceError(f"reference package {source_pkg} does not exist")
    if _inside(dest, source_pkg):
        raise WorkspaceError(f"workspace {dest} is inside the reference package {source_pkg}; "
                             "choose a directory outside it")
    files, exercises, warnings = plan_workspace(dest, source_pkg)
    old = _read_manifest(dest)
    report = WorkspaceReport(dest, dest / STUDENT_PACKAGE, exercises=exercises, warnings=warnings)

    edited: list[str] = []
    for rel, content in files.items():
        path = dest / rel
        if not path.exists():
            continue
        current = path.read_bytes() if path.is_file() else b""
        if current == content:
            continue
        if old.get(rel) != _sha(current):      # not what we generated last time: the student's work
            edited.append(rel)
    stale = [rel for rel in old if rel not in files and (dest / rel).is_file()]
    for rel in stale:
        if old[rel] == _sha((dest / rel).read_bytes()):
            report.removed.append(rel)
        else:
            report.kept.append(rel)            # the student's edits to a dropped file: leave them

    if edited and not force:
        shown = "\n  ".join(edited[:10]) + ("\n  …" if len(edited) > 10 else "")
        raise WorkspaceError(f"refusing to overwrite {len(edited)} file(s) you edited in {dest}:\n  "
                             f"{shown}\nmove them away, or regenerate with --force "
                             f"(your versions are then saved under {dest / BACKUPS}/<time>/)")
    if edited:
        report.backup = dest / BACKUPS / time.strftime("%Y%m%d-%H%M%S")
        for rel in edited:
            target = report.backup / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(dest / rel, target)

    for rel, content in files.items():
        path = dest / rel
        if path.is_file() and path.read_bytes() == content:
            report.unchanged.append(rel)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise WorkspaceError(f"workspace {dest}: {path} is a directory where a file belongs")
        temporary = path.with_name(path.name + ".labkit-tmp")
        temporary.write_bytes(content)
        os.chmod(temporary, 0o755 if rel.startswith("bin/") else 0o644)
        os.replace(temporary, path)            # atomic: a crash never leaves half a file
        report.written.append(rel)
    for rel in report.removed:
        (dest / rel).unlink()

    manifest = {"generator": "labkit.course.workspace", "source": str(source_pkg.resolve()),
                "files": {rel: _sha(content) for rel, content in sorted(files.items())}}
    text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    if not (dest / MANIFEST).is_file() or (dest / MANIFEST).read_text() != text:
        (dest / MANIFEST).write_text(text)
    return report


def solve_chapters(dest: Path, chapters: set[str] | frozenset[str],
                   source_pkg: Path = REFERENCE_PACKAGE) -> list[str]:
    """Write the reference's solutions of `chapters` ("05", …) into the workspace DEST, as a
    student who finished exactly those chapters would have them: every other exercise stays
    blank. Returns the files rewritten. (The course's proofs use it: a chapter's solution,
    with its prerequisites', must be enough for full marks.) Files are overwritten without
    the edit check of generate_workspace: this is for generated, throw-away workspaces."""
    dest = Path(os.path.abspath(dest))
    blank, _, _ = plan_workspace(dest, source_pkg)
    filled, _, _ = plan_workspace(dest, source_pkg, solved=frozenset(chapters))
    changed = [rel for rel, content in filled.items() if blank.get(rel) != content]
    for rel in changed:
        (dest / rel).write_bytes(filled[rel])
    return changed


def _inside(path: Path, directory: Path) -> bool:
    try:
        Path(os.path.realpath(path)).relative_to(os.path.realpath(directory))
        return True
    except ValueError:
        return False


def _read_manifest(dest: Path) -> dict[str, str]:
    path = dest / MANIFEST
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        files = data["files"]
        if isinstance(files, dict):
            return {str(k): str(v) for k, v in files.items()}
    except (ValueError, KeyError, TypeError):
        pass
    raise WorkspaceError(f"workspace manifest {path} is damaged; move it away to regenerate "
                         "(every existing file will then count as edited and be protected)")
