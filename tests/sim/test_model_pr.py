"""Example tests of the model, one or more per PR IN/OUT service action, asserting status,
the full 18 bytes of fixed sense data (with the sense-key specific FIELD POINTER that SPC-5
defines for ILLEGAL REQUEST) and the data-in bytes.

Expected sense is spelled out byte by byte here, not built with ``scsi_pr.sim.result``, so a wrong
encoder in the model cannot make its own test pass.
"""

from __future__ import annotations

import struct

import pytest
from modeltest import out

from scsi_pr.sim import cdb as C
from scsi_pr.sim.constants import ReservationType, Status
from scsi_pr.sim.device import LogicalUnit
from scsi_pr.sim.nexus import ITNexus
from scsi_pr.sim.result import CommandResult
from scsi_pr.sim.transportid import TransportId

T = ReservationType
A, B = 0xA, 0xB
I1 = ITNexus.named("naa.5001405000000001", 1)
I2 = ITNexus.named("naa.5001405000000002", 2)
I3 = ITNexus.named("naa.5001405000000003", 3)
ILLEGAL_REQUEST, UNIT_ATTENTION = 0x5, 0x6


def sense(
    key: int,
    asc: int,
    ascq: int,
    *,
    cd: bool | None = None,
    byte: int = 0,
    bit: int | None = None,
) -> bytes:
    """Fixed format sense (SPC-5), optionally with a FIELD POINTER (C/D given)."""
    out = bytearray(18)
    out[0], out[2], out[7], out[12], out[13] = 0x70, key, 10, asc, ascq
    if cd is not None:
        out[15] = 0x80 | (0x40 if cd else 0) | (0x08 | bit if bit is not None else 0)
        out[16:18] = byte.to_bytes(2, "big")
    return bytes(out)


def check(key: int, asc: int, ascq: int, **pointer: object) -> CommandResult:
    return CommandResult(Status.CHECK_CONDITION, sense(key, asc, ascq, **pointer))  # type: ignore[arg-type]


GOOD = CommandResult(Status.GOOD)
CONFLICT = CommandResult(Status.RESERVATION_CONFLICT)


@pytest.fixture
def lu() -> LogicalUnit:
    return LogicalUnit(target_ports=(1, 2, 3))


def pr_in(lu: LogicalUnit, nexus: ITNexus, action: int, alloc: int = 8192) -> CommandResult:
    return lu.execute(nexus, C.persistent_reserve_in(action, alloc))


def results_equal(got: CommandResult, want: CommandResult) -> None:
    assert (got.status, got.sense.hex(), got.data.hex()) == (
        want.status,
        want.sense.hex(),
        want.data.hex(),
    ), f"got {got}"


# -- PR IN -----------------------------------------------------------------------------------
def test_read_keys_bytes(lu: LogicalUnit) -> None:
    results_equal(out(lu, I1, 0, 0, A), GOOD)
    results_equal(out(lu, I2, 0, 0, B), GOOD)
    got = pr_in(lu, I3, 0)
    assert got.status == Status.GOOD
    assert got.data[:8] == struct.pack(">II", 2, 16)
    assert got.data[8:24] == A.to_bytes(8, "big") + B.to_bytes(8, "big"), "registration order"
    assert pr_in(lu, I3, 0, alloc=10).data == got.data[:10]
    assert pr_in(lu, I3, 0, alloc=0).data == b""


def test_read_reservation_bytes(lu: LogicalUnit) -> None:
    out(lu, I1, 0, 0, A)
    results_equal(pr_in(lu, I1, 1), CommandResult(Status.GOOD, b"", struct.pack(">II", 1, 0)))
    results_equal(out(lu, I1, 1, A, 0, T.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY), GOOD)
    want = struct.pack(">IIQIBB2x", 1, 16, A, 0, 0, 0x06)
    results_equal(pr_in(lu, I2, 1), CommandResult(Status.GOOD, b"", want))
    assert lu.pr.reservation is not None and lu.pr.reservation.holder == I1


def test_report_capabilities_bytes(lu: LogicalUnit) -> None:
    got = pr_in(lu, I1, 2)
    assert got.status == Status.GOOD
    # RLR_C (the model implements REPLACE LOST RESERVATION), CRH, SIP_C, ATP_C, PTPL_C;
    # TMV; the six types.
    assert got.data[0:3] == bytes([0x00, 0x08, 0x9D])
    assert got.data[3] & 0x81 == 0x80
    assert got.data[4:8] == bytes([0xEA, 0x01, 0, 0])


def test_read_full_status_bytes(lu: LogicalUnit) -> None:
    out(lu, I1, 0, 0, A)
    out(lu, I1, 1, A, 0, T.WRITE_EXCLUSIVE)
    tid = I1.initiator.encode()
    want = (
        struct.pack(">II", 1, 24 + len(tid))
        + struct.pack(">Q4xBB4xHI", A, 0x01, 0x01, 1, len(tid))
        + tid
    )
    results_equal(pr_in(lu, I2, 3), CommandResult(Status.GOOD, b"", want))


