"""JupyterLab as a lab daemon, on a private lab (see conftest.py): 127.0.0.1 and a port in
15000-16000, never the lab's 8888. `labkit lab reset` (the fixture) stops it even when
a test fails; the tests below also check by PID that it is gone."""

from __future__ import annotations

import http.client
import os
import socket
import stat
import urllib.parse
from pathlib import Path

import pytest

from labkit import procfs
from labkit.lab import jupyter

UP_JUPYTER = ("from labkit.lab import control\n"
              "problems = control.up(names=['labkit-jupyter'])\n"
              "print('PROBLEMS', problems)\n")


def _get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def _status(lab) -> tuple[dict[str, list[str]], list[str]]:
    """The daemons' rows, and the lines after the table."""
    r = lab.labkit("lab", "status")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    blank = lines.index("")
    rows = {}
    for line in lines[1:blank]:
        cells = [c.strip() for c in line.split("   ") if c.strip()]
        rows[cells[0]] = cells
    return rows, lines[blank + 1:]


@pytest.fixture
def jupyter_up(private_lab):
    """A private JupyterLab started through labkit.lab.control; (lab, pid, token)."""
    r = private_lab.python(UP_JUPYTER, timeout=90)
    assert r.returncode == 0 and "PROBLEMS []" in r.stdout, r.stdout + r.stderr
    pid = int((private_lab.run_dir / "labkit-jupyter.pid").read_text())
    token = (private_lab.run_dir / "jupyter" / "token").read_text()
    try:
        yield private_lab, pid, token
    finally:
        private_lab.labkit("lab", "down")
        if procfs.alive(pid):   # down did not manage: never leave it behind
            os.kill(pid, 9)


@pytest.mark.slow
def test_up_token_status_down(jupyter_up):
    lab, pid, token = jupyter_up
    port = lab.jupyter_port
    token_file = lab.run_dir / "jupyter" / "token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert len(token) == 48 and int(token, 16) >= 0
    # its own session (it outlives the shell), its log under the lab's log directory
    assert os.getsid(pid) == pid
    log = (lab.log_dir / "labkit-jupyter.log").read_text()
    assert "--allow-root" in log and "--no-browser" in log
    assert token not in log, "the token must not appear in the log (nor on the command line)"
    assert token not in " ".join(procfs.cmdline(pid))
    assert f"--ServerApp.root_dir={Path(jupyter.REPO)}" in log

    # the token opens it; no token or a wrong one does not
    assert _get(port, f"/api/status?token={token}") == 200
    assert _get(port, "/api/status") in (401, 403)
    assert _get(port, "/api/status?token=" + "0" * 48) in (401, 403)
    assert _get(port, "/api/contents/notebooks") in (401, 403)

    # no "get notified about Jupyter news?" prompt over the first notebook
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/lab/api/settings/@jupyterlab/apputils-extension:notification?token="
                     + token)
        notification = __import__("json").loads(conn.getresponse().read())["settings"]
    finally:
        conn.close()
    assert notification["fetchNews"] == "false" and notification["checkForUpdates"] is False
    # the repository is its root: the chapters are there
    listing = _get(port, f"/api/contents/notebooks?token={token}")
    assert listing == 200

    rows, after = _status(lab)
    assert rows["jupyter"][2:5] == [str(pid), "yes", f"127.0.0.1:{port}"]
    assert f"jupyter: http://127.0.0.1:{port}/lab?token={token}" in after

    # a second `up` finds it answering and keeps the token
    again = lab.python(UP_JUPYTER)
    assert f"labkit-jupyter: already answering on 127.0.0.1:{port} (pid {pid})" in again.stdout

    down = lab.labkit("lab", "down")
    assert down.returncode == 0 and "labkit-jupyter: stopped" in down.stdout, down.stdout
    assert not procfs.alive(pid)
    assert not (lab.run_dir / "labkit-jupyter.pid").exists()
    with pytest.raises(OSError):
        _get(port, f"/api/status?token={token}")
    rows, after = _status(lab)
    assert rows["jupyter"][2:4] == ["-", "no"]
    assert any(line.startswith("jupyter: not answering") for line in after)
    # the token outlives `down` (an open browser tab stays logged in) ...
    assert token_file.read_text() == token
    # ... and `reset` removes it with the rest of the lab's files
    reset = lab.labkit("lab", "reset")
    assert reset.returncode == 0, reset.stderr
    assert not token_file.exists() and not (lab.log_dir / "labkit-jupyter.log").exists()


