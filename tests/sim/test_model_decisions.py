"""Model decisions (docs/model.md "Decisions worth knowing") that only the model can be driven
into, pinned with the full sense bytes: lost PR information and REPLACE LOST RESERVATION, one
initiator on two target ports (ALL_TG_PT), SPEC_I_PT on the issuer's own port, REPORT
CAPABILITIES without RLR_C. Each was a mutation survivor (issue 12); the backend-independent
ones are in ``tests/conformance/test_conf_decisions.py``."""

from __future__ import annotations

import pytest
from modeltest import out

from scsi_pr.sim import cdb as C
from scsi_pr.sim import pr_in
from scsi_pr.sim.constants import PersistentReserveOutAction as SA
from scsi_pr.sim.constants import ReservationType, Status
from scsi_pr.sim.device import LogicalUnit
from scsi_pr.sim.nexus import ITNexus
from scsi_pr.sim.pr_in_data import (
    FullStatusDescriptor,
    PrInDataError,
    parse_read_full_status,
    parse_report_capabilities,
)
from scsi_pr.sim.result import CommandResult
from scsi_pr.sim.state import PersistentReservations, nexus_to_dict
from scsi_pr.sim.store import MemoryAptplStore

T = ReservationType
A, B, K = 0xA, 0xB, 0xC
I1 = ITNexus.named("naa.5001405000000001", 1)
I2 = ITNexus.named("naa.5001405000000002", 1)  # I1's target port
I1_PORT2 = ITNexus(I1.initiator, 2)


def sense_bytes(key: int, asc: int, *, in_cdb: bool, byte: int, bit: int | None = None) -> str:
    """Fixed format sense with a FIELD POINTER (SPC-5), spelled out."""
    sense = bytearray(18)
    sense[0], sense[2], sense[7], sense[12] = 0x70, key, 10, asc
    sense[15] = 0x80 | (0x40 if in_cdb else 0) | (0x08 | bit if bit is not None else 0)
    sense[16:18] = byte.to_bytes(2, "big")
    return sense.hex()


def check(result: CommandResult, sense: str) -> None:
    assert (result.status, result.sense.hex()) == (Status.CHECK_CONDITION, sense), str(result)


@pytest.fixture
def lu() -> LogicalUnit:
    return LogicalUnit(target_ports=(1, 2))


# -- REPLACE LOST RESERVATION (SPC-5 5.14.5, 6.17.2) -----------------------------------------
#: fixed sense: DATA PROTECT, PERSISTENT RESERVATION INFORMATION LOST (44h/01h)
LOST = "700007000000000a00000000440100000000"


@pytest.mark.parametrize(
    ("cdb", "runs"),
    [
        (C.inquiry(), True),
        (C.report_luns(), True),
        (C.request_sense(), True),
        (bytes([0x1B, 0, 0, 0, 0x01, 0]), True),  # START STOP UNIT that starts
        (bytes([0x1B, 0, 0, 0, 0x00, 0]), False),  # ... that stops
        (C.test_unit_ready(), False),
        (C.read_10(0, 1), False),
        (C.persistent_reserve_in(0), False),
        (C.prout(SA.REGISTER, 0, B)[0], False),
        (C.prout(SA.CLEAR, A)[0], False),
    ],
    ids=["inquiry", "report-luns", "request-sense", "start", "stop", "tur", "read", "pr-in",
         "register", "clear"],
)  # fmt: skip
def test_a_lost_reservation_stops_all_but_a_few_commands(
    lu: LogicalUnit, cdb: bytes, runs: bool
) -> None:
    """SPC-5 5.14.5 (recoverable loss): DATA PROTECT, PERSISTENT RESERVATION INFORMATION LOST
    for every command but those allowed while nonvolatile memory is not ready, and REPLACE
    LOST RESERVATION."""
    lu.lose_reservations()
    data = bytes(24) if cdb[0] == 0x5F else b""
    r = lu.execute(I2, cdb, data)
    if runs:
        assert r.status == Status.GOOD, str(r)
    else:
        check(r, LOST)
    assert lu.reservation_lost


