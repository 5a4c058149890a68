"""The rules: random PR OUT service actions and media I/O from several initiators.

Each result is checked against the oracle (``deviations.OracleWithDeviations``, whose tagged
branches count only when the target accepts the tag). Where a step admits several branches,
the observed status/sense, and then the PR state read back through PR IN, pick the branch that
happened.

Invariants checked after every step, on what the device reports (not on the oracle alone):
PRgeneration never decreases (between power cycles) and equals the oracle's; the reservation
holder is registered; READ KEYS equals the set of registrations; READ FULL STATUS names exactly
the registered I_T nexuses with their TransportIDs and relative target ports; media commands
conflict exactly where the conflict table says; no exception.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

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

from pr_machine.deviations import (
    DEV_READ_CAPACITY_10_CONFLICT,
    OracleWithDeviations,
)
from pr_machine.device import (
    Target,
)
from pr_machine.oracle import (
    ALWAYS,
    CONFLICT,
    GOOD,
    POWER_ON_OR_RESET_ASC,
    READS,
    WRITES,
    Branch,
    Outcome,
    PRState,
    media_conflicts,
)
from pr_machine.plumbing import Plumbing, triple
from scsi_pr.helper.executors import limits as L
from scsi_pr.sim import cdb as C
from scsi_pr.sim.constants import (
    PersistentReserveOutAction,
    ReservationType,
    Status,
)

SA = PersistentReserveOutAction

#: SPC-5 plus LIO's tagged answers: ``PRMachine._apply`` drops the tags the target does not list
ORACLE = OracleWithDeviations

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
CLEAN_KEY = 0x5C5150_C1EA2
POWER_CYCLE_ODDS = 5


class PRMachine(Plumbing, RuleBasedStateMachine):
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
            ORACLE.register(self.s, who, key, sark, aptpl, ignore_existing=False),
        )

    @rule(who=initiators, sark=KEY_CHOICES, aptpl=st.booleans())
    def register_ignore(self, who: int, sark: int, aptpl: bool) -> None:
        cdb, data = C.prout(SA.REGISTER_AND_IGNORE_EXISTING_KEY, 0, sark, aptpl=aptpl)
        self._apply(
            who,
            f"REGISTER AND IGNORE EXISTING KEY sa_key={sark:#x}",
            cdb,
            data,
            ORACLE.register(self.s, who, 0, sark, aptpl, ignore_existing=True),
        )

    @rule(who=initiators, rk=RK_CHOICES, type_=TYPES)
    def reserve(self, who: int, rk: int | str, type_: ReservationType) -> None:
        self._key_and_type(SA.RESERVE, ORACLE.reserve, who, rk, type_)

    @rule(who=initiators, rk=RK_CHOICES, type_=TYPES)
    def release(self, who: int, rk: int | str, type_: ReservationType) -> None:
        self._key_and_type(SA.RELEASE, ORACLE.release, who, rk, type_)

    def _key_and_type(
        self,
        action: PersistentReserveOutAction,
        predict: Callable[[PRState, int, int, ReservationType], list[Branch]],
        who: int,
        rk: int | str,
        type_: ReservationType,
    ) -> None:
        """RESERVE or RELEASE: the service actions whose parameters are a key and a TYPE."""
        key = self._rk(who, rk)
        cdb, data = C.prout(action, key, 0, type_)
        what = f"{action.name} {type_.abbreviation} key={key:#x}"
        self._apply(who, what, cdb, data, predict(self.s, who, key, type_))

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
        self._apply(who, f"CLEAR key={key:#x}", cdb, data, ORACLE.clear(self.s, who, key))

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
            ORACLE.preempt(self.s, who, key, sark, type_),
        )

    @rule(who=initiators, dest=initiators, rk=RK_CHOICES, sark=KEY_CHOICES, unreg=st.booleans())
    def register_and_move(self, who: int, dest: int, rk: int | str, sark: int, unreg: bool) -> None:
        key = self._rk(who, rk)
        cdb, data = C.register_and_move(
            key, sark, self.t.relative_target_ports[dest], self.t.transport_ids[dest], unreg=unreg
        )
        if L.IOCTL_NO_REGISTER_AND_MOVE.name in self.t.path_limits:
            # the helper answers it without the device: nothing moves, no UA is reported
            outcome = self._outcome(self._execute(who, cdb, data))
            note(f"initiator {who}: REGISTER AND MOVE -> {outcome} (the path cannot carry it)")
            refusal = triple(L.IOCTL_NO_REGISTER_AND_MOVE.refusal)
            assert outcome == Outcome(Status.CHECK_CONDITION, refusal), outcome
            return
        self._apply(
            who,
            f"REGISTER AND MOVE key={key:#x} sa_key={sark:#x} to {dest}",
            cdb,
            data,
            ORACLE.register_and_move(self.s, who, key, sark, dest, unreg, False),
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
            and DEV_READ_CAPACITY_10_CONFLICT in self.t.deviations
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
        holders = {d for d in seen.full_status or () if d[1]}
        if seen.full_status is None:
            pass  # the path cannot read READ FULL STATUS: nothing to hold READ KEYS against
        elif seen.reservation is not None:
            key, type_ = seen.reservation
            assert holders, "a reservation exists but no registration is R_HOLDER"
            if key != 0:
                assert key in seen.keys, "the reservation holder's key is not registered"
            assert all(d[2] == type_ for d in holders), (
                "R_HOLDER TYPE differs from READ RESERVATION"
            )
        else:
            assert not holders, "R_HOLDER set without a reservation"
        if seen.full_status is not None:
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
        if seen.full_status is not None:
            assert seen.full_status == want.full_status, (
                f"READ FULL STATUS {sorted(seen.full_status)}, expected {sorted(want.full_status)}"
            )
