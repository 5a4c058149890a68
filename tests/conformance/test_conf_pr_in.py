"""PERSISTENT RESERVE IN on every backend (SPC-5 6.16): layouts, truncation, PRgeneration."""

from __future__ import annotations

import struct

import pytest
from prtest import (
    IN,
    SA,
    expect_check,
    expect_good,
    expect_refused,
    full_status,
    nexus_paths,
    paths,
    prout,
    read_keys,
    register,
    reserve,
)

from scsi_pr.helper.executors import limits as L
from scsi_pr.sim import cdb as C
from scsi_pr.sim import deviations as D
from scsi_pr.sim.constants import INVALID_FIELD_IN_CDB, LU_SCOPE, ReservationType, SenseKey
from scsi_pr.sim.pr_in_data import FullStatusDescriptor
from scsi_pr.sim.profiles import Profile

WE = ReservationType.WRITE_EXCLUSIVE
A, B = 0xAAAA_0000_0000_0001, 0xBBBB_0000_0000_0002


def test_read_keys_empty(nexuses: list) -> None:
    r = expect_good(nexuses[0].execute(C.persistent_reserve_in(IN.READ_KEYS)))
    assert len(r.data) == 8
    assert r.data[4:8] == bytes(4), "ADDITIONAL LENGTH must be 0 with no registrations"


PER_PATH = pytest.mark.path_limit(L.MPATH_REGISTRATION_PER_PATH.name)
READ_WHOLE = pytest.mark.path_limit(L.MPATH_PR_IN_READ_WHOLE.name)


@PER_PATH
def test_read_keys_lists_every_registration(nexuses: list) -> None:
    a, b, _ = nexuses
    gen0, _ = read_keys(a)
    register(a, A)
    register(b, B)
    n = paths(a) + 1  # a multipath host registers once per path
    r = expect_good(b.execute(C.persistent_reserve_in(IN.READ_KEYS)))
    assert r.data[:8] == struct.pack(">II", gen0 + n, 8 * n)
    listed = sorted(r.data[i : i + 8] for i in range(8, 8 + 8 * n, 8))
    assert listed == sorted([A.to_bytes(8, "big")] * paths(a) + [B.to_bytes(8, "big")])


@PER_PATH
def test_read_keys_truncated_keeps_full_additional_length(nexuses: list) -> None:
    a, b, _ = nexuses
    register(a, A)
    register(b, B)
    r = expect_good(a.execute(C.persistent_reserve_in(IN.READ_KEYS, allocation_length=12)))
    assert len(r.data) == 12, "data-in is truncated to ALLOCATION LENGTH"
    whole = 8 * (paths(a) + 1)
    assert r.data[4:8] == whole.to_bytes(4, "big"), "ADDITIONAL LENGTH counts the whole list"


@pytest.mark.lio_deviation(D.ALLOCATION_LENGTH_MINIMUM.name)
@READ_WHOLE
@pytest.mark.parametrize(
    ("action", "length"),
    [(IN.READ_KEYS, 4), (IN.READ_KEYS, 0), (IN.READ_RESERVATION, 7),
     (IN.REPORT_CAPABILITIES, 4), (IN.READ_FULL_STATUS, 4)],
    ids=["READ_KEYS-4", "READ_KEYS-0", "READ_RESERVATION-7", "REPORT_CAPABILITIES-4",
         "READ_FULL_STATUS-4"],
)  # fmt: skip
def test_read_keys_allocation_length_below_header(
    nexuses: list, device_profile: Profile, action: IN, length: int, path_limits: frozenset[str]
) -> None:
    register(nexuses[0], A)
    r = nexuses[0].execute(C.persistent_reserve_in(action, allocation_length=length))
    read_whole = L.MPATH_PR_IN_READ_WHOLE.name in path_limits  # then cut by the helper
    if D.ALLOCATION_LENGTH_MINIMUM in device_profile and not read_whole:
        expect_check(r, SenseKey.ILLEGAL_REQUEST, INVALID_FIELD_IN_CDB)
        assert len(r.sense) < 18 or not r.sense[15] & 0x80, "LIO points at no field"
        return
    expect_good(r)
    full = expect_good(nexuses[0].execute(C.persistent_reserve_in(action)))
    assert r.data == full.data[:length], "an allocation length only truncates"


