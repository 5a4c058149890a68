"""Small behaviours the mutation run found unpinned: a TransportID's text form and matching
(SPC-5 7.6.4), VERIFY(10)'s zero-filled short data-out and its BYTCHK field pointer (SBC-4),
no data-in from VERIFY and RELEASE(6), ``CommandResult.good``, and the APTPL store seeing one
save per change (SPC-5 5.14.5)."""

from __future__ import annotations

import pytest
from modeltest import out

from scsi_pr.sim import cdb as C
from scsi_pr.sim import pr_in
from scsi_pr.sim.constants import ProtocolIdentifier, Status
from scsi_pr.sim.device import LogicalUnit
from scsi_pr.sim.nexus import ITNexus
from scsi_pr.sim.result import CommandResult
from scsi_pr.sim.state import PersistentReservations
from scsi_pr.sim.store import MemoryAptplStore
from scsi_pr.sim.transportid import TransportId, TransportIdError

I1 = ITNexus.named("naa.5001405000000001", 1)
I2 = ITNexus.named("naa.5001405000000002", 2)


def test_transport_id_text() -> None:
    assert str(TransportId.iscsi("iqn.2024-01.test:a")) == "iqn.2024-01.test:a"
    with_isid = TransportId.iscsi("iqn.2024-01.test:a", 0x23D000000001)
    assert str(with_isid) == "iqn.2024-01.test:a,i,0x23d000000001"
    assert TransportId.from_name(str(with_isid)) == with_isid
    assert str(TransportId.fibre_channel(0x2100002400000004)) == "fc.2100002400000004"
    assert str(TransportId.sas(0x5000C50000000003)) == "naa.5000c50000000003"


def test_transport_id_matching_needs_protocol_and_name() -> None:
    iscsi = TransportId.iscsi("5000c50000000003")
    same_name_other_protocol = TransportId(ProtocolIdentifier.SAS, iscsi.name, None)
    assert not iscsi.matches(same_name_other_protocol)
    assert not iscsi.matches(TransportId.iscsi("other"))
    assert iscsi.matches(TransportId.iscsi("5000c50000000003", 1))  # format 00b: every ISID
    assert not TransportId.iscsi("n", 1).matches(TransportId.iscsi("n", 2))


def verify_10(lba: int, blocks: int, bytchk: int) -> bytes:
    return (
        bytes([0x2F, bytchk << 1])
        + lba.to_bytes(4, "big")
        + bytes([0])
        + blocks.to_bytes(2, "big")
        + bytes(1)
    )


def test_verify_zero_fills_a_short_data_out() -> None:
    lu = LogicalUnit()
    block = b"\xa5" * 100 + bytes(412)
    assert lu.execute(I1, C.write_10(4, 1), block).status == Status.GOOD
    got = lu.execute(I1, verify_10(4, 1, 0b01), block[:100])
    assert (got.status, got.data) == (Status.GOOD, b"")
    got = lu.execute(I1, verify_10(4, 1, 0b01), block[:100] + b" ")
    assert got.status == Status.CHECK_CONDITION and got.sense[3:7] == (100).to_bytes(4, "big")


def test_verify_refuses_bytchk_10b_and_11b_at_byte_1_bit_2() -> None:
    lu = LogicalUnit()
    for bytchk in (0b10, 0b11):
        got = lu.execute(I1, verify_10(0, 1, bytchk), bytes(512))
        assert got.status == Status.CHECK_CONDITION
        assert (got.sense[2], got.sense[12]) == (0x05, 0x24)
        assert got.sense[15:18] == bytes([0xC8 | 2, 0, 1])
    assert lu.execute(I1, verify_10(0, 1, 0), b"").data == b""


def test_release_6_has_no_data_in() -> None:
    lu = LogicalUnit()
    assert lu.execute(I1, C.reserve_6()).data == b""
    assert lu.execute(I2, C.release_6()).data == b""  # not the holder: a no-op
    assert lu.execute(I1, C.release_6()).data == b""
    assert out(lu, I2, 0, 0, 0xB).status == Status.GOOD
    got = lu.execute(I1, C.release_6())
    assert (got.status, got.data) == (Status.RESERVATION_CONFLICT, b"")


class BrokenMedium:
    """A medium with a bug: the model must still answer as a SCSI device."""

    def read(self, lba: int, blocks: int) -> bytes:
        raise RuntimeError("bug")

    def write(self, lba: int, data: bytes) -> None:
        raise KeyError(lba)


