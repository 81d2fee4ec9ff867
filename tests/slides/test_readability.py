"""The decks as an audience sees them: each built deck is opened in headless Chromium in a
1280×720 window (a projector's resolution), every slide is shown in turn, and the size every
diagram label is really drawn at is measured. Also: every slide has speaker notes, hidden
from the audience and shown by the presenter view.

How a label's size is measured: graphviz writes `font-size` in the SVG's own units, and the
page scales the whole <svg> to fit the slide, so the size on screen is the computed font-size
times the scale from the <text> element's coordinates to the screen — `getScreenCTM()`, which
includes the viewBox, graphviz's own transform and the CSS scaling. A probe script, appended to
a copy of the deck, does that for every slide and writes the results into the page as JSON;
`chromium --headless --dump-dom` prints the page after its scripts ran. Nothing else is
needed: no driver, no Python binding, only Debian's chromium (vagrant/setup.sh installs it).

Run on its own:  python tests/slides/test_readability.py DECK.html…   prints the measurements.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from labkit.course import slides

WIDTH, HEIGHT = 1280, 720
MIN_PX = 14          # the smallest label a projected slide may have, in CSS px

pytestmark = pytest.mark.slow

# Run in the page (Runtime.evaluate): show each slide alone, as the deck's own script does,
# and measure it. Returns {viewport, slides: [{number, title, texts: [{text, px, inside}],
# overflow, notes, notes_visible}]}.
_PROBE = """
(function () {
  var out = {viewport: [innerWidth, innerHeight], slides: []};
  var sections = document.querySelectorAll('section.slide');
  function visible(el) {
    var r = el.getBoundingClientRect(), s = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none';
  }
  for (var k = 0; k < sections.length; k++) {
    for (var i = 0; i < sections.length; i++) sections[i].classList.toggle('active', i === k);
    var sec = sections[k], texts = [];
    sec.querySelectorAll('svg text').forEach(function (t) {
      var m = t.getScreenCTM(), fs = parseFloat(getComputedStyle(t).fontSize);
      var scale = m ? Math.sqrt(Math.abs(m.a * m.d - m.b * m.c)) : 0;
      var r = t.getBoundingClientRect();
      texts.push({text: t.textContent, px: Math.round(fs * scale * 100) / 100,
                  inside: r.left >= -0.5 && r.top >= -0.5 && r.right <= innerWidth + 0.5 &&
                          r.bottom <= innerHeight + 0.5});
    });
    var notes = sec.querySelector('.notes');
    out.slides.push({
      number: k + 1,
      title: (sec.querySelector('h1') || {}).textContent || '',
      texts: texts,
      // the content must fit: a slide that needs scrolling hides part of itself
      overflow: Math.max(0, sec.scrollHeight - sec.clientHeight, sec.scrollWidth - sec.clientWidth),
      notes: notes ? notes.textContent.trim() : null,
      notes_visible: notes ? visible(notes) : false
    });
  }
  return out;
})()
"""

# Is the notes panel of the slide on screen visible?
_NOTES_SHOWN = """
(function () {
  var n = document.querySelector('section.slide.active .notes');
  if (!n) return false;
  var r = n.getBoundingClientRect(), s = getComputedStyle(n);
  return r.width > 0 && r.height > 0 && s.display !== 'none' && s.visibility !== 'hidden';
})()
"""


def chromium() -> str | None:
    """Debian's chromium (or another Chrome) on PATH, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


