"""What the PERSISTENT RESERVE OUT test modules share: the types and keys they use, the marks
of the deviations and path limits several of them carry, and the expectations that differ by
device profile or path (``test_conf_register``, ``_reserve``, ``_preempt``, ``_move``).

Those modules check each result's status and sense key/ASC/ASCQ, the PR state read back,
PRgeneration and unit attentions. A test marked ``lio_deviation(NAME)`` asserts LIO's measured
answer where ``device_profile`` has that registry entry (``scsi_pr.sim.profiles``), the
standard's elsewhere."""

from __future__ import annotations

import pytest
from prtest import (
    expect_check,
    expect_conflict,
    expect_refused,
)

from scsi_pr.helper.executors import limits as L
from scsi_pr.sim import deviations as D
from scsi_pr.sim.constants import (
    LUN_COMMUNICATION_FAILURE,
    ReservationType,
    SenseKey,
)
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
GUESSED = pytest.mark.path_limit(L.MPATH_ILLEGAL_REQUEST_GUESSED.name)
SPEC_I_PT_ALL_TG_PT = pytest.mark.path_limit(L.IOCTL_NO_SPEC_I_PT_ALL_TG_PT.name)

RESERVED_TYPE = 0x2  # SPC-5 table 169: obsolete, not a reservation type


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