def test_a_bug_in_a_handler_is_internal_target_failure() -> None:
    lu = LogicalUnit(medium=BrokenMedium())
    for cdb, data in ((C.read_10(0, 1), b""), (C.write_10(0, 1), bytes(512))):
        got = lu.execute(I1, cdb, data)
        assert got.status == Status.CHECK_CONDITION
        assert (got.sense[2], got.sense[12], got.sense[13]) == (0x04, 0x44, 0x00)
    assert lu.execute(I1, C.test_unit_ready()).status == Status.GOOD


def test_command_result_good() -> None:
    assert CommandResult.good(b"x") == CommandResult(Status.GOOD, b"", b"x")
    assert CommandResult.good() == CommandResult(Status.GOOD, b"", b"")


def test_aptpl_store_sees_one_save_per_change() -> None:
    store = MemoryAptplStore()
    lu = LogicalUnit(store=store)
    assert out(lu, I1, 0, 0, 0xA).status == Status.GOOD  # APTPL off: nothing to save
    assert store.saves == 0
    assert out(lu, I2, 0, 0, 0xB, aptpl=True).status == Status.GOOD
    assert out(lu, I1, 1, 0xA, 0, 1).status == Status.GOOD
    assert store.saves == 2
    assert store.load() == lu.pr.to_dict()


def test_a_cdb_shorter_than_its_group_says_is_refused() -> None:
    """SPC-5 OPERATION CODE: the group code fixes the CDB length; READ(10) cut to 6 bytes is
    INVALID FIELD IN CDB pointing just past the end."""
    lu = LogicalUnit()
    got = lu.execute(I1, C.read_10(0, 1)[:6])
    assert got.status == Status.CHECK_CONDITION and got.sense[12] == 0x24
    assert got.sense[15:18] == bytes([0xC0, 0, 6])
    assert lu.execute(I1, C.read_16(0, 1)[:10]).sense[15:18] == bytes([0xC0, 0, 10])


def test_read_16_ignores_the_group_number() -> None:
    cdb = bytearray(C.read_16(3, 1))
    cdb[14] = 0x01  # GROUP NUMBER (SBC-4), not part of TRANSFER LENGTH
    got = LogicalUnit().execute(I1, bytes(cdb))
    assert (got.status, len(got.data)) == (Status.GOOD, 512)


def test_scope_and_type_share_one_byte() -> None:
    assert pr_in.scope_type(2, 5) == 0x25  # SPC-5 6.16.3: SCOPE bits 7-4, TYPE bits 3-0


def test_register_and_move_applies_aptpl() -> None:
    """SPC-5 5.14.8: the APTPL bit of REGISTER AND MOVE takes effect (PTPL_A reports it)."""
    lu = LogicalUnit(target_ports=(1, 2))
    assert out(lu, I1, 0, 0, 0xA).status == Status.GOOD
    assert out(lu, I1, 1, 0xA, 0, 1).status == Status.GOOD
    move = C.register_and_move(0xA, 0xB, 2, I2.initiator, aptpl=True)
    assert lu.execute(I1, *move).status == Status.GOOD
    assert lu.pr.aptpl is True
    assert lu.execute(I1, C.persistent_reserve_in(2)).data[3] & 0x01  # PTPL_A
    assert lu.pr.key_of(I1) == 0xA, "UNREG=0: the issuer stays registered"


def test_command_result_text_carries_the_sense() -> None:
    got = LogicalUnit().execute(I1, bytes([0xFF]) + bytes(5))
    assert str(got) == "CHECK CONDITION (ILLEGAL REQUEST: INVALID COMMAND OPERATION CODE)"
    assert str(CommandResult.good()) == "GOOD"


