"""The logical units a target serves: LUN N is the image file ``DIR/lunN.img`` of a state dir.

The LUs are the model's (``scsi_pr.sim``) shared through ``scsi_pr.helper.simserve.SharedLUs``,
the same state files ``scsi-pr-helper --backend sim --state-dir DIR`` uses: a helper client
given an fd of ``DIR/lun0.img`` and an iSCSI session on LUN 0 are two initiators of one LU.

What belongs to the target rather than to one LU is answered here (SPC-5 / SAM-5): REPORT LUNS
lists every LUN of the target, and a command to a LUN that does not exist gets INQUIRY data with
PERIPHERAL QUALIFIER 011b, REQUEST SENSE data or CHECK CONDITION with LOGICAL UNIT NOT SUPPORTED.
Everything is synchronous and blocking (file locks, ``pread``): the server runs it on one
worker thread, in the order commands arrive.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from scsi_pr.helper.lu_state_file import StateFileError
from scsi_pr.helper.simserve import LU_BLOCK_SIZE, SharedLUs
from scsi_pr.sim.constants import (
    COMMANDS_CLEARED_BY_ANOTHER_INITIATOR,
    INVALID_FIELD_IN_CDB,
    LOGICAL_UNIT_NOT_SUPPORTED,
    AdditionalSense,
    Opcode,
    SenseKey,
    Status,
)
from scsi_pr.sim.device import LogicalUnit
from scsi_pr.sim.nexus import ITNexus
from scsi_pr.sim.result import CommandResult, FieldPointer, fixed_sense
from scsi_pr.target.errors import TargetError
from scsi_pr.target.proto.constants import DEFAULT_MAX_TRANSFER

T = TypeVar("T")
IMAGE_NAME = "lun{}.img"
MAX_LUNS = 256  # single level LUN structure, peripheral device addressing (SAM-5 4.7.7)
SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
#: SPC-5 REPORT LUNS SELECT REPORT: 00h and 02h list the LUNs, 01h (well known) lists none
SELECT_REPORT = {0x00: True, 0x01: False, 0x02: True}
#: INQUIRY for a LUN that does not exist: PERIPHERAL QUALIFIER 011b, DEVICE TYPE 1Fh (SPC-5 6.7.2)
NO_LU_PERIPHERAL = 0x7F
#: where WRITE(6/10/16) keep their TRANSFER LENGTH (SBC-4): (start, end) of the field
TRANSFER_LENGTH = {Opcode.WRITE_6: (4, 5), Opcode.WRITE_10: (7, 9), Opcode.WRITE_16: (10, 14)}
#: ... and READ(6/10/16), whose data-in the target caps (``ServedLUs.max_read``)
READ_TRANSFER_LENGTH = {Opcode.READ_6: (4, 5), Opcode.READ_10: (7, 9), Opcode.READ_16: (10, 14)}
#: the 6-byte forms, whose TRANSFER LENGTH 0 means 256 blocks (SBC-4)
SIX_BYTE_FORMS = frozenset({Opcode.READ_6, Opcode.WRITE_6})
#: SAM-5: a data-out buffer that does not fit the command (less than one logical block)
INVALID_FIELD_IN_INFORMATION_UNIT = AdditionalSense(0x0E, 0x03, "INVALID FIELD IN INFORMATION UNIT")


class LunConfigError(TargetError, ValueError):
    """The LUNs asked for cannot be served (bad size, count, or an unusable image file)."""


def parse_size(text: str) -> int:
    """``1G``, ``64M``, ``512K`` or bytes; a positive multiple of the 512-byte block."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if match is None:
        raise LunConfigError(f"size {text!r}: use bytes or a number with K, M, G or T")
    size = int(match[1]) * SIZE_UNITS[match[2].upper()]
    if size <= 0 or size % LU_BLOCK_SIZE:
        raise LunConfigError(f"size {text!r}: must be a positive multiple of {LU_BLOCK_SIZE}")
    return size


@dataclass(frozen=True)
class Answer:
    """A command's result and the data-out bytes it used (None: not known, no residual)."""

    result: CommandResult
    transferred: int | None = None


def data_out_length(cdb: bytes, block_size: int = LU_BLOCK_SIZE) -> int | None:
    """The data-out bytes a CDB asks for, for the commands the model takes data-out with."""
    opcode = cdb[0] if cdb else -1
    if (blocks := _transfer_blocks(cdb, TRANSFER_LENGTH)) is not None:
        return blocks * block_size
    if opcode == Opcode.VERIFY_10 and len(cdb) >= 10 and (cdb[1] >> 1) & 0x03 == 0b01:
        return int.from_bytes(cdb[7:9], "big") * block_size  # BYTCHK 01b: compare data-out
    if opcode == Opcode.PERSISTENT_RESERVE_OUT and len(cdb) >= 9:
        return int.from_bytes(cdb[5:9], "big")  # PARAMETER LIST LENGTH
    return None


