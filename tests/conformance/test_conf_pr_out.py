"""PERSISTENT RESERVE OUT service actions on every backend (SPC-5 5.14, 6.17): each result's
status and sense key/ASC/ASCQ, the PR state read back, PRgeneration and unit attentions.

A test marked ``lio_deviation(NAME)`` asserts LIO's measured answer where ``device_profile``
has that registry entry (``scsi_pr.sim.profiles``), the standard's elsewhere."""

from __future__ import annotations

import pytest
from prtest import (
    SA,
    drain,
    expect_check,
    expect_conflict,
    expect_good,
    expect_invalid_field_in_cdb,
    expect_refused,
    expect_ua,
    first_path_is_own,
    full_status,
    io_path_told,
    move,
    mpath_release_outcomes,
    path_refuses_moves,
    paths,
    prout,
    read_keys,
    read_reservation,
    register,
    reserve,
)

from scsi_pr.helper.executors import limits as L
from scsi_pr.sim import cdb as C
from scsi_pr.sim import deviations as D
from scsi_pr.sim.constants import (
    INVALID_FIELD_IN_CDB,
    INVALID_FIELD_IN_PARAMETER_LIST,
    INVALID_RELEASE_OF_PERSISTENT_RESERVATION,
    LU_SCOPE,
    LUN_COMMUNICATION_FAILURE,
    PARAMETER_LIST_LENGTH_ERROR,
    REGISTRATIONS_PREEMPTED,
    RESERVATIONS_PREEMPTED,
    RESERVATIONS_RELEASED,
    ReservationType,
    SenseKey,
)
from scsi_pr.sim.pr_in_data import FullStatusDescriptor
from scsi_pr.sim.profiles import Profile
from scsi_pr.sim.result import CommandResult

T = ReservationType
WE, EA = T.WRITE_EXCLUSIVE, T.EXCLUSIVE_ACCESS
WE_RO, EA_RO = T.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, T.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY
WE_AR, EA_AR = T.WRITE_EXCLUSIVE_ALL_REGISTRANTS, T.EXCLUSIVE_ACCESS_ALL_REGISTRANTS
A, B, C3 = 0xA, 0xB, 0xC
ILLEGAL = SenseKey.ILLEGAL_REQUEST

UNREGISTERED_NOT_READY = pytest.mark.lio_deviation(D.UNREGISTERED_NOT_READY.name)
SENSE_LOST = pytest.mark.path_limit(L.IOCTL_SENSE_LOST.name)
MOVES = pytest.mark.path_limit(L.IOCTL_NO_REGISTER_AND_MOVE.name)
PER_PATH = pytest.mark.path_limit(L.MPATH_REGISTRATION_PER_PATH.name)
KEY_CHECKED = pytest.mark.path_limit(L.MPATH_KEY_CHECKED_BY_LIBRARY.name)
NOT_READY_REBUILT = pytest.mark.path_limit(L.MPATH_NOT_READY_REBUILT.name)
LIBRARY_RELEASE = pytest.mark.path_limit(L.MPATH_RELEASE_BY_THE_LIBRARY.name)
MOVE_FROM_HOLDER = pytest.mark.path_limit(L.MPATH_MOVE_FROM_THE_HOLDING_PATH.name)


def expect_unregistered(
    r: CommandResult, profile: Profile, path_limits: frozenset[str] = frozenset()
) -> None:
    """RESERVATION CONFLICT; LIO: NOT READY, LOGICAL UNIT COMMUNICATION FAILURE (whose sense
    the ioctl path loses, and libmpathpersist cuts to its key)."""
    if D.UNREGISTERED_NOT_READY in profile and L.IOCTL_SENSE_LOST.name in path_limits:
        expect_refused(r, L.IOCTL_SENSE_LOST)
    elif D.UNREGISTERED_NOT_READY in profile and L.MPATH_NOT_READY_REBUILT.name in path_limits:
        expect_refused(r, L.MPATH_NOT_READY_REBUILT)
    elif D.UNREGISTERED_NOT_READY in profile:
        expect_check(r, SenseKey.NOT_READY, LUN_COMMUNICATION_FAILURE)
    else:
        expect_conflict(r)


def expect_wrong_key(r: CommandResult, path_limits: frozenset[str]) -> None:
    """RESERVATION CONFLICT for a key the issuer is not registered with; on a multipath map,
    where the key is not multipathd's either, libmpathpersist's refusal."""
    if L.MPATH_KEY_CHECKED_BY_LIBRARY.name in path_limits:
        expect_refused(r, L.MPATH_KEY_CHECKED_BY_LIBRARY)
    else:
        expect_conflict(r)


def ids(t: T) -> str:
    return t.abbreviation


# -- REGISTER / REGISTER AND IGNORE EXISTING KEY ---------------------------------------------
@PER_PATH
def test_register_then_change_key(nexuses: list) -> None:
    a = nexuses[0]
    n = paths(a)
    gen, keys = read_keys(a)
    assert keys == []
    register(a, A)
    assert read_keys(a) == (gen + n, [A] * n)
    expect_good(prout(a, SA.REGISTER, A, B))
    assert read_keys(a) == (gen + 2 * n, [B] * n)


@pytest.mark.lio_deviation(D.UNREGISTER_GENERATION.name)
@pytest.mark.parametrize("action", [SA.REGISTER, SA.REGISTER_AND_IGNORE_EXISTING_KEY])
def test_unregister_bumps_generation(nexuses: list, device_profile: Profile, action: SA) -> None:
    a = nexuses[0]
    register(a, A)
    gen, _ = read_keys(a)
    expect_good(prout(a, action, A, 0))
    bump = device_profile.choose(D.UNREGISTER_GENERATION, 1, 0)
    assert read_keys(a) == (gen + bump, [])


