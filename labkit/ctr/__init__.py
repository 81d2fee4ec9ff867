"""labkit-ctr: containerd's `ctr` for labkit, against labkit-containerd or a real containerd.

    labkit-ctr [-a SOCKET] [-n NAMESPACE] [--dialect auto|labkit|containerd] GROUP COMMAND …

    main.py        flags, dispatch, errors as ctr prints them ("ctr: …", exit 1)
    backend.py     the one interface, the two dialects (labkit's wire, containerd's real API)
    output.py      ctr's tables (Go's tabwriter) and sizes ("2.1 MiB")
    images.py      images ls | rm | pull        pull.py  client-side pull for a real containerd
    containers.py  containers ls | info | rm
    tasks.py       tasks ls | kill | rm
    snapshots.py   snapshots ls | rm
    content.py     content ls | get
    namespaces.py  namespaces ls, version
    run.py         run (Snapshots.Prepare, Containers.Create, Tasks.Create/Start/Wait)
    spec.py        the OCI spec a run gives its container (containerd's defaults)
"""
