"""The reservation conflict table (SPC-5 5.14.1, spc-persistent-reservations.md §5) for every
type, from the holder, a registered non-holder and an unregistered I_T nexus, over the commands
the model accepts; plus unit attention reporting and SPC-2 RESERVE/RELEASE with CRH.

Where LIO's data-direction classifier departs from the table, the case is its own test, marked
with the registry entry (``scsi_pr.sim.profiles``) and asserting LIO's answer where the device's
profile has that entry."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prtest import (
    SA,
    drain,
    expect_conflict,
    expect_good,
    expect_ua,
    io_path_holds,
    io_path_told,
    prout,
    read_keys,
    register,
    reserve,
)

from scsi_pr.helper.executors import limits as L
from scsi_pr.sim import cdb as C
from scsi_pr.sim import deviations as D
from scsi_pr.sim import profiles as P
from scsi_pr.sim.constants import (
    REGISTRATIONS_PREEMPTED,
    RESERVATIONS_PREEMPTED,
    RESERVATIONS_RELEASED,
    ReservationType,
    SenseKey,
    Status,
)
from scsi_pr.sim.deviations import Deviation
from scsi_pr.sim.profiles import Profile

T = ReservationType
A, B = 0xA, 0xB
BLOCK = 512

ALWAYS, READS, WRITES = "always", "reads", "writes"
#: command name -> (CDB, data-out, class in the conflict table)
COMMANDS: dict[str, tuple[bytes, bytes, str]] = {
    "TEST UNIT READY": (C.test_unit_ready(), b"", ALWAYS),
    "INQUIRY": (C.inquiry(), b"", ALWAYS),
    "REPORT LUNS": (C.report_luns(), b"", ALWAYS),
    "REQUEST SENSE": (C.request_sense(), b"", ALWAYS),
    "READ CAPACITY(10)": (C.read_capacity_10(), b"", ALWAYS),
    "READ CAPACITY(16)": (C.read_capacity_16(), b"", ALWAYS),
    "PR IN READ KEYS": (C.persistent_reserve_in(0), b"", ALWAYS),
    "MODE SENSE(6)": (C.mode_sense_6(), b"", READS),
    "MODE SENSE(10)": (C.mode_sense_10(), b"", READS),
    "READ(10)": (C.read_10(0, 1), b"", READS),
    "READ(16)": (C.read_16(0, 1), b"", READS),
    "VERIFY(10)": (bytes([0x2F, 0, 0, 0, 0, 0, 0, 0, 1, 0]), b"", READS),  # BYTCHK 0: no data
    "WRITE(10)": (C.write_10(0, 1), bytes(BLOCK), WRITES),
    "WRITE(16)": (C.write_16(0, 1), bytes(BLOCK), WRITES),
    "SYNCHRONIZE CACHE(10)": (C.synchronize_cache_10(), b"", WRITES),
    "SYNCHRONIZE CACHE(16)": (bytes([0x91]) + bytes(15), b"", WRITES),
}


def conflicts(kind: str, type_: T, registered: bool) -> bool:
    """The table, read for a non-holder."""
    if kind == ALWAYS:
        return False
    if type_ == T.WRITE_EXCLUSIVE:
        return kind == WRITES
    if type_ == T.EXCLUSIVE_ACCESS:
        return True
    if registered:
        return False
    ea = type_ in (T.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY, T.EXCLUSIVE_ACCESS_ALL_REGISTRANTS)
    return ea or kind == WRITES


def lio_exception(command: str, type_: T, registered: bool) -> Deviation | None:
    """The registry entry where LIO's data-direction classifier departs from the table (§5
    "How LIO actually decides", §11 rows 10 and 21): there LIO answers the opposite."""
    ea_family = type_ in (
        T.EXCLUSIVE_ACCESS,
        T.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY,
        T.EXCLUSIVE_ACCESS_ALL_REGISTRANTS,
    )
    we_family = not ea_family
    if (
        command.startswith("READ CAPACITY")
        and ea_family
        and (type_ == T.EXCLUSIVE_ACCESS or not registered)
    ):
        if command == "READ CAPACITY(10)":  # a plain read to LIO 6.1; 6.12 allows it
            return D.READ_CAPACITY_10_CONFLICT
        return D.READ_CAPACITY_16_CONFLICT
    if command.startswith("MODE SENSE") and type_ == T.EXCLUSIVE_ACCESS and registered:
        return D.MODE_SENSE_ALLOWED
    if command.startswith("SYNCHRONIZE CACHE") and we_family and not registered:
        return D.NO_DATA_BY_DIRECTION
    if command == "VERIFY(10)" and type_ == T.WRITE_EXCLUSIVE and registered:
        return D.NO_DATA_BY_DIRECTION
    return None


SITUATIONS = [(type_, registered) for type_ in T for registered in (True, False)]


def situation_id(type_: T, registered: bool) -> str:
    return f"{type_.abbreviation}-{'registered' if registered else 'unregistered'}"


def deviating() -> list[object]:
    """One case per (situation, command) where LIO departs from the table."""
    return [
        pytest.param(
            type_, registered, command,
            marks=pytest.mark.lio_deviation(deviation.name),
            id=f"{situation_id(type_, registered)}-{command}",
        )
        for type_, registered in SITUATIONS
        for command in COMMANDS
        if (deviation := lio_exception(command, type_, registered)) is not None
    ]  # fmt: skip


def _non_holder_answers(
    nexuses: list,
    type_: T,
    registered: bool,
    commands: list[str],
    profile: Profile = P.SPC5,
) -> list[str]:
    """Reserve as the first initiator, send ``commands`` from the second; return mismatches
    with the table, or with LIO's answer where ``profile`` has the case's deviation."""
    holder, other, _ = nexuses
    register(holder, A)
    if registered:
        register(other, B)
    reserve(holder, A, type_)
    wrong = []
    for command in commands:
        cdb, data, _ = COMMANDS[command]
        r = other.execute(cdb, data)
        want = non_holder_status(command, type_, registered, profile)
        if r.status != want:
            wrong.append(f"{command}: {r}, want {want.name}")
    return wrong


def non_holder_status(command: str, type_: T, registered: bool, profile: Profile) -> Status:
    """The table's answer to ``command`` from an I_T nexus that did not reserve, or LIO's where
    ``profile`` has the case's deviation."""
    holds = registered and type_.all_registrants  # every registrant holds an AR reservation
    conflict = not holds and conflicts(COMMANDS[command][2], type_, registered)
    deviation = lio_exception(command, type_, registered)
    if deviation is not None and deviation in profile:
        conflict = not conflict  # where LIO deviates it answers the opposite
    return Status.RESERVATION_CONFLICT if conflict else Status.GOOD


