"""labkit-ctr's output helpers: ctr's tabwriter layout and containerd's byte sizes."""

from __future__ import annotations

import io

import pytest

from labkit.ctr import output
from labkit.ctr.tasks import parse_signal


@pytest.mark.parametrize("n, text", [(0, "0.0 B"), (1023, "1023.0 B"), (1024, "1.0 KiB"),
                                     (791347, "772.8 KiB"), (2202009, "2.1 MiB"),
                                     (5 << 30, "5.0 GiB")])
def test_size_in_binary_units_with_one_decimal(n, text):
    assert output.size(n) == text


def test_table_pads_every_column_to_its_widest_cell_plus_one():
    out = io.StringIO()
    output.table(["TASK", "PID", "STATUS"], [["sleeper", "4242", "RUNNING"], ["a", "1", "STOPPED"]],
                 out)
    assert out.getvalue().splitlines() == ["TASK    PID  STATUS  ",
                                           "sleeper 4242 RUNNING ",
                                           "a       1    STOPPED "]


def test_labels_sorted_or_a_dash():
    assert output.labels({"b": "2", "a": "1"}) == "a=1,b=2"
    assert output.labels({}) == "-"


@pytest.mark.parametrize("name", ["9", "KILL", "kill", "SIGKILL"])
def test_signal_names_as_ctr_takes_them(name):
    assert parse_signal(name) == 9


def test_unknown_signal_is_an_error():
    with pytest.raises(ValueError, match="unknown signal SIGNOPE"):
        parse_signal("nope")
