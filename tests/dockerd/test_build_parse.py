"""The classic builder's input: Dockerfile parsing, variables, .dockerignore, the context."""

import io
import tarfile

import pytest

from labkit.dockerd.builder import context as ctx
from labkit.dockerignore import ignore_patterns, ignored
from labkit.dockerd.builder.dockerfile import DockerfileError, key_values, parse, words


def test_instructions_lines_continuations_comments_and_forms():
    df = parse("# syntax=docker/dockerfile:1\n"
               "ARG BASE=busybox\n"
               "FROM $BASE AS build\n"
               "# a comment\n"
               "run echo a \\\n"
               "# a comment inside the instruction is dropped\n"
               "\n"
               "  && echo b\n"
               'COPY --chown=1:2 ["a b", "/x/"]\n'
               "CMD [\"sh\", \"-c\", \"echo hi\"]\n"
               "ENTRYPOINT [not json\n")
    got = [(i.line, i.cmd, i.args, i.flags, i.json) for i in df.instructions]
    assert got == [(2, "ARG", "BASE=busybox", {}, False),
                   (3, "FROM", "$BASE AS build", {}, False),
                   (5, "RUN", "echo a   && echo b", {}, False),
                   (9, "COPY", ["a b", "/x/"], {"chown": "1:2"}, True),
                   (10, "CMD", ["sh", "-c", "echo hi"], {}, True),
                   (11, "ENTRYPOINT", "[not json", {}, False)]
    assert df.directives == {"syntax": "docker/dockerfile:1"}
    assert str(df.instructions[2]) == "RUN echo a   && echo b"


def test_the_escape_directive_makes_the_backtick_continue_lines():
    df = parse("# escape=`\nFROM scratch\nCOPY a `\n  c:\\dir\\\n")
    assert df.escape == "`" and df.instructions[1].args == "a   c:\\dir\\"


@pytest.mark.parametrize("text, message", [
    ("FROM busybox\nRUUN x\n", "line 2: unknown instruction: RUUN"),
    ("RUN x\n", "line 1: the first instruction must be FROM"),
    ("FROM a\nSHELL sh -c\n", "line 2: SHELL requires the arguments to be in JSON form"),
    ("# escape=x\nFROM a\n", "invalid escape token 'x'"),
    ("# escape=`\n# escape=`\nFROM a\n", "line 2: only one escape parser directive"),
    ("FROM a\nCOPY --form=x a b\n", "line 2: unknown flag for COPY: --form"),
    ("FROM a\nWORKDIR\n", "line 2: WORKDIR requires at least one argument"),
    ("# only a comment\n\n", "has no instructions"),
    (b"\xff\xfeF\x00", "is not UTF-8"),
])
def test_syntax_errors_name_the_line(text, message):
    with pytest.raises(DockerfileError, match=None) as e:
        parse(text)
    assert message in str(e.value)


def test_variables_quotes_and_escapes():
    env = {"X": "1", "EMPTY": ""}
    assert words("a=\"b c\" $X ${Y:-d} '$X' \\$X ${X:+alt} ${EMPTY:-e} ${EMPTY:+no}", env) == \
        ["a=b c", "1", "d", "$X", "$X", "alt", "e", ""]
    assert words('"a $X"b', env) == ["a 1b"]
    for bad in ('"open', "'open", "${X", "${X?err}"):
        with pytest.raises(DockerfileError):
            words(bad, env)


def test_env_and_label_pairs_both_forms():
    assert key_values('A=1 B="two words" C=${A:-z}', {}, "\\", "ENV", 3) == \
        [("A", "1"), ("B", "two words"), ("C", "z")]
    assert key_values("OLD some value", {}, "\\", "ENV", 3) == [("OLD", "some value")]
    with pytest.raises(DockerfileError, match="line 3: ENV must have two arguments"):
        key_values("LONELY", {}, "\\", "ENV", 3)


def test_dockerignore_last_match_wins_and_directories_cover_their_contents():
    pats = ignore_patterns("# comment\n*.md\n!README.md\nbuild\n**/*.pyc\n/tmp/\n")
    verdicts = {p: ignored(p, pats) for p in
                ["x.md", "README.md", "build/a/b", "a/b/c.pyc", "c.pyc", "src/x.md", "tmp/f", "keep"]}
    assert verdicts == {"x.md": True, "README.md": False, "build/a/b": True, "a/b/c.pyc": True,
                        "c.pyc": True, "src/x.md": False, "tmp/f": True, "keep": False}


def _context(files: dict[str, bytes | None], extra=()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info)
    return buf.getvalue()


def test_context_select_ignore_and_checksum():
    data = _context({"Dockerfile": b"FROM busybox\n", ".dockerignore": b"secret*\n",
                     "app": None, "app/main.py": b"print(1)\n", "app/lib": None,
                     "app/lib/x.py": b"x\n", "secret.key": b"k", "a.txt": b"a", "b.txt": b"b"})
    c = ctx.Context(data)
    assert c.dockerfile() == b"FROM busybox\n"
    assert "secret.key" not in c.members
    assert [rel for rel, _ in c.select("app")] == ["lib", "lib/x.py", "main.py"]
    assert [rel for rel, _ in c.select("./app/main.py")] == ["main.py"]
    assert [rel for rel, _ in c.select("*.txt")] == ["a.txt", "b.txt"]
    before = c.checksum(c.select("app"))
    changed = ctx.Context(_context({"app": None, "app/main.py": b"print(2)\n", "app/lib": None,
                                    "app/lib/x.py": b"x\n"}))
    same = ctx.Context(_context({"app": None, "app/main.py": b"print(1)\n", "app/lib": None,
                                 "app/lib/x.py": b"x\n"}))
    assert changed.checksum(changed.select("app")) != before
    assert same.checksum(same.select("app")) == before
    with pytest.raises(ctx.ContextError, match="forbidden path outside the build context: ../x"):
        c.select("../x")
    with pytest.raises(ctx.ContextError, match="stat secret.key: file does not exist"):
        c.select("secret.key")
    with pytest.raises(ctx.ContextError, match="Cannot locate specified Dockerfile: Nope"):
        c.dockerfile("Nope")


def test_a_context_whose_members_escape_is_refused():
    evil = tarfile.TarInfo("../../etc/evil")
    with pytest.raises(ctx.ContextError, match="forbidden path outside the build context"):
        ctx.Context(_context({}, [evil]))
    link = tarfile.TarInfo("x")
    link.type, link.linkname = tarfile.LNKTYPE, "../../etc/shadow"
    with pytest.raises(ctx.ContextError, match="forbidden path"):
        ctx.Context(_context({}, [link]))
    with pytest.raises(ctx.ContextError, match="not a tar archive"):
        ctx.Context(b"this is no tar")
