"""Slides: one Markdown deck per chapter, built offline into one self-contained HTML file.

Theory of operation
-------------------
A deck is `slides/NN-topic.md`: Markdown, one slide per part between lines that hold only
`---`. The first `# heading` is the deck's title. Diagrams come in two forms:

    ![caption](diagrams/00-flow.dot)       a graphviz file, relative to the deck
    ```diagram                             a call to labkit.course.diagrams, with literal
    layers_diagram(highlight="L1")         arguments only (it is parsed with `ast`, never
    ```                                    run as code)

`build()` turns each deck into `slides/build/NN-topic.html`: Markdown -> HTML with the
`markdown` package, each diagram run through Debian's `dot -Tsvg` (via the graphviz package)
and pasted in as an inline <svg>, the CSS and a few lines of JavaScript (arrow keys, space,
Home/End, the slide number in the URL's #fragment) written into the same file. Nothing is
loaded from anywhere else, so a deck opens from a USB stick in a classroom without a network;
links in the text are still links.

    python -m labkit.course.slides [--source slides/] [--out slides/build/]
"""

from __future__ import annotations

import argparse
import ast
import html
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import graphviz
import markdown

from labkit.course import diagrams

# The repository's slides/ directory (labkit is installed editable, from the repository).
SLIDES_DIR = Path(__file__).resolve().parents[2] / "slides"

_SEPARATOR = re.compile(r"^---\s*$")
_FENCE = re.compile(r"^(```|~~~)")
_DOT_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+\.dot)\)")
_DIAGRAM_BLOCK = re.compile(r"^```diagram[ \t]*\n(.*?)\n```[ \t]*$", re.DOTALL | re.MULTILINE)
# diagrams.py functions a deck may call: the ones that draw from arguments, not from the host
_DIAGRAM_FUNCTIONS = ("layers_diagram", "request_sequence", "image_diagram")


class SlideError(ValueError):
    """A deck could not be built; the message names the deck, the slide and what was wrong."""


@dataclass
class Deck:
    source: Path
    title: str
    slides: list[str]            # the Markdown of each slide

    @property
    def name(self) -> str:
        return self.source.stem  # "00-docker-run-hello-world"


