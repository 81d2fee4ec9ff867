"""labkit.signals: signal names and numbers as Docker (`docker kill --signal`, StopSignal) and
runc (`runc kill ID 9`) read them. (Each layer's own wording of the error -- dockerd's 400
"Invalid signal: …", labkit-runc's "unknown signal …" -- is tested with that layer.)"""

from __future__ import annotations

import signal

import pytest

from labkit.signals import NSIG, parse_signal, signal_name


@pytest.mark.parametrize("text,number", [
    ("KILL", 9), ("SIGKILL", 9), ("kill", 9), ("sigkill", 9), ("9", 9), (9, 9),
    ("TERM", 15), ("  SIGTERM ", 15), ("hup", 1), ("SIGUSR1", signal.SIGUSR1),
    ("RTMIN", signal.SIGRTMIN), ("64", 64), ("IOT", signal.SIGABRT),   # an alias
])
def test_names_and_numbers(text, number):
    assert parse_signal(text) == number


@pytest.mark.parametrize("bad", ["", "   ", "0", "65", "999", "-1", "-9", "SIGNOPE", "NOPE",
                                 "SIG", "9x", "SIG_DFL", "K ILL"])
def test_bad_input_is_a_clear_error(bad):
    with pytest.raises(ValueError) as e:
        parse_signal(bad)
    message = str(e.value)
    assert repr(bad) in message and "KILL" in message and f"1 to {NSIG - 1}" in message


def test_names_of_numbers():
    assert signal_name(9) == "SIGKILL" and signal_name(15) == "SIGTERM"
    assert signal_name(signal.SIGRTMIN + 3) == "SIGRTMIN+3"
    assert all(parse_signal(signal_name(n)) == n for n in signal.Signals)
    with pytest.raises(ValueError, match="invalid signal number 0"):
        signal_name(0)



def test_the_same_names_and_numbers_as_the_signal_module():
    """labkit.signals reads _signal (not signal's enums, for labkit-runc's start-up): every
    name signal.Signals has, and the name it gives each number."""
    for name, member in signal.Signals.__members__.items():
        assert parse_signal(name) == member.value, name
    for number in range(1, NSIG):
        try:
            expected = signal.Signals(number).name
        except ValueError:
            continue
        assert signal_name(number) == expected, number