@pytest.mark.lio_deviation(D.UNREGISTER_GENERATION.name)
@pytest.mark.parametrize("action", [SA.REGISTER, SA.REGISTER_AND_IGNORE_EXISTING_KEY])
def test_register_zero_key_unregistered_bumps_generation(
    nexuses: list, device_profile: Profile, action: SA
) -> None:
    a = nexuses[0]
    gen, _ = read_keys(a)
    expect_good(prout(a, action, 0, 0))  # nothing to register: GOOD, nothing changes
    bump = device_profile.choose(D.UNREGISTER_GENERATION, 1, 0)
    assert read_keys(a) == (gen + bump, [])


@KEY_CHECKED
@PER_PATH
@pytest.mark.parametrize("rk", [B, 0], ids=["wrong-key", "zero-key"])
def test_register_with_wrong_key_conflicts(
    nexuses: list, rk: int, path_limits: frozenset[str]
) -> None:
    a = nexuses[0]
    register(a, A)
    gen, _ = read_keys(a)
    expect_wrong_key(prout(a, SA.REGISTER, rk, C3), path_limits)
    assert read_keys(a) == (gen, [A] * paths(a)), "a conflict changes nothing, PRgeneration too"


def test_register_unregistered_with_nonzero_key_conflicts(nexuses: list) -> None:
    expect_conflict(prout(nexuses[0], SA.REGISTER, A, B))
    assert read_keys(nexuses[0])[1] == []


@PER_PATH
def test_register_and_ignore_existing_key(nexuses: list) -> None:
    a = nexuses[0]
    n = paths(a)
    gen, _ = read_keys(a)
    expect_good(prout(a, SA.REGISTER_AND_IGNORE_EXISTING_KEY, 0x999, A))
    expect_good(prout(a, SA.REGISTER_AND_IGNORE_EXISTING_KEY, 0x999, B))
    assert read_keys(a) == (gen + 2 * n, [B] * n)


def test_new_key_is_carried_by_the_reservation(nexuses: list) -> None:
    a = nexuses[0]
    register(a, A)
    reserve(a, A, WE)
    expect_good(prout(a, SA.REGISTER, A, B))
    assert read_reservation(a)[1] == (B, WE)


def test_holder_unregistering_releases_ro_with_ua(nexuses: list) -> None:
    a, b, c = nexuses
    register(a, A)
    register(b, B)
    reserve(a, A, WE_RO)
    expect_good(prout(a, SA.REGISTER, A, 0))
    assert read_reservation(a)[1] is None
    expect_ua(b.execute(C.test_unit_ready()), RESERVATIONS_RELEASED)
    assert drain(c) == [], "an unregistered I_T nexus is not told"


def test_all_registrants_reservation_outlives_its_first_registrant(nexuses: list) -> None:
    a, b, _ = nexuses
    register(a, A)
    register(b, B)
    reserve(a, A, WE_AR)
    expect_good(prout(a, SA.REGISTER, A, 0))
    assert read_reservation(b)[1] == (0, WE_AR)
    expect_good(prout(b, SA.REGISTER, B, 0))
    assert read_reservation(b)[1] is None, "released with the last registrant"


SPEC_I_PT_ALL_TG_PT = pytest.mark.path_limit(L.IOCTL_NO_SPEC_I_PT_ALL_TG_PT.name)


@SPEC_I_PT_ALL_TG_PT
def test_spec_i_pt_only_with_register(nexuses: list) -> None:
    """Refused by the device, and on the ioctl path by the helper: the same answer."""
    a, b, _ = nexuses
    register(a, A)
    r = prout(a, SA.RESERVE, A, 0, WE, spec_i_pt=True, transport_ids=[b.transport_id])
    expect_check(r, ILLEGAL, INVALID_FIELD_IN_PARAMETER_LIST)
    assert L.IOCTL_NO_SPEC_I_PT_ALL_TG_PT.refusal.asc == INVALID_FIELD_IN_PARAMETER_LIST.asc


PARAMETERS_REBUILT = pytest.mark.path_limit(L.MPATH_PARAMETER_LIST_REBUILT.name)


@SPEC_I_PT_ALL_TG_PT
@PARAMETERS_REBUILT
def test_spec_i_pt_from_registered_nexus_is_invalid(
    nexuses: list, path_limits: frozenset[str]
) -> None:
    a, b, _ = nexuses
    register(a, A)
    r = prout(a, SA.REGISTER, A, B, spec_i_pt=True, transport_ids=[b.transport_id])
    if L.MPATH_PARAMETER_LIST_REBUILT.name in path_limits:
        expect_good(r)
    else:
        expect_check(r, ILLEGAL, INVALID_FIELD_IN_PARAMETER_LIST)


@PARAMETERS_REBUILT
@pytest.mark.parametrize("length", [0, 20, 23, 25, 28])
def test_parameter_list_length_must_be_24(
    nexuses: list, length: int, path_limits: frozenset[str]
) -> None:
    a = nexuses[0]
    data = C.pr_out_parameters(0, A).ljust(length, b"\0")[:length]
    r = a.execute(C.persistent_reserve_out(SA.REGISTER, length), data)
    if length == 28 and L.MPATH_PARAMETER_LIST_REBUILT.name in path_limits:
        expect_good(r)  # an empty TransportID list: the library sends the 24 bytes
        assert read_keys(a)[1] == [A] * paths(a)
        return
    expect_check(r, ILLEGAL, PARAMETER_LIST_LENGTH_ERROR)
    assert read_keys(a)[1] == []


@pytest.mark.parametrize("action", [0x09, 0x1F])
def test_reserved_service_action(nexuses: list, action: int) -> None:
    a = nexuses[0]
    register(a, A)
    expect_check(prout(a, action, A), ILLEGAL, INVALID_FIELD_IN_CDB)


