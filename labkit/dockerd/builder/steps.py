"""The classic builder: a Dockerfile's instructions, one image per step, with a layer cache.

Theory of operation
-------------------
Docker's own words: "Each instruction in a Dockerfile creates a layer in the image. When you
change the Dockerfile and rebuild the image, only those layers which have changed are
rebuilt." The builder keeps a *current image* and, for every instruction:

    FROM x           the current image is x (pulled if missing, or `--pull`), or nothing
                     (`scratch`), or an earlier stage (`FROM build`)
    RUN cmd          a container from the current image runs `SHELL cmd` (exec form: the list);
                     its changes (containerd's Diff: the container's snapshot against its
                     parent) become a new layer; a non-zero exit fails the build
    COPY/ADD s… d    the selected context files (or an earlier stage's, `--from`) become a
                     layer of their own; ADD also unpacks local tar archives
    ENV, CMD, …      only the image config changes: a new image with an *empty* layer

Each step's result is an image whose parent is the previous one. Before doing a step the
builder asks the cache (`cache_lookup`) whether that parent already has a child made by the
same step: the key (`cache_key`) is the instruction with its variables expanded, the config
it runs with (env, user, workdir, shell) and, for COPY/ADD, the checksum of the bytes copied.
A hit is used as is ("---> Using cache") and every later step can hit too; the first miss
ends the hits, since its new image has no children yet.

What the docker CLI prints is this module's message stream: {"stream": "Step 2/5 : …\\n"},
{"stream": " ---> a1b2c3d4e5f6\\n"}, …, {"aux": {"ID": "sha256:…"}}, "Successfully built …".

The builder does no I/O itself: the `Backend` (labkit.dockerd.builder.backend) reaches
containerd and runs containers through the daemon. Chapter 11's exercises here are
`cache_key`, `cache_lookup` and `run_step` (and, beside them, `backend.layer_tar` and
`labkit.dockerignore.ignored`).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass, field
from typing import Callable, Iterator, Protocol

from labkit.dockerd.builder.context import (Context, ContextError, FileToCopy, file_of, is_tar,
                                            untar)
from labkit.dockerd.builder.config import METADATA, config_change
from labkit.dockerd.builder.dockerfile import DockerfileError, Instruction, expand, parse, words

DEFAULT_SHELL = ["/bin/sh", "-c"]
# Instructions whose arguments the builder expands (RUN, CMD, ENTRYPOINT: the shell does).
EXPANDED = {"ADD", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER", "VOLUME",
            "WORKDIR"}


class BuildError(Exception):
    """A build that stops; the message is what the CLI prints after "ERROR"."""


@dataclass
class Image:
    id: str                  # "sha256:…" (the config's digest); "" for scratch
    config: dict             # the image config's "config" part (Env, Cmd, …)


class Backend(Protocol):
    """What the builder needs from the daemon (one implementation: backend.DaemonBackend)."""

    def base(self, name: str, pull: bool, emit: Callable[[dict], None]) -> Image: ...
    def run(self, parent: Image, config: dict, argv: list[str],
            emit: Callable[[dict], None]) -> tuple[str, int]: ...          # (container, exit)
    def commit_container(self, container: str, parent: Image, config: dict,
                         created_by: str) -> Image: ...
    def commit_files(self, parent: Image, files: list[FileToCopy], config: dict,
                     created_by: str) -> Image: ...
    def commit_config(self, parent: Image, config: dict, created_by: str) -> Image: ...
    def remove_container(self, container: str) -> None: ...
    def stage_files(self, image: Image, source: str) -> list[tuple[str, FileToCopy]]: ...
    def cache_get(self, parent: str, key: str) -> Image | None: ...
    def cache_put(self, parent: str, key: str, image: Image) -> None: ...
    def tag(self, image: Image, name: str) -> None: ...


@dataclass
class Options:
    dockerfile: str = "Dockerfile"
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)
    target: str = ""
    no_cache: bool = False
    pull: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    quiet: bool = False


@dataclass
class Stage:
    name: str
    image: Image
    config: dict
    args: dict[str, str]
    shell: list[str] = field(default_factory=lambda: list(DEFAULT_SHELL))


def short(image_id: str) -> str:
    return image_id.split(":", 1)[-1][:12]


def cache_key(instruction: str, config: dict, extra: str = "") -> str:
    """What makes two steps the same: the expanded instruction, the config it runs with,
    and (COPY/ADD) the checksum of the files. Same parent + same key = same result.

    "sha256:" + 64 hex digits. The key must not depend on the order of the config's keys (two
    builds may assemble the same config in another order) and must change when anything the
    step depends on changes -- one more ENV, another file content."""
    # BEGIN SOLUTION chapter="11" hint="json.dumps(…, sort_keys=True) is one canonical text of a dict; hashlib.sha256"
    blob = json.dumps({"step": instruction, "config": config, "files": extra}, sort_keys=True)
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()
    # END SOLUTION


def cache_lookup(backend: Backend, parent: Image, key: str, enabled: bool) -> Image | None:
    """The image an earlier build made from `parent` with the step `key`, if any.

    None when the cache is off (`--no-cache`, or an earlier step of this build missed) and
    for a parent with no ID (`FROM scratch`: nothing to hang a child on); otherwise what the
    backend's index remembers (`Backend.cache_get`), which is None for an image pruned since."""
    # BEGIN SOLUTION chapter="11" hint="Backend.cache_get(parent_id, key); scratch is Image(id='')"
    if not enabled or not parent.id:
        return None
    return backend.cache_get(parent.id, key)
    # END SOLUTION


