"""APTPL persistence hooks (SPC-5 5.14.5, preserving persistent reservations and registrations).

The model calls ``store.save(state)`` after every change while APTPL is active, and
``store.load()`` at power on. A store is the model's only contact with the outside world and is
passed in by the caller; the model itself never opens a file. ``MemoryAptplStore`` keeps the state
in memory (tests, in-process backends). The helper's shared LUs (``scsi_pr.helper.simserve``) use
it too and write its content inside the LU's state document, so the APTPL image and the rest of
the LU state are committed together, by one rename.
"""

from __future__ import annotations

import json
from typing import Any, Protocol


class AptplStore(Protocol):
    """Where a logical unit keeps the PR state that survives power loss."""

    def save(self, state: dict[str, Any]) -> None: ...

    def load(self) -> dict[str, Any] | None: ...


class MemoryAptplStore:
    """Keeps the last saved state in memory (a copy, so later mutation cannot leak in);
    ``state`` is what an earlier store held (e.g. read back from a file by the caller)."""

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        self._blob: str | None = None if state is None else json.dumps(state, sort_keys=True)
        self.saves = 0

    def save(self, state: dict[str, Any]) -> None:
        self._blob = json.dumps(state, sort_keys=True)
        self.saves += 1

    def load(self) -> dict[str, Any] | None:
        return None if self._blob is None else json.loads(self._blob)
