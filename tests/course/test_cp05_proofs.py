"""Proof that checkpoint cp05 grades: full marks on the reference, nothing on a fresh workspace,
full marks for chapter 05's solution alone (with its prerequisites' solutions), and every
checkpoint caught out by a seeded bug.

The chapter's last checkpoint runs the real docker CLI through a private lab whose shim is the
graded code: on a fresh workspace `docker run` must fail with the name of the function that is
not done yet (become_subreaper, the first one a shim calls), on the reference it must work.

A checkpoint that cannot fail is a bug. So for each cp05 test there is a mutation below -- one
file of the solved labkit_student/shim/ with one realistic mistake in it -- graded with only
that test selected (a prerequisite outside the run does not block, so the test itself must
notice the bug).
"""

from __future__ import annotations

import pytest

from course.proofs import chapter_proofs

pytestmark = pytest.mark.root

# test -> (the mistake, file under labkit_student/shim/, text of the solved file, what it becomes)
MUTATIONS: dict[str, tuple[str, str, str, str]] = {
    "test_become_subreaper": (
        "the subreaper flag cleared instead of set", "reaper.py",
        "prctl.set_child_subreaper(1)", "prctl.set_child_subreaper(0)"),
    "test_reap": (
        "the raw wait(2) status returned, not the exit status", "reaper.py",
        "        exits.append((pid, exit_status(status)))\n    # END SOLUTION",
        "        exits.append((pid, status))\n    # END SOLUTION"),
    "test_open_output": (
        "the fifo opened write-only: the open waits for a reader", "stdio.py",
        "return os.open(path, os.O_RDWR | os.O_CLOEXEC)",
        "return os.open(path, os.O_WRONLY | os.O_CLOEXEC)"),
    "test_unread_bytes": (
        "the wrong ioctl: TIOCOUTQ is a tty's output queue", "stdio.py",
        "fcntl.ioctl(fd, termios.FIONREAD,", "fcntl.ioctl(fd, termios.TIOCOUTQ,"),
    "test_output_waits_for_its_reader": (
        "nothing ever counted as unread", "stdio.py",
        '    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\\0" * 4))[0]',
        "    return 0"),
    "test_record_exit": (
        "the exit recorded but never published", "service.py",
        "        self.events.publish(exit_event)\n        # END SOLUTION",
        "        # END SOLUTION"),
    "test_your_shim_runs_a_container": (
        "the runtime given no stdio: the container's output goes nowhere", "service.py",
        "str(pid_file), stdio=io.container_fds,\n",
        "str(pid_file), stdio=(None, None, None),\n"),
    "test_docker_run_through_your_shim": (
        "the fifo closed without waiting for its reader: output lost while dockerd is away",
        "stdio.py", "if unread == 0 or self._closing.wait(delay):",
        "if True or self._closing.wait(delay):"),
}

globals().update(chapter_proofs(
    "05", layers=["shim"], proof="test_docker_run_through_your_shim",
    blank_error=["exercise in become_subreaper() (labkit_student/shim/reaper.py): not done yet"],
    mutations=MUTATIONS, under="shim"))