# -- RESERVE ---------------------------------------------------------------------------------
@pytest.mark.parametrize("type_", list(T), ids=ids)
def test_reserve_and_rereserve(nexuses: list, type_: T) -> None:
    a = nexuses[0]
    register(a, A)
    gen, _ = read_keys(a)
    reserve(a, A, type_)
    reserve(a, A, type_)  # the holder reserving again with the same type: nothing changes
    assert read_reservation(a) == (gen, (0 if type_.all_registrants else A, type_))


@pytest.mark.parametrize("type_", list(T), ids=ids)
def test_holder_cannot_change_type_by_reserve(nexuses: list, type_: T) -> None:
    a = nexuses[0]
    register(a, A)
    reserve(a, A, type_)
    other = EA if type_ != EA else WE
    expect_conflict(prout(a, SA.RESERVE, A, 0, other))


@pytest.mark.parametrize("type_", [WE, EA, WE_RO, EA_RO], ids=ids)
def test_registered_non_holder_reserve_conflicts(nexuses: list, type_: T) -> None:
    a, b, _ = nexuses
    register(a, A)
    register(b, B)
    reserve(a, A, type_)
    expect_conflict(prout(b, SA.RESERVE, B, 0, type_))


@pytest.mark.parametrize("type_", [WE_AR, EA_AR], ids=ids)
def test_any_registrant_holds_all_registrants(nexuses: list, type_: T) -> None:
    a, b, _ = nexuses
    register(a, A)
    register(b, B)
    reserve(a, A, type_)
    reserve(b, B, type_)  # b is a holder too: same type is a no-op
    assert read_reservation(b)[1] == (0, type_)


@UNREGISTERED_NOT_READY
@SENSE_LOST
@NOT_READY_REBUILT
def test_unregistered_reserve_conflicts(
    nexuses: list, device_profile: Profile, path_limits: frozenset[str]
) -> None:
    expect_unregistered(prout(nexuses[0], SA.RESERVE, 0, 0, WE), device_profile, path_limits)
    assert read_reservation(nexuses[0])[1] is None


@KEY_CHECKED
def test_reserve_with_wrong_key_conflicts(nexuses: list, path_limits: frozenset[str]) -> None:
    a = nexuses[0]
    register(a, A)
    expect_wrong_key(prout(a, SA.RESERVE, B, 0, WE), path_limits)
    assert read_reservation(a)[1] is None


GUESSED = pytest.mark.path_limit(L.MPATH_ILLEGAL_REQUEST_GUESSED.name)


@GUESSED
@pytest.mark.parametrize("type_", [0x0, 0x2, 0x4, 0x9, 0xF])
def test_reserve_with_reserved_type(nexuses: list, type_: int, path_limits: frozenset[str]) -> None:
    a = nexuses[0]
    register(a, A)
    expect_invalid_field_in_cdb(prout(a, SA.RESERVE, A, 0, type_), path_limits)


@pytest.mark.lio_deviation(D.SCOPE_IN_PARAMETER_LIST.name)
@pytest.mark.path_limit(L.IOCTL_FIELDS_CHECKED_FIRST.name)
def test_reserve_with_reserved_scope(
    nexuses: list, device_profile: Profile, path_limits: frozenset[str]
) -> None:
    a = nexuses[0]
    register(a, A)
    r = prout(a, SA.RESERVE, A, 0, WE, scope=0x1)
    if L.IOCTL_FIELDS_CHECKED_FIRST.name in path_limits:
        expect_refused(r, L.IOCTL_FIELDS_CHECKED_FIRST)  # SPC-5's answer, whatever the device
    else:
        code = device_profile.choose(
            D.SCOPE_IN_PARAMETER_LIST, INVALID_FIELD_IN_CDB, INVALID_FIELD_IN_PARAMETER_LIST
        )
        expect_check(r, ILLEGAL, code)
    assert read_reservation(a)[1] is None


# -- RELEASE ---------------------------------------------------------------------------------
@pytest.mark.path_limit(L.MPATH_UNIT_ATTENTION_OF_EVERY_PATH.name)
@pytest.mark.parametrize("type_", list(T), ids=ids)
def test_release_by_holder(nexuses: list, type_: T, path_limits: frozenset[str]) -> None:
    a, b, c = nexuses
    register(a, A)
    register(b, B)
    reserve(a, A, type_)
    gen, _ = read_keys(a)
    expect_good(prout(a, SA.RELEASE, A, 0, type_))
    assert read_reservation(a) == (gen, None), "RELEASE does not bump PRgeneration"
    notified = type_.registrants_only or type_.all_registrants
    assert drain(b) == ([(0x2A, 0x04)] if notified else [])
    # a multipath host's I/O path, when not the path that reserved, is another registrant; the
    # library sends RELEASE down every path at once, so whether it is still told is a race
    told = io_path_told(a, path_limits)
    assert drain(a) in (mpath_release_outcomes() if notified and told else ([],))
    assert drain(c) == []


def test_release_by_non_holder_is_a_no_op(nexuses: list) -> None:
    a, b, _ = nexuses
    register(a, A)
    register(b, B)
    reserve(a, A, EA)
    expect_good(prout(b, SA.RELEASE, B, 0, EA))
    assert read_reservation(b)[1] == (A, EA)


def test_release_without_reservation(nexuses: list) -> None:
    a = nexuses[0]
    register(a, A)
    expect_good(prout(a, SA.RELEASE, A, 0, WE))


