"""`labkit lab up|down|status|reset|images` — placeholder until labkit.lab lands."""
from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("lab", help="control the lab's daemons")
    p.set_defaults(func=lambda c, a: 0, no_client=True)
