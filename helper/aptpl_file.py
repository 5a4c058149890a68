"""A crash-safe file for a simulated logical unit's APTPL state (``scsi_pr.sim.store.AptplStore``).

The model (``scsi_pr.sim``) is sans-IO and only knows the store interface; the helper's
simulated LUs (``simserve``) persist through this file so that a restarted process finds the
registrations and reservation APTPL preserved.

``save`` writes a temp file in the same directory, fsyncs it, renames it over the old file and
fsyncs the directory: after a crash the file is either the old state or the new one, never
torn. A leftover temp file is ignored (and removed) by ``load``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from scsi_pr.helper.errors import HelperError

FORMAT_VERSION = 1


class AptplFileError(HelperError):
    """The APTPL state file exists but cannot be used; the message names the file and why."""


class FileAptplStore:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @property
    def _temp(self) -> Path:
        return self.path.with_name(self.path.name + ".tmp")

    def save(self, state: dict[str, Any]) -> None:
        blob = json.dumps({"format": FORMAT_VERSION, "state": state}, sort_keys=True).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, blob)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(self._temp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def load(self) -> dict[str, Any] | None:
        self._temp.unlink(missing_ok=True)  # an interrupted save: the old file is still whole
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            doc = json.loads(raw)
        except ValueError as e:
            raise AptplFileError(f"{self.path}: not an APTPL state file ({e})") from e
        if not isinstance(doc, dict) or doc.get("format") != FORMAT_VERSION:
            raise AptplFileError(f"{self.path}: unknown APTPL state format")
        return doc["state"]
