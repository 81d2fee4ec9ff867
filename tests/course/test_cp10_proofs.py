"""Proof that checkpoint cp10 grades: full marks on the reference, nothing on a fresh workspace,
and every checkpoint caught out by at least one seeded bug.

Chapter 10's layer is the `cli` (labkit/cli/run.py): the last checkpoint runs the student's
own `labkit` program -- the workspace's bin/labkit -- against a private lab and a real dockerd
20.10. On a fresh workspace it must fail with the name of the function that is not done yet,
on the reference it must work.

A checkpoint that cannot fail is a bug. So for each cp10 test there is a mutation below -- the
reference source of labkit/cli/run.py with one realistic mistake in it -- that is put into a
workspace as the student's module and graded with only that test selected.
"""

from __future__ import annotations

import pytest

from course.proofs import chapter_proofs

pytestmark = pytest.mark.root

# test -> (the mistake, text of the solved file, what it becomes)
MUTATIONS: dict[str, tuple[str, str, str]] = {
    "test_container_config": (
        "StdinOnce set for a detached -i as well (the daemon would close stdin at once)",
        '"StdinOnce": args.interactive and attached,', '"StdinOnce": args.interactive,'),
    "test_create_pulls_on_404": (
        "every error is taken for a missing image: a name conflict triggers a pull",
        "        if e.status != 404:\n            raise\n", ""),
    "test_attach_wait_start": (
        "start before attach: hello-world's output is gone before anyone listens",
        "    attachment = client.attach(cid, stdin=stdin, tty=tty)\n"
        "    try:\n        waiter = client.wait(cid, condition)\n"
        "    except BaseException:\n        attachment.close()\n        raise\n"
        "    try:\n        client.start(cid)\n",
        "    client.start(cid)\n"
        "    attachment = client.attach(cid, stdin=stdin, tty=tty)\n"
        "    try:\n        waiter = client.wait(cid, condition)\n"
        "    except BaseException:\n        attachment.close()\n        raise\n"
        "    try:\n        pass\n"),
    "test_copy_output": (
        "the daemon's own error (stream 3) printed as if the container wrote it",
        "            if frame.stream == streams.SYSTEMERR:\n", "            if False:\n"),
    "test_start_error_status": (
        "'no such file or directory' taken for 126 instead of 127",
        'if "executable file not found" in message or "no such file or directory" in message:',
        'if "executable file not found" in message:'),
    "test_labkit_run_through_your_cli": (
        "stdout and stderr swapped",
        "target = err if frame.stream == streams.STDERR else out",
        "target = out if frame.stream == streams.STDERR else err"),
}

globals().update(chapter_proofs(
    "10", layers=["cli"], proof="test_labkit_run_through_your_cli",
    blank_error=["exercise in container_config() (labkit_student/cli/run.py): not done yet"],
    mutations=MUTATIONS, file="cli/run.py"))
