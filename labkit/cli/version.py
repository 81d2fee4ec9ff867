"""`labkit version` — the client's versions, then the server's from GET /version."""

from __future__ import annotations

import argparse
import platform
import sys

import labkit
from labkit.client import APIError, Client, DaemonNotRunning
from labkit.client.api import MAX_API_VERSION


def add_parser(sub) -> None:
    p = sub.add_parser("version", help="show the client and server versions")
    p.set_defaults(func=command)


def command(client: Client, args: argparse.Namespace) -> int:
    # Negotiate first (as the docker CLI does), so the client's line shows the version in use.
    api = MAX_API_VERSION
    try:
        if client.api_version != MAX_API_VERSION:
            api = f"{client.api_version} (downgraded from {MAX_API_VERSION})"
    except (APIError, DaemonNotRunning):
        pass  # reported below, after the client's part
    print("Client: labkit")
    print(f" Version:           {labkit.__version__}")
    print(f" API version:       {api}")
    print(f" Python version:    {platform.python_version()}")
    print(f" OS/Arch:           {sys.platform}/{platform.machine()}")
    print()
    try:
        v = client.version()
    except (APIError, DaemonNotRunning):
        sys.stdout.flush()
        raise  # main() prints the message, as `docker version` does after the client part
    print(f"Server: {v.get('Platform', {}).get('Name', '') or 'unknown'}".rstrip())
    print(" Engine:")
    print(f"  Version:          {v.get('Version', '')}")
    print(f"  API version:      {v.get('ApiVersion', '')} (minimum version {v.get('MinAPIVersion', '')})")
    print(f"  OS/Arch:          {v.get('Os', '')}/{v.get('Arch', '')}")
    print(f"  Kernel version:   {v.get('KernelVersion', '')}")
    for comp in v.get("Components") or []:
        if comp.get("Name") == "Engine":
            continue
        print(f" {comp.get('Name', '')}:")
        print(f"  Version:          {comp.get('Version', '')}")
    return 0
