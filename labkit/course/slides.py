"""Slides: one Markdown deck per chapter, built offline into one self-contained HTML file.

Theory of operation
-------------------
A deck is `slides/NN-topic.md`: Markdown, one slide per part between lines that hold only
`---`. The first `# heading` is the deck's title. Diagrams come in two forms:

    ![caption](diagrams/00-flow.dot)       a graphviz file, relative to the deck
    ```diagram                             a call to labkit.course.diagrams, with literal
    layers_diagram(highlight="L1")         arguments only (it is parsed with `ast`, never
    ```                                    run as code)

Speaker notes: a line holding only `???` (as in remark.js) ends what the audience sees;
the Markdown after it, up to the next `---`, is what the instructor says, the demo to run and
the question students ask. Every slide should have some (tests/slides checks).

`build()` turns each deck into `slides/build/NN-topic.html`: Markdown -> HTML with the
`markdown` package, each diagram run through Debian's `dot -Tsvg` (via the graphviz package)
and pasted in as an inline <svg>, the CSS and a few lines of JavaScript (arrow keys, space,
Home/End, the slide number in the URL's #fragment) written into the same file. Nothing is
loaded from anywhere else, so a deck opens from a USB stick in a classroom without a network;
links in the text are still links.

A diagram takes the room its slide's text leaves (the slide is a flex column, the figure
grows): the SVG is shrunk to fit, never enlarged, so its labels are drawn at their font size
times that shrink. tests/slides/test_readability.py shows each slide in headless Chromium at
1280x720, a projector's resolution, and fails for a label under 14 px: draw diagrams with
12-point labels (16 px unshrunk) and few enough rows that they need little shrinking.

Presenting: the notes are in the page but hidden. `n` shows the current slide's notes beside
it (for rehearsing, or a laptop on its own); `p` opens a second window, the presenter view
(the same file with `?presenter`: notes, the next slide's title, a clock), for the laptop's
screen while the projector shows the deck. The two windows follow each other: moving in
either moves both (window.postMessage, which works between file:// pages too). A presenter
view that has just loaded asks the deck where it is, so a key pressed while it was still
loading is not lost.

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
_NOTES = re.compile(r"^\?\?\?\s*$")
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
    slides: list[str]            # the Markdown of each slide, what the audience sees
    notes: list[str]             # each slide's speaker notes (Markdown; "" for none)

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


def split_notes(slide: str) -> tuple[str, str]:
    """(what the audience sees, the speaker notes): a slide's Markdown cut at its first line
    holding only `???` outside a fenced code block."""
    fenced = False
    lines = slide.splitlines()
    for i, line in enumerate(lines):
        if _FENCE.match(line):
            fenced = not fenced
        elif _NOTES.match(line) and not fenced:
            return "\n".join(lines[:i]).strip(), "\n".join(lines[i + 1:]).strip()
    return slide, ""


def read_deck(path: str | Path) -> Deck:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SlideError(f"cannot read deck {path}: {e.strerror}") from None
    parts = [split_notes(s) for s in split_slides(text)]
    if not parts:
        raise SlideError(f"deck {path} has no slides")
    slides = [body for body, _ in parts]
    title = next((m.group(1).strip() for m in re.finditer(r"^#\s+(.+)$", slides[0], re.MULTILINE)),
                 path.stem)
    return Deck(path, title, slides, [notes for _, notes in parts])


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
/* A slide is a column: heading, text, and a figure that takes the height that is left. */
.slide { display: none; box-sizing: border-box; width: 100vw; height: 100vh; padding: 4vh 7vw;
         background: #fdfefe; overflow: auto; font-size: min(2.6vh, 1.6vw); line-height: 1.45;
         flex-direction: column; }
.slide.active { display: flex; }
.slide > * { flex: none; }
.slide.title { justify-content: center; }
.slide.title h1 { font-size: 2.6em; }
h1 { font-size: 1.8em; color: #154360; margin: 0 0 0.5em; }
h2 { font-size: 1.3em; color: #1f618d; }
p, ul, ol, pre, table, blockquote { margin: 0 0 0.7em; }
code { font-family: "DejaVu Sans Mono", Menlo, monospace; font-size: 0.9em; background: #f2f3f4;
       padding: 0 0.2em; border-radius: 3px; }
pre { background: #f2f3f4; padding: 0.7em 1em; border-radius: 6px; overflow-x: auto; }
pre code { padding: 0; background: none; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccd1d1; padding: 0.2em 0.6em; }
/* The figure grows into the room left; its SVG shrinks to fit it (never grows past its size). */
.slide > figure.diagram { flex: 1 1 0; min-height: 0; margin: 0 0 0.5em; display: flex;
                          flex-direction: column; align-items: center; justify-content: center; }
figure.diagram svg { flex: 0 1 auto; min-height: 0; max-width: 100%; max-height: 100%;
                     width: auto; height: auto; }
figcaption { flex: none; font-size: 0.8em; color: #5d6d7e; }
a { color: #1f618d; }
#counter { position: fixed; right: 1.2em; bottom: 0.8em; font-size: 14px; color: #839192; }
/* Speaker notes: in the page, never on the audience's screen. */
.notes { display: none; }
#presenter-bar { display: none; }
body.presenter .slide { width: 62vw; }
body.presenter .slide.active .notes { display: block; position: fixed; top: 0; right: 0;
    box-sizing: border-box; width: 38vw; height: 100vh; overflow: auto; margin: 0;
    padding: 3.2em 1.4em 1em; background: #fbfcfc; border-left: 4px solid #1f618d;
    font-size: 17px; line-height: 1.5; color: #1b2631; }
body.presenter #presenter-bar { display: block; position: fixed; top: 0; right: 0; z-index: 1;
    box-sizing: border-box; width: 38vw; padding: 0.6em 1.4em; background: #1f618d;
    color: #fdfefe; font-size: 15px; }
body.presenter #counter { right: calc(38vw + 1.2em); }
@media print {
  html, body { background: none; }
  .slide, .slide.title { display: block !important; height: auto; page-break-after: always; }
  #counter, #presenter-bar { display: none; }
}
"""

