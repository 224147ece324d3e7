"""The directory in force, re-read when its file changes, so that what a person may decide is
judged on the directory as it is *now* — on every replica, within a sweep interval of the edit.

The sweeper calls ``DirectoryWatch.check`` each pass: a ``stat`` of ``directory.yaml``; when its
modification time, size or inode changed, the file is loaded and validated like at start-up and
swapped in (``Gatekeeper.directory``), and the new version is audited (``directory.loaded``). A file
that does not load is logged loudly and the directory in force stays: an editing mistake never
leaves the service without one.
"""

from __future__ import annotations

import logging
from pathlib import Path

from gate_core._errors import DirectoryError
from gate_core._gatekeeper import Gatekeeper
from gate_core.identity import Directory
from gate_core.identity._provisioned import CombinedSource

log = logging.getLogger("gatehouse.service")


class DirectoryWatch:
    def __init__(self, path: Path, gatekeeper: Gatekeeper) -> None:
        self.path = path
        self.gatekeeper = gatekeeper
        self._seen = self._version()

    def _version(self) -> tuple[int, int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)

    def check(self) -> bool:
        """Swap in the directory file's new version, if it changed and loads; True when swapped."""
        version = self._version()
        if version == self._seen or version is None:
            return False
        self._seen = version
        try:
            directory = Directory.load(self.path)
        except DirectoryError as exc:
            log.error("directory not reloaded, the one in force stays: %s", exc)
            return False
        current = self.gatekeeper.directory
        if isinstance(current, CombinedSource):
            current.replace_file(directory)  # SCIM's people stay; the SCIM router holds this source
        else:
            self.gatekeeper.directory = directory
        self.gatekeeper.record_configuration()
        log.info("directory reloaded from %s (%d principals)", self.path, len(directory))
        return True