@pytest.mark.slow
def test_kernels_stop_with_it(jupyter_up):
    lab, pid, token = jupyter_up
    conn = http.client.HTTPConnection("127.0.0.1", lab.jupyter_port, timeout=30)
    try:
        conn.request("POST", f"/api/kernels?token={token}", body='{"name": "python3"}')
        answer = conn.getresponse()
        assert answer.status == 201, answer.read()
    finally:
        conn.close()
    kernels = [int(p) for p in os.listdir("/proc") if p.isdigit()
               and _parent(int(p)) == pid]
    assert kernels, "the kernel is a child of JupyterLab"
    assert lab.labkit("lab", "down").returncode == 0
    assert not any(procfs.alive(k) for k in kernels), "down must not leave kernels behind"


def _parent(pid: int) -> int | None:
    stat = procfs.stat(pid)
    return stat.ppid if stat else None


def test_a_port_in_use_is_reported_and_the_rest_starts(private_lab):
    with socket.socket() as s:
        s.bind(("127.0.0.1", private_lab.jupyter_port))
        s.listen()
        r = private_lab.python("from labkit.lab import control\n"
                               "names = ['labkit-registry', 'labkit-jupyter']\n"
                               "print('PROBLEMS', control.up(names=names))\n", timeout=90)
    assert r.returncode == 0, r.stderr
    assert "labkit-registry: started" in r.stdout
    assert "labkit-jupyter exited" in r.stdout and "is not available" in r.stdout, r.stdout
    assert str(private_lab.log_dir / "labkit-jupyter.log") in r.stdout
    assert not (private_lab.run_dir / "labkit-jupyter.pid").exists()


def test_bad_port_setting_is_one_clear_line(private_lab):
    private_lab.env["LABKIT_JUPYTER_PORT"] = "88x"
    r = private_lab.labkit("lab", "status")
    assert r.returncode == 0, r.stderr
    expected = "jupyter: LABKIT_JUPYTER_PORT must be a port number from 1 to 65535, got '88x'"
    assert expected in r.stdout
    r = private_lab.python(UP_JUPYTER)
    assert "LABKIT_JUPYTER_PORT must be a port number" in r.stdout and "Traceback" not in r.stderr


def test_settings_and_command_line(tmp_path, monkeypatch):
    monkeypatch.setattr(jupyter, "config_file", lambda: tmp_path / "jupyter.toml")
    assert jupyter.settings({}) == jupyter.Settings("127.0.0.1", 8888)  # loopback by default
    s = jupyter.settings({"LABKIT_JUPYTER_IP": "127.0.0.1", "LABKIT_JUPYTER_PORT": "15123"})
    assert s.address == "127.0.0.1:15123" and s.base_url() == "http://127.0.0.1:15123"
    assert jupyter.Settings("0.0.0.0", 8888).base_url() == "http://127.0.0.1:8888"
    assert jupyter.Settings("::", 8888).base_url() == "http://[::1]:8888"
    for bad in ("0", "70000", "http"):
        with pytest.raises(jupyter.JupyterError, match="LABKIT_JUPYTER_PORT"):
            jupyter.settings({"LABKIT_JUPYTER_PORT": bad})
    argv = jupyter.argv(jupyter.Settings("0.0.0.0", 8888))
    # offline: nothing that phones home
    for flag in ("--LabApp.news_url=None", "--LabApp.extension_manager=readonly",
                 "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                 "--ServerApp.port_retries=0", "--allow-root", "--no-browser",
                 "--ServerApp.ip=0.0.0.0", "--ServerApp.port=8888"):
        assert flag in argv
    assert not any("token" in a.lower() for a in argv)


