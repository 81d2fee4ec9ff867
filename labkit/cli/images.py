"""`labkit images` — GET /images/json, one row per tag (or <none> for an untagged image)."""

from __future__ import annotations

import argparse

from labkit.cli.output import ago, table
from labkit.client import Client
from labkit.units import human_size_with_precision

HEADERS = ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]


def add_parser(sub) -> None:
    p = sub.add_parser("images", help="list images")
    p.set_defaults(func=command)


def rows(img: dict) -> list[list[str]]:
    short_id = img.get("Id", "").removeprefix("sha256:")[:12]
    created = ago(img["Created"]) if img.get("Created") else "N/A"
    size = human_size_with_precision(img.get("Size") or 0, 3)  # as the docker CLI does
    tags = [t for t in img.get("RepoTags") or [] if t != "<none>:<none>"]
    if not tags:
        return [["<none>", "<none>", short_id, created, size]]
    out = []
    for t in tags:
        repo, _, tag = t.rpartition(":")  # rpartition: a registry host may carry a port
        out.append([repo, tag, short_id, created, size])
    return out


def command(client: Client, args: argparse.Namespace) -> int:
    all_rows = [r for img in client.images() for r in rows(img)]
    print(table(all_rows, HEADERS), end="")
    return 0
