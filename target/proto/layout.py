"""The Basic Header Segment as a table: each PDU class lists where its fields live.

RFC 7143 11.2 draws every PDU as the same 48-byte grid: byte 0 holds the I bit and the opcode,
bytes 4-7 TotalAHSLength and DataSegmentLength, the rest is per opcode. A ``Field`` row says
where one named value sits (byte offset, width, or a bit mask inside one byte), so one encoder and
one decoder serve every PDU type and a field's range check comes from its width. Reserved bits
are written as zero and ignored on receipt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

from scsi_pr.target.proto.constants import (
    BHS_SIZE,
    FINAL_BIT,
    IMMEDIATE_BIT,
    MAX_DATA_SEGMENT_LENGTH,
    OPCODE_MASK,
    CodeEnum,
    Opcode,
    RejectReason,
)
from scsi_pr.target.proto.errors import LocalProtocolError, RemoteProtocolError


class InvalidPduField(RemoteProtocolError):
    """A received PDU's fields are inconsistent (11.17.1 reason 0x09); the PDU is dropped."""

    reject_reason = RejectReason.INVALID_PDU_FIELD


class Field(NamedTuple):
    """One value of a BHS: ``size`` bytes big-endian at ``offset``, or the bits of ``mask``."""

    name: str
    offset: int
    size: int = 4
    mask: int = 0
    kind: type = int
    enum: type[CodeEnum] | None = None
    variable: bool = False  # bytes: may be longer than ``size`` (the rest travels in an AHS)

    @property
    def shift(self) -> int:
        return (self.mask & -self.mask).bit_length() - 1

    @property
    def limit(self) -> int:
        return self.mask >> self.shift if self.mask else (1 << (8 * self.size)) - 1

    def check(self, value: Any, owner: str) -> None:
        where = f"{owner}.{self.name}"
        if self.kind is bytes:
            if not isinstance(value, bytes):
                raise LocalProtocolError(f"{where} must be bytes, not {type(value).__name__}")
            if len(value) < self.size or (len(value) > self.size and not self.variable):
                raise LocalProtocolError(f"{where} must be {self.size} bytes, not {len(value)}")
        elif self.kind is bool:
            if not isinstance(value, bool):
                raise LocalProtocolError(f"{where} must be a bool, not {value!r}")
        elif isinstance(value, bool) or not isinstance(value, int):
            raise LocalProtocolError(f"{where} must be an int, not {value!r}")
        elif not 0 <= value <= self.limit:
            raise LocalProtocolError(f"{where}={value!r} is outside 0..{self.limit:#x}")

    def put(self, bhs: bytearray, value: Any) -> None:
        if self.kind is bytes:
            bhs[self.offset : self.offset + self.size] = value[: self.size]
        elif self.mask:
            bhs[self.offset] |= (int(value) << self.shift) & self.mask
        else:
            bhs[self.offset : self.offset + self.size] = int(value).to_bytes(self.size, "big")

    def get(self, bhs: bytes) -> Any:
        if self.kind is bytes:
            return bytes(bhs[self.offset : self.offset + self.size])
        if self.mask:
            raw = (bhs[self.offset] & self.mask) >> self.shift
        else:
            raw = int.from_bytes(bhs[self.offset : self.offset + self.size], "big")
        if self.kind is bool:
            return bool(raw)
        if self.enum is not None and raw in self.enum._value2member_map_:
            return self.enum(raw)
        return raw


# The field builders run only while the PDU classes are defined, at import: before mutmut's
# runner picks a mutant (it forks from an imported process), so no test can see a mutant of
# theirs; what they build is checked by every PDU's byte-exact round trip instead.
# pragma: no mutate start
def u32(name: str, offset: int) -> Field:
    return Field(name, offset)


def u16(name: str, offset: int) -> Field:
    return Field(name, offset, 2)


def u8(name: str, offset: int, enum: type[CodeEnum] | None = None) -> Field:
    return Field(name, offset, 1, enum=enum)


def flag(name: str, mask: int, offset: int = 1) -> Field:
    return Field(name, offset, 1, mask, bool)


def bits(name: str, mask: int, enum: type[CodeEnum] | None = None, offset: int = 1) -> Field:
    return Field(name, offset, 1, mask, int, enum)


# pragma: no mutate end


# -- fields many PDUs share ------------------------------------------------------------------
F_SET = ((1, FINAL_BIT),)  # byte 1 bit 7 is 1 in every PDU that has no real F bit
NO_TASK = tuple((i, 0xFF) for i in range(16, 20))  # ITT 0xffffffff in Reject / Async Message

