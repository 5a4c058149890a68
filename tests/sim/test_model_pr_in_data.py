"""The PR IN readers (``scsi_pr.sim.pr_in_data``): what the model writes reads back as the
model's state, a reply truncated by ALLOCATION LENGTH reads when allowed, and every malformed
length or field is a ``PrInDataError``."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scsi_pr.sim import pr_in
from scsi_pr.sim.constants import ProtocolIdentifier, ReservationType
from scsi_pr.sim.errors import SimError
from scsi_pr.sim.nexus import ITNexus
from scsi_pr.sim.pr_in_data import (
    FullStatusDescriptor,
    PrInDataError,
    parse_full_status_descriptors,
    parse_key_list,
    parse_read_full_status,
    parse_read_keys,
    parse_read_reservation,
    parse_report_capabilities,
    parse_reservation_descriptor,
)
from scsi_pr.sim.state import PersistentReservations, Registration, Reservation
from scsi_pr.sim.transportid import TransportId

T = ReservationType
U32 = st.integers(0, 0xFFFF_FFFF)
KEYS = st.integers(0, 0xFFFF_FFFF_FFFF_FFFF)

TRANSPORT_IDS = st.one_of(
    st.integers(0, (1 << 64) - 1).map(TransportId.sas),
    st.integers(0, (1 << 64) - 1).map(TransportId.fibre_channel),
    st.builds(
        TransportId.iscsi,
        st.from_regex(r"iqn\.20[0-9]{2}-[0-9]{2}\.[a-z]{1,12}(:[a-z0-9.]{1,40})?", fullmatch=True),
        st.none() | st.integers(0, (1 << 48) - 1),
    ),
)


@st.composite
def pr_states(draw: st.DrawFn) -> PersistentReservations:
    nexuses = draw(
        st.lists(st.builds(ITNexus, TRANSPORT_IDS, st.integers(1, 0xFFFF)), max_size=6, unique=True)
    )
    registrations = {n: Registration(n, draw(KEYS), draw(st.booleans())) for n in nexuses}
    reservation = None
    if nexuses and draw(st.booleans()):
        type_ = draw(st.sampled_from(list(ReservationType)))
        holder = None if type_.all_registrants else draw(st.sampled_from(nexuses))
        reservation = Reservation(holder, type_)
    return PersistentReservations(draw(U32), registrations, reservation, draw(st.booleans()))


CAPS = pr_in.Capabilities(replace_lost_reservation=True)


# -- round trip: the model writes, the reader reads the model's state -------------------------
@given(pr_states())
def test_read_keys_round_trip(pr: PersistentReservations) -> None:
    got = parse_read_keys(pr_in.read_keys(pr, CAPS))
    assert got.generation == pr.generation
    assert got.keys == tuple(r.key for r in pr.registrations.values())
    assert got.complete


@given(pr_states())
def test_read_reservation_round_trip(pr: PersistentReservations) -> None:
    got = parse_read_reservation(pr_in.read_reservation(pr, CAPS))
    assert got.generation == pr.generation and got.complete
    res = pr.reservation
    if res is None:
        assert got.reservation is None and not got.reserved
    else:
        assert got.reservation is not None
        assert (got.reservation.key, got.reservation.scope, got.reservation.type) == (
            pr.holder_key(),
            res.scope,
            res.type,
        )


@given(pr_states(), st.booleans())
def test_report_capabilities_round_trip(pr: PersistentReservations, rlr_c: bool) -> None:
    caps = pr_in.Capabilities(rlr_c)
    got = parse_report_capabilities(pr_in.report_capabilities(pr, caps))
    assert (got.rlr_c, got.ptpl_a, got.allow_commands) == (rlr_c, pr.aptpl, caps.allow_commands)
    assert got.crh and got.sip_c and got.atp_c and got.ptpl_c and got.tmv
    assert got.type_mask == frozenset(ReservationType)


@given(pr_states())
def test_read_full_status_round_trip(pr: PersistentReservations) -> None:
    got = parse_read_full_status(pr_in.read_full_status(pr, CAPS))
    assert got.generation == pr.generation and got.complete
    want = []
    for reg in pr.registrations.values():
        holder = pr.is_holder(reg.nexus)
        res = pr.reservation if holder else None
        want.append(
            FullStatusDescriptor(
                reg.key,
                reg.all_tg_pt,
                holder,
                None if res is None else res.scope,
                None if res is None else res.type,
                reg.nexus.target_port,
                reg.nexus.initiator.encode(),
            )
        )
    assert got.descriptors == tuple(want)
    assert [d.initiator() for d in got.descriptors] == [
        r.nexus.initiator for r in pr.registrations.values()
    ]


@given(pr_states(), st.integers(8, 600))
def test_truncated_replies_read_when_allowed(pr: PersistentReservations, alloc: int) -> None:
    """ALLOCATION LENGTH cuts the data, not ADDITIONAL LENGTH: the reader returns the items that
    arrived whole and says whether that was all."""
    keys_data = pr_in.read_keys(pr, CAPS)
    keys = parse_read_keys(keys_data[:alloc], allow_truncated=True)
    whole = parse_read_keys(keys_data)
    assert keys.additional_length == whole.additional_length
    assert keys.keys == whole.keys[: (alloc - 8) // 8]
    assert keys.complete == (alloc >= len(keys_data))

    status_data = pr_in.read_full_status(pr, CAPS)
    status = parse_read_full_status(status_data[:alloc], allow_truncated=True)
    everything = parse_read_full_status(status_data).descriptors
    assert status.descriptors == everything[: len(status.descriptors)]
    assert status.complete == (alloc >= len(status_data))

    res = parse_read_reservation(pr_in.read_reservation(pr, CAPS)[:alloc], allow_truncated=True)
    assert res.reserved == (pr.reservation is not None)
    assert res.complete == (alloc >= 24 or pr.reservation is None)


def test_reservation_header_only_reply() -> None:
    got = parse_read_reservation(struct.pack(">II", 7, 16), allow_truncated=True)
    assert (got.generation, got.reserved, got.reservation, got.complete) == (7, True, None, False)


# -- lists without their header, as sg_persist --hex prints them ------------------------------
def test_bodies_without_header() -> None:
    assert parse_key_list(bytes(7) + b"\xa1" + bytes(7) + b"\xb2") == (0xA1, 0xB2)
    assert parse_reservation_descriptor(b"") is None
    descriptor = parse_reservation_descriptor(struct.pack(">Q4xxB2x", 0xA, T.EXCLUSIVE_ACCESS))
    assert descriptor is not None and (descriptor.key, descriptor.type) == (0xA, T.EXCLUSIVE_ACCESS)
    tid = TransportId.sas(0x5001405000000001).encode()
    (d,) = parse_full_status_descriptors(struct.pack(">Q4xBB4xHI", 0xB, 0x02, 0x18, 3, 24) + tid)
    assert (d.key, d.all_tg_pt, d.r_holder, d.scope, d.type) == (0xB, True, False, None, None)
    assert d.relative_target_port == 3 and d.initiator().protocol == ProtocolIdentifier.SAS


# -- strictness: every malformed length or field is a PrInDataError ---------------------------
def _header(generation: int, length: int) -> bytes:
    return struct.pack(">II", generation, length)


TID = TransportId.sas(1).encode()
DESCRIPTOR = struct.pack(">Q4xBB4xHI", 0xA, 0x01, T.WRITE_EXCLUSIVE, 1, len(TID)) + TID
CAPS_DATA = bytes.fromhex("0008 9d90 ea01 0000")


def test_the_bases_of_the_malformed_cases_are_well_formed() -> None:
    assert parse_report_capabilities(CAPS_DATA).type_mask == frozenset(ReservationType)
    got = parse_read_full_status(_header(1, len(DESCRIPTOR)) + DESCRIPTOR)
    assert got.descriptors[0].type == T.WRITE_EXCLUSIVE and got.descriptors[0].initiator()
    reservation = _header(1, 16) + struct.pack(">Q4xxB2x", 1, T.WRITE_EXCLUSIVE)
    assert parse_read_reservation(reservation).reservation is not None


@pytest.mark.parametrize(
    ("parse", "data"),
    [
        pytest.param(parse_read_keys, bytes(7), id="keys: header cut"),
        pytest.param(parse_read_keys, _header(1, 16) + bytes(8), id="keys: short of ADD LENGTH"),
        pytest.param(parse_read_keys, _header(1, 8) + bytes(16), id="keys: past ADD LENGTH"),
        pytest.param(parse_read_keys, _header(1, 4) + bytes(4), id="keys: not multiple of 8"),
        pytest.param(parse_read_reservation, bytes(4), id="resv: header cut"),
        pytest.param(parse_read_reservation, _header(1, 8) + bytes(8), id="resv: 8-byte desc"),
        pytest.param(parse_read_reservation, _header(1, 16) + bytes(8), id="resv: desc cut"),
        pytest.param(parse_read_reservation, _header(1, 0) + bytes(16), id="resv: past ADD LEN"),
        pytest.param(
            parse_read_reservation, _header(1, 16) + bytes(16), id="resv: TYPE 0 is reserved"
        ),
        pytest.param(
            parse_read_reservation,
            _header(1, 16) + struct.pack(">Q4xxB2x", 1, 0x10 | T.WRITE_EXCLUSIVE),
            id="resv: SCOPE 1 is reserved",
        ),
        pytest.param(parse_report_capabilities, CAPS_DATA[:7], id="caps: 7 bytes"),
        pytest.param(parse_report_capabilities, CAPS_DATA + bytes(1), id="caps: 9 bytes"),
        pytest.param(parse_report_capabilities, b"\x00\x06" + CAPS_DATA[2:], id="caps: LENGTH 6"),
        pytest.param(parse_read_full_status, bytes(5), id="full: header cut"),
        pytest.param(parse_read_full_status, _header(1, 8) + bytes(8), id="full: desc cut"),
        pytest.param(
            parse_read_full_status,
            _header(1, len(DESCRIPTOR) - 4) + DESCRIPTOR[:-4],
            id="full: TransportID past ADD LENGTH",
        ),
        pytest.param(
            parse_read_full_status,
            _header(1, len(DESCRIPTOR)) + DESCRIPTOR[:-1],
            id="full: short of ADD LENGTH",
        ),
        pytest.param(
            parse_read_full_status,
            _header(1, len(DESCRIPTOR)) + DESCRIPTOR + bytes(24),
            id="full: past ADD LENGTH",
        ),
        pytest.param(
            parse_read_full_status,
            _header(1, len(DESCRIPTOR)) + DESCRIPTOR[:13] + b"\x0f" + DESCRIPTOR[14:],
            id="full: holder with TYPE Fh",
        ),
    ],
)
def test_malformed_data_is_a_typed_error(parse: object, data: bytes) -> None:
    with pytest.raises(PrInDataError) as caught:
        parse(data)  # type: ignore[operator]
    assert isinstance(caught.value, SimError) and isinstance(caught.value, ValueError)


def test_truncation_is_allowed_only_below_additional_length() -> None:
    """``allow_truncated`` forgives missing bytes, never extra ones or a broken header."""
    with pytest.raises(PrInDataError):
        parse_read_keys(_header(1, 8) + bytes(16), allow_truncated=True)
    with pytest.raises(PrInDataError):
        parse_read_keys(bytes(6), allow_truncated=True)
    with pytest.raises(PrInDataError):
        parse_read_full_status(_header(1, 8) + bytes(8), allow_truncated=True)  # not a truncation
    cut = _header(1, 2 * len(DESCRIPTOR)) + DESCRIPTOR + DESCRIPTOR[:30]
    got = parse_read_full_status(cut, allow_truncated=True)
    assert len(got.descriptors) == 1 and not got.complete


@pytest.mark.parametrize(
    "tid",
    [bytes([0x0E]) + bytes(23), TransportId.iscsi("iqn.2026-01.org.example:x").encode() + bytes(4)],
    ids=["reserved protocol", "longer than its TransportID"],
)
def test_unreadable_transport_id_is_a_typed_error(tid: bytes) -> None:
    (d,) = parse_full_status_descriptors(struct.pack(">Q4xBB4xHI", 1, 0, 0, 1, len(tid)) + tid)
    with pytest.raises(PrInDataError):
        d.initiator()


def test_an_all_tg_pt_registration_reports_its_port_unless_the_lu_writes_zero() -> None:
    """SPC-5 leaves RELATIVE TARGET PORT IDENTIFIER undefined under ALL_TG_PT: the model
    reports the port, an LU told to (LIO's profiles) reports 0."""
    nexus = ITNexus.named("naa.5001405000000001", 2)
    pr = PersistentReservations()
    pr.registrations[nexus] = Registration(nexus, 0xA, True)
    for caps, port in (
        (pr_in.Capabilities(True), 2),
        (pr_in.Capabilities(True, all_tg_pt_port_zero=True), 0),
    ):
        (d,) = parse_read_full_status(pr_in.read_full_status(pr, caps)).descriptors
        assert (d.all_tg_pt, d.relative_target_port) == (True, port)
