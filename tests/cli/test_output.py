"""docker's formatting rules: tables and pull progress (durations and sizes: tests/test_units.py)."""

from __future__ import annotations

import io

from labkit.cli.output import ProgressPrinter, ellipsis, for_each, table
from labkit.client import APIError


def test_table_pads_with_three_spaces():
    out = table([["abc", "x"]], ["NAME", "VALUE"])
    assert out == "NAME   VALUE\nabc    x\n"


def test_for_each_tries_every_argument_and_reports_each_failure(capsys):
    done = []

    def remove(name: str) -> None:
        if name == "missing":
            raise APIError(404, "No such container: missing")
        done.append(name)

    assert for_each(["a", "missing", "b"], remove) == 1
    assert done == ["a", "b"]
    assert capsys.readouterr().err == "Error response from daemon: No such container: missing\n"
    assert for_each(["c"], remove) == 0


def test_ellipsis():
    assert ellipsis("sh -c 'echo hello from busybox'", 20) == "sh -c 'echo hello f…"


TRACE = [
    {"status": "Pulling from hello-world", "id": "latest"},
    {"status": "Pulling fs layer", "progressDetail": {}, "id": "04a6c31e335f"},
    {"status": "Downloading", "progressDetail": {"current": 3645, "total": 314132},
     "progress": "[>    ]  3.645kB/314.1kB", "id": "04a6c31e335f"},
    {"status": "Download complete", "progressDetail": {}, "id": "04a6c31e335f"},
    {"status": "Pull complete", "progressDetail": {}, "id": "04a6c31e335f"},
    {"status": "Digest: sha256:a55e"},
    {"status": "Status: Downloaded newer image for 127.0.0.1:5000/hello-world:latest"},
]


def test_progress_outside_a_terminal_is_what_the_cli_printed():
    # the stderr of `docker run --rm 127.0.0.1:5000/hello-world:latest` in the captured trace
    out = io.StringIO()
    p = ProgressPrinter(out, terminal=False)
    for m in TRACE:
        p.show(m)
    assert out.getvalue() == (
        "latest: Pulling from hello-world\n"
        "04a6c31e335f: Pulling fs layer\n"
        "04a6c31e335f: Download complete\n"
        "04a6c31e335f: Pull complete\n"
        "Digest: sha256:a55e\n"
        "Status: Downloaded newer image for 127.0.0.1:5000/hello-world:latest\n")


def test_progress_on_a_terminal_redraws_the_layer_line():
    out = io.StringIO()
    p = ProgressPrinter(out, terminal=True)
    for m in TRACE[:3]:
        p.show(m)
    text = out.getvalue()
    # one new line for the layer, then each update: cursor up, clear, draw, cursor down
    assert text.count("\x1b[1A") == 2 and text.count("\x1b[1B") == 2
    assert "04a6c31e335f: Downloading [>    ]  3.645kB/314.1kB\r" in text
