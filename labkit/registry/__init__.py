"""labkit.registry — `labkit-registry`, the OCI distribution API over a directory.

The modules, from the wire down to the disk:

    main.py      the command line: --root, --listen
    server.py    the HTTP route table and its thin handlers; serve() for tests and notebooks
    storage.py   content-addressed blobs, manifests and tags on disk, written atomically

It speaks the same protocol as Docker's registry (Debian's docker-registry), so skopeo,
the docker CLI's daemon and labkit.distribution's client all work against it.
"""

from .server import RegistryServer, serve
from .storage import Storage, StorageError

__all__ = ["RegistryServer", "serve", "Storage", "StorageError"]