def read_length(cdb: bytes, block_size: int = LU_BLOCK_SIZE) -> int | None:
    """The data-in bytes a READ(6/10/16) asks for (None for other commands)."""
    blocks = _transfer_blocks(cdb, READ_TRANSFER_LENGTH)
    return None if blocks is None else blocks * block_size


def _transfer_blocks(cdb: bytes, fields: dict[int, tuple[int, int]]) -> int | None:
    """The TRANSFER LENGTH of a CDB whose opcode ``fields`` locates (None: another opcode, or
    a CDB too short to hold the field)."""
    field = fields.get(cdb[0] if cdb else -1)
    if field is None or len(cdb) < field[1]:
        return None
    blocks = int.from_bytes(cdb[field[0] : field[1]], "big")
    return blocks or 256 if cdb[0] in SIX_BYTE_FORMS else blocks


def fit_write(cdb: bytes, received: int, block_size: int = LU_BLOCK_SIZE) -> bytes | None:
    """A WRITE whose data-out is shorter than its TRANSFER LENGTH writes only the whole blocks
    that came (the rest is the residual overflow, RFC 7143 11.4.5.1); None when not even the
    CDB can say that (part of a block, or no block for WRITE(6), where 0 means 256)."""
    field = TRANSFER_LENGTH[Opcode(cdb[0])]
    blocks, rest = divmod(received, block_size)
    if rest or (blocks == 0 and cdb[0] == Opcode.WRITE_6):
        return None
    size = field[1] - field[0]
    return cdb[: field[0]] + blocks.to_bytes(size, "big") + cdb[field[1] :]


def _not_supported() -> CommandResult:
    return CommandResult.check_condition(SenseKey.ILLEGAL_REQUEST, LOGICAL_UNIT_NOT_SUPPORTED)