def run_step(backend: Backend, parent: Image, run_config: dict, image_config: dict,
             argv: list[str], created_by: str, emit: Callable[[dict], None]) -> Image:
    """RUN: a container from `parent` runs `argv` with `run_config` (the image's config plus
    the build args in its Env); its changes become the new image, whose config is
    `image_config`. The container goes away whether the command worked or not; a non-zero
    exit fails the build with BuildError("The command '<created_by>' returned a non-zero
    code: <status>"), as dockerd's message says it. Before the container goes, the CLI is told
    {"stream": "Removing intermediate container <short id>\\n"}."""
    # BEGIN SOLUTION chapter="11" hint="Backend.run -> (container, exit status); Backend.commit_container; try/finally: Backend.remove_container"
    container, status = backend.run(parent, run_config, argv, emit)
    try:
        if status != 0:
            raise BuildError(f"The command '{created_by}' returned a non-zero code: {status}")
        return backend.commit_container(container, parent, image_config, created_by)
    finally:
        emit({"stream": f"Removing intermediate container {short(container)}\n"})
        backend.remove_container(container)
    # END SOLUTION


def build(backend: Backend, context: Context, options: Options) -> Iterator[dict]:
    """The build as the message stream; raises BuildError (after what it printed) on failure."""
    out: list[dict] = []
    try:
        dockerfile = parse(context.dockerfile(options.dockerfile))
    except (DockerfileError, ContextError) as e:
        raise BuildError(str(e)) from None
    runner = _Runner(backend, context, options, dockerfile.escape, out)
    yield from runner.run(dockerfile.instructions)


