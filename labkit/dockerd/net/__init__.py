"""The network layer of labkit-dockerd: what gives `docker run` its address (chapter 08).

    ipam.py     which subnet a network gets (one the host does not route already), which
                address a container gets (the lowest free one), its MAC
    bridge.py   the kernel side over rtnetlink (pyroute2): the bridge, the veth pair whose
                inner end is made in the container's network namespace, its address and its
                default route

No decisions about records live here: network.py and networkstore.py say which container
joins which network and keep the allocations; this package only chooses and plugs. It is one
layer ("network" in labkit.lab.implementations): `labkit lab use network workspace` loads the
student's copy of this package into labkit-dockerd, so their code gives `docker run` its IP.
"""