@pytest.mark.lio_deviation(D.RELEASE_WRONG_TYPE.name)
@LIBRARY_RELEASE
def test_release_with_wrong_type(
    nexuses: list, device_profile: Profile, path_limits: frozenset[str]
) -> None:
    a = nexuses[0]
    register(a, A)
    reserve(a, A, WE)
    r = prout(a, SA.RELEASE, A, 0, EA)
    if L.MPATH_RELEASE_BY_THE_LIBRARY.name in path_limits:
        expect_good(r)  # the library took its reservation over and released it
        observed = (read_reservation(a)[1], read_keys(a)[1])
        assert observed == (None, [A] * paths(a)), observed
        return
    if D.RELEASE_WRONG_TYPE in device_profile:
        expect_conflict(r)
    else:
        expect_check(r, ILLEGAL, INVALID_RELEASE_OF_PERSISTENT_RESERVATION)
    assert read_reservation(a)[1] == (A, WE)


RESERVED_TYPE = 0x2  # SPC-5 table 169: obsolete, not a reservation type


@pytest.mark.lio_deviation(D.TYPE_BEFORE_REGISTRATION.name)
@pytest.mark.path_limit(L.IOCTL_FIELDS_CHECKED_FIRST.name)
@KEY_CHECKED
@PER_PATH
def test_reserved_type_from_a_nexus_without_the_key(
    nexuses: list, device_profile: Profile, path_limits: frozenset[str]
) -> None:
    """No reservation present (LIO's pre-check of non-holders stays out of it): a wrong key
    and an unregistered issuer, each with a TYPE that does not exist."""
    a, b, c = nexuses
    register(a, A)
    register(b, B)
    answers = [
        prout(a, SA.RESERVE, C3, 0, RESERVED_TYPE),
        prout(a, SA.PREEMPT, C3, B, RESERVED_TYPE),
        prout(c, SA.PREEMPT, 0, B, RESERVED_TYPE),
    ]
    helper_first = L.IOCTL_FIELDS_CHECKED_FIRST.name in path_limits
    key_checked = L.MPATH_KEY_CHECKED_BY_LIBRARY.name in path_limits
    for i, r in enumerate(answers):
        if helper_first:
            expect_refused(r, L.IOCTL_FIELDS_CHECKED_FIRST)
        elif key_checked and i < 2:  # a's wrong key: the library's refusal first
            expect_refused(r, L.MPATH_KEY_CHECKED_BY_LIBRARY)
        elif D.TYPE_BEFORE_REGISTRATION in device_profile:
            expect_check(r, ILLEGAL, INVALID_FIELD_IN_CDB)
        else:
            expect_conflict(r)
    assert sorted(read_keys(c)[1]) == [A] * paths(a) + [B]
    assert read_reservation(c)[1] is None
    reserve(b, B, WE)  # now a holder: LIO refuses a registered non-holder's RESERVE first
    r = prout(a, SA.RESERVE, A, 0, RESERVED_TYPE)
    if helper_first:
        expect_refused(r, L.IOCTL_FIELDS_CHECKED_FIRST)
    elif D.TYPE_BEFORE_REGISTRATION in device_profile:
        expect_conflict(r)
    else:
        expect_check(r, ILLEGAL, INVALID_FIELD_IN_CDB)
    r = prout(c, SA.PREEMPT, 0, B, RESERVED_TYPE)  # unregistered: both devices refuse
    if helper_first:
        expect_refused(r, L.IOCTL_FIELDS_CHECKED_FIRST)
    else:
        expect_conflict(r)


@pytest.mark.lio_deviation(D.NO_FIELD_POINTER.name)
@GUESSED
def test_a_reserved_type_is_pointed_at(
    nexuses: list, device_profile: Profile, path_limits: frozenset[str]
) -> None:
    a = nexuses[0]
    register(a, A)
    r = prout(a, SA.RESERVE, A, 0, RESERVED_TYPE)
    expect_invalid_field_in_cdb(r, path_limits)
    if D.NO_FIELD_POINTER in device_profile or L.MPATH_ILLEGAL_REQUEST_GUESSED.name in path_limits:
        assert r.sense[15:18] == bytes(3), "LIO sends no sense-key specific data"
    else:  # SKSV, C/D=1 (CDB), BPV, bit 3 of byte 2: the TYPE field
        assert r.sense[15:18] == bytes([0xCB, 0x00, 0x02])


@KEY_CHECKED
def test_release_with_wrong_key_conflicts(nexuses: list, path_limits: frozenset[str]) -> None:
    a = nexuses[0]
    register(a, A)
    reserve(a, A, WE)
    expect_wrong_key(prout(a, SA.RELEASE, B, 0, WE), path_limits)


def expect_conflict_unless_key_skipped(r: CommandResult, profile: Profile) -> None:
    """RESERVATION CONFLICT; LIO: GOOD (it compares a non-holder's key only after the fact)."""
    if D.RELEASE_SKIPS_KEY_CHECK in profile:
        expect_good(r)
    else:
        expect_conflict(r)


@pytest.mark.lio_deviation(D.RELEASE_SKIPS_KEY_CHECK.name)
@KEY_CHECKED
@PER_PATH
def test_release_with_wrong_key_without_reservation_conflicts(
    nexuses: list, device_profile: Profile, path_limits: frozenset[str]
) -> None:
    a = nexuses[0]
    register(a, A)
    gen, _ = read_keys(a)
    r = prout(a, SA.RELEASE, B, 0, WE)
    if L.MPATH_KEY_CHECKED_BY_LIBRARY.name in path_limits:
        expect_refused(r, L.MPATH_KEY_CHECKED_BY_LIBRARY)
    else:
        expect_conflict_unless_key_skipped(r, device_profile)
    assert read_keys(a) == (gen, [A] * paths(a))


