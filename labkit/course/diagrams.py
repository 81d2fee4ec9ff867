"""Diagrams for the notebooks and slides, drawn with graphviz from what is really there.

Each function returns a `graphviz.Digraph`. In Jupyter the object is the picture (it renders
itself as SVG); elsewhere `.pipe(format="svg")` gives the SVG bytes and `.source` the dot text.

    process_tree(root_pids=None)      the lab's processes, read from /proc: who started whom,
                                      and which namespaces each one is in
    layers_diagram(highlight=None)    the L5..L0 stack, with the protocol on each boundary
    request_sequence(requests)        the Engine API requests a client made, in order
    image_diagram(index, manifest, config)
                                      an image as the registry stores it: index -> manifest
                                      -> config + layers, with digests and sizes

Why /proc: everything the diagrams show about processes is what the kernel says, not what
labkit believes. /proc/<pid>/stat gives the parent (field 4), /proc/<pid>/cmdline the command,
and /proc/<pid>/ns/<kind> is a symbolic link "net:[4026531833]" whose number is the inode of
the namespace: two processes are in the same namespace exactly when the numbers are equal
(namespaces(7)). The tree colours every number that differs from the host's (PID 1's) — that
difference is what makes a process a container.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import graphviz

from labkit import paths, procfs
from labkit.namespaces import NAMESPACES

# The kinds a container runtime changes, by their /proc/<pid>/ns file names ("mnt", "net" …),
# in the order of chapter 01's table (the order `lsns` lists them).
NAMESPACE_KINDS = tuple(kind.file for kind in NAMESPACES.values())

_FONT = "Helvetica"
# Label sizes in points (graphviz's unit: 1 pt is 4/3 CSS px in the SVG). 12 pt is 16 px
# unshrunk, so a diagram may be shrunk to 7/8 of its size to fit a slide and still be drawn
# at 14 px, the least a projected label may have (tests/slides/test_readability.py).
_NODE_PT = "13"
_EDGE_PT = "12"
_HEX_ID = re.compile(r"\b([0-9a-f]{12})[0-9a-f]{52}\b")     # a 64-hex container/image id
_VERSION_PREFIX = re.compile(r"^/v\d+\.\d+(?=/)")


def _graph(name: str, **attrs: str) -> graphviz.Digraph:
    g = graphviz.Digraph(name)
    g.attr(fontname=_FONT, **attrs)
    g.attr("node", fontname=_FONT, fontsize=_NODE_PT)
    g.attr("edge", fontname=_FONT, fontsize=_EDGE_PT)
    return g


# ---------------------------------------------------------------------------- processes


@dataclass
class Process:
    """What /proc says about one process."""
    pid: int
    ppid: int
    argv: list[str]
    namespaces: dict[str, int] = field(default_factory=dict)   # kind -> inode
    inner_pid: int | None = None     # its PID inside its own PID namespace, if that differs

    @property
    def launched(self) -> tuple[str, dict[str, str], list[str]] | None:
        """(name, {layer: workspace}, args) for a program the lab runs through
        labkit.lab.launch (some of its in-process layers from a workspace), else None."""
        a = self.argv
        if len(a) < 3 or a[1:3] != ["-m", "labkit.lab.launch"] or "--" not in a:
            return None
        split = a.index("--")
        options = a[3:split]
        name = next((o[len("--as="):] for o in options if o.startswith("--as=")), "")
        layers = dict(o[len("--layer="):].split("=", 1) for o in options
                      if o.startswith("--layer=") and "=" in o[len("--layer="):])
        rest = a[split + 1:]                     # ENTRY ARGV0 ARGS…
        return name or (rest[1] if len(rest) > 1 else "?"), layers, rest[2:]

    @property
    def name(self) -> str:
        """The program a person would name: the script, not the interpreter running it
        ("labkit-dockerd", not "python"; "labkit.shim.main" for `python -S -m labkit.shim.main`)."""
        if not self.argv:
            return "?"
        if self.launched:
            return self.launched[0]
        prog = os.path.basename(self.argv[0])
        if prog.startswith("python") and len(self.argv) > 1:
            rest = self._after_interpreter_options()
            if rest[:1] == ["-m"] and len(rest) > 1:
                return rest[1]
            return os.path.basename(rest[0]) if rest else prog
        return prog

    def _after_interpreter_options(self) -> list[str]:
        """argv after `python` and its own flags (-S, -u, -X opt …; a shim runs `python -S -m`)."""
        rest = self.argv[1:]
        while rest and rest[0].startswith("-") and rest[0] not in ("-m", "-c", "-"):
            rest = rest[2:] if rest[0] in ("-X", "-W") else rest[1:]
        return rest

    @property
    def args(self) -> list[str]:
        """The arguments after the program `name`."""
        if self.launched:
            return self.launched[2]
        if self.argv and os.path.basename(self.argv[0]).startswith("python") and len(self.argv) > 1:
            rest = self._after_interpreter_options()
            return rest[2:] if rest[:1] == ["-m"] else rest[1:]
        return self.argv[1:]


def read_process(pid: int) -> Process | None:
    """The process `pid` as /proc shows it, or None if it has gone (it may exit any time)."""
    stat = procfs.stat(pid)
    if stat is None:
        return None
    argv = procfs.cmdline(pid)
    namespaces = {}
    for kind in NAMESPACE_KINDS:
        inode = procfs.ns_inode(pid, kind)          # "net:[4026531833]" -> 4026531833
        if inode is not None:
            namespaces[kind] = inode
    # "NSpid: 30925 1": the same process as each PID namespace it is in sees it, outermost
    # first. A container's init is 1 in its own.
    ids = ((procfs.status(pid) or {}).get("NSpid") or "").split()
    inner_pid = int(ids[-1]) if len(ids) > 1 else None
    return Process(pid, stat.ppid, argv, namespaces, inner_pid)


def all_processes() -> dict[int, Process]:
    """Every process on the host, by PID."""
    procs = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (p := read_process(int(entry))) is not None:
            procs[p.pid] = p
    return procs


def lab_root_pids(procs: Mapping[int, Process] | None = None) -> list[int]:
    """The lab's daemons (from their pid files, as `labkit lab status` finds them) and the
    shims that serve the lab's containerd (their `-address` names its socket). A shim's
    parent is PID 1, not containerd: `shim start` re-executes itself in a new session and
    exits, so the container survives containerd (INTERFACES §4.2)."""
    from labkit.lab import status

    roots = [s.pid for s in status() if s.pid is not None and s.daemon.name != "labkit-registry"]
    procs = all_processes() if procs is None else procs
    sock = str(paths.CONTAINERD_SOCK)
    for p in procs.values():
        args = p.argv
        if "-address" in args and "shim" in p.name and "start" not in args and "delete" not in args:
            i = args.index("-address")
            if i + 1 < len(args) and args[i + 1] == sock:
                roots.append(p.pid)
    return roots


def host_namespaces(procs: Mapping[int, Process] | None = None) -> dict[str, int]:
    """The namespaces containers are compared with: PID 1's (the host's init), or, where
    /proc/1/ns cannot be read (inside some sandboxes), this process's own."""
    procs = all_processes() if procs is None else procs
    if 1 in procs and procs[1].namespaces:
        return procs[1].namespaces
    me = read_process(os.getpid())
    return me.namespaces if me else {}


