"""With no daemon, every client command says so in one line — never a traceback."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("args", [["ps"], ["images"], ["run", "--rm", "hello-world"],
                                  ["pull", "busybox"], ["rm", "x"], ["version"]])
def test_no_daemon_message(private_lab, args):
    r = private_lab.labkit(*args)
    assert r.returncode == 1
    expected = (f"cannot connect to labkit-dockerd at {private_lab.docker_host}: is the lab "
                "running? start it with: labkit lab up")
    assert r.stderr.strip().splitlines()[-1] == expected
    assert "Traceback" not in r.stderr


def test_host_flag_and_docker_host(private_lab):
    private_lab.env["DOCKER_HOST"] = "unix:///tmp/labkit-nothing-here.sock"
    r = private_lab.labkit("ps")
    assert "at unix:///tmp/labkit-nothing-here.sock:" in r.stderr
    r = private_lab.labkit("-H", "unix:///tmp/labkit-nothing-either.sock", "ps")
    assert "at unix:///tmp/labkit-nothing-either.sock:" in r.stderr


@pytest.mark.parametrize("args, message", [
    (["-H", "ssh://somewhere", "ps"], "labkit: invalid docker host 'ssh://somewhere'"),
    (["run", "Not/A/Valid:Reference:"], "labkit: invalid reference format"),
])
def test_bad_input_is_one_clear_line(private_lab, args, message):
    r = private_lab.labkit(*args)
    assert r.returncode != 0
    assert r.stderr.startswith(message), r.stderr
    assert "Traceback" not in r.stderr