@pytest.mark.lio_deviation(D.RELEASE_SKIPS_KEY_CHECK.name)
def test_release_by_non_holder_with_wrong_key_conflicts(
    nexuses: list, device_profile: Profile
) -> None:
    a, b, _ = nexuses
    register(a, A)
    register(b, B)
    reserve(a, A, EA)
    expect_conflict_unless_key_skipped(prout(b, SA.RELEASE, C3, 0, EA), device_profile)
    assert read_reservation(a)[1] == (A, EA)
    assert drain(a) == [] and drain(b) == []


@UNREGISTERED_NOT_READY
@SENSE_LOST
@LIBRARY_RELEASE
def test_unregistered_release_conflicts(
    nexuses: list, device_profile: Profile, path_limits: frozenset[str]
) -> None:
    r = prout(nexuses[0], SA.RELEASE, 0, 0, WE)
    if L.MPATH_RELEASE_BY_THE_LIBRARY.name in path_limits:
        expect_good(r)
    else:
        expect_unregistered(r, device_profile, path_limits)


# -- CLEAR -----------------------------------------------------------------------------------
def test_clear(nexuses: list) -> None:
    a, b, c = nexuses
    register(a, A)
    register(b, B)
    reserve(a, A, WE_RO)
    gen, _ = read_keys(a)
    expect_good(prout(b, SA.CLEAR, B))
    assert read_keys(b) == (gen + 1, [])
    assert read_reservation(b)[1] is None
    expect_ua(a.execute(C.read_10(0, 1)), RESERVATIONS_PREEMPTED)
    assert drain(a) == [] and drain(c) == []


@KEY_CHECKED
@PER_PATH
def test_clear_with_wrong_key_conflicts(nexuses: list, path_limits: frozenset[str]) -> None:
    a = nexuses[0]
    register(a, A)
    expect_wrong_key(prout(a, SA.CLEAR, B), path_limits)
    assert read_keys(a)[1] == [A] * paths(a)


@UNREGISTERED_NOT_READY
@SENSE_LOST
@NOT_READY_REBUILT
def test_unregistered_clear_conflicts(
    nexuses: list, device_profile: Profile, path_limits: frozenset[str]
) -> None:
    a, b, _ = nexuses
    register(b, B)
    expect_unregistered(prout(a, SA.CLEAR, 0), device_profile, path_limits)
    assert read_keys(b)[1] == [B]


# -- PREEMPT / PREEMPT AND ABORT ---------------------------------------------------------------
PREEMPTS = [
    pytest.param(SA.PREEMPT, id="PREEMPT"),
    pytest.param(
        SA.PREEMPT_AND_ABORT,
        id="PREEMPT_AND_ABORT",
        marks=[
            pytest.mark.lio_hangs(reason="PREEMPT AND ABORT never completes on tcm_loop"),
            pytest.mark.lio_deviation(D.PREEMPT_AND_ABORT_STALLS.name),
        ],
    ),
]


def expect_preempt_completed(r: CommandResult, action: SA, profile: Profile) -> None:
    """GOOD. Where the profile says PREEMPT AND ABORT never completes, the plugin reports the
    hang as xfail "LIO hangs"; an answer at all is then a change in LIO, a failure."""
    stalls = action == SA.PREEMPT_AND_ABORT and D.PREEMPT_AND_ABORT_STALLS in profile
    assert not stalls, f"PREEMPT AND ABORT completed ({r}); {profile.name} says it never does"
    expect_good(r)


@pytest.mark.parametrize("action", PREEMPTS)
def test_preempt_holder_takes_reservation(
    nexuses: list, action: SA, device_profile: Profile
) -> None:
    a, b, c = nexuses
    register(a, A)
    register(b, B)
    register(c, C3)
    reserve(a, A, WE_RO)
    gen, _ = read_keys(a)
    expect_preempt_completed(prout(b, action, B, A, WE_RO), action, device_profile)
    assert read_keys(b) == (gen + 1, [B, C3])
    assert read_reservation(b)[1] == (B, WE_RO)
    expect_ua(a.execute(C.test_unit_ready()), REGISTRATIONS_PREEMPTED)
    assert drain(c) == [], "same type: the survivors are not told"


@pytest.mark.parametrize("action", PREEMPTS)
def test_preempt_with_type_change_tells_survivors(
    nexuses: list, action: SA, device_profile: Profile
) -> None:
    a, b, c = nexuses
    register(a, A)
    register(b, B)
    register(c, C3)
    reserve(a, A, WE_RO)
    expect_preempt_completed(prout(b, action, B, A, EA_RO), action, device_profile)
    assert read_reservation(b)[1] == (B, EA_RO)
    assert drain(a) == [(0x2A, 0x05)]
    assert drain(c) == [(0x2A, 0x04)]


@PER_PATH
def test_preempt_non_holder_removes_registration_only(nexuses: list) -> None:
    a, b, c = nexuses
    register(a, A)
    register(b, B)
    register(c, C3)
    reserve(a, A, WE)
    expect_good(prout(a, SA.PREEMPT, A, C3, WE))
    assert sorted(read_keys(a)[1]) == [A] * paths(a) + [B]
    assert read_reservation(a)[1] == (A, WE)
    assert drain(c) == [(0x2A, 0x05)]
    assert drain(b) == []


@PER_PATH
def test_preempt_removes_every_registration_with_the_key(nexuses: list) -> None:
    a, b, c = nexuses
    register(a, A)
    register(b, B)
    register(c, B)
    expect_good(prout(a, SA.PREEMPT, A, B, WE))
    assert read_keys(a)[1] == [A] * paths(a)
    assert read_reservation(a)[1] is None, "no reservation before: TYPE is ignored"
    assert drain(b) == [(0x2A, 0x05)] and drain(c) == [(0x2A, 0x05)]


