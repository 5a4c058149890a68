"""LIO's known deviations from SPC-5, as branches the oracle admits only when asked to.

``OracleWithDeviations`` extends the SPC reading (``oracle.Oracle``) with what LIO was measured
doing instead, each branch tagged with its deviation. The machine accepts a tagged branch only
when the harness lists the tag in ``Target.deviations`` (``LIO_DEVIATIONS`` on LIO backends),
so on the model every deviation still fails. Two deviations are not PR OUT results and are
read by the rules themselves: ``DEV_UA_CLEARS_ALL`` and ``DEV_READ_CAPACITY_CONFLICT``.

Each override appends its branches after the SPC ones: when several branches fit an answer,
the machine reads the PR state back to choose, and keeps the first (the standard's) on a tie.
"""

from __future__ import annotations

import copy

from pr_machine.oracle import (
    CONFLICT,
    GOOD,
    REGISTRATIONS_PREEMPTED,
    Branch,
    Oracle,
    Outcome,
    PRState,
)
from scsi_pr.sim.constants import ReservationType, SenseKey, Status

# Tags of known deviations (spc-persistent-reservations.md §11, lio-rig.md "Measured").
DEV_RELEASE_WRONG_TYPE = "release-wrong-type-conflict"  # §11 row 1
DEV_UNREGISTERED_NOT_READY = "unregistered-not-ready"  # §11 row 2
DEV_UNREGISTER_GENERATION = "unregister-keeps-generation"  # §11 row 3
DEV_MOVE_WITHOUT_RESERVATION = "register-and-move-no-pr-invalid-cdb"  # §11 row 4
DEV_UA_CLEARS_ALL = "ua-report-clears-all"  # §11 row 11
DEV_PREEMPT_KEEPS_ISSUER = "preempt-keeps-issuer-registration"  # §4 AR table, LIO
DEV_READ_CAPACITY_CONFLICT = "read-capacity-conflicts-under-ea"  # §11 row 21, measured on 6.1
# Found by this machine on Debian's 6.1 (LIO keeps one holder pointer even for AR types, §5):
DEV_RELEASE_SKIPS_KEY_CHECK = "release-by-non-holder-skips-key-check"
DEV_AR_PREEMPT_TAKES_OVER = "all-registrants-preempt-by-key-takes-reservation"
LIO_DEVIATIONS = frozenset(
    {
        DEV_RELEASE_WRONG_TYPE,
        DEV_UNREGISTERED_NOT_READY,
        DEV_UNREGISTER_GENERATION,
        DEV_MOVE_WITHOUT_RESERVATION,
        DEV_UA_CLEARS_ALL,
        DEV_PREEMPT_KEEPS_ISSUER,
        DEV_READ_CAPACITY_CONFLICT,
        DEV_RELEASE_SKIPS_KEY_CHECK,
        DEV_AR_PREEMPT_TAKES_OVER,
    }
)

# Answers only LIO gives where SPC-5 wants another.
INVALID_FIELD_IN_CDB = Outcome(Status.CHECK_CONDITION, (SenseKey.ILLEGAL_REQUEST, 0x24, 0x00))
LU_COMMUNICATION_FAILURE = Outcome(Status.CHECK_CONDITION, (SenseKey.NOT_READY, 0x08, 0x00))


class OracleWithDeviations(Oracle):
    """The SPC-5 reading plus LIO's measured answers, each tagged with its deviation."""

    @classmethod
    def _key_check(cls, s: PRState, i: int, rk: int) -> list[Branch] | None:
        """LIO: NOT READY for an unregistered nexus when no PR is held."""
        out = super()._key_check(s, i, rk)
        if out is not None and i not in s.keys and s.reservation is None:
            out.append(Branch(LU_COMMUNICATION_FAILURE, s, DEV_UNREGISTERED_NOT_READY))
        return out

    @classmethod
    def register(
        cls, s: PRState, i: int, rk: int, sark: int, aptpl: bool, ignore_existing: bool
    ) -> list[Branch]:
        """LIO: unregistering leaves PRgeneration where it was."""
        out = super().register(s, i, rk, sark, aptpl, ignore_existing)
        key_accepted = ignore_existing or rk == s.keys.get(i, 0)
        if key_accepted and i in s.keys and sark == 0:
            kept = copy.deepcopy(out[0].state)
            kept.generation = s.generation
            out.append(Branch(GOOD, kept, DEV_UNREGISTER_GENERATION))
        return out

    @classmethod
    def release(cls, s: PRState, i: int, rk: int, type_: ReservationType) -> list[Branch]:
        """LIO: a registered non-holder's RELEASE succeeds before its key is compared; the
        holder's RELEASE of another TYPE conflicts instead of INVALID RELEASE OF PERSISTENT
        RESERVATION."""
        out = super().release(s, i, rk, type_)
        if cls._key_check(s, i, rk) is not None:
            if i in s.keys and i not in s.holders():
                out.append(Branch(GOOD, s, DEV_RELEASE_SKIPS_KEY_CHECK))
        elif s.reservation is not None and i in s.holders() and s.reservation[1] != type_:
            out.append(Branch(CONFLICT, s, DEV_RELEASE_WRONG_TYPE))
        return out

    @classmethod
    def preempt(
        cls, s: PRState, i: int, rk: int, sark: int, type_: ReservationType
    ) -> list[Branch]:
        """LIO, preempting an all-registrants reservation by a registrant's key (SPC: remove
        registrations only): it may take the reservation over, and it never removes the
        issuer."""
        out = super().preempt(s, i, rk, sark, type_)
        res = s.reservation
        removed = [j for j in s.keys if s.keys[j] == sark]
        by_key = res is not None and res[1].all_registrants and sark != 0 and removed
        if cls._key_check(s, i, rk) is not None or not by_key:
            return out
        # SARK equal to the key of the registrant LIO files as "the" holder takes the holder
        # path. Which registrant that is is LIO bookkeeping, so any match is admitted.
        out.append(Branch(GOOD, cls._take_over(s, i, sark, type_), DEV_AR_PREEMPT_TAKES_OVER))
        if i in removed:
            keep = copy.deepcopy(s)
            others = [j for j in removed if j != i]
            keep.remove_registrations(others)
            keep.attention(others, REGISTRATIONS_PREEMPTED)
            # Measured on 6.1: GOOD even when the issuer was the only match; whether PRgeneration
            # moves then is not known, so both are admitted (READ KEYS tells them apart).
            out.append(Branch(GOOD, copy.deepcopy(keep), DEV_PREEMPT_KEEPS_ISSUER))
            keep.bump()
            out.append(Branch(GOOD, keep, DEV_PREEMPT_KEEPS_ISSUER))
        return out

    @classmethod
    def register_and_move(
        cls, s: PRState, i: int, rk: int, sark: int, dest: int, unreg: bool, aptpl: bool
    ) -> list[Branch]:
        """LIO: INVALID FIELD IN CDB when there is no reservation to move."""
        out = super().register_and_move(s, i, rk, sark, dest, unreg, aptpl)
        if cls._key_check(s, i, rk) is None and s.reservation is None:
            out.append(Branch(INVALID_FIELD_IN_CDB, s, DEV_MOVE_WITHOUT_RESERVATION))
        return out