class _Runner:
    def __init__(self, backend: Backend, context: Context, options: Options, escape: str,
                 out: list[dict]) -> None:
        self.backend, self.context, self.options, self.escape = backend, context, options, escape
        self.stages: list[Stage] = []
        self.global_args: dict[str, str] = {}
        self.cache = not options.no_cache
        self.pending: list[dict] = []
        self.out = out

    def emit(self, message: dict) -> None:
        self.pending.append(message)

    def _flush(self) -> Iterator[dict]:
        while self.pending:
            yield self.pending.pop(0)

    def run(self, instructions: list[Instruction]) -> Iterator[dict]:
        steps = _steps(instructions, self.options.target)
        for n, ins in enumerate(steps, 1):
            yield {"stream": f"Step {n}/{len(steps)} : {ins.original}\n"}
            try:
                self.step(ins)
            except (DockerfileError, ContextError) as e:
                yield from self._flush()
                raise BuildError(str(e)) from None
            except BuildError:
                yield from self._flush()
                raise
            yield from self._flush()
            if self.stages and self.stages[-1].image.id:
                yield {"stream": f" ---> {short(self.stages[-1].image.id)}\n"}
        final = self.stages[-1].image if self.stages else None
        if final is None or not final.id:
            raise BuildError("No image was generated. Is your Dockerfile empty?")
        if self.options.labels:
            final = self._commit_config(self.stages[-1], {"Labels": {
                **(self.stages[-1].config.get("Labels") or {}), **self.options.labels}},
                "LABEL " + " ".join(f"{k}={v}" for k, v in self.options.labels.items()))
        yield {"aux": {"ID": final.id}}
        yield {"stream": f"Successfully built {short(final.id)}\n"}
        for tag in self.options.tags:
            self.backend.tag(final, tag)
            yield {"stream": f"Successfully tagged {tag}\n"}

    # -- one instruction ---------------------------------------------------------------------

    def step(self, ins: Instruction) -> None:
        if ins.cmd == "FROM":
            return self._from(ins)
        if ins.cmd == "ARG" and not self.stages:
            name, _, default = ins.args.partition("=")
            self.global_args[name.strip()] = self.options.build_args.get(name.strip(), default)
            return None
        stage = self.stages[-1]
        env = self._variables(stage)
        text = ins.args
        if ins.cmd in METADATA:
            return self._metadata(stage, ins, env)
        handler = getattr(self, "_" + ins.cmd.lower())
        return handler(stage, ins, env, text)

    def _variables(self, stage: Stage) -> dict[str, str]:
        """What $NAME means in this stage: its ARGs, overridden by its ENV."""
        env = dict(stage.args)
        for item in stage.config.get("Env") or []:
            k, _, v = item.partition("=")
            env[k] = v
        return env

    def _from(self, ins: Instruction) -> None:
        parts = words(ins.args, self.global_args, self.escape)
        if len(parts) not in (1, 3) or (len(parts) == 3 and parts[1].lower() != "as"):
            raise BuildError(f"Dockerfile line {ins.line}: FROM requires either one or three "
                             "arguments: FROM <image> [AS <name>]")
        name = parts[2].lower() if len(parts) == 3 else str(len(self.stages))
        earlier = next((s for s in self.stages if s.name == parts[0].lower()), None)
        if earlier is not None:
            image, config = earlier.image, json.loads(json.dumps(earlier.config))
        elif parts[0] == "scratch":
            image, config = Image("", {}), {}
        else:
            image = self.backend.base(parts[0], self.options.pull, self.emit)
            config = json.loads(json.dumps(image.config or {}))
        self.stages.append(Stage(name, image, config, {}))

    def _cached(self, stage: Stage, created_by: str, config: dict,
                make: Callable[[], Image]) -> Image:
        """The step's image: the cache's (same parent, same key), or `make()`'s, remembered.
        The first miss turns the cache off: the steps after it have a new parent."""
        key = cache_key(created_by, config)
        hit = cache_lookup(self.backend, stage.image, key, self.cache)
        if hit is not None:
            self.emit({"stream": " ---> Using cache\n"})
            return hit
        self.cache = False
        image = make()
        if stage.image.id:
            self.backend.cache_put(stage.image.id, key, image)
        return image

    def _commit_config(self, stage: Stage, changes: dict, text: str) -> Image:
        config = {**stage.config, **changes}
        created_by = f"/bin/sh -c #(nop) {text}"
        stage.image = self._cached(stage, created_by, config, lambda: self.backend.commit_config(
            stage.image, config, created_by))
        stage.config = config
        return stage.image

    def _run(self, stage: Stage, ins: Instruction, env: dict, text) -> None:
        argv = list(ins.args) if ins.json else [*stage.shell, ins.args]
        created_by = " ".join(argv) if ins.json else f"{' '.join(stage.shell)} {ins.args}"
        if not stage.image.id:
            raise BuildError(f"Dockerfile line {ins.line}: RUN needs a base image with a shell "
                             "(FROM scratch has no files)")
        # build args are in the command's environment but not in the image's config
        config = {**stage.config, "Env": [f"{k}={v}" for k, v in stage.args.items()]
                  + list(stage.config.get("Env") or [])}
        stage.image = self._cached(stage, created_by, config, lambda: run_step(
            self.backend, stage.image, config, stage.config, argv, created_by, self.emit))

    def _copy(self, stage: Stage, ins: Instruction, env: dict, text, add: bool = False) -> None:
        parts = list(ins.args) if ins.json else words(ins.args, env, self.escape)
        if ins.json:
            parts = [expand(p, env, self.escape) for p in parts]
        if len(parts) < 2:
            raise BuildError(f"Dockerfile line {ins.line}: {ins.cmd} requires at least two "
                             "arguments, but only one was provided. Destination could not be "
                             "determined.")
        *sources, dest = parts
        workdir = stage.config.get("WorkingDir") or "/"
        dest_abs = posixpath.join(workdir, dest)
        into_dir = dest.endswith("/") or len(sources) > 1 or any(
            c in s for s in sources for c in "*?[")
        uid, gid = _chown(ins.flags.get("chown", ""))
        files: list[FileToCopy] = []
        for source in sources:
            files += self._select(source, ins, add, dest_abs, into_dir, uid, gid)
        checksum = hashlib.sha256(json.dumps(
            [(f.path, f.kind, f.mode, f.link, f.uid, f.gid, hashlib.sha256(f.data).hexdigest())
             for f in files]).encode()).hexdigest()
        created_by = f"/bin/sh -c #(nop) {ins.cmd} {'dir' if into_dir else 'file'}:{checksum} " \
                     f"in {dest_abs} "
        stage.image = self._cached(stage, created_by, stage.config, lambda: (
            self.backend.commit_files(stage.image, files, stage.config, created_by)))

    def _add(self, stage, ins, env, text) -> None:
        if any("://" in w for w in (ins.args if ins.json else ins.args.split())):
            raise BuildError(f"Dockerfile line {ins.line}: ADD from a URL is not supported by "
                             "labkit's builder (the lab has no internet): COPY a local file")
        self._copy(stage, ins, env, text, add=True)

    def _select(self, source, ins, add, dest_abs, into_dir, uid, gid) -> list[FileToCopy]:
        if "from" in ins.flags:
            ref = ins.flags["from"].lower()
            stage = next((s for s in self.stages[:-1] if s.name == ref), None)
            image = stage.image if stage else self.backend.base(ins.flags["from"], False,
                                                                self.emit)
            picked = self.backend.stage_files(image, source)
        else:
            picked = [(rel, file_of(self.context, m)) for rel, m in
                      self.context.select(source)]
        if add and len(picked) == 1 and picked[0][1].kind == "file" and \
                is_tar(picked[0][1].data):
            return untar(picked[0][1].data, dest_abs, uid, gid)
        single = len(picked) == 1 and picked[0][0] == posixpath.basename(source.rstrip("/")) \
            and picked[0][1].kind != "dir" and not into_dir
        out = []
        for rel, f in picked:
            path = dest_abs if single else posixpath.join(dest_abs, rel)
            out.append(FileToCopy(posixpath.normpath(path), f.kind, f.mode, f.data, f.link,
                                  uid if "chown" in ins.flags else f.uid,
                                  gid if "chown" in ins.flags else f.gid))
        return out

    # -- metadata instructions: a new config, an empty layer ----------------------------------

    def _metadata(self, stage: Stage, ins: Instruction, env: dict[str, str]) -> None:
        changes, text = config_change(stage.config, stage.shell, ins, env, self.escape)
        if ins.cmd == "SHELL":
            stage.shell = list(ins.args)
        self._commit_config(stage, changes, text)

    def _arg(self, stage, ins, env, text) -> None:
        name, eq, default = text.partition("=")
        name = name.strip()
        if name in self.options.build_args:
            value = self.options.build_args[name]
        elif eq:
            value = default
        else:
            value = self.global_args.get(name, "")
        stage.args[name] = value


def _steps(instructions: list[Instruction], target: str) -> list[Instruction]:
    """The instructions up to the end of stage `target` (all of them without one)."""
    if not target:
        return instructions
    for i, ins in enumerate(instructions):
        if ins.cmd == "FROM" and ins.args.lower().split()[-1] == target.lower() and \
                len(ins.args.split()) == 3:
            end = next((j for j in range(i + 1, len(instructions))
                        if instructions[j].cmd == "FROM"), len(instructions))
            return instructions[:end]
    raise BuildError(f"failed to reach build target {target} in Dockerfile")


def _chown(value: str) -> tuple[int, int]:
    if not value:
        return 0, 0
    user, _, group = value.partition(":")
    try:
        uid = int(user)
        return uid, int(group) if group else uid
    except ValueError:
        raise BuildError(f"--chown={value}: labkit's builder takes numeric ids (uid:gid), "
                         "not names") from None


__all__ = ["Backend", "BuildError", "FileToCopy", "Image", "Options", "build", "cache_key",
           "cache_lookup", "run_step", "short"]
