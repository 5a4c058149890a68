"""PERSISTENT RESERVE OUT parameter lists against their lengths (SPC-5 6.17.1, 6.17.3, 6.17.4),
with the full sense: PARAMETER LIST LENGTH ERROR points at the CDB's PARAMETER LIST LENGTH
(byte 5, the 32-bit field of bytes 5-8); a TransportID the model cannot read points at the
first TransportID. The conformance suite compares sense key/ASC/ASCQ only (LIO sends no field
pointer), so the pointers and the exact length edges are pinned here."""

from __future__ import annotations

import struct

import pytest
from modeltest import out

from scsi_pr.sim import cdb as C
from scsi_pr.sim.constants import PersistentReserveOutAction as SA
from scsi_pr.sim.constants import Status
from scsi_pr.sim.device import LogicalUnit
from scsi_pr.sim.nexus import ITNexus
from scsi_pr.sim.pr_out_data import ParameterList, parse_basic, parse_move
from scsi_pr.sim.result import CommandResult

A, B = 0xA, 0xB
I1 = ITNexus.named("naa.5001405000000001", 1)
I2 = ITNexus.named("naa.5001405000000002", 2)
LENGTH_ERROR = (0x1A, bytes([0xC0, 0, 5]))  # PARAMETER LIST LENGTH ERROR, CDB byte 5
BAD_TID = bytes([0x0E]) + bytes(23)  # protocol 0Eh: reserved


@pytest.fixture
def lu() -> LogicalUnit:
    return LogicalUnit(target_ports=(1, 2))


def illegal(result: CommandResult) -> tuple[int, bytes]:
    """(ASC, the sense-key specific bytes) of an ILLEGAL REQUEST."""
    assert result.status == Status.CHECK_CONDITION and result.sense[2] == 0x05, str(result)
    return result.sense[12], result.sense[15:18]


def register_with(lu: LogicalUnit, data: bytes, length: int | None = None) -> CommandResult:
    cdb = C.persistent_reserve_out(0, len(data) if length is None else length)
    return lu.execute(I1, cdb, data)


def spec_i_pt_list(tids: bytes, declared: int | None = None) -> bytes:
    head = C.pr_out_parameters(0, A)[:20] + bytes([0x08, 0, 0, 0])
    return head + struct.pack(">I", len(tids) if declared is None else declared) + tids


@pytest.mark.parametrize("size", [20, 23, 25, 28])
def test_basic_list_must_be_24_bytes(lu: LogicalUnit, size: int) -> None:
    data = C.pr_out_parameters(0, A).ljust(size, b"\0")[:size]
    assert illegal(register_with(lu, data)) == LENGTH_ERROR


def test_parameter_list_length_is_all_four_bytes(lu: LogicalUnit) -> None:
    """1000018h declared, 24 bytes sent: the device cannot have the list it was told of."""
    data = C.pr_out_parameters(0, A)
    assert illegal(register_with(lu, data, 0x0100_0018)) == LENGTH_ERROR


def test_spec_i_pt_list_shorter_than_its_length_field(lu: LogicalUnit) -> None:
    data = spec_i_pt_list(b"")[:26]
    assert illegal(register_with(lu, data)) == LENGTH_ERROR


def test_spec_i_pt_with_an_empty_transport_id_list_registers_the_issuer(lu: LogicalUnit) -> None:
    data = spec_i_pt_list(b"")
    assert len(data) == 28
    assert register_with(lu, data).status == Status.GOOD
    assert list(lu.pr.registrations) == [I1]


@pytest.mark.parametrize("declared", [23, 25, 0x8000_0018])
def test_spec_i_pt_length_field_must_fill_the_list(lu: LogicalUnit, declared: int) -> None:
    data = spec_i_pt_list(I2.initiator.encode(), declared)
    assert illegal(register_with(lu, data)) == LENGTH_ERROR


def test_unreadable_transport_id_points_at_the_first_one(lu: LogicalUnit) -> None:
    data = spec_i_pt_list(I2.initiator.encode() + BAD_TID)
    assert illegal(register_with(lu, data)) == (0x26, bytes([0x80, 0, 28]))
    assert lu.pr.registrations == {}


def reserved(lu: LogicalUnit) -> LogicalUnit:
    assert out(lu, I1, 0, 0, A, aptpl=True).status == Status.GOOD
    assert out(lu, I1, 1, A, 0, 1).status == Status.GOOD
    return lu


def test_register_and_move_list_too_short_for_its_transport_id(lu: LogicalUnit) -> None:
    data = C.register_and_move_parameters(A, B, 2, I2.initiator)
    got = lu.execute(I1, C.persistent_reserve_out(7, len(data) - 1), data[:-1])
    assert illegal(got) == LENGTH_ERROR


def test_register_and_move_with_an_unreadable_transport_id(lu: LogicalUnit) -> None:
    data = C.register_and_move_parameters(A, B, 2, BAD_TID)
    got = reserved(lu).execute(I1, C.persistent_reserve_out(7, len(data)), data)
    assert illegal(got) == (0x26, bytes([0x80, 0, 24]))


def test_register_and_move_without_aptpl_turns_it_off(lu: LogicalUnit) -> None:
    """SPC-5 5.14.8: APTPL of the REGISTER AND MOVE decides, here 0 after an APTPL=1 REGISTER."""
    got = reserved(lu).execute(I1, *C.register_and_move(A, B, 2, I2.initiator))
    assert got.status == Status.GOOD
    assert lu.pr.aptpl is False


# -- what the parsers hand the handlers: every field -------------------------------------------
@pytest.mark.parametrize("flags", range(16))
def test_the_basic_list_parses_to_every_field(flags: int) -> None:
    """APTPL (bit 0), ALL_TG_PT (bit 2), SPEC_I_PT (bit 3); bit 1 is reserved in the basic
    list and ignored. A SPEC_I_PT list carries its (here empty) TransportID list."""
    head = struct.pack(">QQ4xB3x", A, B, flags)
    spec_i_pt = bool(flags & 0x08)
    data = head + bytes(4) if spec_i_pt else head
    parsed = parse_basic(data, SA.REGISTER)
    assert parsed == ParameterList(A, B, bool(flags & 1), bool(flags & 4), spec_i_pt, ())
    assert (parsed.unreg, parsed.relative_target_port) == (False, 0)


def test_a_spec_i_pt_list_parses_its_transport_ids() -> None:
    tids = I1.initiator.encode() + I2.initiator.encode()
    parsed = parse_basic(spec_i_pt_list(tids), SA.REGISTER)
    assert parsed.transport_ids == (I1.initiator, I2.initiator) and parsed.spec_i_pt


def test_a_spec_i_pt_list_of_24_bytes_has_no_length_field(lu: LogicalUnit) -> None:
    data = spec_i_pt_list(b"")[:24]
    assert illegal(register_with(lu, data)) == LENGTH_ERROR


def test_the_move_list_parses_to_every_field() -> None:
    tid = I2.initiator.encode()
    data = struct.pack(">QQxBHI", A, B, 0x03, 2, len(tid)) + tid
    parsed = parse_move(data, SA.REGISTER_AND_MOVE)
    assert parsed == ParameterList(A, B, True, False, False, (I2.initiator,), True, 2)
