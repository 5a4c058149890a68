"""The state document of one shared simulated LU, and its commit: one file, one rename.

A document holds all a shared LU keeps between commands: the model's snapshot
(``LogicalUnit.snapshot``) and the image its APTPL store holds, which is what a power cycle
restores (SPC-5 5.14.5). Both travel in one file replaced by one ``rename``, so a helper killed
anywhere leaves the old document or the new one, never half of a command. (With the APTPL
image in a file of its own, committed by a rename of its own inside ``execute``, a kill between
the two renames made a later power cycle drop acknowledged registrations or bring back ones
never acknowledged: issue 10.)

The temporary file has one fixed name per LU and is only written under the LU's lock, so a
killed writer leaves at most one behind, and the next writer overwrites and renames it.

Durability. A helper crash loses nothing once the rename is done: the page cache outlives the
process. Power loss is another matter, and only APTPL promises anything through it, so only
the APTPL image pays for ``fsync``, and only when it matters (rarely: PR OUT under APTPL):

* the image changed: fsync the file before the rename and the directory after it, so the new
  image is the one a power loss leaves;
* the image holds APTPL state but did not change (a unit attention was reported, say): fsync
  the file only, so the rename cannot reach the disk before the data and leave an empty file
  where the image was (ext4 guards renames over files this way, xfs does not); either name the
  directory may hold after a power loss carries the same image;
* no APTPL state: no fsync. SPC-5 lets power loss clear that state anyway, and a sync per
  command would cost more than the command.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scsi_pr.helper.errors import HelperError
from scsi_pr.sim.state import PersistentReservations

STATE_FORMAT = 2  # 1 kept the APTPL image in a file of its own


class StateFileError(HelperError):
    """A shared LU's state file exists but cannot be used; the message names the file and why
    (``scsi-pr sim forget`` starts the LU afresh)."""


@dataclass(frozen=True)
class LuDocument:
    """What a shared LU keeps between commands: the model's snapshot and its APTPL image."""

    state: dict[str, Any]
    aptpl: dict[str, Any] | None

    def encode(self) -> bytes:
        doc = {"format": STATE_FORMAT, "state": self.state, "aptpl": self.aptpl}
        return json.dumps(doc, sort_keys=True).encode()

    @property
    def restores_anything(self) -> bool:
        """Whether a power cycle would bring registrations back from the APTPL image."""
        return self.aptpl is not None and PersistentReservations.from_dict(self.aptpl).aptpl


def read_document(path: Path) -> LuDocument | None:
    """The document in ``path``; None if there is none yet; StateFileError if it is damaged."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StateFileError(f"{path}: cannot read the simulated LU state ({e.strerror})") from e
    try:
        doc = json.loads(raw)
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError alike
        raise StateFileError(f"{path}: not a simulated LU state file ({e})") from e
    if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT:
        raise StateFileError(f"{path}: unknown simulated LU state format")
    state, aptpl = doc.get("state"), doc.get("aptpl")
    if not isinstance(state, dict) or not (aptpl is None or isinstance(aptpl, dict)):
        raise StateFileError(f"{path}: malformed simulated LU state (state or APTPL image)")
    return LuDocument(state, aptpl)


def _write_temp(temp: Path, blob: bytes, sync: bool) -> None:
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(blob)
        while view:
            view = view[os.write(fd, view) :]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _sync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit(
    path: Path,
    temp: Path,
    new: LuDocument,
    old: LuDocument | None,
    announce: Callable[[], None],
) -> None:
    """Replace the document in ``path`` (``old`` as last read, None if none) by ``new`` with
    one rename, through ``temp``; the caller holds the LU's lock. ``announce`` runs after the
    temporary file is complete and before the rename (``simserve`` writes its change token
    there: a kill between the two only makes the other helpers reload the old state)."""
    image_changed = new.aptpl != (None if old is None else old.aptpl)
    _write_temp(temp, new.encode(), sync=image_changed or new.restores_anything)
    announce()
    os.replace(temp, path)
    if image_changed:
        _sync_directory(path.parent)