@pytest.mark.parametrize("action", [4, 0x1F])
def test_pr_in_reserved_service_action(lu: LogicalUnit, action: int) -> None:
    results_equal(pr_in(lu, I1, action), check(ILLEGAL_REQUEST, 0x24, 0, cd=True, byte=1, bit=4))


# -- PR OUT ----------------------------------------------------------------------------------
def test_register_and_conflict(lu: LogicalUnit) -> None:
    results_equal(out(lu, I1, 0, 0, A), GOOD)
    results_equal(out(lu, I1, 0, B, B), CONFLICT)
    assert lu.pr.registrations[I1].key == A and lu.pr.generation == 1


def test_parameter_list_length_error(lu: LogicalUnit) -> None:
    got = lu.execute(I1, C.persistent_reserve_out(0, 20), bytes(20))
    results_equal(got, check(ILLEGAL_REQUEST, 0x1A, 0, cd=True, byte=5))


def test_spec_i_pt_with_reserve_points_at_the_bit(lu: LogicalUnit) -> None:
    out(lu, I1, 0, 0, A)
    got = out(lu, I1, 1, A, 0, T.WRITE_EXCLUSIVE, spec_i_pt=True)
    results_equal(got, check(ILLEGAL_REQUEST, 0x26, 0, cd=False, byte=20, bit=3))


@pytest.mark.parametrize("type_", [0, 2, 4, 9, 0xF])
def test_reserve_invalid_type_points_at_type(lu: LogicalUnit, type_: int) -> None:
    out(lu, I1, 0, 0, A)
    results_equal(
        out(lu, I1, 1, A, 0, type_), check(ILLEGAL_REQUEST, 0x24, 0, cd=True, byte=2, bit=3)
    )


def test_reserve_invalid_scope_points_at_scope(lu: LogicalUnit) -> None:
    out(lu, I1, 0, 0, A)
    got = out(lu, I1, 1, A, 0, T.WRITE_EXCLUSIVE, scope=2)
    results_equal(got, check(ILLEGAL_REQUEST, 0x24, 0, cd=True, byte=2, bit=7))


def test_reserved_pr_out_service_action(lu: LogicalUnit) -> None:
    results_equal(out(lu, I1, 0x09), check(ILLEGAL_REQUEST, 0x24, 0, cd=True, byte=1, bit=4))


def test_release_wrong_type(lu: LogicalUnit) -> None:
    out(lu, I1, 0, 0, A)
    out(lu, I1, 1, A, 0, T.WRITE_EXCLUSIVE)
    results_equal(out(lu, I1, 2, A, 0, T.EXCLUSIVE_ACCESS), check(ILLEGAL_REQUEST, 0x26, 0x04))


def test_preempt_zero_key_points_at_sa_key(lu: LogicalUnit) -> None:
    out(lu, I1, 0, 0, A)
    got = out(lu, I1, 4, A, 0, T.WRITE_EXCLUSIVE)
    results_equal(got, check(ILLEGAL_REQUEST, 0x26, 0, cd=False, byte=8))


def test_preempt_and_abort_records_aborted_nexuses(lu: LogicalUnit) -> None:
    out(lu, I1, 0, 0, A)
    out(lu, I2, 0, 0, B)
    out(lu, I2, 1, B, 0, T.WRITE_EXCLUSIVE_REGISTRANTS_ONLY)
    results_equal(out(lu, I1, 5, A, B, T.WRITE_EXCLUSIVE_REGISTRANTS_ONLY), GOOD)
    assert lu.last_aborted == [I2]
    assert lu.pr.is_holder(I1) and I2 not in lu.pr.registrations
    results_equal(lu.execute(I2, C.test_unit_ready()), check(UNIT_ATTENTION, 0x2A, 0x05))
    out(lu, I1, 6, A, A)  # the next PR OUT aborts nothing
    assert lu.last_aborted == []


def test_register_and_move_sa_key_zero(lu: LogicalUnit) -> None:
    out(lu, I1, 0, 0, A)
    out(lu, I1, 1, A, 0, T.WRITE_EXCLUSIVE)
    got = lu.execute(I1, *C.register_and_move(A, 0, 2, I2.initiator))
    results_equal(got, check(ILLEGAL_REQUEST, 0x26, 0, cd=False, byte=8))


def test_register_and_move_unknown_target_port(lu: LogicalUnit) -> None:
    out(lu, I1, 0, 0, A)
    out(lu, I1, 1, A, 0, T.WRITE_EXCLUSIVE)
    got = lu.execute(I1, *C.register_and_move(A, B, 9, I2.initiator))
    results_equal(got, check(ILLEGAL_REQUEST, 0x26, 0, cd=False, byte=18))


def test_spec_i_pt_registers_named_ports_on_receiving_port(lu: LogicalUnit) -> None:
    got = out(lu, I1, 0, 0, A, spec_i_pt=True, transport_ids=[I2.initiator, I3.initiator])
    results_equal(got, GOOD)
    assert set(lu.pr.registrations) == {I1, ITNexus(I2.initiator, 1), ITNexus(I3.initiator, 1)}
    assert all(r.key == A for r in lu.pr.registrations.values())
    assert I2 not in lu.pr.registrations, "registered on target port 1 only, not I2's port"


