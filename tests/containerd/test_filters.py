"""containerd's filter syntax (labkit.containerd.filters): one parser for every List call."""

from __future__ import annotations

import pytest

from labkit.containerd.errors import InvalidArgument
from labkit.containerd.filters import fields_of, parse

IMAGE = fields_of({"name": "docker.io/library/busybox:latest", "target.digest": "sha256:ab"},
                  {"containerd.io/gc.root": "1", "role": "web", "a.b": "dots"})


@pytest.mark.parametrize("filters, matches", [
    ([], True),
    (["name==docker.io/library/busybox:latest"], True),
    (["name!=docker.io/library/busybox:latest"], False),
    (['name~="^docker\\\\.io/"'], True),
    (["name~=|busybox:l.*|"], True),
    (["name~=/alpine/"], False),
    (['labels."containerd.io/gc.root"'], True),            # present
    (["labels.missing"], False),
    (["labels.role==web,name~=busybox"], True),             # both
    (["labels.role==web,name~=alpine"], False),
    (["labels.role==db", "target.digest==sha256:ab"], True),  # either
    (['labels."a.b"==dots'], True),
    (["labels.a.b==dots"], True),
    (["labels.missing!=x"], True),                          # absent: not equal
    (['  name == "docker.io/library/busybox:latest" '], True),
])
def test_matches(filters, matches):
    assert parse(filters)(IMAGE) is matches


@pytest.mark.parametrize("bad", ['labels."x', "name==", "name=x", "==x", "name~=(", "a,",
                                 "name==a b"])
def test_errors(bad):
    with pytest.raises(InvalidArgument):
        parse([bad])
