"""The decks build offline into self-contained HTML: one file per deck, several slides each,
diagrams inlined as SVG, and nothing loaded from the network (links in the text are fine:
they load nothing until clicked)."""

from __future__ import annotations

import re

import pytest

from labkit.course import slides

DECKS = sorted(slides.SLIDES_DIR.glob("[0-9][0-9]-*.md"))

# What makes a browser fetch something by itself: src= on any element (img, script, iframe,
# audio…), href= on <link> (stylesheets, icons), CSS url(…) and @import — and in SVG, an
# <image>/<use> whose (xlink:)href points elsewhere.
_EXTERNAL = [
    re.compile(r"""\bsrc\s*=\s*["']?\s*(https?:)?//""", re.I),
    re.compile(r"""<link\b[^>]*\bhref\s*=\s*["']?\s*(https?:)?//""", re.I),
    re.compile(r"""url\(\s*["']?\s*(https?:)?//""", re.I),
    re.compile(r"""@import""", re.I),
    re.compile(r"""<(image|use|script|iframe|img)\b[^>]*\bhref\s*=\s*["']?\s*(https?:)?//""", re.I),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("slides")
    paths = slides.build(slides.SLIDES_DIR, out)
    return {p.stem: p.read_text(encoding="utf-8") for p in paths}


def test_chapters_00_and_01_have_decks():
    names = [d.stem for d in DECKS]
    assert "00-docker-run-hello-world" in names and "01-processes-and-namespaces" in names


def test_one_html_per_deck(built):
    assert sorted(built) == [d.stem for d in DECKS]


@pytest.mark.parametrize("deck", [d.stem for d in DECKS])
def test_each_deck_has_slides_and_inline_svg(built, deck):
    html = built[deck]
    assert html.startswith("<!DOCTYPE html>")
    assert html.count('<section class="slide') >= 5
    assert html.count("<svg") >= 2, "each deck draws its diagrams with graphviz"
    assert "<?xml" not in html and "<!DOCTYPE svg" not in html
    assert "<script>" in html and "ArrowRight" in html        # navigation, inline


@pytest.mark.parametrize("deck", [d.stem for d in DECKS])
def test_nothing_is_loaded_from_elsewhere(built, deck):
    html = built[deck]
    for pattern in _EXTERNAL:
        m = pattern.search(html)
        assert m is None, f"{deck}: loads an external resource: {html[m.start():m.start() + 120]!r}"
    assert re.search(r'<a href="https?://', html), "the man page links are kept as links"


def test_split_ignores_separators_in_code_blocks():
    text = "# one\n---\n```\n---\n```\n---\n# three"
    assert len(slides.split_slides(text)) == 3


def test_diagram_blocks_take_literals_only(tmp_path):
    deck = tmp_path / "07-x.md"
    deck.write_text('# x\n\n```diagram\nlayers_diagram(highlight=__import__("os").getcwd())\n```\n')
    with pytest.raises(slides.SlideError, match=r"07-x.md, slide 1: the arguments .* must be literals"):
        slides.build(tmp_path, tmp_path / "out")


def test_bad_decks_get_clear_errors(tmp_path):
    (tmp_path / "08-y.md").write_text("# y\n---\n![missing](nowhere.dot)\n")
    with pytest.raises(slides.SlideError, match=r"08-y.md, slide 2: diagram file nowhere.dot not found"):
        slides.build(tmp_path, tmp_path / "out")
    (tmp_path / "08-y.md").write_text("# y\n```diagram\nprocess_tree()\n```\n")
    with pytest.raises(slides.SlideError, match="unknown diagram 'process_tree'"):
        slides.build(tmp_path, tmp_path / "out")
    (tmp_path / "08-y.md").write_text("# y\n```diagram\nlayers_diagram(highlight='L9')\n```\n")
    with pytest.raises(slides.SlideError, match="unknown layer 'L9'"):
        slides.build(tmp_path, tmp_path / "out")
    (tmp_path / "08-y.md").write_text("# y\n![broken](b.dot)\n")
    (tmp_path / "b.dot").write_text("digraph { a -> }")
    with pytest.raises(slides.SlideError, match="b.dot: dot failed"):
        slides.build(tmp_path, tmp_path / "out")
    with pytest.raises(slides.SlideError, match="no decks"):
        slides.build(tmp_path / "out", tmp_path / "out2")


def test_the_module_builds_from_the_command_line(tmp_path):
    assert slides.main(["--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{d.stem}.html" for d in DECKS]


def test_notes_follow_a_line_of_three_question_marks():
    body, notes = slides.split_notes("# t\n\n- a\n\n???\n\nSay *this*; run `that`.")
    assert body == "# t\n\n- a" and notes == "Say *this*; run `that`."
    assert slides.split_notes("# t\n```\n???\n```") == ("# t\n```\n???\n```", ""), \
        "??? inside a code block is code"
    assert slides.split_notes("# no notes") == ("# no notes", "")


def test_notes_are_in_the_page_but_not_on_the_slide(tmp_path):
    (tmp_path / "03-z.md").write_text("# z\n\nshown\n\n???\n\nthe *secret* plan\n---\n# two\n")
    html = slides.build(tmp_path, tmp_path / "out")[0].read_text()
    assert '<aside class="notes"><p>the <em>secret</em> plan</p></aside>' in html
    assert html.index("shown") < html.index('<aside class="notes">') < html.index('id="slide-2"')
    assert ".notes { display: none; }" in html