def test_workspace_lines(tmp_path, monkeypatch):
    monkeypatch.setattr(jupyter, "read_token", lambda: "ab" * 24)
    s = jupyter.Settings("127.0.0.1", 15999)
    inside = jupyter.REPO / "workspace"
    lines = jupyter.workspace_lines([inside, tmp_path], s)
    assert lines[0] == (f"workspace {inside}: http://127.0.0.1:15999/lab/tree/workspace"
                        f"?token={'ab' * 24}")
    assert lines[1].startswith(f"workspace {tmp_path}: outside JupyterLab's root {jupyter.REPO}")
    # the URL is quoted: a space in a name must not break the link
    assert urllib.parse.quote("my ws") in jupyter.workspace_lines([jupyter.REPO / "my ws"], s)[0]


def test_a_private_lab_without_a_port_runs_no_jupyter(private_lab):
    del private_lab.env["LABKIT_JUPYTER_PORT"]
    r = private_lab.python(UP_JUPYTER)
    assert r.returncode == 0, r.stderr
    assert "labkit-jupyter: not started: a private lab" in r.stdout and "PROBLEMS []" in r.stdout
    assert not (private_lab.run_dir / "labkit-jupyter.pid").exists()
    assert not (private_lab.run_dir / "jupyter" / "token").exists()
    rows, after = _status(private_lab)
    assert rows["jupyter"][1:4] == ["off jupyter-lab", "-", "no"]
    assert after[0].startswith("jupyter: off: a private lab (LABKIT_RUN_DIR=")
    assert "LABKIT_JUPYTER_PORT" in after[0]


def test_engine_status_leaves_jupyter_out_unless_asked(private_lab):
    code = ("from labkit.lab import status\n"
            "print(sorted(s.daemon.layer for s in status()))\n"
            "print(sorted(s.daemon.layer for s in status(optional=True)))\n")
    r = private_lab.python(code)
    assert r.returncode == 0, r.stderr
    engine, everything = r.stdout.splitlines()
    assert engine == "['L3 containerd', 'L4 dockerd', 'registry']"
    assert everything == "['L3 containerd', 'L4 dockerd', 'jupyter', 'registry']"


def test_config_file_and_exposure_warning(tmp_path, monkeypatch):
    conf = tmp_path / "jupyter.toml"
    monkeypatch.setattr(jupyter, "config_file", lambda: conf)
    # what the VirtualBox VM gets: listen on the NAT address, links name the host's forward
    conf.write_text('ip = "10.0.2.15"\nport = 8890\nbrowser_url = "http://127.0.0.1:8888/"\n')
    s = jupyter.settings({})
    assert (s.ip, s.port, s.probe_host) == ("10.0.2.15", 8890, "10.0.2.15")
    assert s.base_url() == "http://127.0.0.1:8888"
    # the environment wins over the file
    assert jupyter.settings({"LABKIT_JUPYTER_IP": "::1"}).address == "[::1]:8890"
    conf.write_text("ip = \n")
    with pytest.raises(jupyter.JupyterError, match="jupyter.toml"):
        jupyter.settings({})
    for quiet in ("127.0.0.1", "127.1.2.3", "::1", "localhost"):
        assert jupyter.exposure_warning(jupyter.Settings(quiet, 8888)) is None
    for loud in ("0.0.0.0", "::", "10.0.2.15", "192.168.1.5"):
        warning = jupyter.exposure_warning(jupyter.Settings(loud, 8888))
        assert warning and "runs as root" in warning and loud in warning


def _listening_addresses(port: int) -> set[str]:
    """The local addresses of the TCP sockets listening on `port` (/proc/net/tcp{,6})."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.rpartition(":")
            if state == "0A" and int(hex_port, 16) == port:   # 0A: TCP_LISTEN
                found.add(address)
    return found


@pytest.mark.slow
def test_listens_on_loopback_only_by_default(private_lab):
    """The default lab's JupyterLab (no LABKIT_JUPYTER_IP, no jupyter.toml) listens on
    127.0.0.1 alone: a root server is never offered to the network by default."""
    env = private_lab.env
    env.pop("LABKIT_JUPYTER_IP", None)
    r = private_lab.python(UP_JUPYTER, timeout=90)
    try:
        assert r.returncode == 0 and "PROBLEMS []" in r.stdout, r.stdout + r.stderr
        assert _listening_addresses(private_lab.jupyter_port) == {"0100007F"}  # 127.0.0.1
    finally:
        private_lab.labkit("lab", "down")
