"""Proof that checkpoint cp08 grades: full marks on the reference, nothing on a fresh workspace,
and every checkpoint caught out by at least one seeded bug.

The chapter's last checkpoint runs the real docker CLI through a private lab whose network
layer (labkit.dockerd.net, loaded into labkit-dockerd) is the graded code: on a fresh
workspace `docker run` must fail with the name of the function that is not done yet, on the
reference it must get its address, reach a container by name and publish a port.

A checkpoint that cannot fail is a bug. So for each cp08 test there is a mutation below -- one
module of labkit/dockerd/net/ with one realistic mistake in it -- that is put into a workspace
as the student's module and graded with only that test selected.
"""

from __future__ import annotations

import pytest

from course.proofs import chapter_proofs

pytestmark = pytest.mark.root

# test -> (the mistake, module, text of the solved file, what it becomes)
MUTATIONS: dict[str, tuple[str, str, str, str]] = {
    "test_choose_subnet": (
        "the default route counts as a subnet in use: every candidate overlaps it",
        "ipam.py", "taken = [n for n in in_use if n.prefixlen > 0]", "taken = list(in_use)"),
    "test_allocate": (
        "a wanted address may be the network's or the broadcast address",
        "ipam.py", "if address not in subnet or address in (subnet.network_address,\n"
                   "                                                subnet.broadcast_address):",
        "if address not in subnet:"),
    "test_ensure_bridge": (
        "the bridge carries no alias: a restarted daemon cannot tell it is its own",
        "bridge.py", '            ipr.link("set", index=found[0], ifalias=alias)\n', ""),
    "test_in_netns": (
        "the netlink socket is opened before setns: it talks to the host's namespace",
        "bridge.py", "            sc.setns(ns, sc.CLONE_NEWNET)\n"
                     "            with IPRoute() as ipr:   # its socket is made here, in the "
                     "container's namespace\n",
        "            ipr = IPRoute()\n            sc.setns(ns, sc.CLONE_NEWNET)\n"
        "            with ipr:\n"),
    "test_plug": (
        "the host end of the veth is never made a port of the bridge",
        "bridge.py", 'ipr.link("set", index=index, master=master[0], state="up")',
        'ipr.link("set", index=index, state="up")'),
    "test_docker_run_gets_its_network_from_you": (
        "the bridge is left down: containers have addresses but nothing crosses the bridge",
        "bridge.py", 'address=gateway, prefixlen=prefixlen)\n'
                     '        ipr.link("set", index=index, state="up")\n',
        'address=gateway, prefixlen=prefixlen)\n'),
}

globals().update(chapter_proofs(
    "08", layers=["network"], proof="test_docker_run_gets_its_network_from_you",
    blank_error=["exercise in choose_subnet() (labkit_student/dockerd/net/ipam.py): not done yet"],
    mutations=MUTATIONS, under="dockerd/net"))
