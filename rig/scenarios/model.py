"""What a scenario is: actors, steps and the outcomes each step must have.

A scenario is data, not code: a list of ``Step`` (one initiator sends one command and expects
an outcome) and ``Race`` (several initiators send at once; exactly one must win), plus
``Action`` steps for events that are not commands (power cycle of the LUN, restart of the PR
helper). The engine (``scenarios.engine``) runs the same scenario on any backend and checks
every expectation; nothing here talks to a device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import EllipsisType
from typing import TYPE_CHECKING

from scsi_pr.rig.backends import Capability, initiator_name
from scsi_pr.rig.errors import RigError
from scsi_pr.sim.constants import ADDITIONAL_SENSE_BY_CODE, AdditionalSense, SenseKey, Status
from scsi_pr.sim.result import CommandResult

if TYPE_CHECKING:
    from scsi_pr.rig.scenarios.commands import Command


class ScenarioError(RigError, ValueError):
    """A scenario definition is inconsistent (unknown actor, empty race, ...)."""


@dataclass(frozen=True)
class Outcome:
    """One acceptable answer: a status and, for CHECK CONDITION, the sense it must carry.

    ``asc``/``ascq`` None match any value, so ``Outcome.ua(asc=0x29)`` accepts every "power on,
    reset" flavour a device may report after a power cycle.
    """

    status: Status
    key: SenseKey | None = None
    asc: int | None = None
    ascq: int | None = None
    text: str = ""

    @classmethod
    def sense(cls, key: SenseKey, asc: int | None = None, ascq: int | None = None) -> Outcome:
        """CHECK CONDITION with ``key`` and, where given, ASC/ASCQ; its text is the one form a
        scenario file writes and reads back: ``KEY (NAME)`` for a code SPC names,
        ``KEY (ASC xxh)`` for any ASCQ of one ASC, ``KEY (ASC xxh ASCQ yyh)``, ``KEY (any)``."""
        if asc is not None and ascq is not None and (asc, ascq) in ADDITIONAL_SENSE_BY_CODE:
            detail = ADDITIONAL_SENSE_BY_CODE[asc, ascq].name
        elif asc is not None:
            detail = f"ASC {asc:02X}h" + ("" if ascq is None else f" ASCQ {ascq:02X}h")
        else:
            detail = "any"
        return cls(Status.CHECK_CONDITION, key, asc, None if asc is None else ascq,
                   f"{key.name.replace('_', ' ')} ({detail})")  # fmt: skip

    @classmethod
    def ua(cls, code: AdditionalSense | None = None, *, asc: int | None = None) -> Outcome:
        if code is not None:
            return cls.sense(SenseKey.UNIT_ATTENTION, code.asc, code.ascq)
        return cls.sense(SenseKey.UNIT_ATTENTION, asc)

    @classmethod
    def check(cls, key: SenseKey, code: AdditionalSense) -> Outcome:
        return cls.sense(key, code.asc, code.ascq)

    def matches(self, result: CommandResult) -> bool:
        if int(result.status) != self.status:
            return False
        if self.key is None:
            return True
        sense = result.sense_data
        if sense is None or sense.key != self.key:
            return False
        return (self.asc is None or sense.asc == self.asc) and (
            self.ascq is None or sense.ascq == self.ascq
        )

    def __str__(self) -> str:
        return self.text or Status(self.status).name.replace("_", " ")


GOOD = Outcome(Status.GOOD)
CONFLICT = Outcome(Status.RESERVATION_CONFLICT)
TASK_ABORTED = Outcome(Status.TASK_ABORTED)

#: A holder value meaning "every registrant holds" (all-registrants reservation types).
ALL_REGISTRANTS = "all registrants"


@dataclass(frozen=True)
class StateCheck:
    """What READ FULL STATUS must show after a step (read by a separate observer nexus).

    ``holder``: actor (or role) name, ``ALL_REGISTRANTS``, ``None`` for "no reservation", or
    ``...`` for "don't check". ``registered``: exactly these actors (or roles) are registered,
    each with its key from ``Scenario.keys``. ``unchanged``: registrations, reservation and
    PRGENERATION equal what was observed before the step.
    """

    holder: str | EllipsisType | None = ...
    registered: tuple[str, ...] | None = None
    unchanged: bool = False


@dataclass(frozen=True)
class Step:
    """``actor`` sends ``command``; the answer must match one of ``expect``.

    ``clear_ua``: like ``sg_turs`` before every fence_scsi command (and the OS's own retries),
    send TEST UNIT READY until it returns GOOD first, so a pending unit attention is reported
    on its own timeline row instead of failing the command. ``expect_ua`` lists unit attentions
    that clearing must report (an int is an ASC with any ASCQ, e.g. 0x29 for "power on,
    reset"). ``wait`` advances scenario time (shown, never slept).
    """

    actor: str
    command: Command
    expect: tuple[Outcome, ...] = (GOOD,)
    state: StateCheck | None = None
    expect_ua: tuple[AdditionalSense | int, ...] = ()
    clear_ua: bool = True
    wait: float = 0.0
    phase: str = ""
    note: str = ""
    #: which of the scenario's ``devices`` (LUs) the command goes to; "" = the first
    device: str = ""
    #: seconds the LU holds back its answer to this command (a storage stall; real time, so
    #: one longer than the run's ``--timeout`` ends it "hung")
    stall: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.expect, Outcome):
            object.__setattr__(self, "expect", (self.expect,))
        if not self.expect:
            raise ScenarioError(f"step {self.command} of {self.actor} expects nothing")


@dataclass(frozen=True)
class Race:
    """``steps`` are sent at the same moment from different initiators.

    Exactly one must answer GOOD; every other must answer one of ``losers_expect``. The winner
    and loser actors are bound to the role names ``winner``/``loser`` for later steps.
    """

    steps: tuple[Step, ...]
    losers_expect: tuple[Outcome, ...] = (CONFLICT,)
    state: StateCheck | None = None
    wait: float = 0.0
    phase: str = ""
    note: str = ""
    device: str = ""

    def __post_init__(self) -> None:
        actors = [s.actor for s in self.steps]
        if len(actors) < 2 or len(set(actors)) != len(actors):
            raise ScenarioError("a race needs two or more distinct actors")


@dataclass(frozen=True)
class Action:
    """An event that is not a SCSI command: ``capability`` names the backend action to perform
    (``Capability.POWER_CYCLE``, ``RESTART_HELPER``); ``None`` is a narrative marker (a node
    dies)."""

    label: str
    capability: Capability | None = None
    actor: str = "LUN"
    state: StateCheck | None = None
    wait: float = 0.0
    phase: str = ""
    note: str = ""
    device: str = ""


Item = Step | Race | Action

#: Role names a Race binds; steps may use them as actors.
ROLES = ("winner", "loser")


@dataclass(frozen=True)
class Source:
    """Where the command sequence was read: the software, its file, and what was assumed."""

    software: str
    files: tuple[str, ...]
    assumed: str = ""


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    summary: str
    actors: tuple[str, ...]
    items: tuple[Item, ...]
    source: Source
    #: key of each actor, for display (keys are shown by actor name where possible)
    keys: dict[str, int] = field(default_factory=dict)
    #: names of the LUs the scenario spans (fence_scsi over several disks); () = one LU. Each
    #: actor reaches each LU through its own I_T nexus; items say which LU they address.
    devices: tuple[str, ...] = ()
    #: actors whose initiator has a name of the scenario's choosing (a TransportID in the forms
    #: ``TransportId.from_name`` reads); the others get the backend's own
    initiators: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        known = {*self.actors, *ROLES}
        for item in self.items:
            if item.device and item.device not in self.devices:
                raise ScenarioError(f"{self.name}: unknown device {item.device!r}")
            steps = item.steps if isinstance(item, Race) else (item,)
            for step in steps:
                if isinstance(step, Step) and step.actor not in known:
                    raise ScenarioError(f"{self.name}: unknown actor {step.actor!r}")

    @property
    def needs(self) -> frozenset[Capability]:
        """Backend capabilities the scenario cannot run without."""
        actions = {i.capability for i in self.items if isinstance(i, Action) and i.capability}
        several = {Capability.INDEPENDENT_LUS} if len(self.devices) > 1 else set()
        stalls = (
            {Capability.STALL}
            if any(isinstance(i, Step) and i.stall for i in self.items)
            else set()
        )
        named = {Capability.NAMED_INITIATORS} if self.initiators else set()
        return frozenset(actions | several | stalls | named)

    def initiator_names(self) -> list[str]:
        """Names to open a backend with: each actor's own, or the backend's default, in order
        (``[]`` when no actor names its initiator)."""
        if not self.initiators:
            return []
        return [self.initiators.get(a, initiator_name(i)) for i, a in enumerate(self.actors)]

    @property
    def hangs_lio(self) -> bool:
        """Sends PREEMPT AND ABORT, which hangs LIO's tcm_loop (see docs/scenarios.md)."""
        from scsi_pr.rig.scenarios.commands import Preempt

        def steps(i: Item) -> tuple[Step | Action, ...]:
            return i.steps if isinstance(i, Race) else (i,)

        return any(
            isinstance(s, Step) and isinstance(s.command, Preempt) and s.command.abort
            for i in self.items
            for s in steps(i)
        )
