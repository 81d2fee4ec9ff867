"""Proof that checkpoint cp06 grades: full marks on the reference, nothing on a fresh workspace,
and every checkpoint caught out by at least one seeded bug.

The chapter's last checkpoint runs the real docker CLI through a private lab whose distribution
layer (labkit.distribution, loaded into labkit-containerd and labkit-dockerd) is the graded
code: on a fresh workspace `docker pull busybox` must fail with the name of the function that
is not done yet, on the reference it must work.

A checkpoint that cannot fail is a bug. So for each cp06 test there is a mutation below -- one
reference module of labkit/distribution/ with one realistic mistake in it -- that is put into a
workspace as the student's module and graded with only that test selected.
"""

from __future__ import annotations

import pytest

from course.proofs import chapter_proofs

pytestmark = pytest.mark.root

# test -> (the mistake, module, text of the solved file, what it becomes)
MUTATIONS: dict[str, tuple[str, str, str, str]] = {
    "test_split_domain": (
        "localhost is not recognized as a registry host",
        "reference.py", ' and first != "localhost"', ""),
    "test_select_manifest": (
        "attestation entries are not skipped",
        "platforms.py", "if not isinstance(descriptor, dict) or _is_attestation(descriptor):",
        "if not isinstance(descriptor, dict):"),
    "test_chain_ids": (
        "the chain ID hashes the two digests without the space between them",
        "layers.py", 'joined = f"{result[-1]} {diff_id}".encode()',
        'joined = f"{result[-1]}{diff_id}".encode()'),
    "test_resolve": (
        "no Accept header: registry 2.8 answers 404 for OCI content",
        "client.py", 'headers={"Accept": ", ".join(mediatypes.MANIFEST_ACCEPT)})', "headers={})"),
    "test_fetch_blob": (
        "a download cut short is not noticed as such (only as a wrong digest)",
        "client.py", "if size is not None and received < size:\n                raise TruncatedBlob",
        "if False:\n                raise TruncatedBlob"),
    "test_token_dance": (
        "the token is stored under the wrong scope, so it is never sent",
        "client.py", "self._tokens[scope] = auth.parse_token_response(reply.body)",
        'self._tokens["pull"] = auth.parse_token_response(reply.body)'),
    "test_docker_pull_through_your_distribution": (
        "official images lose their library/ prefix: the lab's registry has no /v2/busybox",
        "reference.py", "        path = OFFICIAL_REPO_PREFIX + path\n", "        path = path\n"),
}

globals().update(chapter_proofs(
    "06", layers=["distribution"], proof="test_docker_pull_through_your_distribution",
    blank_error=["exercise in split_domain() (labkit_student/distribution/reference.py): not "
                 "done yet"],
    mutations=MUTATIONS, under="distribution"))
