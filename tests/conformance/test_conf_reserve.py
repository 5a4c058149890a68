"""RESERVE, RELEASE and CLEAR on every backend (SPC-5 5.14.9, 5.14.10.1, 5.14.10.2).
What every test checks: ``prout_common``."""

from __future__ import annotations

import pytest
from prout_common import (
    C3,
    EA,
    EA_AR,
    EA_RO,
    GUESSED,
    ILLEGAL,
    KEY_CHECKED,
    LIBRARY_RELEASE,
    NOT_READY_REBUILT,
    PER_PATH,
    RESERVED_TYPE,
    SENSE_LOST,
    UNREGISTERED_NOT_READY,
    WE,
    WE_AR,
    WE_RO,
    A,
    B,
    T,
    expect_unregistered,
    expect_wrong_key,
    ids,
)
from prtest import (
    SA,
    drain,
    expect_check,
    expect_conflict,
    expect_good,
    expect_invalid_field_in_cdb,
    expect_refused,
    expect_ua,
    io_path_told,
    mpath_release_outcomes,
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
    RESERVATIONS_PREEMPTED,
)
from scsi_pr.sim.profiles import Profile
from scsi_pr.sim.result import CommandResult


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