class Browser:
    """Headless Chromium driven through the Chrome DevTools Protocol over a pipe
    (`--remote-debugging-pipe`: commands are JSON, each ended by a NUL byte, written to the
    browser's fd 3; answers and events come back on its fd 4). Only the standard library.

    The page's viewport is set with Emulation.setDeviceMetricsOverride, not --window-size:
    a headless window's viewport is smaller than the window (the size of browser chrome it
    does not draw is still taken off), so 1280x720 would not be 1280x720."""

    def __init__(self, width: int = WIDTH, height: int = HEIGHT):
        exe = chromium()
        if exe is None:
            raise FileNotFoundError("chromium is not installed (apt-get install chromium)")
        self._tmp = tempfile.TemporaryDirectory(prefix="labkit-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # The child must find them as fds 3 and 4: copy them above 10 first, so that the
        # dup2()s below cannot overwrite one with the other; dup2 leaves the copies
        # inheritable, and close_fds=False keeps them (Python's own fds are not inheritable).
        child_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD_CLOEXEC, 10)
        child_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD_CLOEXEC, 10)
        for fd in (to_browser_r, from_browser_w):
            os.close(fd)

        def fds() -> None:
            os.dup2(child_r, 3)
            os.dup2(child_w, 4)
        # --user-data-dir and XDG_*: its profile, caches and crash-report folder in _tmp,
        # removed with it (nothing left in ~/.config or ~/.cache); --no-sandbox: the tests run
        # as root, which Chromium's sandbox refuses.
        env = dict(os.environ, XDG_CONFIG_HOME=f"{self._tmp.name}/config",
                   XDG_CACHE_HOME=f"{self._tmp.name}/cache")
        self._proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--no-first-run", "--mute-audio", "--remote-debugging-pipe",
             f"--user-data-dir={self._tmp.name}/profile", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=env, preexec_fn=fds, close_fds=False)
        os.close(child_r)
        os.close(child_w)
        self._buf = b""
        self._next_id = 0
        self._events: list[dict] = []
        try:
            target = self.send("Target.createTarget", url="about:blank")["targetId"]
            self._session = self.send("Target.attachToTarget", targetId=target,
                                      flatten=True)["sessionId"]
            self.send("Page.enable", session=True)
            self.send("Emulation.setDeviceMetricsOverride", session=True, width=width,
                      height=height, deviceScaleFactor=1, mobile=False)
        except BaseException:
            self.close()
            raise

    def _read_message(self, timeout: float = 60) -> dict:
        while b"\0" not in self._buf:
            if not select.select([self._from_browser], [], [], timeout)[0]:
                raise TimeoutError(f"chromium said nothing for {timeout} s")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe (it exited)")
            self._buf += chunk
        raw, _, self._buf = self._buf.partition(b"\0")
        return json.loads(raw)

    def send(self, method: str, session: bool = False, **params) -> dict:
        """One DevTools command; its result (events that arrive meanwhile are kept)."""
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self._session
        os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        while True:
            answer = self._read_message()
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer["result"]
            self._events.append(answer)

    def open(self, url: str) -> None:
        """Navigate and wait for the load event: a new document each time, even if only the
        #fragment differs from the page shown now (about:blank in between)."""
        for target in ("about:blank", url):
            self._events.clear()
            self.send("Page.navigate", session=True, url=target)
            while not any(e.get("method") == "Page.loadEventFired" for e in self._events):
                self._events.append(self._read_message())

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", session=True, expression=expression,
                           returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def key(self, key: str) -> None:
        """Press and release a key, as a person would (the page's keydown handlers run)."""
        text = {"text": key} if len(key) == 1 else {}      # "n" types; "ArrowRight" does not
        self.send("Input.dispatchKeyEvent", session=True, type="keyDown", key=key, **text)
        self.send("Input.dispatchKeyEvent", session=True, type="keyUp", key=key)

    def screenshot(self, path: Path) -> None:
        data = self.send("Page.captureScreenshot", session=True, format="png")["data"]
        Path(path).write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            os.write(self._to_browser, json.dumps({"id": 0, "method": "Browser.close"}).encode()
                     + b"\0")
        except OSError:
            pass
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()          # only the browser this object started
            self._proc.wait()
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        self._tmp.cleanup()

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def measure(deck_html: Path, browser: Browser) -> dict:
    """What _PROBE finds in `deck_html` at WIDTH×HEIGHT, plus whether pressing n shows the
    first slide's notes (notes_after_n) and pressing it again hides them."""
    browser.open(deck_html.as_uri() + "#1")
    result = browser.evaluate(_PROBE)
    browser.open(deck_html.as_uri() + "#1")          # fresh: the probe changed classes
    browser.key("n")
    result["notes_after_n"] = browser.evaluate(_NOTES_SHOWN)
    browser.key("n")
    result["notes_after_second_n"] = browser.evaluate(_NOTES_SHOWN)
    return result


# ---------------------------------------------------------------------------- the tests

DECKS = sorted(slides.SLIDES_DIR.glob("[0-9][0-9]-*.md"))


@pytest.fixture(scope="module")
def browser():
    if chromium() is None:
        pytest.skip("chromium is not installed: vagrant/setup.sh installs Debian's chromium, "
                    "which these tests use to show the slides at 1280x720")
    with Browser() as b:
        yield b


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> list[Path]:
    return slides.build(slides.SLIDES_DIR, tmp_path_factory.mktemp("slides"))


@pytest.fixture(scope="module")
def measured(built, browser) -> dict[str, dict]:
    return {p.stem: measure(p, browser) for p in built}


