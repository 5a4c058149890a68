"""What a logical unit returns for one command, and how fixed-format sense is built.

SPC-5 defines fixed-format sense data; the model always produces it (D_SENSE=0), with a
sense-key specific FIELD POINTER for ILLEGAL REQUEST so that an initiator can see which byte was
wrong.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

from scsi_pr.sim.constants import (
    ADDITIONAL_SENSE_BY_CODE,
    FIXED_SENSE_LENGTH,
    AdditionalSense,
    SenseKey,
    Status,
)
from scsi_pr.sim.errors import SimError

#: ``CommandResult.stall`` of a command the device never completes (a profile's LIO defect):
#: the I/O edge withholds the answer for good instead of sleeping
NEVER = math.inf
SKSV = 0x80  # fixed sense byte 15: the sense-key specific bytes are valid (SPC-5 4.4.2.4)


@dataclass(frozen=True)
class FieldPointer:
    """The sense-key specific FIELD POINTER (SPC-5): where the offending field is (C/D, byte,
    optional bit)."""

    in_cdb: bool
    byte: int
    bit: int | None = None

    def encode(self) -> bytes:
        b15 = SKSV | (0x40 if self.in_cdb else 0)
        if self.bit is not None:
            b15 |= 0x08 | (self.bit & 0x07)
        return bytes([b15]) + self.byte.to_bytes(2, "big")


def fixed_sense(key: SenseKey, code: AdditionalSense, pointer: FieldPointer | None = None) -> bytes:
    """18 bytes of current, fixed-format sense data (response code 70h)."""
    sense = bytearray(FIXED_SENSE_LENGTH)
    sense[0] = 0x70
    sense[2] = key
    sense[7] = FIXED_SENSE_LENGTH - 8
    sense[12] = code.asc
    sense[13] = code.ascq
    if pointer is not None:
        sense[15:18] = pointer.encode()
    return bytes(sense)


@dataclass(frozen=True)
class SenseData:
    """Decoded key/ASC/ASCQ of fixed (70h/71h) or descriptor (72h/73h) sense."""

    key: int
    asc: int
    ascq: int

    @classmethod
    def parse(cls, sense: bytes) -> SenseData | None:
        """None for sense too short to hold the three, or of another response code."""
        if len(sense) >= 14 and sense[0] & 0x7F in (0x70, 0x71):  # current, deferred
            return cls(sense[2] & 0x0F, sense[12], sense[13])
        if len(sense) >= 4 and sense[0] & 0x7F in (0x72, 0x73):
            return cls(sense[1] & 0x0F, sense[2], sense[3])
        return None

    def __str__(self) -> str:
        try:
            key = SenseKey(self.key).name.replace("_", " ")
        except ValueError:
            key = f"KEY {self.key:#x}"
        known = ADDITIONAL_SENSE_BY_CODE.get((self.asc, self.ascq))
        text = known.name if known else f"ASC {self.asc:02X}h ASCQ {self.ascq:02X}h"
        return f"{key}: {text}"

    @property
    def triple(self) -> tuple[int, int, int]:
        return (self.key, self.asc, self.ascq)


@dataclass(frozen=True)
class CommandResult:
    """Status, sense and data-in of one command, as a SCSI target returns them.

    ``stall`` is the fault hook's request that the caller (the I/O edge) delay the answer by
    that many seconds: the model itself never sleeps. ``NEVER``: the command took effect but
    the device never answers it (``completes`` is False); the edge reports a hang or withholds
    the answer, never sleeps.
    """

    status: Status | int
    sense: bytes = b""
    data: bytes = b""
    stall: float = field(default=0.0, compare=False)

    @classmethod
    def good(cls, data: bytes = b"") -> CommandResult:
        return cls(Status.GOOD, b"", data)

    @classmethod
    def check_condition(
        cls, key: SenseKey, code: AdditionalSense, pointer: FieldPointer | None = None
    ) -> CommandResult:
        return _check_condition(key, code, pointer)

    @classmethod
    def reservation_conflict(cls) -> CommandResult:
        return _RESERVATION_CONFLICT

    @property
    def completes(self) -> bool:
        """False for a command the device never answers (``stall`` is ``NEVER``)."""
        return self.stall != NEVER

    @property
    def sense_data(self) -> SenseData | None:
        return SenseData.parse(self.sense) if self.status == Status.CHECK_CONDITION else None

    def __str__(self) -> str:
        try:
            status = Status(self.status).name.replace("_", " ")
        except ValueError:
            status = f"STATUS {int(self.status):#04x}"
        sense = self.sense_data
        return f"{status} ({sense})" if sense else status


# One shared (frozen) value per answer: the model ends every unit attention and refused
# command with one, and building a frozen dataclass and its sense cost about 1.5 us, a tenth
# of a PR OUT. The answers are a small fixed set. (The mutation tests' stage clears these
# memos before each test, so a mutant in the code that fills them is seen.)
@functools.cache
def _check_condition(
    key: SenseKey, code: AdditionalSense, pointer: FieldPointer | None
) -> CommandResult:
    return CommandResult(Status.CHECK_CONDITION, fixed_sense(key, code, pointer))


_RESERVATION_CONFLICT = CommandResult(Status.RESERVATION_CONFLICT)


class CommandTerminated(SimError):
    """Raised inside the model to end a command with ``result``; ``execute`` catches it."""

    def __init__(self, result: CommandResult) -> None:
        # The message is built only when somebody prints it: the model raises this for every
        # conflict and unit attention, and formatting sense there cost ~6% of its PR OUT rate.
        # BaseException's constructor has already kept ``(result,)`` as args (what a copy or a
        # pickle rebuilds it from), so its __init__ is not called again.
        self.result = result

    def __str__(self) -> str:
        return str(self.result)


def illegal_request(
    code: AdditionalSense,
    *,
    cdb_byte: int | None = None,
    param_byte: int | None = None,
    bit: int | None = None,
) -> CommandTerminated:
    """CHECK CONDITION, ILLEGAL REQUEST with a field pointer to the offending CDB or
    parameter-list byte (the sense-key specific FIELD POINTER)."""
    return CommandTerminated(_illegal_request(code, cdb_byte, param_byte, bit))


@functools.cache  # keyed by the numbers: hashing a FieldPointer costs what building one does
def _illegal_request(
    code: AdditionalSense, cdb_byte: int | None, param_byte: int | None, bit: int | None
) -> CommandResult:
    pointer = None
    if cdb_byte is not None:
        pointer = FieldPointer(True, cdb_byte, bit)
    elif param_byte is not None:
        pointer = FieldPointer(False, param_byte, bit)
    return _check_condition(SenseKey.ILLEGAL_REQUEST, code, pointer)


def sense_key_specific(sense: bytes) -> bytes:
    """Bytes 15-17 of fixed-format sense (70h/71h) when SKSV says they are valid, else b""."""
    if len(sense) >= 18 and sense[0] & 0x7F in (0x70, 0x71) and sense[15] & SKSV:
        return bytes(sense[15:18])
    return b""


def without_field_pointer(result: CommandResult) -> CommandResult:
    """``result`` with its fixed-format sense-key specific bytes (15-17) zeroed, as LIO sends
    every sense (``NO_FIELD_POINTER``)."""
    sense = result.sense
    if not sense_key_specific(sense):
        return result
    return CommandResult(result.status, sense[:15] + bytes(3) + sense[18:], result.data,
                         result.stall)  # fmt: skip


def reservation_conflict() -> CommandTerminated:
    return CommandTerminated(_RESERVATION_CONFLICT)
