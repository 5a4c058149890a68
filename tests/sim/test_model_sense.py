"""Sense data as the model reads it back (SPC-5 4.4): the helper, the rig and the tests decode
real devices' sense with ``SenseData.parse``, so every response code and length edge counts.
Expected values are spelled out from SPC-5, not built with the model's encoders."""

from __future__ import annotations

import pytest

from scsi_pr.sim.constants import INVALID_FIELD_IN_CDB, SenseKey, Status
from scsi_pr.sim.result import (
    NEVER,
    CommandResult,
    FieldPointer,
    SenseData,
    sense_key_specific,
    without_field_pointer,
)


def fixed(code: int = 0x70, length: int = 18, key: int = 0x05, sksv: bool = True) -> bytes:
    sense = bytearray(length)
    sense[0], sense[2], sense[7] = code, 0xF0 | key, length - 8  # FILEMARK/EOM/ILI set: masked
    sense[12:14] = bytes([0x24, 0x01])
    if length >= 18:
        sense[15:18] = bytes([0xC0 if sksv else 0x40, 0x01, 0x02])
    for i in range(18, length):
        sense[i] = 0xEE
    return bytes(sense)


def descriptor(code: int = 0x72, length: int = 8, key: int = 0x06) -> bytes:
    return bytes([code, 0xF0 | key, 0x29, 0x07]) + bytes([0xC0]) * (length - 4)


@pytest.mark.parametrize(
    ("sense", "triple"),
    [
        (fixed(), (0x05, 0x24, 0x01)),
        (fixed(0x71), (0x05, 0x24, 0x01)),  # deferred
        (fixed(0xF0), (0x05, 0x24, 0x01)),  # VALID bit set
        (fixed(length=14), (0x05, 0x24, 0x01)),  # through ASCQ, no more
        (descriptor(), (0x06, 0x29, 0x07)),
        (descriptor(0x73), (0x06, 0x29, 0x07)),
        (descriptor(length=4), (0x06, 0x29, 0x07)),
        (descriptor(length=18), (0x06, 0x29, 0x07)),  # as long as fixed sense: still 72h
        (descriptor(key=0x0B), (0x0B, 0x29, 0x07)),
    ],
    ids=["70h", "71h", "valid", "fixed-14", "72h", "73h", "72h-4", "72h-18", "72h-key-b"],
)
def test_sense_is_parsed_by_its_response_code(sense: bytes, triple: tuple[int, int, int]) -> None:
    parsed = SenseData.parse(sense)
    assert parsed is not None and parsed.triple == triple


@pytest.mark.parametrize(
    "sense",
    [b"", bytes([0x70]), fixed()[:13], descriptor(length=4)[:3], bytes([0x7F]) * 18,
     bytes(18)],
    ids=["empty", "one-byte", "fixed-13", "descriptor-3", "vendor-7fh", "zeros"],
)  # fmt: skip
def test_sense_too_short_or_of_another_code_is_not_parsed(sense: bytes) -> None:
    assert SenseData.parse(sense) is None


def test_the_sense_key_specific_bytes_are_read_only_when_sksv_says_so() -> None:
    assert sense_key_specific(fixed()) == bytes([0xC0, 0x01, 0x02])
    assert sense_key_specific(fixed(0x71, length=22)) == bytes([0xC0, 0x01, 0x02])
    assert sense_key_specific(fixed(sksv=False)) == b""
    assert sense_key_specific(fixed()[:17]) == b""  # SKSV set, the bytes cut short
    assert sense_key_specific(descriptor(length=18)) == b""  # byte 15 is a descriptor's


def test_without_field_pointer_zeroes_bytes_15_to_17_and_keeps_the_rest() -> None:
    sense = fixed(length=22)
    result = CommandResult(Status.CHECK_CONDITION, sense, b"data", NEVER)
    cut = without_field_pointer(result)
    assert cut.sense == sense[:15] + bytes(3) + sense[18:]
    assert (cut.status, cut.data, cut.stall) == (Status.CHECK_CONDITION, b"data", NEVER)
    plain = CommandResult(Status.CHECK_CONDITION, fixed(sksv=False))
    assert without_field_pointer(plain) is plain


def test_unknown_codes_are_printed_as_numbers() -> None:
    assert str(SenseData(SenseKey.ILLEGAL_REQUEST, 0x24, 0x00)) == (
        "ILLEGAL REQUEST: INVALID FIELD IN CDB"
    )
    assert str(SenseData(0x0F, 0x99, 0x01)) == "KEY 0xf: ASC 99h ASCQ 01h"
    assert str(CommandResult(0x42)) == "STATUS 0x42"
    assert str(CommandResult(Status.CHECK_CONDITION, fixed())) == (
        f"CHECK CONDITION ({SenseData(0x05, 0x24, 0x01)})"
    )


def test_a_check_condition_carries_the_field_pointer_it_is_given() -> None:
    """The target and the rig build ILLEGAL REQUESTs with pointers of their own this way."""
    got = CommandResult.check_condition(
        SenseKey.ILLEGAL_REQUEST, INVALID_FIELD_IN_CDB, FieldPointer(True, 1, 4)
    )
    assert got.status == Status.CHECK_CONDITION
    assert got.sense[15:18] == bytes([0x80 | 0x40 | 0x08 | 4, 0, 1])  # SKSV, C/D, BPV, bit 4
    plain = CommandResult.check_condition(SenseKey.ILLEGAL_REQUEST, INVALID_FIELD_IN_CDB)
    assert plain.sense[15:18] == bytes(3)
