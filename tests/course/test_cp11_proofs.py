"""Proof that checkpoint cp11 grades: full marks on the reference, nothing on a fresh workspace,
and every checkpoint caught out by at least one seeded bug.

The chapter's last checkpoint runs the real docker CLI through a private lab whose builder
(labkit.dockerd.builder, loaded into labkit-dockerd by labkit.lab.launch) is the graded code:
on a fresh workspace `docker build` must fail with the name of the function that is not done
yet, on the reference it must build, run and rebuild from the cache.

A checkpoint that cannot fail is a bug. So for each cp11 test there is a mutation below -- one
reference module of labkit/dockerd/builder/ with one realistic mistake in it -- that is put
into a workspace as the student's module and graded with only that test selected.
"""

from __future__ import annotations

import re

import pytest

from course.proofs import chapter_proofs

pytestmark = pytest.mark.root

# test -> (the mistake, module, text of the solved file, what it becomes)
MUTATIONS: dict[str, tuple[str, str, str, str]] = {
    "test_cache_key": (
        "the config's keys are hashed in the order they came: the same config, another key",
        "steps.py", '"files": extra}, sort_keys=True)', '"files": extra})'),
    "test_cache_lookup": (
        "--no-cache is ignored",
        "steps.py", "    if not enabled or not parent.id:\n        return None\n",
        "    if not parent.id:\n        return None\n"),
    "test_run_step": (
        "the build args of the RUN (run_config) end up in the image's config",
        "steps.py", "return backend.commit_container(container, parent, image_config, created_by)",
        "return backend.commit_container(container, parent, run_config, created_by)"),
    "test_layer_tar": (
        "the members keep the leading '/' of their absolute paths",
        "backend.py", '            path = f.path.lstrip("/")\n', "            path = f.path\n"),
    "test_docker_build_through_your_builder": (
        "the cache is looked up on the image being built instead of its parent: never a hit",
        "steps.py", "    return backend.cache_get(parent.id, key)\n",
        "    return backend.cache_get(key, parent.id)\n"),
}

globals().update(chapter_proofs(
    "11", layers=["builder"], proof="test_docker_build_through_your_builder",
    blank_error=[re.compile(r"exercise in \w+\(\) \(labkit_student/dockerd/builder/\w+\.py\): "
                            r"not done yet")],
    mutations=MUTATIONS, under="dockerd/builder"))
