"""LIO's known deviations from SPC-5, as branches the oracle admits only when asked to.

``OracleWithDeviations`` extends the SPC reading (``oracle.Oracle``) with what LIO was measured
doing instead, each branch tagged with its deviation. The machine accepts a tagged branch only
when the harness lists the tag in ``Target.deviations`` (``LIO_DEVIATIONS`` where the device's
profile deviates: LIO, or the model under ``--profile lio-6.1``), so on the standard model every
deviation still fails. The tags are the registry's names (``scsi_pr.sim.profiles``). Two
deviations are not PR OUT results and are read by the rules themselves: ``DEV_UA_CLEARS_ALL``
and ``DEV_READ_CAPACITY_10_CONFLICT``.

Each override appends its branches after the SPC ones: when several branches fit an answer,
the machine reads the PR state back to choose, and keeps the first (the standard's) on a tie.
The exception is LIO's scope filed by a REGISTER AND MOVE (``DEV_MOVE_FILES_TYPE_AS_SCOPE``),
which no PR IN shows: its branches come first, so a device that deviates keeps the bookkeeping
(``PRState.lio_scope_from_move``), and on the standard device they are never allowed.
"""

from __future__ import annotations

import copy

from pr_machine.oracle import (
    CONFLICT,
    GOOD,
    INVALID_FIELD_IN_PARAMETER_LIST,
    REGISTRATIONS_PREEMPTED,
    RESERVATIONS_RELEASED,
    Branch,
    Oracle,
    Outcome,
    PRState,
)
from scsi_pr.sim import deviations as D
from scsi_pr.sim.constants import ReservationType, SenseKey, Status

# Tags are the names of the deviations' entries in the registry (scsi_pr.sim.profiles), where
# each has its clause, LIO's measured answer and the conformance test that asserts it.
DEV_RELEASE_WRONG_TYPE = D.RELEASE_WRONG_TYPE.name
DEV_UNREGISTERED_NOT_READY = D.UNREGISTERED_NOT_READY.name
DEV_UNREGISTER_GENERATION = D.UNREGISTER_GENERATION.name
DEV_MOVE_LIST_BEFORE_HOLDER = D.MOVE_LIST_BEFORE_HOLDER.name
DEV_UA_CLEARS_ALL = D.UA_CLEARS_ALL.name
DEV_PREEMPT_KEEPS_ISSUER = D.PREEMPT_KEEPS_ISSUER.name
DEV_READ_CAPACITY_10_CONFLICT = D.READ_CAPACITY_10_CONFLICT.name
DEV_RELEASE_SKIPS_KEY_CHECK = D.RELEASE_SKIPS_KEY_CHECK.name
DEV_AR_PREEMPT_TAKES_OVER = D.AR_PREEMPT_TAKES_OVER.name
DEV_MOVE_FILES_TYPE_AS_SCOPE = D.MOVE_FILES_TYPE_AS_SCOPE.name
#: every tag a LIO profile may allow (the machine itself allows the device profile's own)
LIO_DEVIATIONS = frozenset(d.name for d in D.REGISTRY)

# Answers only LIO gives where SPC-5 wants another.
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
        elif s.reservation is not None and i in s.holders() and _stale_holder(s):
            out.append(Branch(CONFLICT, s, DEV_MOVE_FILES_TYPE_AS_SCOPE))
        return out

    @classmethod
    def reserve(cls, s: PRState, i: int, rk: int, type_: ReservationType) -> list[Branch]:
        """LIO: the holder's RESERVE of its own TYPE conflicts while a move it issued left the
        TYPE as its scope; a RESERVE that creates the reservation files LU_SCOPE anew."""
        out = super().reserve(s, i, rk, type_)
        _reset_scope(out, s, i)
        res = s.reservation
        if (
            cls._key_check(s, i, rk) is None
            and res is not None
            and i in s.holders()
            and res[1] == type_
            and _stale_holder(s)
        ):
            out.append(Branch(CONFLICT, s, DEV_MOVE_FILES_TYPE_AS_SCOPE))
        return out

    @classmethod
    def clear(cls, s: PRState, i: int, rk: int) -> list[Branch]:
        """Every registration goes, and LIO's bookkeeping of their scopes with them."""
        out = super().clear(s, i, rk)
        for b in out:
            if b.outcome == GOOD:
                b.state.lio_scope_from_move.clear()
        return out

    @classmethod
    def preempt(
        cls, s: PRState, i: int, rk: int, sark: int, type_: ReservationType
    ) -> list[Branch]:
        """LIO, preempting an all-registrants reservation by a registrant's key (SPC: remove
        registrations only): it may take the reservation over, and it never removes the
        issuer."""
        out = super().preempt(s, i, rk, sark, type_)
        _reset_scope(out, s, i)
        res = s.reservation
        if (
            cls._key_check(s, i, rk) is None
            and res is not None
            and _stale_holder(s)
            and sark == s.keys[res[0]]  # type: ignore[index]
            and res[1] == type_
        ):
            # preempting a holder whose scope a move filed wrongly: LIO sees a changed scope
            told = copy.deepcopy(cls._take_over(s, i, sark, type_))
            told.lio_scope_from_move.discard(i)
            told.attention([j for j in told.keys if j != i], RESERVATIONS_RELEASED)
            out.insert(0, Branch(GOOD, told, DEV_MOVE_FILES_TYPE_AS_SCOPE))
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
        """LIO: a registered non-holder's bad parameter list is refused before the holder
        check (under WE and EA LIO's own check of a non-holder conflicts first)."""
        out = super().register_and_move(s, i, rk, sark, dest, unreg, aptpl)
        res = s.reservation
        bad_list = sark == 0 or dest == i
        if cls._key_check(s, i, rk) is None and res is not None and res[0] != i and bad_list:
            out.append(Branch(INVALID_FIELD_IN_PARAMETER_LIST, s, DEV_MOVE_LIST_BEFORE_HOLDER))
        moved = [b for b in out if b.outcome == GOOD]
        if moved and not unreg:
            filed = copy.deepcopy(moved[0].state)
            filed.lio_scope_from_move.add(i)
            out.insert(0, Branch(GOOD, filed, DEV_MOVE_FILES_TYPE_AS_SCOPE))
        return out


def _stale_holder(s: PRState) -> bool:
    """Is the holder of a (not all-registrants) reservation one whose scope a move filed?"""
    return s.reservation is not None and s.reservation[0] in s.lio_scope_from_move


def _reset_scope(out: list[Branch], s: PRState, i: int) -> None:
    """LIO files the CDB's scope on whoever a RESERVE or PREEMPT makes the holder."""
    for b in out:
        if b.outcome == GOOD and b.state.reservation not in (None, s.reservation):
            b.state.lio_scope_from_move.discard(i)
