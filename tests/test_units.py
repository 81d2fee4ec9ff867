"""labkit.units: go-units' HumanDuration and HumanSize, shared by the CLI and the daemon."""

from __future__ import annotations

from labkit.units import human_duration, human_size, human_size_with_precision


def test_human_duration_matches_go_units():
    assert human_duration(0.5) == "Less than a second"
    assert human_duration(1) == "1 second"
    assert human_duration(59) == "59 seconds"
    assert human_duration(61) == "About a minute"
    assert human_duration(45 * 60) == "45 minutes"
    assert human_duration(3600) == "About an hour"
    assert human_duration(5 * 3600) == "5 hours"
    assert human_duration(3 * 86400) == "3 days"
    assert human_duration(20 * 86400) == "2 weeks"
    assert human_duration(90 * 86400) == "3 months"
    assert human_duration(3 * 365 * 86400) == "3 years"


def test_human_duration_rounds_hours_like_go():
    # go-units' own test cases: hours round to the nearest, half an hour rounds up.
    assert human_duration(3600 + 29 * 60) == "About an hour"
    assert human_duration(3600 + 31 * 60) == "2 hours"
    assert human_duration(2.5 * 3600) == "3 hours"
    assert human_duration(30 * 86400) == "4 weeks"
    assert human_duration(-5) == "Less than a second"


def test_human_size_is_decimal_three_digits():
    assert human_size_with_precision(13256, 3) == "13.3kB"
    assert human_size_with_precision(1980000, 3) == "1.98MB"
    assert human_size_with_precision(512, 3) == "512B"


def test_human_size_has_four_digits():
    assert human_size(3645) == "3.645kB"
    assert human_size(314132) == "314.1kB"
    assert human_size(0) == "0B"