def test_preempt_unknown_key_conflicts(nexuses: list) -> None:
    a, b, _ = nexuses
    register(a, A)
    register(b, B)
    gen, _ = read_keys(a)
    expect_conflict(prout(a, SA.PREEMPT, A, C3, WE))
    assert read_keys(a)[0] == gen


@SENSE_LOST
@pytest.mark.path_limit(L.IOCTL_ILLEGAL_REQUEST_AS_EINVAL.name)
@pytest.mark.parametrize("reserved", [False, True], ids=["no-reservation", "WE"])
def test_preempt_zero_key_without_all_registrants(
    nexuses: list, reserved: bool, path_limits: frozenset[str]
) -> None:
    a, b, _ = nexuses
    register(a, A)
    register(b, B)
    if reserved:
        reserve(b, B, WE)
    r = prout(a, SA.PREEMPT, A, 0, WE)
    if L.IOCTL_ILLEGAL_REQUEST_AS_EINVAL.name in path_limits:
        expect_refused(r, L.IOCTL_ILLEGAL_REQUEST_AS_EINVAL)
    elif L.IOCTL_SENSE_LOST.name in path_limits:
        expect_refused(r, L.IOCTL_SENSE_LOST)
    else:
        expect_check(r, ILLEGAL, INVALID_FIELD_IN_PARAMETER_LIST)


@pytest.mark.parametrize("type_", [WE_AR, EA_AR], ids=ids)
def test_preempt_all_registrants_with_zero_key(nexuses: list, type_: T) -> None:
    a, b, c = nexuses
    register(a, A)
    register(b, B)
    register(c, C3)
    reserve(b, B, type_)
    expect_good(prout(a, SA.PREEMPT, A, 0, WE))
    assert read_keys(a)[1] == [A]
    assert read_reservation(a)[1] == (A, WE)
    assert drain(b) == [(0x2A, 0x05)] and drain(c) == [(0x2A, 0x05)]


@pytest.mark.lio_deviation(D.AR_PREEMPT_TAKES_OVER.name)
def test_preempt_all_registrants_by_key_removes_registrations_only(
    nexuses: list, device_profile: Profile
) -> None:
    a, b, c = nexuses
    register(a, A)
    register(b, B)
    register(c, C3)
    reserve(a, A, WE_AR)  # LIO files a, who reserved, as the holder
    gen, _ = read_keys(a)
    expect_good(prout(b, SA.PREEMPT, B, A, WE))
    assert read_keys(b) == (gen + 1, [B, C3])
    assert drain(a) == [(0x2A, 0x05)]
    if D.AR_PREEMPT_TAKES_OVER in device_profile:
        assert read_reservation(b)[1] == (B, WE), "LIO: b preempted the holder it files"
        assert drain(c) == [(0x2A, 0x04)], "the TYPE changed: RESERVATIONS RELEASED"
    else:
        assert read_reservation(b)[1] == (0, WE_AR), "the all-registrants reservation stays"
        assert drain(c) == []


@pytest.mark.lio_deviation(D.PREEMPT_KEEPS_ISSUER.name)
@PER_PATH
def test_preempt_all_registrants_by_own_key_removes_issuer(
    nexuses: list, device_profile: Profile
) -> None:
    a, b, c = nexuses
    register(a, A)
    register(b, B)
    register(c, C3)
    reserve(a, A, WE_AR)
    gen, _ = read_keys(a)
    expect_good(prout(b, SA.PREEMPT, B, B, WE_AR))
    others = [A] * paths(a)
    kept = device_profile.choose(D.PREEMPT_KEEPS_ISSUER, [*others, C3], [*others, B, C3])
    assert read_keys(a) == (gen + 1, kept)
    assert read_reservation(a)[1] == (0, WE_AR)
    assert drain(a) == [] and drain(b) == [] and drain(c) == [], "the issuer is not told"


@PER_PATH
@pytest.mark.parametrize("held_by", ["nobody", "another-WE"])
def test_preempt_by_own_key_removes_issuer(nexuses: list, held_by: str) -> None:
    """Without an all-registrants reservation, a PREEMPT whose SERVICE ACTION RESERVATION KEY
    is the issuer's own removes the issuer's registration like any other with that key (LIO
    keeps the issuer only under an all-registrants type, ``PREEMPT_KEEPS_ISSUER``)."""
    a, b, _ = nexuses
    register(a, A)
    register(b, B)
    if held_by == "another-WE":
        reserve(b, B, WE)
    gen, _ = read_keys(b)
    expect_good(prout(a, SA.PREEMPT, A, A, WE))
    assert read_keys(b) == (gen + 1, [B])
    assert read_reservation(b)[1] == (None if held_by == "nobody" else (B, WE))
    assert drain(b) == []


