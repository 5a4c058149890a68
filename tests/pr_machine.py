"""A hypothesis state machine that checks any PR device against an oracle written from SPC-5.

Reusable on every backend: the machine reaches the device only through one callable,
``execute(initiator_index, cdb, data) -> CommandResult`` (plus an optional ``power_cycle``), so
the same rules can drive the in-process model or, step by step, a LIO LUN in a VM.

The oracle (``Oracle`` and ``PRState`` below) is deliberately independent of ``sim/``: it is a
second reading of SPC-5 5.14 (persistent reservations) and 6.16/6.17 (PR IN/OUT), small enough
to audit, so that a wrong model and a wrong oracle are unlikely to agree by accident. It uses
``scsi_pr.sim.cdb``/``scsi_pr.sim.constants`` only for byte layouts and code points.

Where the standard leaves a choice open, or a known backend deviates, a step predicts several
``Branch``es; the observed status/sense, and then the PR state read back through PR IN, pick the
branch that happened. Deviation branches are accepted only when the harness lists their tag in
``Target.deviations`` (LIO's tags are in ``LIO_DEVIATIONS``).

Invariants checked after every step, on what the device reports (not on the oracle alone):
PRgeneration never decreases (between power cycles) and equals the oracle's; the reservation
holder is registered; READ KEYS equals the set of registrations; READ FULL STATUS names exactly
the registered I_T nexuses with their TransportIDs and relative target ports; media commands
conflict exactly where the conflict table says; no exception.
"""

from __future__ import annotations

import copy
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from hypothesis import note
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from scsi_pr.sim import cdb as C
from scsi_pr.sim.constants import (
    PersistentReserveInAction,
    PersistentReserveOutAction,
    ReservationType,
    SenseKey,
    Status,
)
from scsi_pr.sim.result import CommandResult
from scsi_pr.sim.transportid import TransportId

SA = PersistentReserveOutAction

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
INVALID_FIELD_IN_PARAMETER_LIST = Outcome(
    Status.CHECK_CONDITION, (SenseKey.ILLEGAL_REQUEST, 0x26, 0x00)
)
INVALID_RELEASE = Outcome(Status.CHECK_CONDITION, (SenseKey.ILLEGAL_REQUEST, 0x26, 0x04))
INVALID_FIELD_IN_CDB = Outcome(Status.CHECK_CONDITION, (SenseKey.ILLEGAL_REQUEST, 0x24, 0x00))
LU_COMMUNICATION_FAILURE = Outcome(Status.CHECK_CONDITION, (SenseKey.NOT_READY, 0x08, 0x00))

