"""What of an answer the differential compares, and how two answers differ.

Compared: status; sense key, ASC, ASCQ and the sense-key-specific bytes (fixed format bytes
15-17 when SKSV is set); data-in byte for byte. One normalisation: PRGENERATION (bytes 0-3 of
READ KEYS, READ RESERVATION and READ FULL STATUS data) is counted from the value each side
reported when the run started, because a real LU keeps counting across runs (SPC-5 6.16.2:
the generation is never reset but by a power on) while the model starts fresh.
"""

from __future__ import annotations

from dataclasses import dataclass

from scsi_pr.sim.constants import Opcode, PersistentReserveInAction, Status
from scsi_pr.sim.result import CommandResult, SenseData, sense_key_specific

#: PR IN service actions whose data starts with PRGENERATION (SPC-5 6.16)
WITH_GENERATION = frozenset(
    {
        PersistentReserveInAction.READ_KEYS,
        PersistentReserveInAction.READ_RESERVATION,
        PersistentReserveInAction.READ_FULL_STATUS,
    }
)
NO_ANSWER = -1  # the command never completed (a timeout: the LU hung)


@dataclass(frozen=True)
class View:
    """The compared part of one answer."""

    status: int
    sense: tuple[int, int, int] | None
    sks: bytes
    data: bytes
    #: why there is no answer (``status`` is ``NO_ANSWER``)
    note: str = ""

    @classmethod
    def no_answer(cls, why: str) -> View:
        return cls(NO_ANSWER, None, b"", b"", f"no answer ({why})")

    def __str__(self) -> str:
        if self.status == NO_ANSWER:
            return self.note
        try:
            text = Status(self.status).name.replace("_", " ")
        except ValueError:
            text = f"STATUS {self.status:#04x}"
        if self.sense is not None:
            text += f" ({SenseData(*self.sense)}"
            text += f", SKS {self.sks.hex()})" if self.sks else ")"
        if self.data:
            shown = self.data[:32].hex()
            text += f" data {shown}{'…' if len(self.data) > 32 else ''} ({len(self.data)} bytes)"
        return text


def has_generation(cdb: bytes) -> bool:
    """Does this command's data-in start with PRGENERATION?"""
    return (
        len(cdb) >= 2
        and cdb[0] == Opcode.PERSISTENT_RESERVE_IN
        and (cdb[1] & 0x1F) in WITH_GENERATION
    )


def view(result: CommandResult, cdb: bytes, base_generation: int = 0) -> View:
    sense = result.sense_data
    sks = sense_key_specific(result.sense) if sense is not None else b""
    # data-in of a command that did not end GOOD is nothing the device said (SG_IO hands back
    # the unwritten buffer)
    data = bytes(result.data) if result.status == Status.GOOD else b""
    if has_generation(cdb) and len(data) >= 4:
        relative = (int.from_bytes(data[:4], "big") - base_generation) % (1 << 32)
        data = relative.to_bytes(4, "big") + data[4:]
    return View(int(result.status), sense.triple if sense else None, sks, data)


def difference(model: View, device: View) -> str | None:
    """What differs between the two answers (None: nothing compared differs)."""
    parts = []
    if model.status != device.status:
        parts.append("status")
    if model.sense != device.sense:
        parts.append("sense")
    elif model.sks != device.sks:
        parts.append("sense-key-specific bytes")
    if model.data != device.data:
        at = next(
            (i for i, (a, b) in enumerate(zip(model.data, device.data, strict=False)) if a != b),
            None,
        )
        where = f"byte {at}" if at is not None else "length"
        parts.append(f"data ({where}: {len(model.data)} vs {len(device.data)} bytes)")
    return ", ".join(parts) or None
