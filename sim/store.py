"""APTPL persistence hooks (SPC-5 5.14.6).

The model calls ``store.save(state)`` after every change while APTPL is active, and
``store.load()`` at power on. These stores are the model's only contact with the outside world
and are passed in by the caller; the model itself never opens a file.

``FileAptplStore`` writes a temp file in the same directory, fsyncs it, renames it over the old
file and fsyncs the directory: after a crash the file is either the old state or the new one,
never torn. A leftover temp file is ignored (and removed) by ``load``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol

from scsi_pr.sim.errors import SimError

FORMAT_VERSION = 1


class AptplStore(Protocol):
    def save(self, state: dict[str, Any]) -> None: ...

    def load(self) -> dict[str, Any] | None: ...


class MemoryAptplStore:
    """Keeps the last saved state in memory (a copy, so later mutation cannot leak in)."""

    def __init__(self) -> None:
        self._blob: str | None = None
        self.saves = 0

    def save(self, state: dict[str, Any]) -> None:
        self._blob = json.dumps(state, sort_keys=True)
        self.saves += 1

    def load(self) -> dict[str, Any] | None:
        return None if self._blob is None else json.loads(self._blob)


class StoreError(SimError):
    """The APTPL file exists but cannot be used; the message says why."""


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
            raise StoreError(f"{self.path}: not an APTPL state file ({e})") from e
        if not isinstance(doc, dict) or doc.get("format") != FORMAT_VERSION:
            raise StoreError(f"{self.path}: unknown APTPL state format")
        return doc["state"]
