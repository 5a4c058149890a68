"""``LogicalUnit`` itself: what a default LU is (the identity INQUIRY and VPD report, its size,
its registration capacity), which configurations it refuses, the byte-like inputs ``execute``
takes, a stalled answer keeping its sense and data, an APTPL store read at construction, and
the sense of the checks that come before any command (SAM-5 5.3: operation code, LUN). The
mutation run found these unpinned."""

from __future__ import annotations

import pytest
from modeltest import out

from scsi_pr.sim import cdb as C
from scsi_pr.sim.constants import Status
from scsi_pr.sim.device import LogicalUnit, LogicalUnitConfigError
from scsi_pr.sim.faults import FaultRules, Stall
from scsi_pr.sim.nexus import ITNexus
from scsi_pr.sim.state import PersistentReservations
from scsi_pr.sim.store import MemoryAptplStore

I1 = ITNexus.named("naa.5001405000000001", 1)
I2 = ITNexus.named("naa.5001405000000002", 2)


def test_default_identity_and_size() -> None:
    lu = LogicalUnit()
    inquiry = lu.execute(I1, C.inquiry()).data
    assert inquiry[8:36] == b"SCSI-PR " + b"SIMULATED LU    " + b"0001"
    assert lu.execute(I1, C.inquiry(True, 0x80)).data[4:] == b"SCSIPR0000000001"
    assert lu.execute(I1, C.read_capacity_10()).data == (65535).to_bytes(4, "big") + (512).to_bytes(
        4, "big"
    )
    assert lu.target_ports == (1, 2) and lu.last_aborted == []


def test_default_capacity_is_64_registrations() -> None:
    lu = LogicalUnit(target_ports=tuple(range(1, 66)))
    for port in range(1, 65):
        assert out(lu, ITNexus.named("naa.5001405000000001", port), 0, 0, 1).status == Status.GOOD
    got = out(lu, ITNexus.named("naa.5001405000000001", 65), 0, 0, 1)
    assert (got.status, got.sense[12], got.sense[13]) == (Status.CHECK_CONDITION, 0x55, 0x04)


def test_the_smallest_lu_is_one_block_of_one_byte() -> None:
    lu = LogicalUnit(blocks=1, block_size=1)
    assert lu.execute(I1, C.read_capacity_10()).data == bytes(4) + (1).to_bytes(4, "big")
    for kwargs in ({"blocks": 0}, {"block_size": 0}):
        with pytest.raises(
            LogicalUnitConfigError, match=r"^blocks and block_size must be positive$"
        ):
            LogicalUnit(**kwargs)  # type: ignore[arg-type]


def test_a_store_is_read_when_the_lu_is_made() -> None:
    first = LogicalUnit(store=(store := MemoryAptplStore()))
    assert out(first, I1, 0, 0, 0xA, aptpl=True).status == Status.GOOD
    again = LogicalUnit(store=store)
    assert again.pr.key_of(I1) == 0xA and again.pr.generation == 0


def test_execute_takes_any_bytes_like_input() -> None:
    lu = LogicalUnit()
    block = bytes(range(256)) * 2
    got = lu.execute(I1, bytearray(C.write_10(3, 1)), memoryview(block))
    assert got.status == Status.GOOD
    got = lu.execute(I1, memoryview(C.read_10(3, 1)))
    assert (got.status, got.data, type(got.data)) == (Status.GOOD, block, bytes)
    assert lu.execute(I1, bytearray(C.prout(0, 0, 0xA)[0]), C.prout(0, 0, 0xA)[1]).status == (
        Status.GOOD
    )


def test_write_without_a_data_out_buffer_writes_zeros() -> None:
    lu = LogicalUnit()
    assert lu.execute(I1, C.write_10(3, 1), b"\xff" * 512).status == Status.GOOD
    assert lu.execute(I1, C.write_10(3, 1)).status == Status.GOOD
    assert lu.execute(I1, C.read_10(3, 1)).data == bytes(512)


def test_a_short_data_out_buffer_is_written_first_and_zero_filled_after() -> None:
    lu = LogicalUnit()
    assert lu.execute(I1, C.write_10(3, 1), b"\xff" * 512).status == Status.GOOD
    assert lu.execute(I1, C.write_10(3, 1), b"\xa5" * 100).status == Status.GOOD
    assert lu.execute(I1, C.read_10(3, 1)).data == b"\xa5" * 100 + bytes(412)


def test_a_stalled_answer_keeps_its_sense_and_data() -> None:
    rules = FaultRules()
    rules.add(Stall(1.5))
    lu = LogicalUnit(fault=rules)
    plain = LogicalUnit()
    for cdb in (C.inquiry(), bytes([0xFF]) + bytes(5)):
        got, want = lu.execute(I1, cdb), plain.execute(I1, cdb)
        assert (got.status, got.sense, got.data, got.stall) == (
            want.status,
            want.sense,
            want.data,
            1.5,
        )


def test_checks_before_any_command() -> None:
    lu = LogicalUnit()
    got = lu.execute(I1, bytes([0xFF]) + bytes(5))  # INVALID COMMAND OPERATION CODE, byte 0
    assert (got.sense[12], got.sense[15:18]) == (0x20, bytes([0xC0, 0, 0]))
    elsewhere = ITNexus.named("naa.5001405000000003", 3)  # a port this LU does not have
    got = lu.execute(elsewhere, C.test_unit_ready())
    assert (got.status, got.sense[2], got.sense[12], got.sense[13]) == (
        Status.CHECK_CONDITION,
        0x05,
        0x25,
        0x00,
    )


def test_a_memory_store_starts_with_the_state_it_is_given() -> None:
    assert MemoryAptplStore({"aptpl": True}).load() == {"aptpl": True}
    assert MemoryAptplStore().load() is None


def test_a_named_nexus_is_on_port_1_and_no_reservation_has_key_0() -> None:
    assert ITNexus.named("naa.5001405000000001").target_port == 1
    assert PersistentReservations().holder_key() == 0
