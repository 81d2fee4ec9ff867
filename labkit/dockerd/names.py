"""Container names in Docker's style: "adjective_surname", e.g. "brave_hopper".

Docker picks a random adjective and the surname of a notable scientist or engineer,
and retries (then appends a digit) when the name is taken. The lists here are labkit's
own, shorter than Docker's.
"""

from __future__ import annotations

import random
from typing import Callable

ADJECTIVES = [
    "admiring", "bold", "brave", "calm", "clever", "cool", "curious", "dazzling", "eager",
    "elegant", "focused", "friendly", "gallant", "gentle", "happy", "hopeful", "jolly",
    "keen", "kind", "lucid", "modest", "nifty", "patient", "quirky", "relaxed", "serene",
    "sharp", "stoic", "tender", "vibrant", "wizardly", "zealous",
]

SURNAMES = [
    "babbage", "bell", "curie", "darwin", "dijkstra", "einstein", "euler", "faraday",
    "feynman", "franklin", "galileo", "gauss", "hamilton", "hopper", "hypatia", "johnson",
    "kepler", "knuth", "lamarr", "lovelace", "maxwell", "meitner", "newton", "noether",
    "pascal", "ritchie", "shannon", "thompson", "torvalds", "turing", "wozniak", "yalow",
]


def generate_name(in_use: Callable[[str], bool], rng: random.Random | None = None) -> str:
    """A random free name; `in_use(name)` tells which are taken."""
    rng = rng or random.Random()
    for attempt in range(10):
        name = f"{rng.choice(ADJECTIVES)}_{rng.choice(SURNAMES)}"
        if attempt >= 5:  # crowded: add a digit, as Docker does after a few retries
            name += str(rng.randint(0, 9))
        if not in_use(name):
            return name
    while True:
        name = f"{rng.choice(ADJECTIVES)}_{rng.choice(SURNAMES)}{rng.randint(10, 99999)}"
        if not in_use(name):
            return name