# One test per situation, every command inside it: on a real LUN each test pays for a PR reset,
# so 12 tests rather than 168. The commands where LIO deviates are checked separately below, so
# that each deviation is its own strict xfail.
@pytest.mark.parametrize(
    ("type_", "registered"),
    [pytest.param(t, r, id=situation_id(t, r)) for t, r in SITUATIONS],
)
def test_non_holder(nexuses: list, type_: T, registered: bool) -> None:
    commands = [c for c in COMMANDS if lio_exception(c, type_, registered) is None]
    assert _non_holder_answers(nexuses, type_, registered, commands) == []


@pytest.mark.parametrize(("type_", "registered", "command"), deviating())
def test_non_holder_where_lio_deviates(
    nexuses: list, type_: T, registered: bool, command: str, device_profile: Profile
) -> None:
    answers = _non_holder_answers(nexuses, type_, registered, [command], device_profile)
    assert answers == []


IO_BY_ONE_PATH = pytest.mark.path_limit(L.MPATH_IO_BY_ONE_PATH.name)


def io_path_is_holder(it: object, reader: object, path_limits: frozenset[str]) -> bool:
    """Whether ``it``'s non-PR commands leave by the I_T nexus holding the reservation it
    took (always, but on a multipath host whose library reserved through another path)."""
    return L.MPATH_IO_BY_ONE_PATH.name not in path_limits or io_path_holds(it, reader)


@IO_BY_ONE_PATH
@pytest.mark.parametrize("type_", list(T), ids=lambda t: t.abbreviation)
def test_holder_is_never_in_conflict(
    nexuses: list, type_: T, device_profile: Profile, path_limits: frozenset[str]
) -> None:
    holder = nexuses[0]
    register(holder, A)
    reserve(holder, A, type_)
    by_holder = io_path_is_holder(holder, nexuses[2], path_limits)
    wrong = []
    for name, (cdb, data, _) in COMMANDS.items():
        # a multipath host's other path holds: its commands are a registered non-holder's
        want = Status.GOOD if by_holder else non_holder_status(name, type_, True, device_profile)
        if (r := holder.execute(cdb, data)).status != want:
            wrong.append(f"{name}: {r}, want {want.name}")
    assert wrong == []