# Unit attention additional sense codes (SPC-5 annex F) the oracle predicts.
RESERVATIONS_PREEMPTED = (0x2A, 0x03)
RESERVATIONS_RELEASED = (0x2A, 0x04)
REGISTRATIONS_PREEMPTED = (0x2A, 0x05)
POWER_ON_OR_RESET_ASC = 0x29

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

    @staticmethod
    def _key_check(s: PRState, i: int, rk: int) -> list[Branch] | None:
        """RESERVATION KEY must match the issuer's registration (SPC-5 5.14.11.1); an
        unregistered nexus conflicts (LIO: NOT READY when no PR is held)."""
        if i not in s.keys:
            out = [Branch(CONFLICT, s)]
            if s.reservation is None:
                out.append(Branch(LU_COMMUNICATION_FAILURE, s, DEV_UNREGISTERED_NOT_READY))
            return out
        if s.keys[i] != rk:
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
        lio = copy.deepcopy(n)
        n.bump()
        return [Branch(GOOD, n), Branch(GOOD, lio, DEV_UNREGISTER_GENERATION)]

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
        """RELEASE (SPC-5 5.14.11.2.2)."""
        if (err := cls._key_check(s, i, rk)) is not None:
            if i in s.keys and i not in s.holders():
                # LIO finds "not the holder, nothing to do" before it compares the key.
                err.append(Branch(GOOD, s, DEV_RELEASE_SKIPS_KEY_CHECK))
            return err
        if s.reservation is None or i not in s.holders():
            return _same(s, GOOD)
        old = s.reservation[1]
        if old != type_:
            return [Branch(INVALID_RELEASE, s), Branch(CONFLICT, s, DEV_RELEASE_WRONG_TYPE)]
        n = copy.deepcopy(s)
        n.reservation = None
        if old.registrants_only or old.all_registrants:
            n.attention([j for j in n.keys if j != i], RESERVATIONS_RELEASED)
        return [Branch(GOOD, n)]

    @classmethod
    def clear(cls, s: PRState, i: int, rk: int) -> list[Branch]:
        """CLEAR (SPC-5 5.14.11.2.6): everything goes, the others hear RESERVATIONS PREEMPTED."""
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
        """PREEMPT / PREEMPT AND ABORT (SPC-5 5.14.11.2.4, figure "device server
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
        out = [Branch(GOOD, n)]
        if res is not None and res[1].all_registrants:
            # LIO: SARK equal to the key of the registrant it files as "the" holder takes the
            # holder path. Which registrant that is is LIO bookkeeping, so any match is admitted.
            out.append(Branch(GOOD, cls._take_over(s, i, sark, type_), DEV_AR_PREEMPT_TAKES_OVER))
        if i in removed and res is not None and res[1].all_registrants:
            # LIO never removes the issuer, itself a holder of an all-registrants reservation.
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
        """REGISTER AND MOVE (SPC-5 5.14.10). Several errors can apply at once and SPC does not
        order all of them, so any applicable one is admissible."""
        if (err := cls._key_check(s, i, rk)) is not None:
            return err
        errors: list[Branch] = []
        if sark == 0 or dest == i:
            errors.append(Branch(INVALID_FIELD_IN_PARAMETER_LIST, s))
        res = s.reservation
        if res is None:
            errors.append(Branch(CONFLICT, s))
            errors.append(Branch(INVALID_FIELD_IN_CDB, s, DEV_MOVE_WITHOUT_RESERVATION))
        elif res[1].all_registrants or res[0] != i:
            errors.append(Branch(CONFLICT, s))
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


# -- the device under test -----------------------------------------------------------------
@dataclass
class Target:
    """How the machine reaches a device: one execute call, the initiators' identities, and
    optionally a power cycle. ``deviations`` lists the tags of known deviations to accept."""

    execute: Callable[[int, bytes, bytes], CommandResult]
    transport_ids: Sequence[TransportId]
    relative_target_ports: Sequence[int]
    power_cycle: Callable[[], None] | None = None
    deviations: frozenset[str] = frozenset()
    preempt_and_abort: bool = True

    @classmethod
    def from_initiators(
        cls,
        initiators: Sequence[object],
        power_cycle: Callable[[], None] | None = None,
        deviations: frozenset[str] = frozenset(),
        preempt_and_abort: bool = True,
    ) -> Target:
        """Wrap rig initiators (``.execute(cdb, data)``, ``.transport_id``,
        ``.relative_target_port``)."""
        its = list(initiators)
        return cls(
            execute=lambda i, cdb, data: its[i].execute(cdb, data),  # type: ignore[attr-defined]
            transport_ids=[it.transport_id for it in its],  # type: ignore[attr-defined]
            relative_target_ports=[it.relative_target_port for it in its],  # type: ignore[attr-defined]
            power_cycle=power_cycle,
            deviations=deviations,
            preempt_and_abort=preempt_and_abort,
        )


@dataclass(frozen=True)
class Observed:
    """PR state as the device reports it through PR IN."""

    generation: int
    keys: tuple[int, ...]
    reservation: tuple[int, int] | None  # (key, type)
    full_status: frozenset[tuple[int, bool, int, int, bytes]]  # key, R_HOLDER, type, RTPI, TID


def parse_read_keys(data: bytes) -> tuple[int, list[int]]:
    generation, length = struct.unpack_from(">II", data)
    assert length % 8 == 0, f"READ KEYS ADDITIONAL LENGTH {length} not a multiple of 8"
    assert len(data) == 8 + length, "READ KEYS data shorter than its ADDITIONAL LENGTH"
    return generation, [int.from_bytes(data[o : o + 8], "big") for o in range(8, 8 + length, 8)]


def parse_read_reservation(data: bytes) -> tuple[int, tuple[int, int] | None]:
    generation, length = struct.unpack_from(">II", data)
    if length == 0:
        assert len(data) == 8
        return generation, None
    assert length == 16 and len(data) == 24, f"READ RESERVATION length {length}"
    assert data[21] >> 4 == 0, "SCOPE must be LU_SCOPE"
    return generation, (int.from_bytes(data[8:16], "big"), data[21] & 0x0F)


def parse_read_full_status(
    data: bytes,
) -> tuple[int, list[tuple[int, bool, bool, int, int, bytes]]]:
    """(generation, [(key, ALL_TG_PT, R_HOLDER, type, RTPI, TransportID)])."""
    generation, length = struct.unpack_from(">II", data)
    assert len(data) == 8 + length, "READ FULL STATUS data shorter than its ADDITIONAL LENGTH"
    out = []
    offset = 8
    while offset < 8 + length:
        key = int.from_bytes(data[offset : offset + 8], "big")
        flags, scope_type = data[offset + 12], data[offset + 13]
        rtpi = int.from_bytes(data[offset + 18 : offset + 20], "big")
        tid_len = int.from_bytes(data[offset + 20 : offset + 24], "big")
        tid = data[offset + 24 : offset + 24 + tid_len]
        out.append((key, bool(flags & 2), bool(flags & 1), scope_type & 0x0F, rtpi, tid))
        offset += 24 + tid_len
    assert offset == 8 + length, "descriptors overrun ADDITIONAL LENGTH"
    return generation, out


KEYS = (0x1, 0x2, 0xA1B2_0000_0000_0003)
KEY_CHOICES = st.sampled_from((0, *KEYS))
#: "own" resolves to the issuer's registered key (0 if unregistered), so most commands pass
#: the key check and reach the interesting paths
RK_CHOICES = st.sampled_from(("own", "own", "own", 0, *KEYS))
TYPES = st.sampled_from(list(ReservationType))
LBAS = st.integers(0, 3)
MEDIA = {
    "READ(10)": READS,
    "WRITE(10)": WRITES,
    "TEST UNIT READY": ALWAYS,
    "INQUIRY": ALWAYS,
    "READ CAPACITY(10)": ALWAYS,
}
#: commands that neither report nor clear a unit attention (SAM-5 5.14)
UA_EXEMPT = {"INQUIRY"}
MAX_DRAIN = 16
CLEAN_KEY = 0x5C5150_C1EA2
POWER_CYCLE_ODDS = 5


class PRMachine(RuleBasedStateMachine):
    """Random PR OUT service actions and media I/O from several initiators, each result
    checked against the oracle; PR state read back and checked after every step."""

    def __init__(self, target: Target) -> None:
        super().__init__()
        self.t = target
        self.n = len(target.transport_ids)
        assert self.n >= 3, "the machine needs at least 3 initiators"
        self.s = PRState()
        self.medium: dict[int, bytes] = {}
        self.block_size = 512
        self.write_serial = 0
        self.last_generation: int | None = None
        self.reader = 0

    initiators = Bundle("initiators")

    # -- plumbing --------------------------------------------------------------------------
    def _execute(self, i: int, cdb: bytes, data: bytes = b"") -> CommandResult:
        result = self.t.execute(i, cdb, data)
        assert isinstance(result, CommandResult), f"execute returned {result!r}"
        return result

    @staticmethod
    def _outcome(result: CommandResult) -> Outcome:
        if result.status != Status.CHECK_CONDITION:
            return Outcome(int(result.status))
        sense = result.sense_data
        assert sense is not None, f"CHECK CONDITION without parseable sense: {result.sense.hex()}"
        return Outcome(Status.CHECK_CONDITION, sense.triple)

    def _drain(self, i: int) -> list[tuple[int, int]]:
        """TEST UNIT READY until GOOD; return the unit attentions reported on the way."""
        seen = []
        for _ in range(MAX_DRAIN):
            r = self._execute(i, C.test_unit_ready())
            if r.status == Status.GOOD:
                self.s.unit_attentions[i] = set()
                return seen
            sense = r.sense_data
            assert sense is not None and sense.key == SenseKey.UNIT_ATTENTION, (
                f"TEST UNIT READY from initiator {i}: {r}"
            )
            seen.append((sense.asc, sense.ascq))
        raise AssertionError(f"initiator {i}: unit attentions never cleared: {seen}")

    def _ua_gate(self, i: int, outcome: Outcome, exempt: bool = False) -> bool:
        """Check unit attention reporting (SAM-5 5.14); True when the command was stopped by
        a unit attention (and so did nothing else)."""
        pending = self.s.unit_attentions.get(i, set())
        if exempt:
            assert not (outcome.sense and outcome.sense[0] == SenseKey.UNIT_ATTENTION)
            return False
        if not pending:
            assert not (outcome.sense and outcome.sense[0] == SenseKey.UNIT_ATTENTION), (
                f"initiator {i}: unexpected {outcome}"
            )
            return False
        assert outcome.sense is not None and outcome.sense[0] == SenseKey.UNIT_ATTENTION, (
            f"initiator {i} has pending unit attentions {sorted(pending)} but got {outcome}"
        )
        code = outcome.sense[1:]
        assert code in pending, f"initiator {i}: UA {code} reported, pending {sorted(pending)}"
        if DEV_UA_CLEARS_ALL in self.t.deviations:
            pending.clear()
        else:
            pending.discard(code)
        return True

    def _observe(self, i: int) -> Observed:
        r = self._execute(i, C.persistent_reserve_in(PersistentReserveInAction.READ_KEYS))
        assert r.status == Status.GOOD, f"READ KEYS: {r}"
        gen, keys = parse_read_keys(r.data)
        r = self._execute(i, C.persistent_reserve_in(PersistentReserveInAction.READ_RESERVATION))
        assert r.status == Status.GOOD, f"READ RESERVATION: {r}"
        gen2, res = parse_read_reservation(r.data)
        r = self._execute(i, C.persistent_reserve_in(PersistentReserveInAction.READ_FULL_STATUS))
        assert r.status == Status.GOOD, f"READ FULL STATUS: {r}"
        gen3, full = parse_read_full_status(r.data)
        assert gen == gen2 == gen3, f"PRgeneration differs between PR IN reads: {gen} {gen2} {gen3}"
        assert not any(d[1] for d in full), "machine never registers with ALL_TG_PT"
        return Observed(
            gen,
            tuple(sorted(keys)),
            res,
            frozenset((k, h, t, p, tid) for k, _, h, t, p, tid in full),
        )

    def _predict(self, s: PRState) -> Observed:
        res = None
        holders = s.holders()
        if s.reservation is not None:
            holder, type_ = s.reservation
            res = (0 if type_.all_registrants else s.keys[holder], int(type_))  # type: ignore[index]
        full = frozenset(
            (
                key,
                i in holders,
                int(s.reservation[1]) if i in holders and s.reservation else 0,
                self.t.relative_target_ports[i],
                self.t.transport_ids[i].encode(),
            )
            for i, key in s.keys.items()
        )
        return Observed(s.generation or 0, tuple(sorted(s.keys.values())), res, full)

    def _matches(self, s: PRState, seen: Observed) -> bool:
        want = self._predict(s)
        same_gen = s.generation is None or want.generation == seen.generation
        return same_gen and (want.keys, want.reservation, want.full_status) == (
            seen.keys,
            seen.reservation,
            seen.full_status,
        )

    def _apply(self, i: int, what: str, cdb: bytes, data: bytes, branches: list[Branch]) -> None:
        """Send one PR OUT command and pick the branch the device took."""
        result = self._execute(i, cdb, data)
        outcome = self._outcome(result)
        note(f"initiator {i}: {what} -> {outcome}")
        if self._ua_gate(i, outcome):
            return
        allowed = [b for b in branches if b.deviation is None or b.deviation in self.t.deviations]
        fitting = [b for b in allowed if b.outcome == outcome]
        assert fitting, (
            f"initiator {i}: {what} returned {outcome}; SPC-5 expects "
            f"{' or '.join(sorted({str(b.outcome) for b in allowed}))}"
        )
        if len(fitting) > 1:
            # The issuer has no pending UA now (its command ran), so it can read state back.
            seen = self._observe(i)
            fitting = [b for b in fitting if self._matches(b.state, seen)] or fitting[:1]
        if fitting[0].deviation:
            note(f"  known deviation: {fitting[0].deviation}")
        self.s = fitting[0].state
        self.reader = i

    def _rk(self, i: int, rk: int | str) -> int:
        return self.s.keys.get(i, 0) if rk == "own" else int(rk)

    # -- setup -------------------------------------------------------------------------------
    @initialize(target=initiators)
    def start(self) -> object:
        """Clear unit attentions and any PR state left behind, then learn PRgeneration."""
        for i in range(self.n):
            self._drain(i)
        cdb, data = C.prout(SA.REGISTER_AND_IGNORE_EXISTING_KEY, 0, CLEAN_KEY)
        assert self._execute(0, cdb, data).status == Status.GOOD
        cdb, data = C.prout(SA.CLEAR, CLEAN_KEY)
        assert self._execute(0, cdb, data).status == Status.GOOD
        for i in range(self.n):
            self._drain(i)
        r = self._execute(0, C.read_capacity_10())
        assert r.status == Status.GOOD, f"READ CAPACITY(10): {r}"
        self.block_size = int.from_bytes(r.data[4:8], "big")
        self.s = PRState(unit_attentions={i: set() for i in range(self.n)})
        self.s.generation = self._observe(0).generation
        return multiple(*range(self.n))

    def teardown(self) -> None:
        """Leave the LU empty with APTPL off, so that the next example starts clean."""
        try:
            for i in range(self.n):
                self._drain(i)
            cdb, data = C.prout(SA.REGISTER_AND_IGNORE_EXISTING_KEY, 0, CLEAN_KEY)
            self._execute(0, cdb, data)
            cdb, data = C.prout(SA.CLEAR, CLEAN_KEY)
            self._execute(0, cdb, data)
        except AssertionError:
            pass

    # -- PR OUT rules --------------------------------------------------------------------------
    @rule(who=initiators, rk=RK_CHOICES, sark=KEY_CHOICES, aptpl=st.booleans())
    def register(self, who: int, rk: int | str, sark: int, aptpl: bool) -> None:
        key = self._rk(who, rk)
        cdb, data = C.prout(SA.REGISTER, key, sark, aptpl=aptpl)
        self._apply(
            who,
            f"REGISTER key={key:#x} sa_key={sark:#x} aptpl={aptpl}",
            cdb,
            data,
            Oracle.register(self.s, who, key, sark, aptpl, ignore_existing=False),
        )

    @rule(who=initiators, sark=KEY_CHOICES, aptpl=st.booleans())
    def register_ignore(self, who: int, sark: int, aptpl: bool) -> None:
        cdb, data = C.prout(SA.REGISTER_AND_IGNORE_EXISTING_KEY, 0, sark, aptpl=aptpl)
        self._apply(
            who,
            f"REGISTER AND IGNORE EXISTING KEY sa_key={sark:#x}",
            cdb,
            data,
            Oracle.register(self.s, who, 0, sark, aptpl, ignore_existing=True),
        )

    @rule(who=initiators, rk=RK_CHOICES, type_=TYPES)
    def reserve(self, who: int, rk: int | str, type_: ReservationType) -> None:
        key = self._rk(who, rk)
        cdb, data = C.prout(SA.RESERVE, key, 0, type_)
        self._apply(
            who,
            f"RESERVE {type_.abbreviation} key={key:#x}",
            cdb,
            data,
            Oracle.reserve(self.s, who, key, type_),
        )

    @rule(who=initiators, rk=RK_CHOICES, type_=TYPES)
    def release(self, who: int, rk: int | str, type_: ReservationType) -> None:
        key = self._rk(who, rk)
        cdb, data = C.prout(SA.RELEASE, key, 0, type_)
        self._apply(
            who,
            f"RELEASE {type_.abbreviation} key={key:#x}",
            cdb,
            data,
            Oracle.release(self.s, who, key, type_),
        )

    @rule(who=initiators, sark=st.sampled_from(KEYS), type_=TYPES)
    def register_then_reserve(self, who: int, sark: int, type_: ReservationType) -> None:
        """A shortcut to the states worth exploring: registered, then reserving."""
        self.register_ignore(who, sark, False)
        self.reserve(who, "own", type_)

    @rule(who=initiators, sark=st.sampled_from(KEYS))
    def join(self, who: int, sark: int) -> None:
        """Register a non-zero key (what cluster nodes do first)."""
        self.register_ignore(who, sark, False)

    @rule(who=initiators, rk=RK_CHOICES)
    def clear(self, who: int, rk: int | str) -> None:
        key = self._rk(who, rk)
        cdb, data = C.prout(SA.CLEAR, key)
        self._apply(who, f"CLEAR key={key:#x}", cdb, data, Oracle.clear(self.s, who, key))

    @rule(who=initiators, rk=RK_CHOICES, sark=KEY_CHOICES, type_=TYPES, abort=st.booleans())
    def preempt(
        self, who: int, rk: int | str, sark: int, type_: ReservationType, abort: bool
    ) -> None:
        if abort and not self.t.preempt_and_abort:
            abort = False  # the harness excludes PREEMPT AND ABORT (it hangs LIO)
        key = self._rk(who, rk)
        action = SA.PREEMPT_AND_ABORT if abort else SA.PREEMPT
        cdb, data = C.prout(action, key, sark, type_)
        self._apply(
            who,
            f"{action.name} {type_.abbreviation} key={key:#x} sa_key={sark:#x}",
            cdb,
            data,
            Oracle.preempt(self.s, who, key, sark, type_),
        )

    @rule(who=initiators, dest=initiators, rk=RK_CHOICES, sark=KEY_CHOICES, unreg=st.booleans())
    def register_and_move(self, who: int, dest: int, rk: int | str, sark: int, unreg: bool) -> None:
        key = self._rk(who, rk)
        cdb, data = C.register_and_move(
            key, sark, self.t.relative_target_ports[dest], self.t.transport_ids[dest], unreg=unreg
        )
        self._apply(
            who,
            f"REGISTER AND MOVE key={key:#x} sa_key={sark:#x} to {dest}",
            cdb,
            data,
            Oracle.register_and_move(self.s, who, key, sark, dest, unreg, False),
        )

    # -- media and other commands --------------------------------------------------------------
    @rule(who=initiators, command=st.sampled_from(["READ(10)", "WRITE(10)"]), lba=LBAS)
    def read_write(self, who: int, command: str, lba: int) -> None:
        self._media(who, command, lba)

    @rule(who=initiators, command=st.sampled_from(sorted(MEDIA)), lba=LBAS)
    def media(self, who: int, command: str, lba: int) -> None:
        self._media(who, command, lba)

    def _media(self, who: int, command: str, lba: int) -> None:
        payload = b""
        if command == "READ(10)":
            cdb = C.read_10(lba, 1)
        elif command == "WRITE(10)":
            self.write_serial += 1
            payload = (f"{who}:{self.write_serial}:".encode() * self.block_size)[: self.block_size]
            cdb = C.write_10(lba, 1)
        else:
            cdb = {
                "TEST UNIT READY": C.test_unit_ready(),
                "INQUIRY": C.inquiry(),
                "READ CAPACITY(10)": C.read_capacity_10(),
            }[command]
        result = self._execute(who, cdb, payload)
        outcome = self._outcome(result)
        note(f"initiator {who}: {command} lba={lba} -> {outcome}")
        if self._ua_gate(who, outcome, exempt=command in UA_EXEMPT):
            return
        res = self.s.reservation
        conflict = (
            res is not None
            and who not in self.s.holders()
            and media_conflicts(MEDIA[command], res[1], who in self.s.keys)
        )
        if (
            command == "READ CAPACITY(10)"
            and DEV_READ_CAPACITY_CONFLICT in self.t.deviations
            and res is not None
            and who not in self.s.holders()
            and media_conflicts(READS, res[1], who in self.s.keys)
        ):
            conflict = True  # LIO classifies it as a plain read
        assert outcome == (CONFLICT if conflict else GOOD), (
            f"initiator {who} ({'registered' if who in self.s.keys else 'unregistered'}) "
            f"{command} under {res[1].abbreviation if res else 'no reservation'}: "
            f"got {outcome}, the conflict table says {'CONFLICT' if conflict else 'GOOD'}"
        )
        if outcome != GOOD:
            return
        if command == "WRITE(10)":
            self.medium[lba] = payload
        elif command == "READ(10)" and lba in self.medium:
            assert result.data == self.medium[lba], f"READ(10) lba {lba} returned stale data"

    @precondition(lambda self: self.t.power_cycle is not None and self.s.keys)
    @rule(now=st.integers(0, POWER_CYCLE_ODDS))
    def power_cycle(self, now: int) -> None:
        """Power loss then power on: APTPL state survives, the rest goes (SPC-5 5.14.5).
        Only one draw in POWER_CYCLE_ODDS+1 cycles, so that state has time to build up."""
        assert self.t.power_cycle is not None
        if now:
            return
        self.t.power_cycle()
        note(f"power cycle (APTPL {'on' if self.s.aptpl else 'off'})")
        n = copy.deepcopy(self.s)
        if not n.aptpl:
            n.keys.clear()
            n.reservation = None
        n.generation = None
        self.last_generation = None
        self.s = n
        for i in range(self.n):
            seen = self._drain(i)
            assert seen and seen[0][0] == POWER_ON_OR_RESET_ASC, (
                f"initiator {i}: first UA after power on is {seen}, want 29h/xx"
            )

    # -- invariants -------------------------------------------------------------------------
    @invariant()
    def device_agrees(self) -> None:
        if self.s.generation is None and not self.s.unit_attentions:
            return  # before initialisation
        readers = [i for i in range(self.n) if not self.s.unit_attentions.get(i)]
        if not readers:
            return
        reader = self.reader if self.reader in readers else readers[0]
        seen = self._observe(reader)
        # Invariants on what the device says, whatever the oracle thinks:
        if self.last_generation is not None:
            assert seen.generation >= self.last_generation, (
                f"PRgeneration went back from {self.last_generation} to {seen.generation}"
            )
        self.last_generation = seen.generation
        holders = {d for d in seen.full_status if d[1]}
        if seen.reservation is not None:
            key, type_ = seen.reservation
            assert holders, "a reservation exists but no registration is R_HOLDER"
            if key != 0:
                assert key in seen.keys, "the reservation holder's key is not registered"
            assert all(d[2] == type_ for d in holders), (
                "R_HOLDER TYPE differs from READ RESERVATION"
            )
        else:
            assert not holders, "R_HOLDER set without a reservation"
        assert sorted(d[0] for d in seen.full_status) == list(seen.keys), (
            "READ KEYS and READ FULL STATUS disagree"
        )
        # ... and agreement with the oracle.
        want = self._predict(self.s)
        if self.s.generation is None:
            self.s.generation = seen.generation
        else:
            assert seen.generation == self.s.generation, (
                f"PRgeneration {seen.generation}, SPC-5 6.16.2 expects {self.s.generation}"
            )
        assert seen.keys == want.keys, f"READ KEYS {seen.keys}, expected {want.keys}"
        assert seen.reservation == want.reservation, (
            f"READ RESERVATION {seen.reservation}, expected {want.reservation}"
        )
        assert seen.full_status == want.full_status, (
            f"READ FULL STATUS {sorted(seen.full_status)}, expected {sorted(want.full_status)}"
        )
