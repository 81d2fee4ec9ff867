"""`docker rename` (moby's daemon/rename.go): a container's name is dockerd's alone.

The name lives in dockerd's record (config.v2.json) and must stay unique among containers;
the running process does not notice (its hostname is its own, set at create). containerd's
copy, the label labkit.dockerd/name, keeps the name given at create: it is informational.
"""

from __future__ import annotations

import re

from labkit.dockerd.core import DaemonCore
from labkit.dockerd.errors import Conflict, InvalidParameter

_NAME = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


class Rename(DaemonCore):
    """The Daemon's rename (mixed into labkit.dockerd.daemon.Daemon)."""

    def container_rename(self, ref: str, new_name: str) -> None:
        if not new_name:
            raise InvalidParameter("Neither old nor new names may be empty")
        if not _NAME.match(new_name):
            raise InvalidParameter(f"Invalid container name ({new_name}), only "
                                   "[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        new_name = new_name.lstrip("/")
        with self._lock:
            c = self._get(ref)
            old = c.Name
            if new_name == old:
                raise InvalidParameter("Renaming a container with the same name as its "
                                       "current name")
            if self._name_in_use(new_name):
                other = next((x.ID for x in self._containers.values() if x.Name == new_name), "")
                raise Conflict(f'Conflict. The container name "/{new_name}" is already in use '
                               f'by container "{other}". You have to remove (or rename) that '
                               "container to be able to reuse that name.")
            c.Name = new_name
            c.save(self.config.root)
        self._event(c, "rename", oldName="/" + old)
