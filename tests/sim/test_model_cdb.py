"""The CDB and parameter-list builders (``sim/cdb.py``) byte by byte against the layouts of
SPC-5 6.16.1, 6.17.1, 6.17.3, 6.17.4 and SBC-4, and the data-in length each CDB asks for.

Every field gets a value no other field has, so a field written at the wrong offset, with the
wrong width or the wrong mask shows up (the mutation run found these builders unpinned: the
tests used them only with their defaults)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from scsi_pr.sim import cdb as C
from scsi_pr.sim.constants import PersistentReserveOutAction as SA
from scsi_pr.sim.transportid import TransportId

TID = TransportId.iscsi("iqn.1993-08.org.debian:01:aa")


def test_persistent_reserve_in_cdb() -> None:
    # SPC-5 6.16.1: SERVICE ACTION in byte 1 (5 bits), ALLOCATION LENGTH bytes 7-8
    got = C.persistent_reserve_in(0x23, 0x1234)
    assert got == bytes([0x5E, 0x03, 0, 0, 0, 0, 0, 0x12, 0x34, 0])
    assert C.persistent_reserve_in(1) == bytes([0x5E, 1, 0, 0, 0, 0, 0, 0x20, 0x00, 0])


def test_persistent_reserve_out_cdb() -> None:
    # SPC-5 6.17.1: SCOPE (high nibble) and TYPE in byte 2, PARAMETER LIST LENGTH bytes 5-8
    got = C.persistent_reserve_out(0x27, 0x01020304, 0x15, 0x32)
    assert got == bytes([0x5F, 0x07, 0x25, 0, 0, 1, 2, 3, 4, 0])
    assert C.persistent_reserve_out(3, 24) == bytes([0x5F, 3, 0, 0, 0, 0, 0, 0, 24, 0])


def test_basic_parameter_list() -> None:
    # SPC-5 6.17.3: RESERVATION KEY 0-7, SERVICE ACTION RESERVATION KEY 8-15, flags byte 20
    data = C.pr_out_parameters(0x0102030405060708, 0x1112131415161718, aptpl=True, all_tg_pt=True)
    assert data == bytes(range(1, 9)) + bytes(range(0x11, 0x19)) + bytes([0] * 4 + [0x05, 0, 0, 0])
    assert C.pr_out_parameters()[20] == 0
    assert C.pr_out_parameters(aptpl=True)[20] == 0x01
    assert C.pr_out_parameters(all_tg_pt=True)[20] == 0x04
    # TransportIDs only with SPEC_I_PT, after a 4-byte TRANSPORTID PARAMETER DATA LENGTH
    assert len(C.pr_out_parameters(transport_ids=[TID])) == 24
    spec = C.pr_out_parameters(1, 2, spec_i_pt=True, transport_ids=[TID, b"\x06" + bytes(23)])
    tids = TID.encode() + b"\x06" + bytes(23)
    assert spec[20] == 0x08
    assert spec[24:28] == len(tids).to_bytes(4, "big")
    assert spec[28:] == tids


def test_register_and_move_parameter_list() -> None:
    # SPC-5 6.17.4: flags byte 17 (UNREG 02h, APTPL 01h), RELATIVE TARGET PORT IDENTIFIER
    # 18-19, TRANSPORTID PARAMETER DATA LENGTH 20-23, the TransportID from 24
    tid = TID.encode()
    data = C.register_and_move_parameters(0xA1, 0xB2, 0x0304, TID, unreg=True, aptpl=True)
    assert data[:8] == (0xA1).to_bytes(8, "big")
    assert data[8:16] == (0xB2).to_bytes(8, "big")
    assert data[16:24] == bytes([0, 0x03, 0x03, 0x04]) + len(tid).to_bytes(4, "big")
    assert data[24:] == tid
    assert C.register_and_move_parameters(1, 2, 1, tid, unreg=True)[17] == 0x02
    assert C.register_and_move_parameters(1, 2, 1, tid, aptpl=True)[17] == 0x01
    assert C.register_and_move_parameters(1, 2, 1, tid)[17] == 0


def test_prout_pairs_the_cdb_with_its_parameter_list() -> None:
    cdb, data = C.prout(4, 7, 9, 5, scope=0, aptpl=True, all_tg_pt=True)
    assert data == C.pr_out_parameters(7, 9, aptpl=True, all_tg_pt=True)
    assert cdb == C.persistent_reserve_out(4, 24, 5, 0)
    cdb, data = C.prout(0, 0, 9, spec_i_pt=True, transport_ids=[TID])
    assert data == C.pr_out_parameters(0, 9, spec_i_pt=True, transport_ids=[TID])
    assert cdb[5:9] == len(data).to_bytes(4, "big")
    assert C.prout(1, 1, 0, 3, scope=2)[0][2] == 0x23


def test_register_and_move_pairs_the_cdb_with_its_parameter_list() -> None:
    cdb, data = C.register_and_move(1, 2, 3, TID, 5, unreg=True, aptpl=True)
    assert data == C.register_and_move_parameters(1, 2, 3, TID, unreg=True, aptpl=True)
    assert cdb == C.persistent_reserve_out(7, len(data), 5)


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda: C.test_unit_ready(), bytes(6)),
        (lambda: C.request_sense(0x1FE), bytes([0x03, 0, 0, 0, 0xFE, 0])),
        (lambda: C.request_sense(), bytes([0x03, 0, 0, 0, 18, 0])),
        (lambda: C.inquiry(True, 0x83, 0x0102), bytes([0x12, 1, 0x83, 1, 2, 0])),
        (lambda: C.inquiry(), bytes([0x12, 0, 0, 0, 96, 0])),
        (lambda: C.report_luns(0x01020304), bytes([0xA0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 0, 0])),
        (lambda: C.report_luns(), bytes([0xA0] + [0] * 8 + [16, 0, 0])),
        (lambda: C.read_capacity_10(), bytes([0x25] + [0] * 9)),
        (
            lambda: C.read_capacity_16(0x01020304),
            bytes([0x9E, 0x10] + [0] * 8 + [1, 2, 3, 4, 0, 0]),
        ),
        (lambda: C.read_capacity_16(), bytes([0x9E, 0x10] + [0] * 8 + [0, 0, 0, 32, 0, 0])),
        (lambda: C.read_10(0x01020304, 0x0506), bytes([0x28, 0, 1, 2, 3, 4, 0, 5, 6, 0])),
        (lambda: C.write_10(0x01020304, 0x0506), bytes([0x2A, 0, 1, 2, 3, 4, 0, 5, 6, 0])),
        (
            lambda: C.read_16(0x0102030405060708, 0x090A0B0C),
            bytes([0x88, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0, 0]),
        ),
        (
            lambda: C.write_16(0x0102030405060708, 0x090A0B0C),
            bytes([0x8A, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0, 0]),
        ),
        (lambda: C.synchronize_cache_10(), bytes([0x35] + [0] * 9)),
        (lambda: C.mode_sense_6(0xCA, 0x1FE), bytes([0x1A, 0x08, 0x0A, 0, 0xFE, 0])),
        (lambda: C.mode_sense_6(), bytes([0x1A, 0x08, 0x3F, 0, 255, 0])),
        (lambda: C.mode_sense_10(0xC8, 0x0102), bytes([0x5A, 0x08, 0x08, 0, 0, 0, 0, 1, 2, 0])),
        (lambda: C.mode_sense_10(), bytes([0x5A, 0x08, 0x3F, 0, 0, 0, 0, 2, 0, 0])),
        (lambda: C.reserve_6(), bytes([0x16, 0, 0, 0, 0, 0])),
        (lambda: C.release_6(), bytes([0x17, 0, 0, 0, 0, 0])),
    ],
)
def test_command_builders(build: Callable[[], bytes], expected: bytes) -> None:
    # built in the test, not at collection, so a mutated builder is the one called
    assert build() == expected


@pytest.mark.parametrize(
    ("cdb", "length"),
    [
        (C.read_10(0, 0x0103), 0x0103 * 512),
        (C.read_16(0, 0x01000003), 0x01000003 * 512),
        (bytes([0x08, 0, 0, 0, 5, 0]), 5 * 512),  # READ(6)
        (bytes([0x08, 0, 0, 0, 0, 0]), 256 * 512),  # READ(6): 0 blocks means 256
        (C.request_sense(0xFE), 0xFE),
        (C.mode_sense_6(0x3F, 0xFD), 0xFD),
        (C.inquiry(False, 0, 0x0203), 0x0203),
        (C.persistent_reserve_in(0, 0x0304), 0x0304),
        (C.mode_sense_10(0x3F, 0x0405), 0x0405),
        (bytes([0x4D, 0, 0, 0, 0, 0, 0, 0x05, 0x06, 0]), 0x0506),  # LOG SENSE
        (C.report_luns(0x01020304), 0x01020304),
        (C.read_capacity_10(), 8),
        (C.read_capacity_16(0x0A0B0C0D), 0x0A0B0C0D),
        (bytes([0x9E, 0x10]) + bytes(8) + bytes([1, 2, 3, 4, 0, 0]), 0x01020304),
        (bytes([0xA3, 0x0C, 0, 0, 0, 0, 1, 2, 3, 4, 0, 0]), 0x01020304),  # MAINTENANCE IN
        (C.write_10(0, 3), 0),
        (C.test_unit_ready(), 0),
        (b"", 0),
        (bytes([0x12, 0, 0, 1]), 0),  # too short to carry its ALLOCATION LENGTH
        (bytes([0x28]) + bytes(8), 0),  # READ(10) cut short
        (bytes([0x88]) + bytes(14), 0),  # READ(16) cut short
        (bytes([0x08]) + bytes(4), 0),  # READ(6) cut short
    ],
)
def test_data_in_length(cdb: bytes, length: int) -> None:
    assert C.data_in_length(cdb) == length


def test_data_in_length_scales_reads_by_the_block_size() -> None:
    assert C.data_in_length(C.read_10(0, 3), block_size=4096) == 3 * 4096
    assert C.data_in_length(C.read_16(0, 2), block_size=4096) == 2 * 4096
    assert C.data_in_length(bytes([0x08, 0, 0, 0, 2, 0]), block_size=4096) == 2 * 4096


def test_builders_take_the_whole_unsigned_range() -> None:
    """Fields at their largest: each builder packs them unsigned."""
    assert C.persistent_reserve_in(0, 0xFFFF)[7:9] == b"\xff\xff"
    assert C.read_10(0xFFFFFFFF, 0xFFFF)[2:9] == b"\xff" * 4 + b"\x00" + b"\xff" * 2
    assert C.write_10(0x80000000, 0x8000)[2:9] == bytes.fromhex("80000000008000")
    assert C.mode_sense_10(0x3F, 0xFFFF)[7:9] == b"\xff\xff"


def test_builders_default_to_zero_keys_and_type() -> None:
    cdb, data = C.prout(SA.REGISTER)
    assert cdb[2] == 0 and data == bytes(24)
    assert C.pr_out_parameters() == bytes(24)
    cdb, _ = C.register_and_move(1, 2, 3, TransportId.sas(5))
    assert cdb[2] == 0
