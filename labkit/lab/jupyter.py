"""JupyterLab as one more lab daemon: the course's notebooks, served from inside the lab.

Theory of operation
-------------------
The notebooks create namespaces, mounts and containers, so their kernel must run as root on
the lab host (the VM) — not on the student's laptop. `labkit lab up` therefore starts
JupyterLab beside the engine's daemons, the same way (a new session, a pid file, a log) and
`labkit lab down` stops it. The student's browser reaches it through the port the Vagrantfile
forwards from the host's 127.0.0.1:8888 to the VM's port 8888.

A root kernel reachable over HTTP is a root shell for whoever can reach it, so:

    token      a random secret, kept in RUN/jupyter/token (mode 0600) and handed to Jupyter
               through JUPYTER_TOKEN_FILE — never on its command line, which every user of the
               VM can read in /proc. It is reused while the file exists (a browser tab stays
               logged in across `down`/`up`); `labkit lab reset` removes it, and the next `up`
               makes a new one. `labkit lab status` prints the URL with the token.
    address    127.0.0.1:8888: only this machine reaches it. LABKIT_JUPYTER_IP and
               LABKIT_JUPYTER_PORT move it, or `ip = "…"` / `port = …` in ETC/jupyter.toml
               (the environment wins). Any address other than a loopback one makes `lab up`
               warn that a root server is listening there. The Vagrant VM is the one place that
               needs another: VirtualBox's port forward (host 127.0.0.1:8888 -> VM) enters the
               VM on its NAT interface, so the Vagrantfile writes that address (10.0.2.15,
               reachable from the host's NAT engine only, never from the network) into
               /etc/labkit/jupyter.toml, with `browser_url = "http://127.0.0.1:8888"`: the
               address the links `status` prints must name. The tests run a private JupyterLab on 127.0.0.1 and a
               port in 15000-16000.
               A private lab (LABKIT_RUN_DIR moved) without LABKIT_JUPYTER_PORT runs none:
               port 8888 belongs to the lab on the default paths (see disabled()).
    offline    the lab has no internet: JupyterLab's news feed, its update check and its
               PyPI extension manager (the three things that phone home) are switched off.

"Answering" means GET /api/status?token=… returns 200 (jupyter_server's own liveness API;
without the token it answers 403).

Where Jupyter keeps things: its runtime files (kernel connection files, the cookie secret) in
RUN/jupyter/runtime, JupyterLab's settings and saved layouts in LIB/jupyter, its log in
LOG/labkit-jupyter.log — all under the lab's directories, so a private lab (the tests) never
touches the one in use, and `labkit lab reset` removes every trace.

The root directory is this repository (notebooks/ and slides/ are there); the file browser
opens in notebooks/. A student workspace configured in the implementations file is shown by
`status`: with its own URL when it lies inside the repository, with a note when it does not
(Jupyter cannot show files outside its root).
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import tomllib
import secrets
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from labkit import paths
from labkit.lab.implementations import console_script

NAME = "labkit-jupyter"          # pid file and log file names, as for the other daemons
DEFAULT_IP = "127.0.0.1"
DEFAULT_PORT = 8888
IP_ENV = "LABKIT_JUPYTER_IP"
PORT_ENV = "LABKIT_JUPYTER_PORT"
PROGRAM = "jupyter-lab"          # the virtualenv's console script; what its command line shows

# The repository: Jupyter's root directory (labkit is installed editable from it).
REPO = Path(__file__).resolve().parents[2]


class JupyterError(ValueError):
    """JupyterLab cannot be configured or started; the message says what to fix."""


@dataclass(frozen=True)
class Settings:
    ip: str          # where Jupyter listens
    port: int
    browser_url: str = ""   # where a browser reaches it, if not there (the VM's forward)

    @property
    def probe_host(self) -> str:
        """Where to ask it: a wildcard address is reached through the loopback."""
        return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.ip, self.ip)

    @property
    def address(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"

    def base_url(self) -> str:
        if self.browser_url:
            return self.browser_url.rstrip("/")
        host = self.probe_host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"


def disabled(environ: dict[str, str] | None = None) -> str | None:
    """Why this lab runs no JupyterLab, or None when it does.

    Port 8888 belongs to the lab on the default paths. A private lab (LABKIT_RUN_DIR moved,
    as the tests do) starts JupyterLab only when it is given a port of its own: otherwise a
    test run inside the VM would take the student's port (or fail on it) and listen on
    0.0.0.0 for a lab that nobody browses."""
    env = os.environ if environ is None else environ
    if env.get("LABKIT_RUN_DIR") and not env.get(PORT_ENV):
        return (f"a private lab (LABKIT_RUN_DIR={env['LABKIT_RUN_DIR']}) starts JupyterLab "
                f"only on a port of its own: set {PORT_ENV} (and {IP_ENV}=127.0.0.1)")
    return None


def config_file() -> Path:
    return paths.ETC / "jupyter.toml"


def settings(environ: dict[str, str] | None = None) -> Settings:
    """The address from LABKIT_JUPYTER_IP / LABKIT_JUPYTER_PORT, else ETC/jupyter.toml,
    else 127.0.0.1:8888."""
    env = os.environ if environ is None else environ
    try:
        conf = tomllib.loads(config_file().read_text())
    except FileNotFoundError:
        conf = {}
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise JupyterError(f"{config_file()}: {e}") from None
    ip = str(env.get(IP_ENV) or conf.get("ip") or DEFAULT_IP).strip() or DEFAULT_IP
    text = str(env.get(PORT_ENV) or conf.get("port") or DEFAULT_PORT).strip()
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise JupyterError(f"{PORT_ENV} must be a port number from 1 to 65535, got {text!r}")
    return Settings(ip, port, str(conf.get("browser_url", "")))


def exposure_warning(s: Settings) -> str | None:
    """What `lab up` says when JupyterLab listens beyond the loopback, or None."""
    try:
        if ipaddress.ip_address(s.ip).is_loopback:
            return None
    except ValueError:
        if s.ip == "localhost":
            return None
    return (f"JupyterLab runs as root and listens on {s.address}: whoever reaches that address "
            f"and has the token gets a root shell on this machine (set {IP_ENV}=127.0.0.1, or "
            f"ip in {config_file()}, to keep it to this machine)")


def state_dir() -> Path:
    return paths.RUN / "jupyter"


def token_file() -> Path:
    return state_dir() / "token"


def read_token() -> str | None:
    """The lab's Jupyter token, or None when there is none (yet, or after a reset)."""
    try:
        return token_file().read_text().strip() or None
    except OSError:
        return None