def test_spec_i_pt_bad_transport_id_registers_nothing(lu: LogicalUnit) -> None:
    bad = bytes([0x0E]) + bytes(23)  # protocol 0Eh: reserved
    got = out(lu, I1, 0, 0, A, spec_i_pt=True, transport_ids=[I2.initiator, bad])
    assert got.status == Status.CHECK_CONDITION
    assert got.sense[2] == ILLEGAL_REQUEST and got.sense[12:14] == b"\x26\x00"
    assert got.sense[15] & 0xC0 == 0x80, "field pointer into the parameter list"
    assert lu.pr.registrations == {}, "SPEC_I_PT is all or nothing"


def test_all_tg_pt_registers_every_target_port(lu: LogicalUnit) -> None:
    results_equal(out(lu, I1, 0, 0, A, all_tg_pt=True), GOOD)
    same_initiator_other_port = ITNexus(I1.initiator, 2)
    assert same_initiator_other_port in lu.pr.registrations
    results_equal(out(lu, same_initiator_other_port, 1, A, 0, T.WRITE_EXCLUSIVE), GOOD)


def test_insufficient_registration_resources() -> None:
    lu = LogicalUnit(target_ports=(1, 2, 3), max_registrations=2)
    out(lu, I1, 0, 0, A)
    out(lu, I2, 0, 0, B)
    results_equal(out(lu, I3, 0, 0, A), check(ILLEGAL_REQUEST, 0x55, 0x04))
    assert I3 not in lu.pr.registrations and lu.pr.generation == 2


def test_replace_lost_reservation(lu: LogicalUnit) -> None:
    out(lu, I1, 0, 0, A)
    out(lu, I1, 1, A, 0, T.WRITE_EXCLUSIVE)
    lu.lose_reservations()
    got = lu.execute(I1, C.read_10(0, 1))
    assert got.status == Status.CHECK_CONDITION and got.sense[12:14] == b"\x44\x01"
    assert got.sense[2] == 0x07  # DATA PROTECT
    results_equal(out(lu, I1, 8, 0, A, T.EXCLUSIVE_ACCESS), GOOD)
    assert lu.pr.is_holder(I1) and lu.pr.reservation.type == T.EXCLUSIVE_ACCESS  # type: ignore[union-attr]
    results_equal(lu.execute(I2, C.read_10(0, 1)), CONFLICT)


def test_transport_id_in_full_status_is_per_protocol() -> None:
    iscsi = ITNexus(TransportId.iscsi("iqn.2026-01.org.example:node1", 0x23D000000001), 1)
    fc = ITNexus(TransportId.fibre_channel("21:00:00:24:ff:00:00:01"), 2)
    lu = LogicalUnit(target_ports=(1, 2))
    out(lu, iscsi, 0, 0, A)
    out(lu, fc, 0, 0, B)
    data = pr_in(lu, fc, 3).data
    assert iscsi.initiator.encode() in data and fc.initiator.encode() in data


def test_register_and_ignore_existing_key_bytes(lu: LogicalUnit) -> None:
    results_equal(out(lu, I1, 6, 0x1234, A), GOOD)
    results_equal(out(lu, I1, 6, 0x9999, B), GOOD)
    assert lu.pr.registrations[I1].key == B and lu.pr.generation == 2
    got = out(lu, I1, 6, 0, A, spec_i_pt=True, transport_ids=[I2.initiator])
    results_equal(got, check(ILLEGAL_REQUEST, 0x26, 0, cd=False, byte=20, bit=3))


def test_clear_bytes_and_unit_attention_sense(lu: LogicalUnit) -> None:
    out(lu, I1, 0, 0, A)
    out(lu, I2, 0, 0, B)
    out(lu, I1, 1, A, 0, T.EXCLUSIVE_ACCESS)
    results_equal(out(lu, I2, 3, A), CONFLICT)
    results_equal(out(lu, I2, 3, B), GOOD)
    assert lu.pr.registrations == {} and lu.pr.reservation is None and lu.pr.generation == 3
    results_equal(lu.execute(I1, C.read_10(0, 1)), check(UNIT_ATTENTION, 0x2A, 0x03))
    assert lu.execute(I1, C.read_10(0, 1)).status == Status.GOOD
    assert lu.execute(I3, C.test_unit_ready()).status == Status.GOOD


def test_request_sense_returns_unit_attention_as_data(lu: LogicalUnit) -> None:
    out(lu, I1, 0, 0, A)
    out(lu, I2, 0, 0, B)
    out(lu, I1, 4, A, B, T.WRITE_EXCLUSIVE)
    got = lu.execute(I2, C.request_sense(18))
    results_equal(got, CommandResult(Status.GOOD, b"", sense(UNIT_ATTENTION, 0x2A, 0x05)))
    no_sense = lu.execute(I2, C.request_sense(18))
    results_equal(no_sense, CommandResult(Status.GOOD, b"", sense(0, 0, 0)))
