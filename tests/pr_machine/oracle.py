"""The oracle: a second reading of SPC-5 persistent reservations, to check a device against.

Deliberately independent of ``sim/`` (it uses ``scsi_pr.sim`` only for byte layouts and code
points): a reading of SPC-5 5.14 (persistent reservations) and 6.16/6.17 (PR IN/OUT) small
enough to audit, so that a wrong model and a wrong oracle are unlikely to agree by accident.

Each PR OUT service action is one function that returns the admissible ``Branch``es: where the
standard leaves a choice open, several. What LIO does instead is not here but in
``deviations``, which extends this reading with branches tagged by deviation.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

from scsi_pr.sim.constants import ReservationType, SenseKey, Status

# -- outcomes ----------------------------------------------------------------------------
Triple = tuple[int, int, int]


@dataclass(frozen=True)
class Outcome:
    """What a command must return: a status and, for CHECK CONDITION, key/ASC/ASCQ."""

    status: int
    sense: Triple | None = None

    def __str__(self) -> str:
        name = Status(self.status).name
        return (
            name
            if self.sense is None
            else f"{name} {self.sense[0]:X}/{self.sense[1]:02X}h/{self.sense[2]:02X}h"
        )


GOOD = Outcome(Status.GOOD)
CONFLICT = Outcome(Status.RESERVATION_CONFLICT)
INVALID_FIELD_IN_CDB = Outcome(Status.CHECK_CONDITION, (SenseKey.ILLEGAL_REQUEST, 0x24, 0x00))
INVALID_FIELD_IN_PARAMETER_LIST = Outcome(
    Status.CHECK_CONDITION, (SenseKey.ILLEGAL_REQUEST, 0x26, 0x00)
)
INVALID_RELEASE = Outcome(Status.CHECK_CONDITION, (SenseKey.ILLEGAL_REQUEST, 0x26, 0x04))

# Unit attention additional sense codes (SPC-5 annex F) the oracle predicts.
RESERVATIONS_PREEMPTED = (0x2A, 0x03)
RESERVATIONS_RELEASED = (0x2A, 0x04)
REGISTRATIONS_PREEMPTED = (0x2A, 0x05)
POWER_ON_OR_RESET_ASC = 0x29


# -- oracle state ------------------------------------------------------------------------
@dataclass
class PRState:
    """The PR state of one LU as SPC-5 defines it, for initiators numbered 0..n-1 (one I_T
    nexus each)."""

    keys: dict[int, int] = field(default_factory=dict)
    #: (holder index, type); holder is None for all-registrants types (every registrant holds)
    reservation: tuple[int | None, ReservationType] | None = None
    #: None until learnt from the device (after initialisation or a power cycle)
    generation: int | None = None
    aptpl: bool = False
    unit_attentions: dict[int, set[tuple[int, int]]] = field(default_factory=dict)
    #: LIO bookkeeping, empty unless a deviation branch was taken: initiators whose registration
    #: LIO left holding the reservation TYPE as its scope (``deviations``: a move they issued)
    lio_scope_from_move: set[int] = field(default_factory=set)

    def holders(self) -> set[int]:
        if self.reservation is None:
            return set()
        holder, type_ = self.reservation
        return set(self.keys) if type_.all_registrants else {holder}  # type: ignore[arg-type]

    def bump(self) -> None:
        if self.generation is not None:
            self.generation = (self.generation + 1) & 0xFFFFFFFF

    def attention(self, who: Sequence[int], code: tuple[int, int]) -> None:
        for i in who:
            self.unit_attentions.setdefault(i, set()).add(code)

    def remove_registrations(self, who: Sequence[int]) -> None:
        for i in who:
            del self.keys[i]
            self.lio_scope_from_move.discard(i)
        if self.reservation is not None:
            holder, type_ = self.reservation
            if (type_.all_registrants and not self.keys) or (
                not type_.all_registrants and holder not in self.keys
            ):
                self.reservation = None


@dataclass
class Branch:
    """One admissible result of a command: the outcome and the state it leaves."""

    outcome: Outcome
    state: PRState
    deviation: str | None = None


def _same(state: PRState, outcome: Outcome) -> list[Branch]:
    return [Branch(outcome, state)]


class Oracle:
    """SPC-5 PR OUT semantics, one function per service action. Each returns the admissible
    branches; the state passed in is never modified."""

    @classmethod
    def _key_check(cls, s: PRState, i: int, rk: int) -> list[Branch] | None:
        """RESERVATION KEY must match the issuer's registration (SPC-5 6.17.3); an
        unregistered nexus conflicts. None when the key is right."""
        if i not in s.keys or s.keys[i] != rk:
            return _same(s, CONFLICT)
        return None

    @staticmethod
    def register(
        s: PRState, i: int, rk: int, sark: int, aptpl: bool, ignore_existing: bool
    ) -> list[Branch]:
        """REGISTER / REGISTER AND IGNORE EXISTING KEY (SPC-5 5.14.7)."""
        registered = i in s.keys
        if not ignore_existing and rk != s.keys.get(i, 0):
            return _same(s, CONFLICT)
        n = copy.deepcopy(s)
        if not registered:
            if sark == 0:
                # Nothing to do. 6.16.2 counts every REGISTER that completes; LIO does not bump
                # here. Both readings are admissible.
                bumped = copy.deepcopy(s)
                bumped.bump()
                return [Branch(GOOD, n), Branch(GOOD, bumped)]
            n.keys[i] = sark
            n.aptpl = aptpl
            n.bump()
            return [Branch(GOOD, n)]
        n.aptpl = aptpl
        if sark != 0:
            n.keys[i] = sark
            n.bump()
            return [Branch(GOOD, n)]
        # Unregister (5.14.11.2.3): drop the registration; a holder of a non-AR reservation
        # releases it, and for registrants-only types the others get RESERVATIONS RELEASED.
        was_ro_holder = (
            s.reservation is not None
            and s.reservation[0] == i
            and s.reservation[1].registrants_only
        )
        n.remove_registrations([i])
        if was_ro_holder:
            n.attention(list(n.keys), RESERVATIONS_RELEASED)
        n.bump()
        return [Branch(GOOD, n)]

    @classmethod
    def reserve(cls, s: PRState, i: int, rk: int, type_: ReservationType) -> list[Branch]:
        """RESERVE (SPC-5 5.14.9): create, or a no-op for the holder with the same type."""
        if (err := cls._key_check(s, i, rk)) is not None:
            return err
        if s.reservation is None:
            n = copy.deepcopy(s)
            n.reservation = (None if type_.all_registrants else i, type_)
            return [Branch(GOOD, n)]
        if i in s.holders() and s.reservation[1] == type_:
            return _same(s, GOOD)
        return _same(s, CONFLICT)

    @classmethod
    def release(cls, s: PRState, i: int, rk: int, type_: ReservationType) -> list[Branch]:
        """RELEASE (SPC-5 5.14.11.2)."""
        if (err := cls._key_check(s, i, rk)) is not None:
            return err
        if s.reservation is None or i not in s.holders():
            return _same(s, GOOD)
        old = s.reservation[1]
        if old != type_:
            return _same(s, INVALID_RELEASE)
        n = copy.deepcopy(s)
        n.reservation = None
        if old.registrants_only or old.all_registrants:
            n.attention([j for j in n.keys if j != i], RESERVATIONS_RELEASED)
        return [Branch(GOOD, n)]

    @classmethod
    def clear(cls, s: PRState, i: int, rk: int) -> list[Branch]:
        """CLEAR (SPC-5 5.14.11, "clearing"): everything goes, the others hear RESERVATIONS
        PREEMPTED."""
        if (err := cls._key_check(s, i, rk)) is not None:
            return err
        n = copy.deepcopy(s)
        n.attention([j for j in s.keys if j != i], RESERVATIONS_PREEMPTED)
        n.keys.clear()
        n.reservation = None
        n.bump()
        return [Branch(GOOD, n)]

    @classmethod
    def preempt(
        cls, s: PRState, i: int, rk: int, sark: int, type_: ReservationType
    ) -> list[Branch]:
        """PREEMPT / PREEMPT AND ABORT (SPC-5 5.14.11, "preempting", figure "device server
        interpretation of PREEMPT"): the PR effects of both are the same."""
        if (err := cls._key_check(s, i, rk)) is not None:
            return err
        res = s.reservation
        n = copy.deepcopy(s)
        if res is not None and res[1].all_registrants and sark == 0:
            # Preempt an all-registrants reservation: everybody else goes.
            removed = [j for j in s.keys if j != i]
            n.remove_registrations(removed)
            n.reservation = (None if type_.all_registrants else i, type_)
            n.attention(removed, REGISTRATIONS_PREEMPTED)
            n.bump()
            return [Branch(GOOD, n)]
        if res is not None and not res[1].all_registrants and sark == s.keys[res[0]]:  # type: ignore[index]
            return [Branch(GOOD, cls._take_over(s, i, sark, type_))]
        if sark == 0:
            return _same(s, INVALID_FIELD_IN_PARAMETER_LIST)
        # Remove registrations only (5.14.11.2.5): every I_T nexus holding SARK, the issuer
        # included; the reservation is untouched unless its last all-registrants holder goes.
        removed = [j for j in s.keys if s.keys[j] == sark]
        if not removed:
            return _same(s, CONFLICT)
        n.remove_registrations(removed)
        n.attention([j for j in removed if j != i], REGISTRATIONS_PREEMPTED)
        n.bump()
        return [Branch(GOOD, n)]

    @staticmethod
    def _take_over(s: PRState, i: int, sark: int, type_: ReservationType) -> PRState:
        """Preempt the holder (5.14.11.2.4): the others holding SARK go, the issuer holds a new
        reservation of the CDB's TYPE; survivors hear RESERVATIONS RELEASED if TYPE changed."""
        assert s.reservation is not None
        n = copy.deepcopy(s)
        removed = [j for j in s.keys if s.keys[j] == sark and j != i]
        n.remove_registrations(removed)
        n.reservation = (None if type_.all_registrants else i, type_)
        n.attention(removed, REGISTRATIONS_PREEMPTED)
        if type_ != s.reservation[1]:
            n.attention([j for j in n.keys if j != i], RESERVATIONS_RELEASED)
        n.bump()
        return n

    @classmethod
    def register_and_move(
        cls, s: PRState, i: int, rk: int, sark: int, dest: int, unreg: bool, aptpl: bool
    ) -> list[Branch]:
        """REGISTER AND MOVE (SPC-5 5.14.8). A registered non-holder conflicts whatever its
        parameter list (the table of REGISTER AND MOVE behaviours); otherwise several errors
        can apply at once and SPC does not order them, so any applicable one is admissible."""
        if (err := cls._key_check(s, i, rk)) is not None:
            return err
        res = s.reservation
        if res is not None and (res[1].all_registrants or res[0] != i):
            return [Branch(CONFLICT, s)]
        errors: list[Branch] = []
        if sark == 0 or dest == i:
            errors.append(Branch(INVALID_FIELD_IN_PARAMETER_LIST, s))
        if res is None:
            errors.append(Branch(INVALID_FIELD_IN_CDB, s))
        if errors:
            return errors
        assert res is not None
        n = copy.deepcopy(s)
        n.keys[dest] = sark
        n.reservation = (dest, res[1])
        if unreg:
            del n.keys[i]
        n.aptpl = aptpl
        n.bump()
        return [Branch(GOOD, n)]


# -- conflict table for media commands (SPC-5 5.14.3, table "persistent reservation conflicts")
#: per command class: does a non-holder conflict, by (type, registered)?
READS = "read"
WRITES = "write"
ALWAYS = "always"


def media_conflicts(kind: str, type_: ReservationType, registered: bool) -> bool:
    """True when a non-holder's command of this kind gets RESERVATION CONFLICT."""
    if kind == ALWAYS:
        return False
    if type_ == ReservationType.WRITE_EXCLUSIVE:
        return kind == WRITES
    if type_ == ReservationType.EXCLUSIVE_ACCESS:
        return True
    if registered:  # registrants-only and all-registrants types let registrants in
        return False
    exclusive_access = type_ in (
        ReservationType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY,
        ReservationType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS,
    )
    return exclusive_access or kind == WRITES