def split_slides(text: str) -> list[str]:
    """Split a deck at lines that hold only `---`, except inside fenced code blocks."""
    slides, current, fenced = [], [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        if _SEPARATOR.match(line) and not fenced:
            slides.append("\n".join(current).strip())
            current = []
        else:
            current.append(line)
    slides.append("\n".join(current).strip())
    return [s for s in slides if s]


def read_deck(path: str | Path) -> Deck:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SlideError(f"cannot read deck {path}: {e.strerror}") from None
    slides = split_slides(text)
    if not slides:
        raise SlideError(f"deck {path} has no slides")
    title = next((m.group(1).strip() for m in re.finditer(r"^#\s+(.+)$", slides[0], re.MULTILINE)),
                 path.stem)
    return Deck(path, title, slides)


def svg_inline(g: graphviz.Source | graphviz.Digraph | graphviz.Graph) -> str:
    """The SVG of a graph, ready to paste into HTML: without the XML prologue and the DOCTYPE
    (whose DTD URL a browser would not load, but which has no place inside HTML)."""
    svg = g.pipe(format="svg").decode()
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg


def _diagram_call(source: str, where: str) -> graphviz.Digraph:
    """Run a ```diagram block: one call to a diagrams function with literal arguments."""
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as e:
        raise SlideError(f"{where}: the diagram block is not a call: {e.msg}") from None
    call = tree.body
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
        raise SlideError(f"{where}: a diagram block must be one call, e.g. layers_diagram()")
    name = call.func.id
    if name not in _DIAGRAM_FUNCTIONS:
        raise SlideError(f"{where}: unknown diagram {name!r}: expected one of "
                         f"{', '.join(_DIAGRAM_FUNCTIONS)}")
    try:
        args = [ast.literal_eval(a) for a in call.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    except ValueError:
        raise SlideError(f"{where}: the arguments of {name}() must be literals "
                         "(strings, numbers, lists, dicts)") from None
    try:
        return getattr(diagrams, name)(*args, **kwargs)
    except (TypeError, ValueError) as e:
        raise SlideError(f"{where}: {name}(): {e}") from None


def _render(g, where: str) -> str:
    try:
        return svg_inline(g)
    except (graphviz.ExecutableNotFound, subprocess.CalledProcessError) as e:
        detail = getattr(e, "stderr", b"") or b""
        detail = detail.decode(errors="replace").strip() if isinstance(detail, bytes) else str(detail)
        raise SlideError(f"{where}: dot failed: {detail or e}") from None


def render_slide(text: str, deck_dir: Path, where: str) -> str:
    """One slide's Markdown -> HTML, diagrams inlined as SVG."""
    figures: list[str] = []

    def placeholder(svg: str, caption: str = "") -> str:
        figures.append(f'<figure class="diagram">{svg}'
                       + (f"<figcaption>{html.escape(caption)}</figcaption>" if caption else "")
                       + "</figure>")
        # a paragraph of its own that Markdown leaves alone; swapped for the figure below
        return f"\n\nLABKITFIGURE{len(figures) - 1}\n\n"

    def dot_file(m: re.Match) -> str:
        path = (deck_dir / m.group(2)).resolve()
        try:
            source = path.read_text(encoding="utf-8")
        except OSError:
            raise SlideError(f"{where}: diagram file {m.group(2)} not found (looked in "
                             f"{path})") from None
        return placeholder(_render(graphviz.Source(source), f"{where}, {m.group(2)}"), m.group(1))

    def diagram_block(m: re.Match) -> str:
        return placeholder(_render(_diagram_call(m.group(1), where), where))

    text = _DIAGRAM_BLOCK.sub(diagram_block, text)
    text = _DOT_IMAGE.sub(dot_file, text)
    body = markdown.markdown(text, extensions=["fenced_code", "tables", "sane_lists"])
    for i, figure in enumerate(figures):
        body = body.replace(f"<p>LABKITFIGURE{i}</p>", figure)
    return body


_CSS = """
html, body { margin: 0; height: 100%; background: #1b2631; }
body { font-family: "Helvetica Neue", Helvetica, Arial, sans-serif; color: #1b2631; }
.slide { display: none; box-sizing: border-box; width: 100vw; height: 100vh; padding: 4vh 7vw;
         background: #fdfefe; overflow: auto; font-size: min(2.6vh, 1.6vw); line-height: 1.45; }
.slide.active { display: block; }
.slide.title { display: none; flex-direction: column; justify-content: center; }
.slide.title.active { display: flex; }
.slide.title h1 { font-size: 2.6em; }
h1 { font-size: 1.8em; color: #154360; margin: 0 0 0.6em; }
h2 { font-size: 1.3em; color: #1f618d; }
code { font-family: "DejaVu Sans Mono", Menlo, monospace; font-size: 0.9em; background: #f2f3f4;
       padding: 0 0.2em; border-radius: 3px; }
pre { background: #f2f3f4; padding: 0.7em 1em; border-radius: 6px; overflow-x: auto; }
pre code { padding: 0; background: none; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccd1d1; padding: 0.2em 0.6em; }
figure.diagram { margin: 0.5em 0; text-align: center; }
figure.diagram svg { max-width: 100%; max-height: 52vh; height: auto; }
figcaption { font-size: 0.8em; color: #5d6d7e; }
a { color: #1f618d; }
#counter { position: fixed; right: 1.2em; bottom: 0.8em; font-size: 14px; color: #839192; }
@media print {
  html, body { background: none; }
  .slide, .slide.title { display: block !important; height: auto; page-break-after: always; }
  #counter { display: none; }
}
"""

# Arrow keys / space / PageUp / PageDown / Home / End move; the slide number is the URL's
# #fragment, so reloading the page (or sending someone a link) keeps the place.
_JS = """
(function () {
  var slides = document.querySelectorAll('.slide'), counter = document.getElementById('counter');
  var current = 0;
  function show(n) {
    current = Math.max(0, Math.min(slides.length - 1, n));
    for (var i = 0; i < slides.length; i++) slides[i].classList.toggle('active', i === current);
    counter.textContent = (current + 1) + ' / ' + slides.length;
    if (location.hash !== '#' + (current + 1)) history.replaceState(null, '', '#' + (current + 1));
  }
  document.addEventListener('keydown', function (e) {
    var k = e.key;
    if (k === 'ArrowRight' || k === 'ArrowDown' || k === ' ' || k === 'PageDown') show(current + 1);
    else if (k === 'ArrowLeft' || k === 'ArrowUp' || k === 'PageUp') show(current - 1);
    else if (k === 'Home') show(0);
    else if (k === 'End') show(slides.length - 1);
    else return;
    e.preventDefault();
  });
  window.addEventListener('hashchange', function () { show(parseInt(location.hash.slice(1), 10) - 1 || 0); });
  show(parseInt(location.hash.slice(1), 10) - 1 || 0);
})();
"""


def render_deck(deck: Deck) -> str:
    """The deck as one self-contained HTML document."""
    sections = []
    for i, text in enumerate(deck.slides, 1):
        body = render_slide(text, deck.source.parent, f"{deck.source.name}, slide {i}")
        css_class = "slide title" if i == 1 else "slide"
        sections.append(f'<section class="{css_class}" id="slide-{i}">\n{body}\n</section>')
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(deck.title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            + "\n".join(sections)
            + f'\n<div id="counter"></div>\n<script>{_JS}</script>\n</body>\n</html>\n')


def build(source: str | Path = SLIDES_DIR, out: str | Path | None = None) -> list[Path]:
    """Build every deck `source/NN-*.md` into `out` (default `source/build/`); return the
    HTML files written, in order."""
    source = Path(source)
    out = Path(out) if out is not None else source / "build"
    decks = sorted(p for p in source.glob("[0-9][0-9]-*.md"))
    if not decks:
        raise SlideError(f"no decks (NN-topic.md) in {source}")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in decks:
        target = out / f"{path.stem}.html"
        target.write_text(render_deck(read_deck(path)), encoding="utf-8")
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m labkit.course.slides",
                                description="build each slides/NN-topic.md into one HTML file")
    p.add_argument("--source", default=str(SLIDES_DIR), help="the decks (default: %(default)s)")
    p.add_argument("--out", help="where the HTML goes (default: SOURCE/build)")
    args = p.parse_args(argv)
    try:
        for path in build(args.source, args.out):
            print(path)
    except SlideError as e:
        print(f"slides: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
