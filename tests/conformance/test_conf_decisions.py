"""Decisions the mutation run found unpinned (issue 12): each test asserts the standard's answer
where a one-line change to the model went unnoticed by every other test.

- Compatible Reservation Handling exempts a *registrant* under a registrants-only reservation,
  not only the holder (SPC-5 5.14.3 b).
- The same unit attention condition is not queued twice for one I_T nexus (SAM-5 5.14;
  docs/model.md "Unit attentions").
- While an SPC-2 reservation exists, PERSISTENT RESERVE IN and OUT conflict from every I_T
  nexus, the SPC-2 holder's own included (SPC-5 5.14.3).

Decisions only the model can be driven into (lost PR information, one initiator on two ports)
are pinned in ``tests/sim/test_model_decisions.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prtest import (
    IN,
    SA,
    drain,
    expect_conflict,
    expect_good,
    io_path_told,
    mpath_release_outcomes,
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
    ReservationType,
    Status,
)
from scsi_pr.sim.profiles import Profile

T = ReservationType
A, B, C3 = 0xA, 0xB, 0xC
BLOCK = 512
RESERVATIONS_RELEASED_UA = (0x2A, 0x04)


@pytest.fixture
def spc2(nexuses: list) -> Iterator[list]:
    """The initiators; afterwards each sends RELEASE(6), so a failing test leaves no SPC-2
    reservation behind on a shared LUN."""
    yield nexuses
    for it in nexuses:
        it.execute(C.release_6())


# -- SPC-5 5.14.3: exceptions to SPC-2 RESERVE and RELEASE (CRH=1) ---------------------------
@pytest.mark.parametrize(
    "type_",
    [T.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, T.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY],
    ids=lambda t: t.abbreviation,
)
@pytest.mark.lio_deviation(D.CRH_HOLDER_ONLY.name)
def test_registrant_under_registrants_only_reserve_6_is_good_and_changes_nothing(
    spc2: list, type_: T, device_profile: Profile
) -> None:
    """5.14.3 b): RESERVE/RELEASE(6) from a registered I_T nexus while a registrants-only
    reservation exists complete with GOOD; no SPC-2 reservation is made, the persistent
    reservation stays. (LIO: RESERVATION CONFLICT, and likewise nothing changes.)"""
    a, b, c = spc2
    register(a, A)
    register(b, B)
    reserve(a, A, type_)
    want = device_profile.choose(D.CRH_HOLDER_ONLY, Status.GOOD, Status.RESERVATION_CONFLICT)
    assert b.execute(C.reserve_6()).status == want
    # no SPC-2 reservation: B's fellow registrant and the holder still get through
    expect_good(a.execute(C.write_10(0, 1), bytes(BLOCK)))
    expect_good(b.execute(C.write_10(0, 1), bytes(BLOCK)))
    expect_good(c.execute(C.inquiry()))
    assert b.execute(C.release_6()).status == want
    assert read_reservation(a)[1] == (A, type_)
    expect_conflict(c.execute(C.write_10(0, 1), bytes(BLOCK)))


def test_registrant_under_write_exclusive_is_not_exempt(spc2: list) -> None:
    """A registered non-holder under Write Exclusive is neither a) nor b) of 5.14.3: its
    RESERVE(6) is processed as SPC-2 says, and registrations exist, so it conflicts."""
    a, b, c = spc2
    register(a, A)
    register(b, B)
    reserve(a, A, T.WRITE_EXCLUSIVE)
    expect_conflict(b.execute(C.reserve_6()))
    expect_good(c.execute(C.read_10(0, 1)))  # and nothing was reserved on the way
    assert read_reservation(a)[1] == (A, T.WRITE_EXCLUSIVE)


def test_spc2_holder_own_persistent_reserve_commands_conflict(spc2: list) -> None:
    """SPC-2 reservation held: PR IN and PR OUT conflict regardless of the I_T nexus."""
    a, b, _ = spc2
    expect_good(a.execute(C.reserve_6()))
    expect_conflict(a.execute(C.persistent_reserve_in(IN.READ_KEYS)))
    expect_conflict(prout(a, SA.REGISTER, 0, A))
    expect_conflict(b.execute(C.persistent_reserve_in(IN.READ_KEYS)))
    expect_good(a.execute(C.read_10(0, 1)))
    expect_good(a.execute(C.release_6()))
    assert read_keys(a)[1] == []  # the conflicting REGISTER changed nothing
    register(a, A)


# -- SAM-5 5.14: one condition is queued once per I_T nexus -----------------------------------
@pytest.mark.path_limit(L.MPATH_UNIT_ATTENTION_OF_EVERY_PATH.name)
def test_the_same_unit_attention_is_not_queued_twice(
    nexuses: list, path_limits: frozenset[str]
) -> None:
    """Two releases of a registrants-only reservation before B looks: B has one RESERVATIONS
    RELEASED to report, not two."""
    a, b, c = nexuses
    register(a, A)
    register(b, B)
    for _ in range(2):
        reserve(a, A, T.WRITE_EXCLUSIVE_REGISTRANTS_ONLY)
        expect_good(prout(a, SA.RELEASE, A, 0, T.WRITE_EXCLUSIVE_REGISTRANTS_ONLY))
    assert drain(b) == [RESERVATIONS_RELEASED_UA]
    own: tuple[list, ...] = ([],)
    if io_path_told(a, path_limits):
        # the releases left by a's first path; its I/O path, another registrant, may be told
        # (once: never twice), as the library's RELEASE down that path raced the holder's
        own = mpath_release_outcomes()
    assert drain(a) in own and drain(c) == []
