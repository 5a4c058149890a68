"""Run a scenario on a backend: the I/O edge of the scenarios.

The ``Runner`` walks a scenario's items in order, sends each command from its actor's
initiator (``deadline``: a command that misses its deadline ends the run with the verdict HUNG
and "LIO hung at step N" instead of stalling the caller), has ``checks`` judge every answer,
races concurrent steps (``race``), and reads the PR state back through a separate observer
initiator after each step. The model's ``CommandResult.stall`` is honoured here too (the model
never sleeps; this edge does), which lets the host tier exercise the hang path with a fault
hook.

What a backend can do besides commands (power cycle, helper restart) is its declared
``capabilities``: a scenario that needs one the backend lacks ends UNSUPPORTED before any
command is sent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

from scsi_pr.rig.backends import Backend, Capability, Initiator
from scsi_pr.rig.command_thread import CommandThread
from scsi_pr.rig.scenarios import checks, race
from scsi_pr.rig.scenarios.checks import MAX_UA_REPORTS, is_unit_attention
from scsi_pr.rig.scenarios.commands import Target, TestUnitReady
from scsi_pr.rig.scenarios.deadline import (
    DEFAULT_TIMEOUT,
    BackendFault,
    Hung,
    call_with_deadline,
)
from scsi_pr.rig.scenarios.model import (
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
from scsi_pr.rig.scenarios.results import EXIT_CODES, Row, RowKind, Run, Verdict, row_failures
from scsi_pr.sim import cdb as cdbs
from scsi_pr.sim.constants import PersistentReserveInAction, Status
from scsi_pr.sim.result import CommandResult
from scsi_pr.sim.transportid import TransportId

__all__ = [
    "DEFAULT_TIMEOUT",
    "EXIT_CODES",
    "BackendFault",
    "Hung",
    "Row",
    "Run",
    "Runner",
    "Verdict",
    "call_with_deadline",
]


@dataclass
class Device:
    """One LU of the scenario as the run sees it: its backend, each actor's initiator on it,
    its observer, the PR state last read there and the blocks written to it."""

    name: str
    backend: Backend
    actors: dict[str, Initiator]
    observer: Initiator
    lock: threading.Lock | None
    state: PrState | None = None
    medium: dict[int, bytes] = field(default_factory=dict)


class Runner:
    """Runs one scenario on open backends, one per device of the scenario (``backend`` for the
    first, ``more`` for the others). Use ``run_scenario`` unless you hold the backends.

    Each backend needs one initiator per actor plus one more, the observer.
    """

    def __init__(
        self,
        scenario: Scenario,
        backend: Backend,
        timeout: float = DEFAULT_TIMEOUT,
        more: Sequence[Backend] = (),
        on_item: Callable[[int, str], None] | None = None,
        races_in_order: bool = False,
    ):
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout}")
        backends = [backend, *more]
        names = scenario.devices or ("",)
        if len(backends) not in (1, len(names)):
            raise ScenarioError(f"{scenario.name} has {len(names)} devices, not {len(backends)}")
        needed = len(scenario.actors) + 1
        for b in backends:
            if len(b.initiators) < needed:
                raise ScenarioError(
                    f"{scenario.name} needs {needed} initiators ({len(scenario.actors)} actors "
                    f"+ the observer); backend {b.name} has {len(b.initiators)}"
                )
        self.scenario, self.backend, self.timeout = scenario, backend, timeout
        #: told (items done, the next one's label) before each item: a progress bar's feed
        self.on_item = on_item
        #: a race's contenders one after another (``race.send_in_order``): the docs' runs
        self.send_race = race.send_in_order if races_in_order else race.send_at_once
        self.devices = {
            name: Device(
                name,
                b,
                dict(zip(scenario.actors, b.initiators, strict=False)),
                b.initiators[len(scenario.actors)],
                # Races send from several threads; a real device serialises commands itself.
                None if b.thread_safe else threading.Lock(),
            )
            for name, b in zip(names, backends, strict=False)
        }
        self.device = self.devices[names[0]]
        self.roles: dict[str, str] = {}
        self.clock = 0.0
        self.rows: list[Row] = []
        #: the thread the run's commands are sent from (races send from threads of their own)
        self.commands = CommandThread("scenario-command")

    # -- the device the current item addresses ---------------------------------------------
    @property
    def actors(self) -> dict[str, Initiator]:
        return self.device.actors

    @property
    def observer(self) -> Initiator:
        return self.device.observer

    @property
    def medium(self) -> dict[int, bytes]:
        return self.device.medium

    @property
    def state(self) -> PrState | None:
        return self.device.state

    @state.setter
    def state(self, value: PrState | None) -> None:
        self.device.state = value

    def use(self, item: Item) -> None:
        self.device = self.devices[item.device or next(iter(self.devices))]

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
        lock = self.device.lock
        if lock is None:
            result = initiator.execute(cdb, data)
        else:
            with lock:
                result = initiator.execute(cdb, data)
        if result.stall > 0:  # the model asks its I/O edge to delay the answer
            time.sleep(result.stall)
        return result

    def send(
        self, initiator: Initiator, cdb: bytes, data: bytes = b""
    ) -> tuple[CommandResult, float]:
        return call_with_deadline(
            lambda: self._execute(initiator, cdb, data), self.timeout, self.commands
        )

    # -- the run ----------------------------------------------------------------------------
    def run(self) -> Run:
        try:
            return self._run()
        finally:
            self.commands.close()

    def _run(self) -> Run:
        missing = sorted(self.scenario.needs - self.backend.capabilities)
        if missing:
            return self._finish(
                Verdict.UNSUPPORTED,
                f"{self.scenario.name} needs {', '.join(missing)}, which backend "
                f"{self.backend.name} cannot do (it offers: "
                f"{', '.join(sorted(self.backend.capabilities)) or 'nothing'})",
            )
        wrong = [
            actor
            for actor, name in self.scenario.initiators.items()
            for device in self.devices.values()
            if device.actors[actor].transport_id != TransportId.from_name(name)
        ]
        if wrong:
            return self._finish(
                Verdict.UNSUPPORTED,
                f"{self.scenario.name} names the initiators of {', '.join(sorted(set(wrong)))}; "
                f"this run's backend was opened with other names",
            )
        if len(self.devices) < len(self.scenario.devices):
            return self._finish(
                Verdict.UNSUPPORTED,
                f"{self.scenario.name} spans {len(self.scenario.devices)} LUs "
                f"({', '.join(self.scenario.devices)}); this run was given one",
            )
        number = 0
        try:
            for device in self.devices.values():
                self.device = device
                self.state = self.observe()
            for number, item in enumerate(self.scenario.items, 1):
                self.clock += item.wait
                if self.on_item is not None:
                    self.on_item(number - 1, self._label_of(number))
                self.use(item)
                first = len(self.rows)
                self.run_item(number, item)
                if item.device and len(self.devices) > 1:  # say which LU the rows addressed
                    for row in self.rows[first:]:
                        row.command = f"{self.device.name}: {row.command}"
        except Hung as e:
            on_lio = Capability.REAL_KERNEL in self.backend.capabilities
            label = "LIO" if on_lio else f"backend {self.backend.name}"
            for actor, command in self._hung_commands(number):
                self.rows.append(
                    Row(number, self.clock, actor, command, "HUNG (no answer)", RowKind.HANG,
                        ok=False, failures=[f"hung: {e}"], state=self.state)
                )  # fmt: skip
            return self._finish(
                Verdict.HUNG, f"{label} hung at step {number}: {self._label_of(number)} {e}"
            )
        except (BackendFault, ScenarioError) as e:
            return self._finish(Verdict.ERROR, f"step {number}: {e}")
        failures = row_failures(self.rows)
        if failures:
            return self._finish(
                Verdict.FAIL, f"{len(failures)} expectation(s) failed; first: {failures[0]}"
            )
        return self._finish(Verdict.PASS, f"all {len(self.scenario.items)} steps as expected")

    def _item(self, number: int) -> Item | None:
        return self.scenario.items[number - 1] if number else None

    def _label_of(self, number: int) -> str:
        item = self._item(number)
        if isinstance(item, Step):
            return f"{item.command.label()} from {self.roles.get(item.actor, item.actor)}"
        if isinstance(item, Race):
            return " / ".join(f"{s.command.label()} from {s.actor}" for s in item.steps)
        return item.label if isinstance(item, Action) else "setup"

    def _hung_commands(self, number: int) -> list[tuple[str, str]]:
        """(actor, command) pairs that were outstanding when step ``number`` hung."""
        item = self._item(number)
        if isinstance(item, Step):
            return [(self.roles.get(item.actor, item.actor), item.command.label())]
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
        """TEST UNIT READY until it answers anything but a unit attention (at most
        ``MAX_UA_REPORTS`` times); one timeline row per unit attention reported."""
        initiator = self.actors[actor]
        cdb, data = TestUnitReady().build(self, actor)
        answers: list[tuple[CommandResult, float]] = []
        for _ in range(MAX_UA_REPORTS):
            answers.append(self.send(initiator, cdb, data))
            if not is_unit_attention(answers[-1][0]):
                break
        return checks.unit_attention_rows(number, self.clock, actor, step, self.state, answers)

    def _command_row(
        self,
        number: int,
        step: Step,
        actor: str,
        expect: tuple[Outcome, ...],
        sent: tuple[bytes, bytes],
        answer: tuple[CommandResult, float],
    ) -> Row:
        result, took = answer
        label = step.command.label()
        row = Row(number, self.clock, actor, label, str(result), RowKind.COMMAND,
                  elapsed_ms=took * 1000, phase=step.phase, note=step.note,
                  status=int(result.status))  # fmt: skip
        checks.judge_answer(row, step.command, expect, result, self, sent[1])
        return row

    def run_step(self, number: int, step: Step) -> None:
        actor = self.resolve(step.actor)
        if step.clear_ua:
            self.rows += self.clear_unit_attentions(number, step, actor)
        sent = step.command.build(self, actor)
        if step.stall:
            self.device.backend.stall_next(self.actors[actor], sent[0][0], step.stall)
        answer = self.send(self.actors[actor], *sent)
        row = self._command_row(number, step, actor, step.expect, sent, answer)
        self.rows.append(row)
        self.check_state(row, step.state)

    def run_race(self, number: int, item: Race) -> None:
        for step in item.steps:
            self.rows += self.clear_unit_attentions(number, step, step.actor)
        built = [(step, step.command.build(self, step.actor)) for step in item.steps]
        calls = [partial(self._execute, self.actors[s.actor], *sent) for s, sent in built]
        rows = []
        for (step, sent), answer in zip(built, self.send_race(calls, self.timeout), strict=True):
            expect, note = race.expectation(answer[0], item)
            row = self._command_row(number, step, step.actor, expect, sent, answer)
            row.note = note
            rows.append(row)
        self.rows += rows
        self.roles.update(race.roles(rows))
        self.check_state(rows[-1], item.state)
        for row in rows:
            row.state = self.state

    def _initiator(self, action: Action) -> Initiator | None:
        """The initiator an action concerns: its actor's, when its lane is an actor."""
        actor = self.roles.get(action.actor, action.actor)
        return self.actors.get(actor)

    def run_action(self, number: int, action: Action) -> None:
        took = 0.0
        if action.capability is not None:
            _, took = call_with_deadline(
                partial(self.device.backend.perform, action.capability, self._initiator(action)),
                self.timeout,
            )
        row = Row(number, self.clock, action.actor, action.label,
                  "done" if action.capability else "—", RowKind.ACTION, elapsed_ms=took * 1000,
                  phase=action.phase, note=action.note)  # fmt: skip
        self.rows.append(row)
        self.check_state(row, action.state)

    # -- observing --------------------------------------------------------------------------
    def observe(self) -> PrState | None:
        """READ FULL STATUS from the observer (clearing its own unit attentions)."""
        cdb = cdbs.persistent_reserve_in(PersistentReserveInAction.READ_FULL_STATUS)
        for _ in range(MAX_UA_REPORTS):
            result, _ = self.send(self.observer, cdb)
            if is_unit_attention(result):
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
        if check is not None:
            checks.judge_state(row, self.state, before, check, self.resolve, self.scenario.keys)