class ServedLUs:
    """LUNs 0..count-1 of one target, each an image file in ``state_dir``."""

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        count: int,
        size: int,
        target_ports: int = 2,
        profile: str = "spc5",
        max_read: int = DEFAULT_MAX_TRANSFER,
    ) -> None:
        #: READs asking for more bytes are refused (INVALID FIELD IN CDB, as LIO refuses one
        #: over its max_sectors): the model reads a command's whole TRANSFER LENGTH whatever
        #: the initiator's EXPECTED DATA TRANSFER LENGTH, on the loop's thread
        self.max_read = max_read
        if not 1 <= count <= MAX_LUNS:
            raise LunConfigError(f"{count} LUNs: serve 1..{MAX_LUNS}")
        self.state_dir = Path(state_dir)
        self.images = {lun: self.state_dir / IMAGE_NAME.format(lun) for lun in range(count)}
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self.created = [lun for lun, path in self.images.items() if _create(path, size)]
        except OSError as e:
            raise LunConfigError(f"cannot prepare the LUN images in {self.state_dir}: {e}") from e
        self.shared = SharedLUs(self.state_dir, target_ports, profile=profile)
        for lun in self.images:  # a LUN saved under another profile is refused at start
            try:
                self.run(lun, lambda lu: None)
            except StateFileError as e:
                raise LunConfigError(f"LUN {lun}: {e}") from e

    def size(self, lun: int) -> int:
        return self.images[lun].stat().st_size

    def run(self, lun: int, fn: Callable[[LogicalUnit], T]) -> T:
        """``fn`` on the LU of ``lun`` with its state current and saved afterwards."""
        return self.shared.run_on_file(self.images[lun], fn)

    # -- commands -------------------------------------------------------------------------
    def execute(
        self, lun: int | None, nexus: ITNexus, cdb: bytes, data: bytes = b"", write: bool = False
    ) -> Answer:
        """One command as the target answers it (``write``: the initiator sent data-out, all
        of ``data``); never raises for any input."""
        opcode = cdb[0] if cdb else -1
        if lun not in self.images:
            return Answer(self._no_such_lun(opcode, cdb))
        assert lun is not None
        if (asked := read_length(cdb)) is not None and asked > self.max_read:
            pointer = FieldPointer(True, READ_TRANSFER_LENGTH[Opcode(opcode)][0])
            return Answer(CommandResult.check_condition(SenseKey.ILLEGAL_REQUEST,
                                                        INVALID_FIELD_IN_CDB, pointer))  # fmt: skip
        needed = data_out_length(cdb)
        transferred = needed if needed is not None else (0 if write else None)
        if needed is not None and len(data) < needed and opcode in TRANSFER_LENGTH:
            fitted = fit_write(cdb, len(data))
            if fitted is None:
                code = INVALID_FIELD_IN_INFORMATION_UNIT
                return Answer(CommandResult.check_condition(SenseKey.ILLEGAL_REQUEST, code),
                              transferred)  # fmt: skip
            cdb = fitted
        result = self.run(lun, lambda lu: lu.execute(nexus, cdb, data))
        if opcode == Opcode.REPORT_LUNS and result.status == Status.GOOD:
            result = self._report_luns(cdb, result)
        return Answer(result, transferred)

    def _report_luns(self, cdb: bytes, checked: CommandResult | None = None) -> CommandResult:
        """SPC-5 REPORT LUNS: every LUN of the target (the LU checked ALLOCATION LENGTH)."""
        listed = SELECT_REPORT.get(cdb[2] if len(cdb) > 2 else 0)
        if listed is None:
            pointer = FieldPointer(True, 2)
            return CommandResult.check_condition(
                SenseKey.ILLEGAL_REQUEST, INVALID_FIELD_IN_CDB, pointer
            )
        if checked is None and (len(cdb) < 12 or int.from_bytes(cdb[6:10], "big") < 16):
            # a CDB cut short points at its first missing byte, as the model's LUs do
            pointer = FieldPointer(True, 6 if len(cdb) >= 12 else len(cdb))
            return CommandResult.check_condition(
                SenseKey.ILLEGAL_REQUEST, INVALID_FIELD_IN_CDB, pointer
            )
        luns = sorted(self.images) if listed else []
        body = b"".join(struct.pack(">H6x", lun) for lun in luns)  # peripheral addressing
        allocation_length = int.from_bytes(cdb[6:10], "big")
        return CommandResult.good((struct.pack(">I4x", len(body)) + body)[:allocation_length])

    def _no_such_lun(self, opcode: int, cdb: bytes) -> CommandResult:
        """SPC-5: the target answers INQUIRY, REPORT LUNS and REQUEST SENSE for any LUN."""
        if opcode == Opcode.REPORT_LUNS:
            return self._report_luns(cdb)
        if opcode == Opcode.INQUIRY and len(cdb) >= 6 and not cdb[1] & 0x01:
            body = bytes([NO_LU_PERIPHERAL, 0, 0x07, 0x02, 31, 0, 0, 0x02])
            body += b"SCSI-PR ".ljust(8) + b"NO LU".ljust(16) + b"0001"
            return CommandResult.good(body[: int.from_bytes(cdb[3:5], "big")])
        if opcode == Opcode.REQUEST_SENSE and len(cdb) >= 6:
            sense = fixed_sense(SenseKey.ILLEGAL_REQUEST, LOGICAL_UNIT_NOT_SUPPORTED)
            return CommandResult.good(sense[: cdb[4]])
        return _not_supported()

    # -- events that are not commands -------------------------------------------------------
    def attach(self, nexus: ITNexus) -> None:
        """A session logged in: its I_T nexus exists on every LU from now, before it sends a
        command (LIO's profiles register a SPEC_I_PT TransportID only where one exists, as
        LIO only where the initiator has an ACL, which it has from its login)."""
        self._on_every_lu(lambda lu: lu.attach(nexus))

    def nexus_loss(self, nexus: ITNexus) -> None:
        """SAM-5 6.3.4 I_T nexus loss, on every LU of the target."""
        self._on_every_lu(lambda lu: lu.nexus_loss(nexus))

    def lun_reset(self, lun: int) -> None:
        """SAM-5 7.7 LOGICAL UNIT RESET."""
        self.run(lun, lambda lu: lu.lun_reset())

    def hard_reset(self) -> None:
        """TARGET WARM RESET: a hard reset of every LU (SAM-5 6.3.2)."""
        self._on_every_lu(LogicalUnit.hard_reset)

    def power_cycle(self) -> None:
        """TARGET COLD RESET: like power off and on (RFC 7143 11.5.1); APTPL state survives."""

        def cycle(lu: LogicalUnit) -> None:
            lu.power_loss()
            lu.power_on()

        self._on_every_lu(cycle)

    def _on_every_lu(self, fn: Callable[[LogicalUnit], object]) -> None:
        """``fn`` on each LU of the target in turn (each with its state current and saved)."""
        for lun in self.images:
            self.run(lun, fn)

    def commands_cleared(self, lun: int, nexuses: list[ITNexus]) -> None:
        """CLEAR TASK SET aborted tasks of other I_T nexuses: they get a unit attention
        (SAM-5 7.5 with TAS=0, the model's control mode page)."""
        if nexuses:
            self.run(
                lun, lambda lu: lu.ua.establish(nexuses, COMMANDS_CLEARED_BY_ANOTHER_INITIATOR)
            )


def _create(path: Path, size: int) -> bool:
    """Create a sparse image of ``size`` bytes unless one exists; True when created."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as e:
        if not path.is_file() or path.stat().st_size < LU_BLOCK_SIZE:
            raise LunConfigError(f"{path} is not a usable LUN image (a file of 512+ bytes)") from e
        return False
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)
    return True
