"""The PDUs that carry SCSI (RFC 7143 11.3-11.8): commands, status, data, R2T, task management.

Same conventions as ``pdus``. A CDB longer than 16 bytes and a bidirectional read length travel
in Additional Header Segments (11.2.2); ``ScsiCommand`` builds and parses them. The sense data
of a SCSI Response sit in its data segment behind a 2-byte SenseLength (11.4.7).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scsi_pr.target.proto.constants import (
    ACKNOWLEDGE_BIT,
    ATTRIBUTES_MASK,
    BIDI_OVERFLOW_BIT,
    BIDI_UNDERFLOW_BIT,
    FUNCTION_MASK,
    READ_BIT,
    RESERVED_TAG,
    RESIDUAL_OVERFLOW_BIT,
    RESIDUAL_UNDERFLOW_BIT,
    STATUS_BIT,
    WRITE_BIT,
    AhsType,
    Opcode,
    ScsiResponseCode,
    TaskAttribute,
    TaskManagementFunction,
    TaskManagementResponseCode,
)
from scsi_pr.target.proto.errors import LocalProtocolError
from scsi_pr.target.proto.layout import (
    CMD_SN,
    EXP_STAT_SN,
    F_SET,
    FINAL,
    IMMEDIATE,
    ITT,
    LUN,
    TARGET_SNS,
    TTT,
    Field,
    InvalidPduField,
    Pdu,
    bits,
    flag,
    u8,
    u32,
)

BIDI_AHS = AhsType.BIDIRECTIONAL_READ_EXPECTED_DATA_TRANSFER_LENGTH
CDB_SIZE = 16  # 11.3.5: the CDB field of the BHS
MAX_CDB_SIZE = 260  # SPC-5 4.3.4: the longest variable-length CDB


@dataclass(frozen=True)
class ScsiCommand(Pdu):
    """11.3: a SCSI command; a CDB over 16 bytes and a bidirectional read length use AHSs."""

    OPCODE = Opcode.SCSI_COMMAND
    LAYOUT = (
        IMMEDIATE,
        FINAL,
        flag("read", READ_BIT),
        flag("write", WRITE_BIT),
        bits("attributes", ATTRIBUTES_MASK, TaskAttribute),
        LUN,
        ITT,
        u32("expected_data_transfer_length", 20),
        CMD_SN,
        EXP_STAT_SN,
        Field("cdb", 32, CDB_SIZE, kind=bytes, variable=True),
    )
    HAS_DATA = True
    immediate: bool = False
    final: bool = True
    read: bool = False
    write: bool = False
    attributes: int = TaskAttribute.SIMPLE
    lun: int = 0
    initiator_task_tag: int = 0
    expected_data_transfer_length: int = 0
    cmd_sn: int = 0
    exp_stat_sn: int = 0
    cdb: bytes = bytes(CDB_SIZE)
    bidirectional_read_expected_data_transfer_length: int | None = None
    data: bytes = b""

    def _check(self) -> None:
        if len(self.cdb) > MAX_CDB_SIZE:
            raise LocalProtocolError(f"a CDB of {len(self.cdb)} bytes exceeds {MAX_CDB_SIZE}")
        bidi = self.bidirectional_read_expected_data_transfer_length
        if bidi is not None and not (isinstance(bidi, int) and 0 <= bidi <= 0xFFFFFFFF):
            raise LocalProtocolError(f"bidirectional read length {bidi!r} is not a u32")

    def additional_header(self) -> bytes:
        out = b""
        if len(self.cdb) > CDB_SIZE:
            extra = self.cdb[CDB_SIZE:]  # AHSLength counts the reserved byte (11.2.2.3)
            out += _ahs(AhsType.EXTENDED_CDB, b"\0" + extra)
        bidi = self.bidirectional_read_expected_data_transfer_length
        if bidi is not None:
            out += _ahs(BIDI_AHS, b"\0" + bidi.to_bytes(4, "big"))
        return out

    @classmethod
    def _apply_ahs(cls, values: dict[str, Any], ahs: bytes) -> None:
        found: dict[int, bytes] = {}
        pos = 0
        while pos < len(ahs):
            if len(ahs) - pos < 4:
                raise InvalidPduField("truncated AHS header")
            length, kind = int.from_bytes(ahs[pos : pos + 2], "big"), ahs[pos + 2] & 0x3F
            body = ahs[pos + 3 : pos + 3 + length]
            if len(body) != length or length == 0 or kind in found:
                raise InvalidPduField(f"AHS type {kind} malformed or repeated")
            found[kind] = body
            pos += (3 + length + 3) & ~3
        for kind, body in found.items():
            if kind == AhsType.EXTENDED_CDB:
                values["cdb"] += body[1:]  # after the reserved byte: CDB bytes 16 and on
            elif kind == BIDI_AHS and len(body) == 5:
                length = int.from_bytes(body[1:5], "big")
                values["bidirectional_read_expected_data_transfer_length"] = length
            else:
                raise InvalidPduField(f"AHS type {kind} is not understood")


def _ahs(kind: AhsType, body: bytes) -> bytes:
    raw = len(body).to_bytes(2, "big") + bytes([kind]) + body
    return raw + bytes(-len(raw) % 4)


@dataclass(frozen=True)
class ScsiResponse(Pdu):
    """11.4: the status of a command; sense data travel in the data segment (11.4.7)."""

    OPCODE = Opcode.SCSI_RESPONSE
    LAYOUT = (
        flag("bidi_read_residual_overflow", BIDI_OVERFLOW_BIT),
        flag("bidi_read_residual_underflow", BIDI_UNDERFLOW_BIT),
        flag("residual_overflow", RESIDUAL_OVERFLOW_BIT),
        flag("residual_underflow", RESIDUAL_UNDERFLOW_BIT),
        u8("response", 2, ScsiResponseCode),
        u8("status", 3),
        ITT,
        u32("snack_tag", 20),
        *TARGET_SNS,
        u32("exp_data_sn", 36),
        u32("bidirectional_read_residual_count", 40),
        u32("residual_count", 44),
    )
    FIXED = F_SET
    HAS_DATA = True
    bidi_read_residual_overflow: bool = False
    bidi_read_residual_underflow: bool = False
    residual_overflow: bool = False
    residual_underflow: bool = False
    response: int = ScsiResponseCode.COMMAND_COMPLETED_AT_TARGET
    status: int = 0
    initiator_task_tag: int = 0
    snack_tag: int = 0
    stat_sn: int = 0
    exp_cmd_sn: int = 0
    max_cmd_sn: int = 0
    exp_data_sn: int = 0
    bidirectional_read_residual_count: int = 0
    residual_count: int = 0
    data: bytes = b""

    def _check(self) -> None:
        if self.residual_overflow and self.residual_underflow:
            raise LocalProtocolError("residual overflow and underflow are exclusive (11.4.5)")
        if self.bidi_read_residual_overflow and self.bidi_read_residual_underflow:
            raise LocalProtocolError("bidi overflow and underflow are exclusive (11.4.5)")

    @property
    def sense(self) -> bytes:
        """The sense data of the data segment (11.4.7.2: SenseLength, then the sense bytes)."""
        if len(self.data) < 2:
            return b""
        return self.data[2 : 2 + int.from_bytes(self.data[:2], "big")]


def sense_segment(sense: bytes) -> bytes:
    """The data segment of a SCSI Response carrying ``sense`` (11.4.7.2)."""
    return len(sense).to_bytes(2, "big") + sense if sense else b""


@dataclass(frozen=True)
class TaskManagementFunctionRequest(Pdu):
    """11.5: ABORT TASK, LOGICAL UNIT RESET and the other task management functions."""

    OPCODE = Opcode.TASK_MANAGEMENT_REQUEST
    LAYOUT = (
        IMMEDIATE,
        bits("function", FUNCTION_MASK, TaskManagementFunction),
        LUN,
        ITT,
        u32("referenced_task_tag", 20),
        CMD_SN,
        EXP_STAT_SN,
        u32("ref_cmd_sn", 32),
        u32("exp_data_sn", 36),
    )
    FIXED = F_SET
    immediate: bool = True
    function: int = TaskManagementFunction.ABORT_TASK
    lun: int = 0
    initiator_task_tag: int = 0
    referenced_task_tag: int = RESERVED_TAG
    cmd_sn: int = 0
    exp_stat_sn: int = 0
    ref_cmd_sn: int = 0
    exp_data_sn: int = 0


@dataclass(frozen=True)
class TaskManagementFunctionResponse(Pdu):
    """11.6: the outcome of a task management function."""

    OPCODE = Opcode.TASK_MANAGEMENT_RESPONSE
    LAYOUT = (u8("response", 2, TaskManagementResponseCode), ITT, *TARGET_SNS)
    FIXED = F_SET
    response: int = TaskManagementResponseCode.FUNCTION_COMPLETE
    initiator_task_tag: int = 0
    stat_sn: int = 0
    exp_cmd_sn: int = 0
    max_cmd_sn: int = 0


@dataclass(frozen=True)
class ScsiDataOut(Pdu):
    """11.7: write data, unsolicited (TTT 0xffffffff) or answering an R2T."""

    OPCODE = Opcode.SCSI_DATA_OUT
    LAYOUT = (FINAL, LUN, ITT, TTT, EXP_STAT_SN, u32("data_sn", 36), u32("buffer_offset", 40))
    HAS_DATA = True
    final: bool = False
    lun: int = 0
    initiator_task_tag: int = 0
    target_transfer_tag: int = RESERVED_TAG
    exp_stat_sn: int = 0
    data_sn: int = 0
    buffer_offset: int = 0
    data: bytes = b""


@dataclass(frozen=True)
class ScsiDataIn(Pdu):
    """11.7: read data; the last one may carry the status (S bit, 11.7.3)."""

    OPCODE = Opcode.SCSI_DATA_IN
    LAYOUT = (
        FINAL,
        flag("acknowledge", ACKNOWLEDGE_BIT),
        flag("residual_overflow", RESIDUAL_OVERFLOW_BIT),
        flag("residual_underflow", RESIDUAL_UNDERFLOW_BIT),
        flag("status_present", STATUS_BIT),
        u8("status", 3),
        LUN,
        ITT,
        TTT,
        *TARGET_SNS,
        u32("data_sn", 36),
        u32("buffer_offset", 40),
        u32("residual_count", 44),
    )
    HAS_DATA = True
    final: bool = False
    acknowledge: bool = False
    residual_overflow: bool = False
    residual_underflow: bool = False
    status_present: bool = False
    status: int = 0
    lun: int = 0
    initiator_task_tag: int = 0
    target_transfer_tag: int = RESERVED_TAG
    stat_sn: int = 0
    exp_cmd_sn: int = 0
    max_cmd_sn: int = 0
    data_sn: int = 0
    buffer_offset: int = 0
    residual_count: int = 0
    data: bytes = b""

    def _check(self) -> None:
        if self.status_present and not self.final:
            raise LocalProtocolError("the S bit needs the F bit (11.7.3)")
        if self.residual_overflow and self.residual_underflow:
            raise LocalProtocolError("residual overflow and underflow are exclusive (11.7.5)")


@dataclass(frozen=True)
class ReadyToTransfer(Pdu):
    """11.8: R2T, the target's request for one burst of write data."""

    OPCODE = Opcode.READY_TO_TRANSFER
    LAYOUT = (LUN, ITT, TTT, *TARGET_SNS, u32("r2t_sn", 36), u32("buffer_offset", 40),
              u32("desired_data_transfer_length", 44))  # fmt: skip
    FIXED = F_SET
    lun: int = 0
    initiator_task_tag: int = 0
    target_transfer_tag: int = 0
    stat_sn: int = 0
    exp_cmd_sn: int = 0
    max_cmd_sn: int = 0
    r2t_sn: int = 0
    buffer_offset: int = 0
    desired_data_transfer_length: int = 0
