"""SBC-4 CDB fields the model checks: the PROTECT fields of a LU without protection
information, DPO/FUA (DPOFUA=0), VERIFY(10) BYTCHK (found by libiscsi's SBC suites)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scsi_pr.sim import ITNexus, LogicalUnit, SenseKey, Status
from scsi_pr.sim.commands import first_difference

NEXUS = ITNexus.named("iqn.2024-01.test:host,i,0x000000000001")


def cdb10(opcode: int, byte1: int = 0, lba: int = 0, blocks: int = 1) -> bytes:
    return (
        bytes([opcode, byte1])
        + lba.to_bytes(4, "big")
        + bytes([0])
        + blocks.to_bytes(2, "big")
        + bytes(1)
    )


@pytest.mark.parametrize("opcode", [0x28, 0x2A, 0x2F])  # READ(10), WRITE(10), VERIFY(10)
def test_protect_fields_are_refused(opcode: int) -> None:
    lu = LogicalUnit()
    result = lu.execute(NEXUS, cdb10(opcode, 0x20), bytes(512))
    sense = result.sense_data
    assert sense is not None and sense.triple == (SenseKey.ILLEGAL_REQUEST, 0x24, 0x00)
    assert result.sense[15:18] == bytes([0xCF, 0, 1])  # C/D, BPV, bit 7 of byte 1


def test_verify_bytchk_compares_the_data_out() -> None:
    lu = LogicalUnit()
    block = bytes(range(256)) * 2
    assert lu.execute(NEXUS, cdb10(0x2A, lba=3), block).status == Status.GOOD
    assert lu.execute(NEXUS, cdb10(0x2F, 0x02, lba=3), block).status == Status.GOOD
    changed = block[:100] + b"\xff" + block[101:]
    result = lu.execute(NEXUS, cdb10(0x2F, 0x02, lba=3), changed)
    assert result.sense[0] == 0xF0 and result.sense[3:7] == (100).to_bytes(4, "big")
    assert result.sense_data is not None
    assert result.sense_data.triple == (SenseKey.MISCOMPARE, 0x1D, 0x00)
    assert lu.execute(NEXUS, cdb10(0x2F, 0x00, lba=3), changed).status == Status.GOOD
    assert lu.execute(NEXUS, cdb10(0x2F, 0x06, lba=3), block).status == Status.CHECK_CONDITION


@given(st.binary(min_size=1, max_size=2048), st.data())
def test_the_first_differing_byte_is_found(stored: bytes, data: st.DataObject) -> None:
    """Whatever bits differ and however many bytes do, the lowest offset is reported."""
    sent = bytearray(stored)
    offsets = data.draw(st.sets(st.integers(0, len(stored) - 1), min_size=1, max_size=4))
    for i in offsets:
        sent[i] ^= data.draw(st.integers(1, 255))
    assert first_difference(stored, bytes(sent)) == min(offsets)


@pytest.mark.parametrize(("byte1", "bit"), [(0x10, 4), (0x08, 3), (0x18, 4)])
def test_dpo_and_fua_are_refused_as_mode_sense_says(byte1: int, bit: int) -> None:
    lu = LogicalUnit()
    header = lu.execute(NEXUS, bytes([0x1A, 0, 0x3F, 0, 255, 0])).data
    assert not header[2] & 0x10  # DPOFUA=0 in the device-specific parameter
    result = lu.execute(NEXUS, cdb10(0x28, byte1))
    assert result.sense[15:18] == bytes([0xC8 | bit, 0, 1])