def test_replace_lost_reservation_leaves_the_issuer_the_only_registrant(lu: LogicalUnit) -> None:
    """The issuer becomes the only registrant, with SERVICE ACTION RESERVATION KEY as its key,
    and the holder; PRgeneration starts again at zero; nobody hears a unit attention."""
    out(lu, I2, SA.REGISTER, 0, B)
    out(lu, I2, SA.REGISTER, B, A)
    lu.lose_reservations()
    assert lu.pr.generation == 2
    assert out(lu, I1, 8, 0, K, T.WRITE_EXCLUSIVE).status == Status.GOOD
    status = parse_read_full_status(lu.execute(I2, C.persistent_reserve_in(3)).data)
    assert status.generation == 0
    assert [(d.key, d.r_holder, d.type, d.initiator()) for d in status.descriptors] == [
        (K, True, T.WRITE_EXCLUSIVE, I1.initiator)
    ]
    assert status.descriptors[0].relative_target_port == 1
    assert lu.execute(I2, C.write_10(0, 1), bytes(512)).status == Status.RESERVATION_CONFLICT
    assert lu.execute(I1, C.write_10(0, 1), bytes(512)).status == Status.GOOD
    assert lu.snapshot()["reservation_lost"] is False


def test_replace_lost_reservation_only_after_a_loss(lu: LogicalUnit) -> None:
    """SPC-5 5.14.11: INVALID RELEASE OF PERSISTENT RESERVATION when nothing was lost."""
    assert out(lu, I1, 0, 0, A).status == Status.GOOD
    check(out(lu, I1, 8, A, K, T.WRITE_EXCLUSIVE), "700005000000000a00000000260400000000")
    assert lu.pr.reservation is None and lu.pr.key_of(I1) == A and lu.pr.generation == 1


def test_replace_lost_reservation_needs_a_key(lu: LogicalUnit) -> None:
    lu.lose_reservations()
    check(out(lu, I1, 8, 0, 0, T.WRITE_EXCLUSIVE), sense_bytes(5, 0x26, in_cdb=False, byte=8))
    assert lu.reservation_lost and lu.pr.registrations == {}


# -- registering an already-registered I_T nexus (SPC-5 5.14.7) ------------------------------
def test_spec_i_pt_naming_a_registered_nexus_registers_nobody(lu: LogicalUnit) -> None:
    """I2 names I1, registered on the same port: INVALID FIELD IN PARAMETER LIST pointing at
    TRANSPORTID PARAMETER DATA LENGTH; I2 is not registered either."""
    assert out(lu, I1, 0, 0, A).status == Status.GOOD
    got = out(lu, I2, 0, 0, B, spec_i_pt=True, transport_ids=[I1.initiator])
    check(got, sense_bytes(5, 0x26, in_cdb=False, byte=24))
    assert list(lu.pr.registrations) == [I1] and lu.pr.generation == 1


def test_all_tg_pt_over_a_registered_port_registers_nobody(lu: LogicalUnit) -> None:
    """I1 is registered on port 1; registering it on every port from port 2 would register
    port 1 again: INVALID FIELD IN PARAMETER LIST pointing at ALL_TG_PT (byte 20, bit 2)."""
    assert out(lu, I1, 0, 0, A).status == Status.GOOD
    check(
        out(lu, I1_PORT2, 0, 0, B, all_tg_pt=True),
        sense_bytes(5, 0x26, in_cdb=False, byte=20, bit=2),
    )
    assert list(lu.pr.registrations) == [I1] and lu.pr.generation == 1
    assert out(lu, I1_PORT2, 0, 0, B).status == Status.GOOD  # its own port alone is fine
    assert lu.pr.key_of(I1_PORT2) == B and lu.pr.key_of(I1) == A


# -- REPORT CAPABILITIES (SPC-5 6.16.4) ------------------------------------------------------
def test_report_capabilities_without_replace_lost_reservation() -> None:
    lu = LogicalUnit(replace_lost_reservation=False)
    data = lu.execute(I1, C.persistent_reserve_in(2)).data
    # CRH, SIP_C, ATP_C, PTPL_C and no RLR_C; TMV, ALLOW COMMANDS 001b; the six types
    assert data == bytes([0x00, 0x08, 0x1D, 0x90, 0xEA, 0x01, 0x00, 0x00])
    caps = parse_report_capabilities(data)
    assert not caps.rlr_c and caps.crh and caps.ptpl_c and caps.allow_commands == 1
    assert caps.type_mask == frozenset(T)


def test_type_mask_lists_the_six_types() -> None:
    # WR_EX_AR 80h, EX_AC_RO 40h, WR_EX_RO 20h, EX_AC 08h, WR_EX 02h; EX_AC_AR byte 5 bit 0
    assert pr_in._type_mask() == bytes([0xEA, 0x01])