def test_transport_id_constructors_check_their_ranges() -> None:
    assert TransportId.fibre_channel((1 << 64) - 1).name == "f" * 16
    assert TransportId.iscsi("iqn.x", (1 << 48) - 1).isid == "f" * 12
    assert TransportId.iscsi("IQN.X-Y").name == "iqn.x-y"
    for make, message in (
        (lambda: TransportId.fibre_channel(1 << 64), "^N_Port name out of range: "),
        (lambda: TransportId.fibre_channel("21:00:zz"), "^bad N_Port name: '21:00:zz'$"),
        (lambda: TransportId.sas("naa.zz"), "^bad SAS address: 'naa.zz'$"),
        (lambda: TransportId.from_name("naa."), "^bad SAS address: 'naa.'$"),
        (lambda: TransportId.iscsi("iqn.x", 1 << 48), "^ISID out of range: "),
        (lambda: TransportId.iscsi("iqn.x,i,0x1"), "^bad iSCSI name: "),
        (lambda: TransportId.iscsi("iqn.x\0"), "^bad iSCSI name: "),
        (lambda: TransportId.iscsi(""), "^bad iSCSI name: ''$"),
    ):
        with pytest.raises(TransportIdError, match=message):
            make()


def test_power_loss_leaves_an_empty_unpowered_lu() -> None:
    lu = LogicalUnit()
    assert out(lu, I1, 0, 0, 0xA).status == Status.GOOD
    assert lu.execute(I2, C.reserve_6()).status == Status.RESERVATION_CONFLICT
    lu.power_loss()
    snap = lu.snapshot()
    assert snap["powered"] is False and snap["spc2_holder"] is None
    assert snap["pr"]["registrations"] == []
    got = lu.execute(I1, C.test_unit_ready())
    assert (got.status, got.sense[2], got.sense[12]) == (Status.CHECK_CONDITION, 0x02, 0x04)


def test_spc2_commands_carry_no_data_and_refuse_extents() -> None:
    lu = LogicalUnit()
    assert lu.execute(I1, bytes([0x35]) + bytes(9)).data == b""  # SYNCHRONIZE CACHE(10)
    got = lu.execute(I1, bytes([0x16, 0x01, 0, 0, 0, 0]))  # RESERVE(6) with an extent bit
    assert got.status == Status.CHECK_CONDITION
    assert (got.sense[12], got.sense[15:18]) == (0x24, bytes([0xC0, 0, 1]))
    got = lu.execute(I1, bytes([0x16, 0, 0x01, 0, 0, 0]))  # byte 2 (reservation id): ignored
    assert (got.status, got.data) == (Status.GOOD, b"")
    assert out(lu, I2, 0, 0, 0xB).status == Status.RESERVATION_CONFLICT  # SPC-2 reserved
    assert lu.execute(I1, C.release_6()).data == b""
    assert out(lu, I1, 0, 0, 0xA).status == Status.GOOD
    assert out(lu, I1, 1, 0xA, 0, 1).status == Status.GOOD
    got = lu.execute(I1, C.release_6())  # the PR holder: CRH makes it a GOOD no-op
    assert (got.status, got.data) == (Status.GOOD, b"")


def test_mode_sense_dbd_is_bit_3_alone() -> None:
    data = LogicalUnit().execute(I1, bytes([0x1A, 0x01, 0x0A, 0, 255, 0])).data
    assert data[3] == 8  # BLOCK DESCRIPTOR LENGTH: byte 1 bit 0 is not DBD


def test_register_and_move_parameter_list_lengths() -> None:
    """SPC-5 6.17.4: fewer than 24 bytes is PARAMETER LIST LENGTH ERROR (pointing at the CDB's
    PARAMETER LIST LENGTH); 24 bytes with no TransportID is INVALID FIELD IN PARAMETER LIST
    at byte 24."""
    lu = LogicalUnit(target_ports=(1, 2))
    assert out(lu, I1, 0, 0, 0xA).status == Status.GOOD
    assert out(lu, I1, 1, 0xA, 0, 1).status == Status.GOOD
    move = C.register_and_move_parameters(0xA, 0xB, 2, b"")
    assert len(move) == 24
    for data, asc, pointer in (
        (move[:20], 0x1A, bytes([0xC0, 0, 5])),
        (move, 0x26, bytes([0x80, 0, 24])),
    ):
        got = lu.execute(I1, C.persistent_reserve_out(7, len(data)), data)
        assert (got.sense[12], got.sense[15:18]) == (asc, pointer)


def test_pr_state_keeps_a_stored_scope() -> None:
    nexus = {"protocol": 5, "name": "iqn.x", "target_port": 1}
    pr = PersistentReservations.from_dict(
        {
            "registrations": [{**nexus, "key": 1}],
            "reservation": {"holder": nexus, "type": 1, "scope": 2},
        }
    )
    assert pr.reservation is not None and pr.reservation.scope == 2
