"""Proof that checkpoint cp07 grades: full marks on the reference, nothing on a fresh workspace,
full marks for the chapter's solution alone, and every checkpoint caught out by at least one
seeded bug.

Chapter 07's code lives in two in-process layers, both loaded into labkit-containerd (USES in
labkit/lab/daemons.py): the snapshotter (labkit/containerd/snapshots.py) and the content store
(labkit/containerd/content.py). The grade takes both from the workspace; every other layer,
labkit-containerd itself included, stays the reference. On a fresh workspace `docker pull
busybox` must fail with the name of the function that is not done yet; on the reference,
`docker pull`, `docker run` and `docker rmi` must work.

A checkpoint that cannot fail is a bug: for each cp07 test there is a mutation below -- one
realistic mistake in one of the two modules -- put into a workspace where the chapter is
otherwise solved, and graded with only that test selected.
"""

from __future__ import annotations

import re

import pytest

from course.proofs import chapter_proofs
from labkit.course import syllabus

pytestmark = pytest.mark.root

# docker, through the blank stores, fails at one of this chapter's own functions
OWN_FUNCTION = re.compile(r"exercise in (\S+\.)?(%s)\(\) "
                          r"\(labkit_student/containerd/(snapshots|content)\.py\)" % "|".join(
                              f.split(":")[1] for f in syllabus.chapter("07").functions))

# test -> (the mistake, file under labkit/, text of the solved file, what it becomes)
MUTATIONS: dict[str, tuple[str, str, str, str]] = {
    "test_overlay_mounts": (
        "lowerdir bottom first: the oldest layer hides every later change",
        "containerd/snapshots.py",
        "lowers = [str(self._fs(r)) for r in self._chain(rec.parent)]  # top first",
        "lowers = [str(self._fs(r)) for r in reversed(self._chain(rec.parent))]"),
    "test_commit_snapshot": (
        "anything can be committed: a read-only view becomes a layer",
        "containerd/snapshots.py",
        "        if rec.kind != ACTIVE:\n            raise FailedPrecondition(f\"commit {key!r}",
        "        if False:\n            raise FailedPrecondition(f\"commit {key!r}"),
    "test_remove_snapshot": (
        "a parent is removed under its children: their overlay loses a lowerdir",
        "containerd/snapshots.py",
        "        if children:\n            raise FailedPrecondition(f\"remove snapshot",
        "        if False:\n            raise FailedPrecondition(f\"remove snapshot"),
    "test_content_commit": (
        "the digest is never compared: any bytes are published under the name asked for",
        "containerd/content.py",
        "        if actual != self._digest:", "        if False:"),
    "test_resumable_ingest": (
        "writes are appended wherever they claim to start",
        "containerd/content.py",
        "        if offset != self.offset:\n            raise OutOfRange",
        "        if False:\n            raise OutOfRange"),
    "test_docker_through_your_stores": (
        "a layer's first snapshot is bound read-only: nothing can be unpacked into it",
        "containerd/snapshots.py",
        "# Nothing to stack on: the snapshot *is* its directory.\n"
        "                return [Mount(\"bind\", str(self._fs(rec)), [\"rbind\", \"rw\"])]",
        "# Nothing to stack on: the snapshot *is* its directory.\n"
        "                return [Mount(\"bind\", str(self._fs(rec)), [\"rbind\", \"ro\"])]"),
}

globals().update(chapter_proofs(
    "07", layers=["content", "snapshotter"], proof="test_docker_through_your_stores",
    blank_error=[OWN_FUNCTION],
    mutations=MUTATIONS))