@pytest.mark.parametrize("deck", [d.stem for d in DECKS])
def test_every_diagram_label_is_readable_at_1280x720(measured, deck):
    result = measured[deck]
    assert result["viewport"] == [WIDTH, HEIGHT], "chromium did not open a 1280x720 viewport"
    assert any(s["texts"] for s in result["slides"]), "no diagram was measured"
    small = []
    for s in result["slides"]:
        under = sorted((t for t in s["texts"] if t["px"] < MIN_PX), key=lambda t: t["px"])
        if under:
            small.append(f"slide {s['number']} ({s['title']}): {len(under)} of "
                         f"{len(s['texts'])} labels, the smallest {under[0]['text']!r} "
                         f"at {under[0]['px']} px")
    assert not small, f"{deck}: labels under {MIN_PX} px at {WIDTH}x{HEIGHT}:\n" + "\n".join(small)
    hidden = [f"slide {s['number']}: {t['text']!r}" for s in result["slides"]
              for t in s["texts"] if not t["inside"]]
    assert not hidden, f"{deck}: labels outside the 1280x720 screen:\n" + "\n".join(hidden)


@pytest.mark.parametrize("deck", [d.stem for d in DECKS])
def test_every_slide_fits_the_screen(measured, deck):
    over = [f"slide {s['number']} ({s['title']}): {s['overflow']} px too long"
            for s in measured[deck]["slides"] if s["overflow"] > 1]
    assert not over, f"{deck}: slides that need scrolling at 1280x720:\n" + "\n".join(over)


@pytest.mark.parametrize("deck", [d.stem for d in DECKS])
def test_every_slide_has_speaker_notes_hidden_from_the_audience(measured, deck):
    result = measured[deck]
    missing = [s["number"] for s in result["slides"] if not s["notes"] or len(s["notes"]) < 80]
    assert not missing, f"{deck}: slides without speaker notes (or only a few words): {missing}"
    shown = [s["number"] for s in result["slides"] if s["notes_visible"]]
    assert not shown, f"{deck}: notes visible to the audience on slides {shown}"
    assert result["notes_after_n"], "pressing n does not show the current slide's notes"
    assert not result["notes_after_second_n"], "pressing n again does not hide the notes"


def test_presenter_url_opens_with_the_notes(built, browser):
    browser.open(built[0].as_uri() + "?presenter#2")
    assert browser.evaluate(_NOTES_SHOWN), "?presenter does not show the notes"


def _until(check, what: str, timeout: float = 10.0):
    """Poll `check()` until it returns something true (the windows talk asynchronously)."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout} s: {what}")
        time.sleep(0.05)
    return value


def test_the_presenter_window_and_the_deck_follow_each_other(built, browser):
    deck_session = browser._session
    browser.open(built[0].as_uri() + "#3")
    browser.key("p")                     # opens the presenter view in a second window
    target = _until(lambda: next((t for t in browser.send("Target.getTargets")["targetInfos"]
                                  if "?presenter" in t["url"]), None),
                    "p opened no window with ?presenter")
    presenter = browser.send("Target.attachToTarget", targetId=target["targetId"],
                             flatten=True)["sessionId"]
    try:
        browser.key("ArrowRight")        # in the deck: the presenter view follows
        browser._session = presenter
        _until(lambda: browser.evaluate("location.hash") == "#4",
               "the presenter view did not follow the deck to slide 4")
        assert browser.evaluate(_NOTES_SHOWN), "the presenter view shows no notes"
        browser.key("ArrowRight")        # in the presenter view: the deck follows
        browser._session = deck_session
        _until(lambda: browser.evaluate("location.hash") == "#5",
               "the deck did not follow the presenter view to slide 5")
        assert not browser.evaluate(_NOTES_SHOWN), "the audience's window shows the notes"
    finally:
        browser._session = deck_session
        browser.send("Target.closeTarget", targetId=target["targetId"])


def main(argv: list[str]) -> None:
    """python tests/slides/test_readability.py [--shots DIR] DECK.html…: print each diagram
    slide's smallest label; with --shots, a PNG of every slide too (what a person sees)."""
    shots = None
    if argv[:1] == ["--shots"]:
        shots, argv = Path(argv[1]), argv[2:]
        shots.mkdir(parents=True, exist_ok=True)
    with Browser() as b:
        for arg in map(Path, argv):
            r = measure(arg, b)
            print(f"{arg.name}  viewport {r['viewport']}")
            for s in r["slides"]:
                line = f"  slide {s['number']:2} {s['title'][:42]:42}"
                if s["texts"]:
                    t = min(s["texts"], key=lambda t: t["px"])
                    line += f" smallest {t['px']:6.2f} px {t['text'][:36]!r}"
                if s["overflow"] > 1:
                    line += f"  overflow {s['overflow']} px"
                print(line)
            if shots:
                for s in r["slides"]:
                    b.open(f"{arg.as_uri()}#{s['number']}")
                    b.screenshot(shots / f"{arg.stem[:2]}-{s['number']:02}.png")


if __name__ == "__main__":
    main(sys.argv[1:])
