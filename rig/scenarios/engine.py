"""Run a scenario on a backend and check every expectation: the I/O edge of the scenarios.

Each command runs in a worker thread with a deadline, because a real LUN can hang (LIO's
tcm_loop never completes PREEMPT AND ABORT): a command that misses its deadline ends the run
with the verdict HUNG and "LIO hung at step N", instead of stalling the caller. The model's
``CommandResult.stall`` is honoured here too (the model never sleeps; this edge does), which
lets the host tier exercise the hang path with a fault hook.

Verdicts are distinct exit codes so scripts and tests can tell "the device misbehaved" (FAIL)
from "the device hung" (HUNG) and "this backend cannot do that" (UNSUPPORTED).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from scsi_pr.rig.backends import Backend, Initiator
from scsi_pr.rig.errors import RigError
from scsi_pr.rig.scenarios.commands import Target, TestUnitReady
from scsi_pr.rig.scenarios.model import (
    ALL_REGISTRANTS,
    GOOD,
    ROLES,
    Action,
    Item,
    Outcome,
    Race,
    Scenario,
    ScenarioError,
    StateCheck,
    Step,
)
from scsi_pr.rig.scenarios.observe import PrState, actor_state, parse_read_full_status
from scsi_pr.sim import cdb as cdbs
from scsi_pr.sim.constants import (
    ADDITIONAL_SENSE_BY_CODE,
    AdditionalSense,
    PersistentReserveInAction,
    SenseKey,
    Status,
)
from scsi_pr.sim.result import CommandResult

#: Seconds a command may take before the run is declared hung. LIO in a TCG VM answers in
#: milliseconds; 30 s leaves room for a loaded CI machine without hiding a real hang.
DEFAULT_TIMEOUT = 30.0
#: TEST UNIT READY retries when clearing unit attentions (SAM-5 lets a LU queue several).
MAX_UA_REPORTS = 8
#: Backends whose hangs are LIO's known PREEMPT AND ABORT defect.
LIO_BACKENDS = frozenset({"lio", "helper-lio"})

T = TypeVar("T")


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"
    HUNG = "hung"
    UNSUPPORTED = "unsupported"


EXIT_CODES: dict[Verdict, int] = {
    Verdict.PASS: 0,
    Verdict.FAIL: 1,
    Verdict.ERROR: 2,
    Verdict.HUNG: 3,
    Verdict.UNSUPPORTED: 4,
}


class Hung(RigError):
    """A command or action missed its deadline (or the backend said it timed out)."""


class BackendFault(RigError):
    """The backend raised instead of answering (socket closed, helper died, ...)."""


@dataclass
class Row:
    """One line of the timeline."""

    step: int
    time: float
    actor: str
    command: str
    result: str
    kind: str  # "command", "ua" (a unit attention reported while clearing), "action", "hang"
    ok: bool | None = None  # None: informational, no expectation
    expected: str = ""
    failures: list[str] = field(default_factory=list)
    state: PrState | None = None
    elapsed_ms: float = 0.0
    phase: str = ""
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "time": self.time,
            "actor": self.actor,
            "command": self.command,
            "result": self.result,
            "kind": self.kind,
            "ok": self.ok,
            "expected": self.expected,
            "failures": self.failures,
            "state": self.state.to_json() if self.state else None,
            "elapsed_ms": round(self.elapsed_ms, 3),
            "phase": self.phase,
            "note": self.note,
        }


@dataclass
class Run:
    scenario: Scenario
    backend: str
    verdict: Verdict
    message: str
    rows: list[Row]
    #: actor -> initiator port name (TransportID text)
    initiators: dict[str, str]

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    @property
    def failures(self) -> list[str]:
        return [f"step {r.step} ({r.actor}): {f}" for r in self.rows for f in r.failures]

    def to_json(self) -> dict[str, Any]:
        s = self.scenario
        return {
            "scenario": s.name,
            "title": s.title,
            "backend": self.backend,
            "verdict": self.verdict.value,
            "exit_code": self.exit_code,
            "message": self.message,
            "initiators": self.initiators,
            "keys": {a: f"0x{k:x}" for a, k in s.keys.items()},
            "source": {
                "software": s.source.software,
                "files": list(s.source.files),
                "assumed": s.source.assumed,
            },
            "failures": self.failures,
            "timeline": [r.to_json() for r in self.rows],
        }


def call_with_deadline(fn: Callable[[], T], timeout: float) -> tuple[T, float]:
    """Run ``fn`` in a daemon thread; (its value, seconds taken) or Hung after ``timeout``.

    A thread blocked in the kernel cannot be cancelled; it is left behind as a daemon so the
    process can still report and exit.
    """
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # handed to the caller below
            box["error"] = e

    started = time.monotonic()
    worker = threading.Thread(target=work, name="scenario-command", daemon=True)
    worker.start()
    worker.join(timeout)
    took = time.monotonic() - started
    if worker.is_alive():
        raise Hung(f"did not complete within {timeout:g}s")
    if "error" in box:
        error = box["error"]
        if isinstance(error, TimeoutError):  # e.g. scsi_pr.rig.pytest_plugin.CommandTimeout
            raise Hung(str(error) or "timed out") from error
        raise BackendFault(f"{type(error).__name__}: {error}") from error
    return box["value"], took


class Runner:
    """Runs one scenario on one open backend. Use ``run_scenario`` unless you hold the backend.

    The backend needs one initiator per actor plus one more, the observer.
    """

    def __init__(self, scenario: Scenario, backend: Backend, timeout: float = DEFAULT_TIMEOUT):
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout}")
        needed = len(scenario.actors) + 1
        if len(backend.initiators) < needed:
            raise ScenarioError(
                f"{scenario.name} needs {needed} initiators ({len(scenario.actors)} actors + "
                f"the observer); backend {backend.name} has {len(backend.initiators)}"
            )
        self.scenario, self.backend, self.timeout = scenario, backend, timeout
        self.actors: dict[str, Initiator] = dict(
            zip(scenario.actors, backend.initiators, strict=False)
        )
        self.observer = backend.initiators[len(scenario.actors)]
        # The in-process model is not thread-safe; a real device serialises commands itself.
        self.device_lock = threading.Lock() if getattr(backend, "lu", None) is not None else None
        self.roles: dict[str, str] = {}
        self.medium: dict[int, bytes] = {}
        self.clock = 0.0
        self.rows: list[Row] = []
        self.state: PrState | None = None

    # -- Context for commands ---------------------------------------------------------------
    def target(self, actor: str) -> Target:
        return self.actors[self.resolve(actor)]

    def resolve(self, actor: str) -> str:
        if actor in ROLES:
            if actor not in self.roles:
                raise ScenarioError(f"role {actor!r} used before a race decided it")
            return self.roles[actor]
        return actor

    # -- sending ----------------------------------------------------------------------------
    def _execute(self, initiator: Initiator, cdb: bytes, data: bytes) -> CommandResult:
        if self.device_lock is None:
            result = initiator.execute(cdb, data)
        else:
            with self.device_lock:
                result = initiator.execute(cdb, data)
        if result.stall > 0:  # the model asks its I/O edge to delay the answer
            time.sleep(result.stall)
        return result

    def send(
        self, initiator: Initiator, cdb: bytes, data: bytes = b""
    ) -> tuple[CommandResult, float]:
        return call_with_deadline(lambda: self._execute(initiator, cdb, data), self.timeout)

    # -- the run ----------------------------------------------------------------------------
    def run(self) -> Run:
        missing = sorted(self.scenario.needs - set(self.backend.capabilities))
        if missing:
            return self._finish(
                Verdict.UNSUPPORTED,
                f"{self.scenario.name} needs {', '.join(missing)}, which backend "
                f"{self.backend.name} cannot do (it offers: "
                f"{', '.join(sorted(self.backend.capabilities)) or 'nothing'})",
            )
        number = 0
        try:
            self.state = self.observe()
            for number, item in enumerate(self.scenario.items, 1):
                self.clock += item.wait
                self.run_item(number, item)
        except Hung as e:
            label = "LIO" if self.backend.name in LIO_BACKENDS else f"backend {self.backend.name}"
            for actor, command in self._hung_commands(number):
                self.rows.append(
                    Row(number, self.clock, actor, command, "HUNG (no answer)", "hang",
                        ok=False, failures=[f"hung: {e}"], state=self.state)
                )  # fmt: skip
            return self._finish(
                Verdict.HUNG, f"{label} hung at step {number}: {self._label_of(number)} {e}"
            )
        except (BackendFault, ScenarioError) as e:
            return self._finish(Verdict.ERROR, f"step {number}: {e}")
        failures = self._failures()
        if failures:
            return self._finish(
                Verdict.FAIL, f"{len(failures)} expectation(s) failed; first: {failures[0]}"
            )
        return self._finish(Verdict.PASS, f"all {len(self.scenario.items)} steps as expected")

    def _failures(self) -> list[str]:
        return [f"step {r.step} ({r.actor}): {f}" for r in self.rows for f in r.failures]

    def _actor_of(self, number: int) -> str:
        item = self.scenario.items[number - 1] if number else None
        if isinstance(item, Step):
            return self.roles.get(item.actor, item.actor)
        if isinstance(item, Race):
            return "+".join(s.actor for s in item.steps)
        return item.actor if isinstance(item, Action) else "—"

    def _label_of(self, number: int) -> str:
        item = self.scenario.items[number - 1] if number else None
        if isinstance(item, Step):
            return f"{item.command.label()} from {self._actor_of(number)}"
        if isinstance(item, Race):
            return " / ".join(f"{s.command.label()} from {s.actor}" for s in item.steps)
        return item.label if isinstance(item, Action) else "setup"

    def _hung_commands(self, number: int) -> list[tuple[str, str]]:
        """(actor, command) pairs that were outstanding when step ``number`` hung."""
        item = self.scenario.items[number - 1] if number else None
        if isinstance(item, Step):
            return [(self._actor_of(number), item.command.label())]
        if isinstance(item, Race):
            return [(s.actor, s.command.label()) for s in item.steps]
        if isinstance(item, Action):
            return [(item.actor, item.label)]
        return [("observer", "PR IN READ FULL STATUS")]

    def _finish(self, verdict: Verdict, message: str) -> Run:
        names = {a: i.name for a, i in self.actors.items()}
        names["observer"] = self.observer.name
        return Run(self.scenario, self.backend.name, verdict, message, self.rows, names)

    def run_item(self, number: int, item: Item) -> None:
        if isinstance(item, Step):
            self.run_step(number, item)
        elif isinstance(item, Race):
            self.run_race(number, item)
        else:
            self.run_action(number, item)

    def clear_unit_attentions(self, number: int, step: Step, actor: str) -> list[Row]:
        """TEST UNIT READY until GOOD, one timeline row per unit attention reported.

        Rows for unit attentions in ``step.expect_ua`` are marked as expected; others are
        informational (a device may queue more, e.g. after a power cycle). An expected one that
        never came is a failure.
        """
        rows: list[Row] = []
        reported: list[tuple[int, int]] = []
        initiator = self.actors[actor]
        cdb, data = TestUnitReady().build(self, actor)
        wanted = list(step.expect_ua)
        seen_wanted: set[int] = set()
        for _ in range(MAX_UA_REPORTS):
            result, took = self.send(initiator, cdb, data)
            if int(result.status) == Status.GOOD:
                break
            # A unit attention changes no PR state: the row shows the last observed one.
            row = Row(
                number,
                self.clock,
                actor,
                "TEST UNIT READY",
                str(result),
                "ua",
                state=self.state,
                elapsed_ms=took * 1000,
                phase=step.phase,
            )
            rows.append(row)
            sense = result.sense_data
            if sense is None or sense.key != SenseKey.UNIT_ATTENTION:
                row.ok = False
                row.failures.append(f"TEST UNIT READY answered {result}")
                break
            reported.append((sense.asc, sense.ascq))
            for i, want in enumerate(wanted):
                if ua_matches(want, sense.asc, sense.ascq):
                    seen_wanted.add(i)
                    row.ok, row.expected = True, f"UNIT ATTENTION ({ua_name(want)})"
        else:
            rows[-1].ok = False
            rows[-1].failures.append(f"unit attentions still pending after {MAX_UA_REPORTS}")
        missing = [w for i, w in enumerate(wanted) if i not in seen_wanted]
        if missing:
            seen = (
                ", ".join(
                    ADDITIONAL_SENSE_BY_CODE[c].name
                    if c in ADDITIONAL_SENSE_BY_CODE
                    else f"{c[0]:02X}h/{c[1]:02X}h"
                    for c in reported
                )
                or "none"
            )
            if not rows:
                rows.append(
                    Row(
                        number,
                        self.clock,
                        actor,
                        "TEST UNIT READY",
                        "GOOD",
                        "ua",
                        state=self.state,
                        phase=step.phase,
                    )
                )
            rows[0].ok = False
            rows[0].failures += [
                f"expected unit attention {ua_name(w)} (reported: {seen})" for w in missing
            ]
        return rows

    def _command_row(
        self,
        number: int,
        step: Step,
        actor: str,
        expect: tuple[Outcome, ...],
        sent: tuple[bytes, bytes],
        result: CommandResult,
        took: float,
    ) -> Row:
        ok = any(o.matches(result) for o in expect)
        row = Row(
            number,
            self.clock,
            actor,
            step.command.label(),
            str(result),
            "command",
            ok=ok,
            expected=" or ".join(str(o) for o in expect),
            elapsed_ms=took * 1000,
            phase=step.phase,
            note=step.note,
        )
        if not ok:
            row.failures.append(f"{step.command.label()}: expected {row.expected}, got {result}")
        if int(result.status) == Status.GOOD and ok:
            row.failures += step.command.check(result, self, sent[1])
            row.ok = not row.failures
        return row

    def run_step(self, number: int, step: Step) -> None:
        actor = self.resolve(step.actor)
        rows = self.clear_unit_attentions(number, step, actor) if step.clear_ua else []
        self.rows += rows
        sent = step.command.build(self, actor)
        result, took = self.send(self.actors[actor], *sent)
        row = self._command_row(number, step, actor, step.expect, sent, result, took)
        self.rows.append(row)
        self.check_state(row, step.state)

    def run_race(self, number: int, race: Race) -> None:
        for step in race.steps:
            self.rows += self.clear_unit_attentions(number, step, step.actor)
        built = [(step, step.command.build(self, step.actor)) for step in race.steps]
        gate = threading.Barrier(len(built))

        def racer(initiator: Initiator, sent: tuple[bytes, bytes]) -> Callable[[], CommandResult]:
            def go() -> CommandResult:
                gate.wait(self.timeout)
                return self._execute(initiator, *sent)

            return go

        box: dict[int, tuple[CommandResult, float] | BaseException] = {}

        def contender(i: int, fn: Callable[[], CommandResult]) -> None:
            try:
                box[i] = call_with_deadline(fn, self.timeout)
            except BaseException as e:  # re-raised in order below
                box[i] = e

        threads = [
            threading.Thread(
                target=contender, args=(i, racer(self.actors[s.actor], sent)), daemon=True
            )
            for i, (s, sent) in enumerate(built)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rows = []
        for i, (step, sent) in enumerate(built):
            outcome = box[i]
            if isinstance(outcome, BaseException):
                raise outcome
            result, took = outcome
            won = int(result.status) == Status.GOOD
            expect = (GOOD,) if won else race.losers_expect
            row = self._command_row(number, step, step.actor, expect, sent, result, took)
            row.note = "won the race" if won else "lost the race"
            rows.append(row)
        self.rows += rows
        winners = [r for r in rows if r.result == "GOOD"]
        if len(winners) != 1:
            rows[-1].failures.append(f"race: {len(winners)} initiators won, exactly one must")
            rows[-1].ok = False
        else:
            self.roles["winner"] = winners[0].actor
            self.roles["loser"] = next(r.actor for r in rows if r is not winners[0])
        self.check_state(rows[-1], race.state)
        for row in rows:
            row.state = self.state

    def run_action(self, number: int, action: Action) -> None:
        took = 0.0
        if action.capability is not None:
            method = getattr(self.backend, action.capability)
            _, took = call_with_deadline(method, self.timeout)
        row = Row(
            number,
            self.clock,
            action.actor,
            action.label,
            "done" if action.capability else "—",
            "action",
            elapsed_ms=took * 1000,
            phase=action.phase,
            note=action.note,
        )
        self.rows.append(row)
        self.check_state(row, action.state)

    # -- observing --------------------------------------------------------------------------
    def observe(self) -> PrState | None:
        """READ FULL STATUS from the observer (clearing its own unit attentions)."""
        cdb = cdbs.persistent_reserve_in(PersistentReserveInAction.READ_FULL_STATUS)
        for _ in range(MAX_UA_REPORTS):
            result, _ = self.send(self.observer, cdb)
            sense = result.sense_data
            if sense is not None and sense.key == SenseKey.UNIT_ATTENTION:
                continue
            if int(result.status) != Status.GOOD:
                return None
            try:
                generation, entries = parse_read_full_status(result.data)
            except ValueError as e:  # the device's answer, not the scenario, is broken
                raise BackendFault(f"observer: {e}") from e
            ports = {a: (i.transport_id, i.relative_target_port) for a, i in self.actors.items()}
            return actor_state(generation, entries, ports)
        return None

    def check_state(self, row: Row, check: StateCheck | None) -> None:
        before = self.state
        self.state = row.state = self.observe()
        if check is None:
            return
        state = self.state
        if state is None:
            row.failures.append("observer could not read the PR state (READ FULL STATUS failed)")
        else:
            row.failures += state_failures(state, before, check, self.resolve, self.scenario.keys)
        row.ok = not row.failures if row.ok is not False else False


def ua_matches(want: AdditionalSense | int, asc: int, ascq: int) -> bool:
    if isinstance(want, int):
        return asc == want
    return (want.asc, want.ascq) == (asc, ascq)


def ua_name(want: AdditionalSense | int) -> str:
    return f"ASC {want:02X}h" if isinstance(want, int) else want.name


def state_failures(
    state: PrState,
    before: PrState | None,
    check: StateCheck,
    resolve: Callable[[str], str],
    keys: dict[str, int],
) -> list[str]:
    failures: list[str] = []
    if check.holder is not ...:
        want = check.holder if check.holder in (None, ALL_REGISTRANTS) else resolve(check.holder)
        if state.holder != want:
            failures.append(f"holder: expected {want or 'none'}, observed {state.holder or 'none'}")
    if check.registered is not None:
        want_keys = {resolve(a): keys[resolve(a)] for a in check.registered}
        if state.keys != dict(sorted(want_keys.items())):
            shown = {a: f"0x{k:x}" for a, k in state.keys.items()}
            wanted = {a: f"0x{k:x}" for a, k in sorted(want_keys.items())}
            failures.append(f"registrations: expected {wanted}, observed {shown}")
    if check.unchanged:
        if before is None:
            failures.append("no earlier state to compare with")
        elif not state.same_as(before):
            failures.append(f"PR state changed: was {before.to_json()}, now {state.to_json()}")
    return failures
