"""Signal names and numbers, read the way Docker and runc read them: the one parser for both.

A signal reaches labkit as text from three directions -- `docker kill --signal KILL`, an
image's `StopSignal: "SIGQUIT"`, and `labkit-runc kill ID 9` (the shim sends numbers) -- and
all of them accept the same forms:

    "KILL", "kill", "SIGKILL", "sigkill"   by name, with or without SIG, in any case
    "9"                                    by number, 1 to 64 (Linux has NSIG = 65)

Signal 0 is refused: kill(2) with 0 sends nothing (it only checks that the process exists),
so "stop this container with signal 0" is a mistake, not a request. Any layer may import this
module; it imports only the standard library. Each layer turns the ValueError into its own
error (dockerd: a 400 "Invalid signal: …"; labkit-runc: "unknown signal …").
"""

from __future__ import annotations

# The numbers come from _signal, the C module that `signal` wraps: `signal` turns them into
# enums, and importing enum (with functools and collections) would cost every labkit-runc
# command ~5 ms -- the runtime's `kill` and `delete` need the numbers, not the enums.
import _signal

# The highest signal number plus one (the real-time signals SIGRTMIN..SIGRTMAX included).
NSIG = _signal.NSIG
SIGKILL, SIGTERM = _signal.SIGKILL, _signal.SIGTERM
SIGRTMIN, SIGRTMAX = _signal.SIGRTMIN, _signal.SIGRTMAX

# name -> number, the names signal.Signals has (SIGIOT, SIGCLD and SIGPOLL are other names
# of SIGABRT, SIGCHLD and SIGIO; not SIG_DFL, SIG_IGN, SIG_BLOCK …, which are not signals)
_NUMBERS = {name: number for name, number in vars(_signal).items()
            if name.startswith("SIG") and not name.startswith("SIG_")}
# number -> name, the one signal.Signals(number).name gives: the first in alphabetical order
_NAMES = {}
for _name, _number in sorted(_NUMBERS.items()):
    _NAMES.setdefault(_number, _name)
del _name, _number


def parse_signal(value: str | int) -> int:
    """"SIGTERM", "TERM", "term", "15" (or 15) -> 15; anything else is a ValueError that names
    what was given."""
    text = str(value).strip().upper()
    if text.isdigit():
        number = int(text)
        if 0 < number < NSIG:
            return number
    elif text:
        name = text if text.startswith("SIG") else "SIG" + text
        if name in _NUMBERS:
            return _NUMBERS[name]
    raise ValueError(f"invalid signal {value!r}: expected a name such as KILL or SIGTERM, "
                     f"or a number from 1 to {NSIG - 1}")


def signal_name(number: int) -> str:
    """15 -> "SIGTERM"; a number without a name (a real-time signal) -> "SIGRTMIN+3" or "SIG40"."""
    if number in _NAMES:
        return _NAMES[number]
    if SIGRTMIN < number < SIGRTMAX:
        return f"SIGRTMIN+{number - SIGRTMIN}"
    if not 0 < number < NSIG:
        raise ValueError(f"invalid signal number {number}: expected 1 to {NSIG - 1}")
    return f"SIG{number}"


__all__ = ["NSIG", "SIGKILL", "SIGTERM", "SIGRTMIN", "SIGRTMAX", "parse_signal", "signal_name"]