# Arrow keys / space / PageUp / PageDown / Home / End move; the slide number is the URL's
# #fragment, so reloading the page (or sending someone a link) keeps the place. `n` toggles the
# notes beside the slide; `p` opens the presenter view in a second window, and the two follow
# each other through postMessage (it works between file:// pages, which share no origin).
_JS = """
(function () {
  var slides = document.querySelectorAll('.slide'), counter = document.getElementById('counter');
  var bar = document.getElementById('presenter-bar');
  var current = 0, started = Date.now();
  var presenter = /[?&]presenter\\b/.test(location.search);
  var partner = presenter ? window.opener : null;   // the other window, if any
  function title(n) {
    var h = slides[n] && slides[n].querySelector('h1');
    return h ? h.textContent : '';
  }
  function tick() {
    var s = Math.floor((Date.now() - started) / 1000);
    var next = current + 1 < slides.length ? 'next: ' + title(current + 1) : 'last slide';
    bar.textContent = (current + 1) + ' / ' + slides.length + ' \u00b7 ' + Math.floor(s / 60) +
      ':' + ('0' + s % 60).slice(-2) + ' \u00b7 ' + next;
  }
  function show(n, quiet) {
    current = Math.max(0, Math.min(slides.length - 1, n));
    for (var i = 0; i < slides.length; i++) slides[i].classList.toggle('active', i === current);
    counter.textContent = (current + 1) + ' / ' + slides.length;
    if (location.hash !== '#' + (current + 1)) history.replaceState(null, '', '#' + (current + 1));
    tick();
    if (partner && !partner.closed && !quiet) partner.postMessage({labkitSlide: current + 1}, '*');
  }
  document.addEventListener('keydown', function (e) {
    var k = e.key;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (k === 'ArrowRight' || k === 'ArrowDown' || k === ' ' || k === 'PageDown') show(current + 1);
    else if (k === 'ArrowLeft' || k === 'ArrowUp' || k === 'PageUp') show(current - 1);
    else if (k === 'Home') show(0);
    else if (k === 'End') show(slides.length - 1);
    else if (k === 'n') { document.body.classList.toggle('presenter'); tick(); }
    else if (k === 'p') {
      partner = window.open(location.pathname + '?presenter#' + (current + 1), 'labkit-presenter');
    }
    else return;
    e.preventDefault();
  });
  window.addEventListener('message', function (e) {
    if (e.source !== partner || !e.data) return;
    if (typeof e.data.labkitSlide === 'number') show(e.data.labkitSlide - 1, true);
    // the presenter view has just loaded: whatever moved before it could listen, it learns now
    else if (e.data.labkitHello) partner.postMessage({labkitSlide: current + 1}, '*');
  });
  window.addEventListener('hashchange', function () { show(parseInt(location.hash.slice(1), 10) - 1 || 0); });
  if (presenter) { document.body.classList.add('presenter'); setInterval(tick, 1000); }
  show(parseInt(location.hash.slice(1), 10) - 1 || 0, presenter);
  if (partner) partner.postMessage({labkitHello: true}, '*');   // ask the deck where it is
})();
"""


def render_deck(deck: Deck) -> str:
    """The deck as one self-contained HTML document."""
    sections = []
    for i, (text, notes) in enumerate(zip(deck.slides, deck.notes), 1):
        body = render_slide(text, deck.source.parent, f"{deck.source.name}, slide {i}")
        if notes:
            body += ('\n<aside class="notes">'
                     + markdown.markdown(notes, extensions=["fenced_code", "tables", "sane_lists"])
                     + "</aside>")
        css_class = "slide title" if i == 1 else "slide"
        sections.append(f'<section class="{css_class}" id="slide-{i}">\n{body}\n</section>')
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(deck.title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            + "\n".join(sections)
            + '\n<div id="counter"></div><div id="presenter-bar"></div>'
            + f'\n<script>{_JS}</script>\n</body>\n</html>\n')


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
