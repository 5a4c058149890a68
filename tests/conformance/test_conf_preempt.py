"""PREEMPT and PREEMPT AND ABORT on every backend (SPC-5 5.14.10.4, 5.14.10.5).
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
    PER_PATH,
    RESERVED_TYPE,
    SENSE_LOST,
    WE,
    WE_AR,
    WE_RO,
    A,
    B,
    T,
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
    REGISTRATIONS_PREEMPTED,
)
from scsi_pr.sim.profiles import Profile
from scsi_pr.sim.result import CommandResult

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