# -- unit attentions -------------------------------------------------------------------------
def _preempted(nexuses: list) -> None:
    """b ends with REGISTRATIONS PREEMPTED pending."""
    a, b, _ = nexuses
    register(a, A)
    register(b, B)
    expect_good(prout(a, SA.PREEMPT, A, B, T.WRITE_EXCLUSIVE))


def test_unit_attention_comes_before_reservation_conflict(nexuses: list) -> None:
    a, b, _ = nexuses
    _preempted(nexuses)
    reserve(a, A, T.EXCLUSIVE_ACCESS)
    expect_ua(b.execute(C.read_10(0, 1)), REGISTRATIONS_PREEMPTED)
    expect_conflict(b.execute(C.read_10(0, 1)))


def test_inquiry_neither_reports_nor_clears(nexuses: list) -> None:
    b = nexuses[1]
    _preempted(nexuses)
    expect_good(b.execute(C.inquiry()))
    expect_ua(b.execute(C.test_unit_ready()), REGISTRATIONS_PREEMPTED)
    expect_good(b.execute(C.test_unit_ready()))


def test_request_sense_reports_and_clears(nexuses: list) -> None:
    b = nexuses[1]
    _preempted(nexuses)
    r = expect_good(b.execute(C.request_sense(18)))
    assert r.data[0] & 0x7F == 0x70, "fixed format sense data"
    assert (r.data[2] & 0x0F, r.data[12], r.data[13]) == (SenseKey.UNIT_ATTENTION, 0x2A, 0x05)
    expect_good(b.execute(C.test_unit_ready()))


@pytest.mark.path_limit(L.IOCTL_UNIT_ATTENTION_LOST.name)
def test_pr_out_reports_pending_unit_attention(nexuses: list, path_limits: frozenset[str]) -> None:
    b = nexuses[1]
    _preempted(nexuses)
    r = prout(b, SA.REGISTER, 0, B)
    if L.IOCTL_UNIT_ATTENTION_LOST.name in path_limits:
        expect_good(r)  # the unit attention went with the first try; the second registered B
        assert B in read_keys(b)[1]
        return
    expect_ua(r, REGISTRATIONS_PREEMPTED)
    expect_good(prout(b, SA.REGISTER, 0, B))


@pytest.mark.lio_deviation(D.UA_CLEARS_ALL.name)
def test_unit_attentions_reported_one_at_a_time(nexuses: list, device_profile: Profile) -> None:
    a, b, c = nexuses
    register(a, A)
    register(b, B)
    reserve(a, A, T.WRITE_EXCLUSIVE_REGISTRANTS_ONLY)
    expect_good(prout(a, SA.RELEASE, A, 0, T.WRITE_EXCLUSIVE_REGISTRANTS_ONLY))
    expect_good(prout(a, SA.CLEAR, A))
    seen = drain(b)
    if D.UA_CLEARS_ALL in device_profile:
        assert seen == [(0x2A, 0x04)], "LIO: the oldest is reported, both are cleared"
    else:
        assert sorted(seen) == sorted([(0x2A, 0x04), (0x2A, 0x03)])
    assert drain(c) == []


@pytest.mark.path_limit(L.MPATH_UNIT_ATTENTION_OF_EVERY_PATH.name)
def test_unit_attention_is_per_i_t_nexus(nexuses: list, path_limits: frozenset[str]) -> None:
    a, b, c = nexuses
    register(a, A)
    register(b, B)
    expect_good(prout(a, SA.CLEAR, A))
    expect_ua(b.execute(C.test_unit_ready()), RESERVATIONS_PREEMPTED)
    if io_path_told(a, path_limits):
        # the CLEAR left by a's first path; its I/O path, registered too, was told
        expect_ua(a.execute(C.test_unit_ready()), RESERVATIONS_PREEMPTED)
    expect_good(a.execute(C.test_unit_ready()))
    expect_good(c.execute(C.test_unit_ready()))