def _short(text: str, limit: int = 48) -> str:
    text = _HEX_ID.sub(r"\1…", text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _workspace_layers(p: Process) -> dict[str, str]:
    """The layers a process takes from a student's workspace: its own (labkit.lab.launch),
    and for dockerd those of the runtime it hands down (a LIB/bin wrapper running the
    launcher): "namespaces from /…/workspace" marks the dockerd whose containers your
    chapter-01 code creates."""
    layers = dict(p.launched[1]) if p.launched else {}
    if "dockerd" in p.name and "--default-runtime" in p.argv:
        i = p.argv.index("--default-runtime")
        runtime = p.argv[i + 1] if i + 1 < len(p.argv) else ""
        try:
            script = open(runtime).read(4096) if runtime.startswith("/") else ""
        except OSError:
            script = ""
        for word in script.split():
            if word.startswith("--layer=") and "=" in word[len("--layer="):]:
                layer, workspace = word[len("--layer="):].split("=", 1)
                layers[f"runtime's {layer}"] = workspace
    return layers


def _process_label(p: Process, host: Mapping[str, int]) -> str:
    """An HTML-like graphviz label: name, pid, arguments, then the namespace inodes, with the
    ones that differ from the host's in red."""
    args = " ".join(p.args)
    inner = f" ({p.inner_pid} inside)" if p.inner_pid is not None else ""
    rows = [f'<tr><td colspan="2"><b>{html.escape(p.name)}</b>  pid {p.pid}{inner}</td></tr>']
    if args:
        rows.append(f'<tr><td colspan="2"><font point-size="9">{html.escape(_short(args))}'
                    '</font></td></tr>')
    for layer, workspace in _workspace_layers(p).items():
        rows.append(f'<tr><td colspan="2"><font color="#1e8449"><b>{html.escape(layer)}</b> from '
                    f'{html.escape(_short(workspace, 32))}</font></td></tr>')
    for kind in NAMESPACE_KINDS:
        if kind not in p.namespaces:
            continue
        inode = p.namespaces[kind]
        differs = host.get(kind) is not None and host[kind] != inode
        color = "#c0392b" if differs else "#777777"
        text = f"<b>{inode}</b>" if differs else str(inode)
        rows.append(f'<tr><td align="left"><font point-size="9" color="{color}">{kind}</font></td>'
                    f'<td align="left"><font point-size="9" color="{color}">{text}</font></td></tr>')
    return '<<table border="0" cellspacing="0" cellpadding="1">' + "".join(rows) + "</table>>"


def process_tree(root_pids: Iterable[int] | None = None) -> graphviz.Digraph:
    """The processes under `root_pids` (default: the lab's dockerd, containerd and shims),
    each with its descendants, as /proc shows them right now.

    Solid arrows: parent -> child (fork/exec). Dashed arrows: who talks to whom over a unix
    socket, found by matching command-line arguments (dockerd's --containerd and a shim's
    -address name containerd's socket). Namespace inodes in red differ from PID 1's."""
    procs = all_processes()
    roots = lab_root_pids(procs) if root_pids is None else list(root_pids)
    missing = [pid for pid in roots if pid not in procs]
    if missing:
        raise ProcessLookupError(f"no process with pid {', '.join(map(str, missing))} "
                                 "(it exited, or is in another PID namespace)")
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    host = host_namespaces(procs)

    shown: list[int] = []
    todo = list(roots)
    while todo:
        pid = todo.pop(0)
        if pid in shown:
            continue
        shown.append(pid)
        todo.extend(sorted(children.get(pid, [])))

    g = _graph("process_tree", rankdir="TB", nodesep="0.4")
    g.attr("node", shape="box", style="rounded,filled", fillcolor="#f7f7f7", color="#999999")
    for pid in shown:
        p = procs[pid]
        contained = any(host.get(k) not in (None, v) for k, v in p.namespaces.items())
        fill = "#fdebd0" if contained else "#f7f7f7"
        g.node(str(pid), _process_label(p, host), fillcolor=fill)
    for pid in shown:
        if procs[pid].ppid in shown:
            g.edge(str(procs[pid].ppid), str(pid))

    # Who dials whose socket: containerd listens on the path after its --address; dockerd
    # names that path after --containerd, a shim after -address (INTERFACES §4.2).
    def arg(p: Process, *flags: str) -> str | None:
        for flag in flags:
            if flag in p.argv and p.argv.index(flag) + 1 < len(p.argv):
                return p.argv[p.argv.index(flag) + 1]
        return None

    servers = {}
    for pid in shown:
        p = procs[pid]
        if "containerd" in p.name and "shim" not in p.name and (address := arg(p, "--address")):
            servers[address] = pid
    for pid in shown:
        p = procs[pid]
        if "dockerd" in p.name and (to := servers.get(arg(p, "--containerd"))):
            g.edge(str(pid), str(to), label="gRPC", style="dashed", color="#2e86c1",
                   fontcolor="#2e86c1")
        elif "shim" in p.name and (frm := servers.get(arg(p, "-address"))):
            g.edge(str(frm), str(pid), label="shim start,\nthen ttrpc", style="dashed",
                   color="#2e86c1", fontcolor="#2e86c1")
    return g


# ---------------------------------------------------------------------------- layers

# (node id, title, implementations) from the user down to the kernel, and the protocol on
# the boundary below each (ARCHITECTURE.md). One line each: the stack is tall, and a slide is
# wide, so the diagram is drawn as wide and as flat as it can be.
_LAYERS = [
    ("L5", "L5 client", "docker CLI · labkit · docker-py · curl"),
    ("L4", "L4 daemon", "labkit-dockerd · dockerd"),
    ("L3", "L3 manager", "labkit-containerd · containerd"),
    ("L2", "L2 shim", "labkit-shim · containerd-shim-runc-v2"),
    ("L1", "L1 runtime", "labkit-runc · runc · crun"),
    ("L0", "L0 kernel", "Linux: namespaces, cgroups, overlayfs"),
]
_BOUNDARIES = [
    "Docker Engine API: HTTP/1.1 on a unix socket",
    "gRPC (containerd's services)",
    "shim v2: `shim start`, then ttrpc on a unix socket",
    "OCI runtime command line (create, start, kill, delete) + config.json",
    "system calls: clone, unshare, setns, mount, pivot_root, execve",
]


def layers_diagram(highlight: str | None = None) -> graphviz.Digraph:
    """The engine's layers, L5 (client) to L0 (kernel), with the protocol on each boundary
    and the registry beside containerd. `highlight` ("L1", "registry", …) colours one layer,
    so a chapter can show where it sits."""
    known = [lid for lid, _, _ in _LAYERS] + ["registry"]
    if highlight is not None and highlight not in known:
        raise ValueError(f"unknown layer {highlight!r}: expected one of {', '.join(known)}")
    g = _graph("layers", rankdir="TB", nodesep="0.4", ranksep="0.3")
    g.attr("node", shape="box", style="rounded,filled", margin="0.15,0.06")
    for lid, title, impls in _LAYERS + [("registry", "registry",
                                         "<br/>labkit-registry · docker-registry · Docker Hub")]:
        fill = "#f9e79f" if lid == highlight else "#eaf2f8"
        g.node(lid, f"<<b>{title}</b>   {impls}>", fillcolor=fill, color="#5d6d7e")
    for (upper, _, _), (lower, _, _), proto in zip(_LAYERS, _LAYERS[1:], _BOUNDARIES):
        g.edge(upper, lower, label=" " + proto)
    with g.subgraph() as same:          # the registry beside containerd, its only client
        same.attr(rank="same")
        same.node("L3")
        same.node("registry")
    g.edge("L3", "registry", label="OCI distribution API\n(HTTP: pull, push)", style="dashed")
    return g


# ---------------------------------------------------------------------------- requests


def _request_parts(r: object) -> tuple[str, str, int | None]:
    """(method, path, status) from an apiproxy.Exchange, a (method, path, status) tuple or a
    "METHOD path -> status" line."""
    if isinstance(r, tuple) and len(r) == 3:
        method, path, status = r
        return str(method), str(path), None if status is None else int(status)
    if hasattr(r, "method") and hasattr(r, "path"):
        return r.method, r.path, getattr(r, "status", None)
    if isinstance(r, str):
        m = re.fullmatch(r"\s*([A-Z]+)\s+(\S+)(?:\s*->\s*(\d{3}|…))?\s*", r)
        if m:
            status = m.group(3)
            return m.group(1), m.group(2), int(status) if status and status.isdigit() else None
    raise ValueError(f"cannot read a request from {r!r}: expected an apiproxy.Exchange, a "
                     "(method, path, status) tuple or a 'METHOD path -> status' line")


def request_sequence(requests: Iterable[object], client: str = "docker CLI",
                     server: str = "labkit-dockerd") -> graphviz.Digraph:
    """A sequence diagram of Engine API requests: time runs down, each request is an arrow
    from the client's lifeline to the daemon's, and its status comes back dashed. Paths are
    shown without the /v1.NN prefix, with 64-hex IDs cut to 12 characters. A 101 answer is
    marked: from there that connection carries the container's raw stdio."""
    parts = [_request_parts(r) for r in requests]
    g = _graph("requests", rankdir="TB", nodesep="4", ranksep="0.18")
    g.attr("node", shape="box", style="rounded,filled", fillcolor="#eaf2f8")
    with g.subgraph() as top:
        top.attr(rank="same")
        top.node("client", client, group="client")
        top.node("server", server, group="server")
    g.attr("node", shape="point", width="0.05", color="#5d6d7e")
    prev_c, prev_s = "client", "server"
    row = 0

    def step(arrow_from_client: bool, **edge: str) -> None:
        """One row of the diagram: a point on each lifeline, an arrow between them."""
        nonlocal prev_c, prev_s, row
        row += 1
        c, s = f"c{row}", f"s{row}"
        with g.subgraph() as same:
            same.attr(rank="same")
            same.node(c, group="client")    # a group keeps the lifeline straight
            same.node(s, group="server")
        # the lifelines: time goes down
        g.edge(prev_c, c, arrowhead="none", style="dashed", color="#aab7b8", weight="10")
        g.edge(prev_s, s, arrowhead="none", style="dashed", color="#aab7b8", weight="10")
        # always c -> s, so dot keeps the client on the left; an answer points back
        g.edge(c, s, **edge) if arrow_from_client else g.edge(c, s, dir="back", **edge)
        prev_c, prev_s = c, s

    for i, (method, path, status) in enumerate(parts, 1):
        shown = _short(_VERSION_PREFIX.sub("", path), 64)
        step(True, label=f"{i}. {method} {shown}", color="#1f618d")
        answer = "…" if status is None else str(status)
        if status == 101:
            answer += " UPGRADED: from here this connection carries the container's stdio"
        failed = status is not None and status >= 400
        step(False, label=answer, style="dashed", color="#c0392b" if failed else "#5d6d7e",
             fontcolor="#c0392b" if failed else "#000000")
    return g


# ---------------------------------------------------------------------------- images


def _as_json(doc: Mapping | bytes | str | None, what: str) -> tuple[dict | None, str | None]:
    """(parsed document, its digest if we were given the exact bytes) — a digest is the
    sha256 of the bytes as the registry served them, so it can only be computed from those."""
    if doc is None:
        return None, None
    if isinstance(doc, (bytes, str)):
        raw = doc.encode() if isinstance(doc, str) else doc
        try:
            parsed = json.loads(raw)
        except ValueError as e:
            raise ValueError(f"the {what} is not JSON: {e}") from None
        return parsed, "sha256:" + hashlib.sha256(raw).hexdigest()
    if isinstance(doc, Mapping):
        return dict(doc), None
    raise ValueError(f"the {what} must be a dict or the raw bytes, not {type(doc).__name__}")


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _digest(d: str | None) -> str:
    return "?" if not d else d[:19] + "…"


def _record(title: str, rows: list[tuple[str, str]], fill: str) -> str:
    cells = "".join(f'<tr><td align="left"><font color="#555555">{html.escape(k)}</font></td>'
                    f'<td align="left">{html.escape(v)}</td></tr>' for k, v in rows)
    return (f'<<table border="0" cellspacing="0" cellpadding="2" bgcolor="{fill}">'
            f'<tr><td colspan="2"><b>{html.escape(title)}</b></td></tr>{cells}</table>>')


def image_diagram(index: Mapping | bytes | None, manifest: Mapping | bytes,
                  config: Mapping | bytes | None = None) -> graphviz.Digraph:
    """An image as a registry stores it: the index (one entry per platform; None for an image
    that is a single manifest) -> the manifest -> the config and the layers, each box with
    its digest, media type and size. Pass the raw bytes the registry sent to see each
    document's own digest as well."""
    index_doc, index_digest = _as_json(index, "index")
    manifest_doc, manifest_digest = _as_json(manifest, "manifest")
    config_doc, config_digest = _as_json(config, "config")
    if manifest_doc is None or "layers" not in manifest_doc or "config" not in manifest_doc:
        raise ValueError("the manifest must have 'config' and 'layers' (an image manifest, "
                         "not an index)")

    g = _graph("image", rankdir="TB", nodesep="0.3", ranksep="0.35")
    g.attr("node", shape="plaintext")

    if index_doc is not None:
        rows = [("digest", _digest(index_digest)), ("size", _size(len(index)))] if index_digest else []
        rows.append(("mediaType", index_doc.get("mediaType", "?")))
        for i, m in enumerate(index_doc.get("manifests", [])):
            plat = m.get("platform", {})
            rows.append((f"manifests[{i}]", f"{plat.get('os', '?')}/{plat.get('architecture', '?')}"
                         f"  {_digest(m.get('digest'))}"))
        g.node("index", _record("index (what the tag points at)", rows, "#eaf2f8"))
        # the entry that names our manifest: by digest when we know it, else the first
        entries = index_doc.get("manifests", [])
        picked = next((i for i, m in enumerate(entries) if m.get("digest") == manifest_digest), 0)
        if entries:
            manifest_digest = manifest_digest or entries[picked].get("digest")
            g.edge("index", "manifest", label=f"manifests[{picked}]")

    cfg = manifest_doc["config"]
    layers = manifest_doc["layers"]
    total = sum(layer.get("size", 0) for layer in layers)
    g.node("manifest", _record("manifest", [
        ("digest", _digest(manifest_digest)),
        ("mediaType", manifest_doc.get("mediaType", "?")),
        *([("size", _size(len(manifest)))] if isinstance(manifest, (bytes, str)) else []),
        ("layers", f"{len(layers)}, {_size(total)} compressed"),
    ], "#e8f8f5"))

    rows = [("digest", _digest(cfg.get("digest") or config_digest)),
            ("size", _size(cfg.get("size")))]
    if config_doc is not None:
        inner = config_doc.get("config", {})
        rows.append(("platform", f"{config_doc.get('os', '?')}/{config_doc.get('architecture', '?')}"))
        if inner.get("Entrypoint"):
            rows.append(("Entrypoint", json.dumps(inner["Entrypoint"])))
        rows.append(("Cmd", json.dumps(inner.get("Cmd"))))
        rows.append(("diff_ids", str(len(config_doc.get("rootfs", {}).get("diff_ids", [])))))
    g.node("config", _record("config", rows, "#fef9e7"))
    g.edge("manifest", "config", label="config")

    for i, layer in enumerate(layers):
        media = layer.get("mediaType", "?").rpartition(".")[2] or "?"
        g.node(f"layer{i}", _record(f"layer {i}", [
            ("digest", _digest(layer.get("digest"))),
            ("size", _size(layer.get("size"))),
            ("type", media),
        ], "#fdedec"))
        g.edge("manifest", f"layer{i}", label=f"layers[{i}]")
    return g
