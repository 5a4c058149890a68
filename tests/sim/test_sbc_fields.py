"""SBC-4 CDB fields the model checks: the PROTECT fields of a LU without protection
information, DPO/FUA (DPOFUA=0), VERIFY(10) BYTCHK (found by libiscsi's SBC suites)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scsi_pr.sim import ITNexus, LogicalUnit, SenseKey, Status
from scsi_pr.sim import cdb as C
from scsi_pr.sim.commands import first_difference
from scsi_pr.sim.constants import PersistentReserveOutAction as SA
from scsi_pr.sim.constants import ReservationType as T

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


# -- where READ and WRITE land: the LBA and TRANSFER LENGTH of each CDB form (SBC-4 5.x) ----
def cdb6(opcode: int, lba: int, blocks: int) -> bytes:
    """READ(6)/WRITE(6): a 21-bit LBA in bytes 1-3, TRANSFER LENGTH in byte 4 (0 means 256)."""
    return bytes([opcode, lba >> 16, (lba >> 8) & 0xFF, lba & 0xFF, blocks & 0xFF, 0])


def cdb16(opcode: int, lba: int, blocks: int) -> bytes:
    return bytes([opcode, 0]) + lba.to_bytes(8, "big") + blocks.to_bytes(4, "big") + bytes(2)


FORMS = {
    6: (0x08, 0x0A, cdb6),
    10: (0x28, 0x2A, lambda op, lba, n: cdb10(op, 0, lba, n)),
    16: (0x88, 0x8A, cdb16),
}
#: within READ(6)'s reach, above 16 bits, with bits 4 and 3 of CDB byte 1 set (where the longer
#: forms carry DPO and FUA, which a 6-byte CDB does not have)
LBA = 0x1ABCDE


@pytest.mark.parametrize("reader", FORMS)
@pytest.mark.parametrize("writer", FORMS)
def test_what_one_cdb_form_writes_another_reads_back(writer: int, reader: int) -> None:
    lu = LogicalUnit(blocks=0x200000)
    data = bytes(range(256)) * 2 + bytes(range(255, -1, -1)) * 2
    write = FORMS[writer][2](FORMS[writer][1], LBA, 2)
    assert lu.execute(NEXUS, write, data).status == Status.GOOD
    result = lu.execute(NEXUS, FORMS[reader][2](FORMS[reader][0], LBA - 1, 4))
    assert result.status == Status.GOOD, result.sense_data
    assert result.data == bytes(512) + data + bytes(512)


def test_a_six_byte_transfer_length_of_zero_is_256_blocks() -> None:
    lu = LogicalUnit(blocks=1024)
    assert lu.execute(NEXUS, cdb6(0x0A, 7, 0), b"\x01" * 512 * 256).status == Status.GOOD
    assert lu.execute(NEXUS, cdb6(0x08, 6, 0)).data == bytes(512) + b"\x01" * 512 * 255
    assert lu.execute(NEXUS, cdb6(0x08, 262, 2)).data == b"\x01" * 512 + bytes(512)


@pytest.mark.parametrize("form", FORMS)
def test_the_last_block_is_in_range_and_the_next_is_not(form: int) -> None:
    lu = LogicalUnit(blocks=100)
    op, make = FORMS[form][0], FORMS[form][2]
    assert lu.execute(NEXUS, make(op, 99, 1)).status == Status.GOOD
    assert lu.execute(NEXUS, make(op, 98, 2)).status == Status.GOOD
    for lba, blocks in ((99, 2), (100, 1), (90, 20)):
        sense = lu.execute(NEXUS, make(op, lba, blocks)).sense_data
        assert sense is not None and sense.triple == (SenseKey.ILLEGAL_REQUEST, 0x21, 0x00)


@pytest.mark.parametrize(
    ("lba", "blocks"),
    [(2**56 + 5, 1), (5, 2**24)],
    ids=["lba-above-56-bits", "transfer-length-above-24-bits"],
)
def test_every_byte_of_read_16s_fields_counts(lba: int, blocks: int) -> None:
    """An LBA or a TRANSFER LENGTH that only its high byte puts out of range is refused."""
    lu = LogicalUnit(blocks=100)
    sense = lu.execute(NEXUS, cdb16(0x88, lba, blocks)).sense_data
    assert sense is not None and sense.triple == (SenseKey.ILLEGAL_REQUEST, 0x21, 0x00)


def test_read_10s_transfer_length_is_two_bytes() -> None:
    lu = LogicalUnit(blocks=1024)
    assert len(lu.execute(NEXUS, cdb10(0x28, 0, 0, 0x101)).data) == 0x101 * 512


@pytest.mark.parametrize("opcode", [0x28, 0x2A])
def test_the_other_bits_of_byte_1_are_accepted(opcode: int) -> None:
    """RARC and the two obsolete bits (2-0) ask for nothing this LU refuses; with FUA beside
    them the field pointer still names FUA's bit."""
    lu = LogicalUnit()
    assert lu.execute(NEXUS, cdb10(opcode, 0x07), bytes(512)).status == Status.GOOD
    result = lu.execute(NEXUS, cdb10(opcode, 0x09), bytes(512))
    assert result.sense[15:18] == bytes([0xC8 | 3, 0, 1])


@pytest.mark.parametrize(
    "cdb",
    [bytes(6), cdb10(0x2A), bytes([0x16, 0, 0, 0, 0, 0])],
    ids=["TEST UNIT READY", "WRITE(10)", "RESERVE(6)"],
)
def test_commands_without_data_in_return_none(cdb: bytes) -> None:
    result = LogicalUnit().execute(NEXUS, cdb, bytes(512))
    assert result.status == Status.GOOD and result.data == b""


def test_read_6_ignores_the_bits_above_its_lba() -> None:
    """Byte 1 bits 7-5 of READ(6)/WRITE(6) are reserved (the LUN of SCSI-2), not PROTECT fields:
    the 21-bit LBA below them is read and they are not refused (LIO masks them likewise)."""
    lu = LogicalUnit(blocks=0x200000)
    assert lu.execute(NEXUS, cdb6(0x0A, LBA, 1), b"\x5a" * 512).status == Status.GOOD
    with_bits = bytearray(cdb6(0x08, LBA, 1))
    with_bits[1] |= 0xE0
    result = lu.execute(NEXUS, bytes(with_bits))
    assert (result.status, result.data) == (Status.GOOD, b"\x5a" * 512)


def test_a_persistent_reservation_holders_reserve_6_returns_no_data() -> None:
    """SPC-5 5.14.3: the holder's RESERVE(6) completes with GOOD and changes nothing."""
    lu = LogicalUnit()
    assert lu.execute(NEXUS, *C.prout(SA.REGISTER, 0, 0xA)).status == Status.GOOD
    assert lu.execute(NEXUS, *C.prout(SA.RESERVE, 0xA, 0, T.WRITE_EXCLUSIVE)).status == Status.GOOD
    result = lu.execute(NEXUS, bytes([0x16, 0, 0, 0, 0, 0]))
    assert (result.status, result.data, lu.spc2_holder) == (Status.GOOD, b"", None)