IMMEDIATE = flag("immediate", IMMEDIATE_BIT, offset=0)
FINAL = flag("final", FINAL_BIT)
LUN = Field("lun", 8, 8)
ITT = u32("initiator_task_tag", 16)
TTT = u32("target_transfer_tag", 20)
STAT_SN, EXP_CMD_SN, MAX_CMD_SN = u32("stat_sn", 24), u32("exp_cmd_sn", 28), u32("max_cmd_sn", 32)
CMD_SN, EXP_STAT_SN = u32("cmd_sn", 24), u32("exp_stat_sn", 28)
TARGET_SNS = (STAT_SN, EXP_CMD_SN, MAX_CMD_SN)


def encode_lun(lun: int) -> int:
    """A LUN as the 8-byte LUN field (SAM-5 4.7: peripheral below 256, else flat space)."""
    if 0 <= lun < 256:
        return lun << 48
    if lun < 1 << 14:
        return (0x4000 | lun) << 48
    raise LocalProtocolError(f"LUN {lun} is outside 0..16383")


def decode_lun(field: int) -> int | None:
    """The LUN of an 8-byte LUN field, or None for addressing methods this target does not use."""
    first_level, rest = field >> 48, field & ((1 << 48) - 1)
    method = first_level >> 14
    if rest or method not in (0, 1) or (method == 0 and first_level >> 8):
        return None
    return first_level & 0x3FFF


#: every PDU class by opcode, filled as the classes are defined
PDU_CLASSES: dict[int, type[Pdu]] = {}


@dataclass(frozen=True)
class Pdu:
    """Base of every PDU: frozen, validated at construction, encoded by its ``LAYOUT``."""

    OPCODE: ClassVar[Opcode]
    LAYOUT: ClassVar[tuple[Field, ...]] = ()
    #: bits that are always set on the wire: (byte offset, bits), e.g. the F bit of a NOP-Out
    FIXED: ClassVar[tuple[tuple[int, int], ...]] = ()
    #: whether the PDU carries a data segment (a ``data`` field); others must have none
    HAS_DATA: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:  # at import, as the builders above
        super().__init_subclass__(**kwargs)
        if "OPCODE" in cls.__dict__:  # pragma: no mutate
            PDU_CLASSES[cls.OPCODE] = cls  # pragma: no mutate

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for field in self.LAYOUT:
            field.check(getattr(self, field.name), owner)
        data = self.data_segment
        if not isinstance(data, bytes):
            raise LocalProtocolError(f"{owner}.data must be bytes")
        if len(data) > MAX_DATA_SEGMENT_LENGTH:
            raise LocalProtocolError(f"{owner} data segment of {len(data)} bytes exceeds 2**24-1")
        self._check()

    def _check(self) -> None:
        """Constraints between fields, beyond each field's range (overridden per class)."""

    @property
    def data_segment(self) -> bytes:
        return getattr(self, "data", b"") if self.HAS_DATA else b""

    @property
    def opcode(self) -> Opcode:
        return self.OPCODE

    def additional_header(self) -> bytes:
        """The AHS bytes (a multiple of 4); only the SCSI Command has any (11.2.2)."""
        return b""

    @classmethod
    def _apply_ahs(cls, values: dict[str, Any], ahs: bytes) -> None:
        """Fold the received AHS into the field values (overridden by the SCSI Command)."""
        if ahs:
            raise InvalidPduField(f"{cls.__name__} carries no Additional Header Segment")

    def bhs(self, ahs_length: int | None = None) -> bytes:
        """The 48-byte BHS of this PDU (TotalAHSLength and DataSegmentLength filled in)."""
        if ahs_length is None:
            ahs_length = len(self.additional_header())
        bhs = bytearray(BHS_SIZE)
        bhs[0] = self.OPCODE
        for offset, value in self.FIXED:
            bhs[offset] |= value
        for field in self.LAYOUT:
            field.put(bhs, getattr(self, field.name))
        bhs[4] = ahs_length // 4
        bhs[5:8] = len(self.data_segment).to_bytes(3, "big")
        return bytes(bhs)

    @classmethod
    def from_segments(cls, bhs: bytes, ahs: bytes = b"", data: bytes = b"") -> Pdu:
        """Build the PDU of ``bhs`` (any opcode) from its received segments.

        Raises ``InvalidPduField`` (with the BHS attached) when the segments are inconsistent.
        """
        pdu_class = PDU_CLASSES.get(bhs[0] & OPCODE_MASK)
        if pdu_class is None:
            raise InvalidPduField(f"opcode {bhs[0] & OPCODE_MASK:#04x} is not defined", header=bhs)
        kwargs = {f.name: f.get(bhs) for f in pdu_class.LAYOUT}
        try:
            pdu_class._apply_ahs(kwargs, bytes(ahs))
            if data and not pdu_class.HAS_DATA:
                raise InvalidPduField(f"{pdu_class.__name__} carries no data segment")
            if pdu_class.HAS_DATA:
                kwargs["data"] = bytes(data)
            return pdu_class(**kwargs)
        except InvalidPduField as e:
            raise e.with_header(bytes(bhs)) from None
        except LocalProtocolError as e:
            raise InvalidPduField(str(e), header=bytes(bhs)) from e