@pytest.mark.lio_deviation(D.PREEMPT_CHECKS_TYPE_AND_SCOPE.name)
@pytest.mark.path_limit(L.IOCTL_FIELDS_CHECKED_FIRST.name)
@PER_PATH
@GUESSED
@pytest.mark.parametrize("field", ["type", "scope"])
@pytest.mark.parametrize("held_by", ["nobody", "issuer-WE"])
def test_preempt_removing_registrations_ignores_type_and_scope(
    nexuses: list, field: str, held_by: str, device_profile: Profile, path_limits: frozenset[str]
) -> None:
    """SPC-5 5.14.11: a PREEMPT whose SERVICE ACTION RESERVATION KEY is not the holder's only
    removes registrations, and ignores the SCOPE and TYPE fields (here a TYPE that does not
    exist, or SCOPE 1); LIO checks both first and removes nothing."""
    a, b, _ = nexuses
    register(a, A)
    register(b, B)
    if held_by == "issuer-WE":
        reserve(a, A, WE)
    gen, _ = read_keys(b)
    type_, scope = (RESERVED_TYPE, 0) if field == "type" else (WE, 1)
    r = prout(a, SA.PREEMPT, A, B, type_, scope=scope)
    removed = False
    if L.IOCTL_FIELDS_CHECKED_FIRST.name in path_limits:
        expect_refused(r, L.IOCTL_FIELDS_CHECKED_FIRST)
    elif D.PREEMPT_CHECKS_TYPE_AND_SCOPE in device_profile:
        scope_code = device_profile.choose(
            D.SCOPE_IN_PARAMETER_LIST, INVALID_FIELD_IN_CDB, INVALID_FIELD_IN_PARAMETER_LIST
        )
        if field == "type":
            expect_invalid_field_in_cdb(r, path_limits)
        else:
            expect_check(r, ILLEGAL, scope_code)
    else:
        expect_good(r)
        removed = True
    mine = [A] * paths(a)
    assert read_keys(a) == ((gen + 1, mine) if removed else (gen, sorted([*mine, B])))
    assert read_reservation(a)[1] == (None if held_by == "nobody" else (A, WE))
    assert drain(b) == ([(0x2A, 0x05)] if removed else [])  # REGISTRATIONS PREEMPTED


def test_self_preempt_changes_type(nexuses: list) -> None:
    a, b, _ = nexuses
    register(a, A)
    register(b, B)
    reserve(a, A, WE)
    expect_good(prout(a, SA.PREEMPT, A, A, EA))
    assert read_keys(a)[1] == sorted([A, B])
    assert read_reservation(a)[1] == (A, EA)
    assert drain(b) == [(0x2A, 0x04)]


def test_unregistered_preempt_conflicts(nexuses: list) -> None:
    a, b, _ = nexuses
    register(a, A)
    reserve(a, A, WE)
    expect_conflict(prout(b, SA.PREEMPT, 0, A, WE))


# -- REGISTER AND MOVE -----------------------------------------------------------------------
@MOVES
@PER_PATH
@pytest.mark.parametrize("unreg", [False, True], ids=["keep", "unreg"])
def test_register_and_move(nexuses: list, unreg: bool, path_limits: frozenset[str]) -> None:
    a, b, c = nexuses
    register(a, A)
    reserve(a, A, EA)
    gen, _ = read_keys(a)
    r = move(a, A, B, b, unreg=unreg)
    if path_refuses_moves(r, path_limits):
        return
    expect_good(r)  # type: ignore[arg-type]
    kept = [A] * (paths(a) - 1 if unreg else paths(a))  # UNREG: the holding path's goes
    generation, keys = read_keys(c)
    assert (generation, sorted(keys)) == (gen + 1, [*kept, B])
    assert read_reservation(c)[1] == (B, EA)
    holder = [d for d in full_status(c).descriptors if d.r_holder]
    port, tid = b.relative_target_port, b.transport_id.encode()
    assert holder == [FullStatusDescriptor(B, False, True, LU_SCOPE, EA, port, tid)]
    assert drain(a) == [] and drain(b) == [], "REGISTER AND MOVE establishes no UA"


@MOVES
def test_register_and_move_by_non_holder_conflicts(
    nexuses: list, path_limits: frozenset[str]
) -> None:
    a, b, c = nexuses
    register(a, A)
    register(b, B)
    reserve(a, A, WE)
    r = move(b, B, C3, c)
    if not path_refuses_moves(r, path_limits):
        expect_conflict(r)  # type: ignore[arg-type]


@MOVES
@pytest.mark.parametrize("type_", [WE_AR, EA_AR], ids=ids)
def test_register_and_move_all_registrants_conflicts(
    nexuses: list, type_: T, path_limits: frozenset[str]
) -> None:
    a, b, _ = nexuses
    register(a, A)
    reserve(a, A, type_)
    r = move(a, A, B, b)
    if not path_refuses_moves(r, path_limits):
        expect_conflict(r)  # type: ignore[arg-type]


@MOVES
@PER_PATH
def test_register_and_move_without_reservation_is_an_invalid_field(
    nexuses: list, path_limits: frozenset[str]
) -> None:
    """SPC-5 5.14.8: with no reservation to move, INVALID FIELD IN CDB (LIO alike)."""
    a, b, _ = nexuses
    register(a, A)
    r = move(a, A, B, b)
    if not path_refuses_moves(r, path_limits):
        expect_check(r, ILLEGAL, INVALID_FIELD_IN_CDB)  # type: ignore[arg-type]
    assert read_keys(a)[1] == [A] * paths(a)


@UNREGISTERED_NOT_READY
@MOVES
def test_unregistered_register_and_move_conflicts(
    nexuses: list, device_profile: Profile, path_limits: frozenset[str]
) -> None:
    a, b, c = nexuses
    register(b, B)
    r = move(a, 0, C3, c)
    if not path_refuses_moves(r, path_limits):
        expect_unregistered(r, device_profile)  # type: ignore[arg-type]
    assert read_keys(b)[1] == [B]