def test_report_capabilities_reader_reads_each_bit_alone() -> None:
    caps = parse_report_capabilities(bytes([0, 8, 0, 0, 0, 0, 0, 0]))
    assert not (caps.rlr_c or caps.crh or caps.sip_c or caps.atp_c or caps.ptpl_c)
    assert not (caps.tmv or caps.ptpl_a) and caps.allow_commands == 0
    assert caps.type_mask == frozenset()
    caps = parse_report_capabilities(bytes([0, 8, 0x04, 0x81, 0x00, 0x01, 0, 0]))
    assert (caps.atp_c, caps.tmv, caps.ptpl_a, caps.crh) == (True, True, True, False)
    assert caps.type_mask == frozenset({T.EXCLUSIVE_ACCESS_ALL_REGISTRANTS})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (bytes(7), "REPORT CAPABILITIES: 7 bytes, need 8"),
        (bytes([0, 9]) + bytes(6), "REPORT CAPABILITIES: LENGTH 9, need 8"),
    ],
)
def test_report_capabilities_reader_says_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(PrInDataError, match=message):
        parse_report_capabilities(data)


def test_full_status_transport_id_must_fill_its_descriptor() -> None:
    tid = I1.initiator.encode()

    def descriptor(raw: bytes) -> FullStatusDescriptor:
        return FullStatusDescriptor(A, False, False, None, None, 1, raw)

    assert descriptor(tid).initiator() == I1.initiator
    with pytest.raises(
        PrInDataError, match=f"TransportID of {len(tid)} bytes .* gives it {len(tid) + 4}"
    ):
        descriptor(tid + bytes(4)).initiator()
    with pytest.raises(PrInDataError, match="READ FULL STATUS: "):
        descriptor(bytes([0x0E]) + bytes(23)).initiator()


# -- found by a mutation run over pr_out.py and device.py ------------------------------------
def test_spec_i_pt_from_a_registered_nexus_points_at_the_bit(lu: LogicalUnit) -> None:
    assert out(lu, I1, 0, 0, A).status == Status.GOOD
    got = out(lu, I1, 0, A, B, spec_i_pt=True, transport_ids=[I2.initiator])
    check(got, sense_bytes(5, 0x26, in_cdb=False, byte=20, bit=3))


def test_register_and_move_to_itself_points_at_the_transport_id(lu: LogicalUnit) -> None:
    assert out(lu, I1, 0, 0, A).status == Status.GOOD
    assert out(lu, I1, 1, A, 0, T.WRITE_EXCLUSIVE).status == Status.GOOD
    got = lu.execute(I1, *C.register_and_move(A, B, 1, I1.initiator))
    check(got, sense_bytes(5, 0x26, in_cdb=False, byte=24))


@pytest.mark.parametrize(
    "tid",
    [
        pytest.param("iqn.2024-01.org.example:host1,i,0x23d000000001", id="its-own-port"),
        pytest.param("iqn.2024-01.org.example:host1", id="its-device-by-name"),
    ],
)
def test_register_and_move_to_its_initiator_port_through_another_target_port(tid: str) -> None:
    """The initiator port is compared, not the I_T nexus: a move to the issuer's own port by
    another target port is INVALID FIELD IN PARAMETER LIST, and so is a format 00b TransportID
    naming the issuer's iSCSI device. A move to another ISID of the same device moves."""
    issuer = ITNexus.named("iqn.2024-01.org.example:host1,i,0x23d000000001", 1)
    lu = LogicalUnit(target_ports=(1, 2))
    assert out(lu, issuer, 0, 0, A).status == Status.GOOD
    assert out(lu, issuer, 1, A, 0, T.WRITE_EXCLUSIVE).status == Status.GOOD
    dest = ITNexus.named(tid, 2).initiator
    got = lu.execute(issuer, *C.register_and_move(A, B, 2, dest))
    check(got, sense_bytes(5, 0x26, in_cdb=False, byte=24))
    assert lu.pr.reservation is not None and lu.pr.reservation.holder == issuer
    assert list(lu.pr.registrations) == [issuer]
    sibling = ITNexus.named("iqn.2024-01.org.example:host1,i,0x23d000000002", 2)
    assert lu.execute(issuer, *C.register_and_move(A, B, 2, sibling.initiator)).status == 0
    assert lu.pr.reservation is not None and lu.pr.reservation.holder == sibling