def test_release_ua_only_for_registrants(nexuses: list) -> None:
    a, b, c = nexuses
    register(a, A)
    register(b, B)
    reserve(a, A, T.EXCLUSIVE_ACCESS_ALL_REGISTRANTS)
    expect_good(prout(b, SA.RELEASE, B, 0, T.EXCLUSIVE_ACCESS_ALL_REGISTRANTS))
    expect_ua(a.execute(C.test_unit_ready()), RESERVATIONS_RELEASED)
    assert drain(b) == [] and drain(c) == []


# -- SPC-2 RESERVE(6)/RELEASE(6) and Compatible Reservation Handling (SPC-5 5.14.3) -----------
@pytest.fixture
def spc2(nexuses: list) -> Iterator[list]:
    """The initiators; afterwards every one sends RELEASE(6), so that a failing test does not
    leave an SPC-2 reservation behind for the next test on a shared LUN."""
    yield nexuses
    for it in nexuses:
        it.execute(C.release_6())


def test_reserve_6_excludes_others(spc2: list) -> None:
    a, b, _ = spc2
    expect_good(a.execute(C.reserve_6()))
    expect_conflict(b.execute(C.read_10(0, 1)))
    expect_conflict(b.execute(C.write_10(0, 1), bytes(BLOCK)))
    expect_good(b.execute(C.inquiry()))
    expect_good(a.execute(C.read_10(0, 1)))
    expect_good(a.execute(C.release_6()))
    expect_good(b.execute(C.read_10(0, 1)))


def test_reserve_6_conflicts_with_pr_out(spc2: list) -> None:
    a, b, _ = spc2
    expect_good(a.execute(C.reserve_6()))
    expect_conflict(prout(b, SA.REGISTER, 0, B))
    expect_good(a.execute(C.release_6()))
    register(b, B)


def test_reserve_6_conflicts_once_registrations_exist(spc2: list) -> None:
    a, b, _ = spc2
    register(a, A)
    expect_conflict(b.execute(C.reserve_6()))


@pytest.mark.lio_deviation(D.CRH_HOLDER_ONLY.name)
@pytest.mark.parametrize(
    "type_",
    [T.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, T.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY,
     T.WRITE_EXCLUSIVE_ALL_REGISTRANTS, T.EXCLUSIVE_ACCESS_ALL_REGISTRANTS],
    ids=lambda t: t.abbreviation,
)  # fmt: skip
@IO_BY_ONE_PATH
def test_reserve_6_by_registrant_under_registrants_types(
    spc2: list, type_: T, device_profile: Profile, path_limits: frozenset[str]
) -> None:
    """SPC-5 5.14.3: RESERVE(6)/RELEASE(6) from a registrant that did not reserve, under a
    registrants-only or all-registrants reservation, is GOOD and changes nothing; LIO exempts
    only the registrant it files as holder."""
    a, b, _ = spc2
    register(a, A)
    register(b, B)
    reserve(a, A, type_)
    want = device_profile.choose(D.CRH_HOLDER_ONLY, Status.GOOD, Status.RESERVATION_CONFLICT)
    assert b.execute(C.reserve_6()).status == want
    assert b.execute(C.release_6()).status == want
    # the holder is exempt on both (a multipath host's I/O path may be a mere registrant)
    own = Status.GOOD if io_path_is_holder(a, spc2[2], path_limits) else want
    assert a.execute(C.reserve_6()).status == own
    assert a.execute(C.release_6()).status == own
    expect_good(b.execute(C.write_10(0, 1), bytes(BLOCK)))  # no SPC-2 reservation was made


@IO_BY_ONE_PATH
def test_reserve_6_by_pr_holder_is_a_no_op(spc2: list, path_limits: frozenset[str]) -> None:
    a, b, c = spc2
    register(a, A)
    reserve(a, A, T.WRITE_EXCLUSIVE)
    # a multipath host's I/O path may be a registered non-holder: RESERVE(6) conflicts
    own = Status.GOOD if io_path_is_holder(a, c, path_limits) else Status.RESERVATION_CONFLICT
    assert a.execute(C.reserve_6()).status == own
    expect_good(c.execute(C.read_10(0, 1)))  # still just Write Exclusive
    assert a.execute(C.release_6()).status == own
    expect_conflict(b.execute(C.write_10(0, 1), bytes(BLOCK)))