@pytest.mark.lio_deviation(D.TYPE_BEFORE_REGISTRATION.name)
@pytest.mark.parametrize("held_by", ["nobody", "another-WE", "another-WE-RO"])
@pytest.mark.parametrize("to_self", [False, True], ids=["zero-sa-key", "to-itself"])
@MOVES
@PER_PATH
@MOVE_FROM_HOLDER
@pytest.mark.lio_deviation(D.MOVE_LIST_BEFORE_HOLDER.name)
def test_the_move_parameter_list_is_checked_before_the_reservation(
    nexuses: list,
    to_self: bool,
    held_by: str,
    device_profile: Profile,
    path_limits: frozenset[str],
) -> None:
    """With no reservation to move, a bad parameter list answers INVALID FIELD IN PARAMETER
    LIST (SPC-5 orders neither check; LIO's order). While another I_T nexus holds the
    reservation, the issuer is a registered non-holder, whose parameter list SPC-5 ignores:
    RESERVATION CONFLICT; LIO checks the list first, after its own check of a non-holder
    (which conflicts while the reservation is not registrants-only)."""
    a, b, c = nexuses
    register(a, A)
    if held_by != "nobody":
        register(c, C3)
        reserve(c, C3, WE_RO if held_by == "another-WE-RO" else WE)
    r = move(a, A, B, a) if to_self else move(a, A, 0, b)
    if path_refuses_moves(r, path_limits):
        pass
    elif held_by != "nobody" and (
        D.MOVE_LIST_BEFORE_HOLDER not in device_profile  # SPC-5: the list is ignored
        or (held_by == "another-WE" and D.TYPE_BEFORE_REGISTRATION in device_profile)
    ):
        expect_conflict(r)
    elif to_self and held_by == "nobody" and not first_path_is_own(a):
        # sent by a path the TransportID does not name: a move to another I_T nexus, with
        # no reservation to move
        expect_check(r, ILLEGAL, INVALID_FIELD_IN_CDB)
    else:
        expect_check(r, ILLEGAL, INVALID_FIELD_IN_PARAMETER_LIST)
    assert sorted(read_keys(a)[1]) == [A] * paths(a) + ([] if held_by == "nobody" else [C3])


@MOVES
@MOVE_FROM_HOLDER
@pytest.mark.parametrize("to_self", [False, True], ids=["zero-sa-key", "to-itself"])
def test_register_and_move_invalid_parameters(
    nexuses: list, to_self: bool, path_limits: frozenset[str]
) -> None:
    a, b, _ = nexuses
    register(a, A)
    reserve(a, A, WE)
    r = move(a, A, B, a) if to_self else move(a, A, 0, b)
    if to_self and not first_path_is_own(a) and not path_refuses_moves(r, path_limits):
        # the holding path moves it to the path the TransportID names, a registered I_T nexus
        # whose key becomes the SERVICE ACTION RESERVATION KEY (SPC-5 5.14.8): B holds WE
        expect_good(r)  # type: ignore[arg-type]
        assert read_reservation(a)[1] == (B, WE)
        return
    if not path_refuses_moves(r, path_limits):
        expect_check(r, ILLEGAL, INVALID_FIELD_IN_PARAMETER_LIST)  # type: ignore[arg-type]
    assert read_reservation(a)[1] == (A, WE)


@pytest.mark.lio_deviation(D.MOVE_FILES_TYPE_AS_SCOPE.name)
@MOVES
@MOVE_FROM_HOLDER
@LIBRARY_RELEASE
@pytest.mark.parametrize("action", [SA.RESERVE, SA.RELEASE, SA.PREEMPT], ids=lambda a: a.name)
def test_a_reservation_moved_back_to_its_issuer(
    nexuses: list, device_profile: Profile, action: SA, path_limits: frozenset[str]
) -> None:
    """A moves its reservation to B and keeps its registration (UNREG=0); B moves it back. SPC:
    A holds the same reservation as before. LIO filed the TYPE as A's own scope on the first
    move, so A's RESERVE and RELEASE conflict and a PREEMPT of A is a change of scope. A
    multipath host's first move leaves by the holding path and the reservation comes back to
    the path its TransportID names: another registration, whose scope LIO left alone."""
    a, b, c = nexuses
    register(a, A)
    register(c, C3)
    reserve(a, A, WE_RO)
    r = move(a, A, B, b)
    if path_refuses_moves(r, path_limits):
        return
    expect_good(r)  # type: ignore[arg-type]
    expect_good(move(b, B, A, a))
    assert read_reservation(c)[1] == (A, WE_RO)
    other_path = not first_path_is_own(a)  # the first move came from another of A's paths
    lio = D.MOVE_FILES_TYPE_AS_SCOPE in device_profile and not other_path
    if action == SA.RESERVE:
        r = prout(a, SA.RESERVE, A, 0, WE_RO)  # a multipath host's goes by its first path
        expect_conflict(r) if lio or other_path else expect_good(r)  # type: ignore[func-returns-value]
        assert read_reservation(c)[1] == (A, WE_RO)
    elif action == SA.RELEASE:
        r = prout(a, SA.RELEASE, A, 0, WE_RO)
        if lio:
            if L.MPATH_RELEASE_BY_THE_LIBRARY.name in path_limits:
                # the library found its reservation still held after every path's RELEASE:
                # it took it over (PREEMPT by its own key) and released it
                expect_good(r)
                observed = (drain(b), drain(c), read_reservation(c)[1])
                assert observed == ([(0x2A, 0x03)], [(0x2A, 0x03)], None), observed
                return
            expect_conflict(r)
            assert read_reservation(c)[1] == (A, WE_RO)
            assert drain(b) == [] and drain(c) == []
        else:
            expect_good(r)
            assert read_reservation(a)[1] is None
            assert drain(b) == [(0x2A, 0x04)] and drain(c) == [(0x2A, 0x04)]
    else:
        # B, registered by the first move, preempts A with the same TYPE
        expect_good(prout(b, SA.PREEMPT, B, A, WE_RO))
        assert read_reservation(b)[1] == (B, WE_RO)
        assert drain(a) == [(0x2A, 0x05)]
        assert drain(c) == ([(0x2A, 0x04)] if lio else []), "LIO: A's scope differed"
        # B issued a move too, but its PREEMPT filed its own scope anew: its RELEASE is GOOD
        expect_good(prout(b, SA.RELEASE, B, 0, WE_RO))
        assert read_reservation(b)[1] is None
        assert drain(c) == [(0x2A, 0x04)]