@pytest.mark.lio_deviation(D.READ_RESERVATION_CUT.name)
@READ_WHOLE
@pytest.mark.parametrize("length", [8, 16, 21, 22])
def test_read_reservation_below_the_whole_descriptor(
    nexuses: list, device_profile: Profile, length: int, path_limits: frozenset[str]
) -> None:
    a = nexuses[0]
    register(a, A)
    reserve(a, A, ReservationType.WRITE_EXCLUSIVE)
    full = expect_good(a.execute(C.persistent_reserve_in(IN.READ_RESERVATION))).data
    r = expect_good(a.execute(C.persistent_reserve_in(IN.READ_RESERVATION, length)))
    lio_cut = D.READ_RESERVATION_CUT in device_profile
    if lio_cut and length < 22 and L.MPATH_PR_IN_READ_WHOLE.name not in path_limits:
        assert r.data == full[:8] + bytes(length - 8), "LIO: the header, then zeros"
    else:
        assert r.data == full[:length]


@pytest.mark.parametrize("length", [None, 16], ids=["whole", "16"])
def test_read_reservation_without_reservation(nexuses: list, length: int | None) -> None:
    """The header alone, whatever the ALLOCATION LENGTH above it (LIO's cut of a short one,
    ``READ_RESERVATION_CUT``, has no descriptor to leave out)."""
    a = nexuses[0]
    register(a, A)
    gen, _ = read_keys(a)
    cdb = C.persistent_reserve_in(IN.READ_RESERVATION, *(() if length is None else (length,)))
    r = expect_good(a.execute(cdb))
    assert r.data == struct.pack(">II", gen, 0)


@pytest.mark.parametrize("type_", list(ReservationType), ids=lambda t: t.abbreviation)
def test_read_reservation_layout(nexuses: list, type_: ReservationType) -> None:
    a, b, _ = nexuses
    register(a, A)
    reserve(a, A, type_)
    gen, _ = read_keys(b)
    r = expect_good(b.execute(C.persistent_reserve_in(IN.READ_RESERVATION)))
    key = 0 if type_.all_registrants else A  # SPC-5 6.16.3: all-registrants report key 0
    assert r.data == struct.pack(">IIQ4xBB2x", gen, 16, key, 0, 0x00 | type_)


@pytest.mark.path_limit(L.IOCTL_CAPABILITIES_OF_THE_PATH.name)
def test_report_capabilities(nexuses: list, path_limits: frozenset[str]) -> None:
    a = nexuses[0]
    r = expect_good(a.execute(C.persistent_reserve_in(IN.REPORT_CAPABILITIES)))
    d = r.data
    assert len(d) == 8 and d[0:2] == b"\x00\x08", "LENGTH is 8"
    # CRH, SIP_C, ATP_C, PTPL_C (RLR_C is optional: LIO clears it, the model sets it); the
    # ioctl path cannot carry SIP_C or ATP_C and clears them
    path = L.IOCTL_CAPABILITIES_OF_THE_PATH.name in path_limits
    assert d[2] & 0x7F == (0x11 if path else 0x1D)
    assert d[3] & 0x80, "TMV: the type mask is valid"
    assert (d[3] >> 4) & 0x07 <= 5, "ALLOW COMMANDS is a defined code"
    assert d[3] & 0x01 == 0, "PTPL_A clear: APTPL not active"
    assert d[4:6] == b"\xea\x01", (
        "all six types supported: WR_EX_AR EX_AC_RO WR_EX_RO EX_AC WR_EX + EX_AC_AR"
    )


@pytest.mark.path_limit(L.IOCTL_REGISTER_ALWAYS_APTPL.name)
def test_report_capabilities_ptpl_a_follows_aptpl(
    nexuses: list, path_limits: frozenset[str]
) -> None:
    a = nexuses[0]
    register(a, A, aptpl=True)
    r = expect_good(a.execute(C.persistent_reserve_in(IN.REPORT_CAPABILITIES)))
    assert r.data[3] & 0x01, "PTPL_A set after REGISTER with APTPL=1"
    expect_good(prout(a, SA.REGISTER, A, A, aptpl=False))
    r = expect_good(a.execute(C.persistent_reserve_in(IN.REPORT_CAPABILITIES)))
    if L.IOCTL_REGISTER_ALWAYS_APTPL.name in path_limits:
        assert r.data[3] & 0x01, "sd sent the REGISTER with APTPL=1 all the same"
    else:
        assert r.data[3] & 0x01 == 0, "the last REGISTER's APTPL bit decides (SPC-5 5.14.5)"