def test_register_and_move_needs_room_for_one_registration() -> None:
    lu = LogicalUnit(target_ports=(1, 2), max_registrations=2)
    assert out(lu, I1, 0, 0, A).status == Status.GOOD
    assert out(lu, I1, 1, A, 0, T.WRITE_EXCLUSIVE).status == Status.GOOD
    assert lu.execute(I1, *C.register_and_move(A, B, 1, I2.initiator)).status == Status.GOOD
    assert lu.pr.key_of(I2) == B and lu.pr.reservation is not None


def test_register_and_move_carries_the_scope_over(lu: LogicalUnit) -> None:
    """The moved reservation keeps its SCOPE (here one restored from a saved state)."""
    nexus = nexus_to_dict(I1)
    lu.pr = PersistentReservations.from_dict(
        {
            "registrations": [{**nexus, "key": A}],
            "reservation": {"holder": nexus, "type": 1, "scope": 2},
        }
    )
    assert lu.execute(I1, *C.register_and_move(A, B, 1, I2.initiator)).status == Status.GOOD
    assert lu.pr.reservation is not None and lu.pr.reservation.scope == 2


def test_clear_turns_aptpl_off(lu: LogicalUnit) -> None:
    """docs/model.md APTPL: CLEAR turns it off (PTPL_A 0 in REPORT CAPABILITIES)."""
    assert out(lu, I1, 0, 0, A, aptpl=True).status == Status.GOOD
    assert lu.execute(I1, C.persistent_reserve_in(2)).data[3] & 0x01
    assert out(lu, I1, 3, A).status == Status.GOOD
    assert not lu.execute(I1, C.persistent_reserve_in(2)).data[3] & 0x01


def test_preempting_every_registration_releases_all_registrants(lu: LogicalUnit) -> None:
    """SPC-5 5.14.11: PREEMPT by a key every registrant shares removes them all, the issuer's
    too; an all-registrants reservation with no registrant left is gone."""
    assert out(lu, I1, 0, 0, K).status == Status.GOOD
    assert out(lu, I2, 0, 0, K).status == Status.GOOD
    assert out(lu, I1, 1, K, 0, T.WRITE_EXCLUSIVE_ALL_REGISTRANTS).status == Status.GOOD
    assert out(lu, I1, 4, K, K, T.WRITE_EXCLUSIVE_ALL_REGISTRANTS).status == Status.GOOD
    assert lu.pr.registrations == {}
    data = lu.execute(I1, C.persistent_reserve_in(1)).data
    assert data[4:8] == bytes(4), "READ RESERVATION: no reservation"


def test_turning_aptpl_off_saves_an_empty_state() -> None:
    store = MemoryAptplStore()
    lu = LogicalUnit(store=store)
    assert out(lu, I1, 0, 0, A, aptpl=True).status == Status.GOOD
    assert out(lu, I1, 0, A, A).status == Status.GOOD  # same key, APTPL=0
    assert store.load() == PersistentReservations().to_dict()


def test_power_cycle_without_a_store() -> None:
    lu = LogicalUnit()
    assert out(lu, I1, 0, 0, A).status == Status.GOOD
    lu.power_loss()
    lu.power_on()
    assert lu.pr == PersistentReservations()


@pytest.mark.parametrize(
    ("byte4", "allowed"),
    [(0x01, True), (0x03, True), (0x05, True), (0x00, False), (0x02, False), (0x11, False),
     (0x10, False), (0xF1, False)],
    ids=["start", "start-loej", "start-no-flush", "stop", "eject", "active", "pc-1-stop",
         "pc-f"],
)  # fmt: skip
def test_start_stop_unit_starting_is_allowed_under_every_reservation(
    lu: LogicalUnit, byte4: int, allowed: bool
) -> None:
    """SBC-4 4.18: START STOP UNIT with START=1 and POWER CONDITION 0h is allowed to every
    I_T nexus; a stop or a power condition changes device state (write access)."""
    out(lu, I1, SA.REGISTER, sa_key=A)
    out(lu, I1, SA.RESERVE, key=A, type_=T.EXCLUSIVE_ACCESS)
    r = lu.execute(I2, bytes([0x1B, 0, 0, 0, byte4, 0]))
    assert r.status == (Status.GOOD if allowed else Status.RESERVATION_CONFLICT)
