"""How the PR state machine sends a step and checks it: unit attentions, PR state read back."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

from hypothesis import note

from pr_machine.deviations import DEV_UA_CLEARS_ALL
from pr_machine.device import Observed, Target
from pr_machine.oracle import Branch, Outcome, PRState
from scsi_pr.helper.executors import limits as L
from scsi_pr.helper.executors.status import SenseCode
from scsi_pr.rig.backends import drain
from scsi_pr.sim import cdb as C
from scsi_pr.sim import pr_in_data
from scsi_pr.sim.constants import PersistentReserveInAction, SenseKey, Status
from scsi_pr.sim.result import CommandResult


def triple(code: SenseCode) -> tuple[int, int, int]:
    return code.key, code.asc, code.ascq


#: the senses sd returns as EINVAL (``limits.IOCTL_ILLEGAL_REQUEST_AS_EINVAL``)
_INVALID_FIELDS = {
    (SenseKey.ILLEGAL_REQUEST, 0x24, 0x00),
    (SenseKey.ILLEGAL_REQUEST, 0x26, 0x00),
}


class Plumbing:
    """``PRMachine``'s plumbing: it sends a command, checks the unit attentions it reports,
    reads the PR state back and picks the branch of the oracle the device took."""

    t: Target
    s: PRState
    n: int
    reader: int

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
        initiator = SimpleNamespace(
            name=f"initiator {i}", execute=lambda cdb, data=b"": self._execute(i, cdb, data)
        )
        seen = drain(initiator, AssertionError)  # type: ignore[arg-type]
        self.s.unit_attentions[i] = set()
        return seen

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
        keys = pr_in_data.parse_read_keys(r.data)
        r = self._execute(i, C.persistent_reserve_in(PersistentReserveInAction.READ_RESERVATION))
        assert r.status == Status.GOOD, f"READ RESERVATION: {r}"
        res = pr_in_data.parse_read_reservation(r.data)
        held = res.reservation
        reservation = None if held is None else (held.key, int(held.type))
        if L.IOCTL_NO_READ_FULL_STATUS.name in self.t.path_limits:
            assert keys.generation == res.generation, "PRgeneration differs between PR IN reads"
            return Observed(keys.generation, tuple(sorted(keys.keys)), reservation, None)
        r = self._execute(i, C.persistent_reserve_in(PersistentReserveInAction.READ_FULL_STATUS))
        assert r.status == Status.GOOD, f"READ FULL STATUS: {r}"
        full = pr_in_data.parse_read_full_status(r.data)
        gens = (keys.generation, res.generation, full.generation)
        assert len(set(gens)) == 1, f"PRgeneration differs between PR IN reads: {gens}"
        assert not any(d.all_tg_pt for d in full.descriptors), "machine never uses ALL_TG_PT"
        return Observed(
            keys.generation,
            tuple(sorted(keys.keys)),
            reservation,
            frozenset(
                (
                    d.key,
                    d.r_holder,
                    0 if d.type is None else int(d.type),
                    d.relative_target_port,
                    d.transport_id,
                )
                for d in full.descriptors
            ),
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
        full = seen.full_status is None or want.full_status == seen.full_status
        return same_gen and full and (want.keys, want.reservation) == (seen.keys, seen.reservation)

    def _through_ioctl(self, outcome: Outcome) -> Outcome:
        """What a PR OUT's answer becomes through the block layer's ioctls: a CHECK CONDITION
        loses its sense, but for an invalid field on kernels whose sd says EINVAL."""
        if outcome.status != Status.CHECK_CONDITION:
            return outcome
        einval = L.IOCTL_ILLEGAL_REQUEST_AS_EINVAL
        if einval.name in self.t.path_limits and outcome.sense in _INVALID_FIELDS:
            return Outcome(Status.CHECK_CONDITION, triple(einval.refusal))
        return Outcome(Status.CHECK_CONDITION, triple(L.IOCTL_SENSE_LOST.refusal))

    def _apply(self, i: int, what: str, cdb: bytes, data: bytes, branches: list[Branch]) -> None:
        """Send one PR OUT command and pick the branch the device took."""
        result = self._execute(i, cdb, data)
        outcome = self._outcome(result)
        note(f"initiator {i}: {what} -> {outcome}")
        lost_uas: set[tuple[int, int]] = set()
        if L.IOCTL_UNIT_ATTENTION_LOST.name in self.t.path_limits and self.s.unit_attentions.get(i):
            # The first try reported one unit attention and LIO cleared them all
            # (DEV_UA_CLEARS_ALL); the helper's TEST UNIT READY found none and sent it again.
            assert DEV_UA_CLEARS_ALL in self.t.deviations, "modelled for LIO's clear-all only"
            lost_uas = set(self.s.unit_attentions[i])
            self.s.unit_attentions[i] = set()
        if self._ua_gate(i, outcome):
            return
        allowed = [b for b in branches if b.deviation is None or b.deviation in self.t.deviations]
        if L.IOCTL_SENSE_LOST.name in self.t.path_limits:
            allowed = [replace(b, outcome=self._through_ioctl(b.outcome)) for b in allowed]
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
        if lost_uas:  # the branches were drawn before the path took them
            self.s.unit_attentions[i] = self.s.unit_attentions.get(i, set()) - lost_uas
        self.reader = i

    def _rk(self, i: int, rk: int | str) -> int:
        return self.s.keys.get(i, 0) if rk == "own" else int(rk)