@pytest.mark.path_limit(L.IOCTL_NO_READ_FULL_STATUS.name)
@PER_PATH
@pytest.mark.parametrize(
    "holder_type", [None, WE, ReservationType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS]
)
def test_read_full_status_names_each_nexus(
    nexuses: list, holder_type: ReservationType | None, path_limits: frozenset[str]
) -> None:
    a, b, c = nexuses
    register(a, A)
    register(b, B)
    if holder_type is not None:
        reserve(a, A, holder_type)
    if L.IOCTL_NO_READ_FULL_STATUS.name in path_limits:
        r = c.execute(C.persistent_reserve_in(IN.READ_FULL_STATUS))
        expect_refused(r, L.IOCTL_NO_READ_FULL_STATUS)
        return
    status = full_status(c)
    assert status.generation == read_keys(c)[0]
    # a multipath host reserves through one of its paths: that path's I_T nexus holds
    holders = {(d.transport_id, d.relative_target_port) for d in status.descriptors if d.r_holder}
    if holder_type is not None and not holder_type.all_registrants:
        assert len(holders) == 1, f"one I_T nexus holds {holder_type.abbreviation}: {holders}"
    want = set()
    for it, key in ((a, A), (b, B)):
        for tid, port in nexus_paths(it):
            holds = holder_type is not None and (
                holder_type.all_registrants or (it is a and (tid.encode(), port) in holders)
            )
            want.add(
                FullStatusDescriptor(
                    key,
                    all_tg_pt=False,
                    r_holder=holds,
                    scope=LU_SCOPE if holds else None,
                    type=holder_type if holds else None,
                    relative_target_port=port,
                    transport_id=tid.encode(),
                )
            )
    assert set(status.descriptors) == want


@pytest.mark.lio_deviation(D.FULL_STATUS_TRUNCATION.name)
@pytest.mark.path_limit(L.IOCTL_NO_READ_FULL_STATUS.name)
@READ_WHOLE
def test_read_full_status_header_counts_whole_list(
    nexuses: list, device_profile: Profile, path_limits: frozenset[str]
) -> None:
    a, b, _ = nexuses
    register(a, A)
    register(b, B)
    r = a.execute(C.persistent_reserve_in(IN.READ_FULL_STATUS))
    if L.IOCTL_NO_READ_FULL_STATUS.name in path_limits:
        expect_refused(r, L.IOCTL_NO_READ_FULL_STATUS)
        return
    expect_good(r)
    full = len(r.data) - 8
    first = 24 + int.from_bytes(r.data[8 + 20 : 8 + 24], "big")  # with its TransportID
    assert first > 32, "the first descriptor does not fit in 40 bytes"
    r = expect_good(a.execute(C.persistent_reserve_in(IN.READ_FULL_STATUS, allocation_length=40)))
    assert len(r.data) == 40
    lio_cut = D.FULL_STATUS_TRUNCATION in device_profile
    if L.MPATH_PR_IN_READ_WHOLE.name in path_limits:
        lio_cut = False  # read whole, then cut by the helper
    if lio_cut:
        # LIO: the first descriptor went in (its TransportID length fits in 40), cut at 40
        assert int.from_bytes(r.data[4:8], "big") == first
    else:
        assert int.from_bytes(r.data[4:8], "big") == full, "ADDITIONAL LENGTH is not truncated"
    r = expect_good(a.execute(C.persistent_reserve_in(IN.READ_FULL_STATUS, allocation_length=20)))
    if lio_cut:
        assert r.data[4:8] == bytes(4) and len(r.data) == 8, "LIO: no descriptor went in"
    else:
        assert len(r.data) == 20 and int.from_bytes(r.data[4:8], "big") == full


@pytest.mark.parametrize("action", [0x04, 0x05, 0x1F])
def test_reserved_service_action_is_invalid_field_in_cdb(nexuses: list, action: int) -> None:
    r = nexuses[0].execute(C.persistent_reserve_in(action))
    expect_check(r, SenseKey.ILLEGAL_REQUEST, INVALID_FIELD_IN_CDB)