def ensure_token() -> str:
    """The token, made (48 random hex digits, file mode 0600) if there is none."""
    existing = read_token()
    path = token_file()
    if existing:
        os.chmod(path, 0o600)   # whoever left it readable, it must not stay so
        return existing
    state_dir().mkdir(mode=0o700, parents=True, exist_ok=True)
    token = secrets.token_hex(24)
    path.unlink(missing_ok=True)   # an empty file: replace it
    # O_EXCL with mode 0600: the file never exists with wider permissions, even for an instant.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)          # no newline: Jupyter reads the file's content as the token
    return token


def program() -> Path:
    """JupyterLab's command in this virtualenv (or on PATH)."""
    found = console_script(PROGRAM)
    if found is None:
        raise JupyterError(f"JupyterLab is not installed: no {Path(sys.executable).parent / PROGRAM} "
                           f"and no {PROGRAM} on PATH "
                           "(run vagrant/setup.sh, or pip install jupyterlab into the virtualenv)")
    return found


def version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as dist_version
        return dist_version("jupyterlab")
    except PackageNotFoundError:
        return "not installed"


def argv(s: Settings) -> list[str]:
    """JupyterLab's command line. The token is not on it (every user can read a command line
    in /proc): see JUPYTER_TOKEN_FILE in environment()."""
    try:
        command = str(program())
    except JupyterError:
        command = PROGRAM      # `status` still shows the row; `up` reports the error
    jupyter_lib = paths.LIB / "jupyter"
    preferred = REPO / "notebooks" if (REPO / "notebooks").is_dir() else REPO
    return [
        command,
        "--allow-root",                     # the notebooks need a root kernel
        "--no-browser",                     # a daemon: nobody to open a browser for
        f"--ServerApp.ip={s.ip}",
        f"--ServerApp.port={s.port}",
        "--ServerApp.port_retries=0",       # the forwarded port or nothing: never another one
        f"--ServerApp.root_dir={REPO}",
        f"--ServerApp.preferred_dir={preferred}",
        # offline: no news feed, no update check, no PyPI extension manager
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
        f"--LabApp.user_settings_dir={jupyter_lib / 'settings'}",
        f"--LabApp.workspaces_dir={jupyter_lib / 'workspaces'}",
    ]


# JupyterLab's settings the lab starts with (user settings: a student's own changes stay).
# Without them a "Would you like to get notified about official Jupyter news?" prompt covers
# the first notebook a student opens, for a feed the offline lab cannot reach anyway.
INITIAL_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False},
}


def write_initial_settings() -> None:
    settings_dir = paths.LIB / "jupyter" / "settings"
    for name, values in INITIAL_SETTINGS.items():
        path = settings_dir / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values, indent=2) + "\n")


def environment() -> dict[str, str]:
    """What JupyterLab's environment gets in addition to ours, when it is started."""
    ensure_token()
    write_initial_settings()
    runtime = state_dir() / "runtime"
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    return {"JUPYTER_TOKEN_FILE": str(token_file()), "JUPYTER_RUNTIME_DIR": str(runtime)}


def probe(s: Settings, timeout: float = 1.0) -> bool:
    """True when a Jupyter server that knows our token answers GET /api/status."""
    token = read_token()
    if token is None:
        return False
    conn = http.client.HTTPConnection(s.probe_host, s.port, timeout=timeout)
    try:
        conn.request("GET", "/api/status?" + urllib.parse.urlencode({"token": token}))
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def url(s: Settings | None = None, path: str = "lab") -> str | None:
    """The URL to open, with the token (None while there is no token)."""
    token = read_token()
    if token is None:
        return None
    s = s or settings()
    return f"{s.base_url()}/{path}?token={token}"


def workspace_lines(workspaces: list[Path], s: Settings | None = None) -> list[str]:
    """What `status` says about each configured workspace: its URL, or why it has none."""
    lines = []
    for ws in workspaces:
        try:
            relative = ws.resolve().relative_to(REPO)
        except ValueError:
            lines.append(f"workspace {ws}: outside JupyterLab's root {REPO}; edit it in a "
                         "JupyterLab terminal, or generate one inside the repository "
                         f"(labkit lab workspace {REPO / 'workspace'})")
            continue
        link = url(s, f"lab/tree/{urllib.parse.quote(str(relative))}")
        lines.append(f"workspace {ws}: " + (link or "(JupyterLab has no token yet: labkit lab up)"))
    return lines
