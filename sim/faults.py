"""Fault injection: make the LU slow or failing for chosen initiators or commands.

The model stays sans-IO: a ``Stall`` is returned to the caller as ``CommandResult.stall`` and
the I/O edge (helper executor, rig backend, scenario engine) does the waiting.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from scsi_pr.sim.nexus import ITNexus
from scsi_pr.sim.result import CommandResult


@dataclass(frozen=True)
class Stall:
    """Answer normally, but only after ``seconds``."""

    seconds: float


@dataclass(frozen=True)
class Fail:
    """Do not execute the command; answer ``result`` instead (e.g. BUSY, a CHECK CONDITION)."""

    result: CommandResult


Fault = Stall | Fail
FaultHook = Callable[[ITNexus, bytes], Fault | None]


@dataclass
class FaultRule:
    """Matches when the initiator (by TransportID text) and opcode are in the given sets
    (empty set = any)."""

    action: Fault
    initiators: frozenset[str] = frozenset()
    opcodes: frozenset[int] = frozenset()

    def matches(self, nexus: ITNexus, cdb: bytes) -> bool:
        if self.initiators and str(nexus.initiator) not in self.initiators:
            return False
        return not self.opcodes or (bool(cdb) and cdb[0] in self.opcodes)


@dataclass
class FaultRules:
    """A ready-made fault hook: the first matching rule wins."""

    rules: list[FaultRule] = field(default_factory=list)

    def add(
        self, action: Fault, initiators: Iterable[str] = (), opcodes: Iterable[int] = ()
    ) -> FaultRule:
        rule = FaultRule(action, frozenset(initiators), frozenset(opcodes))
        self.rules.append(rule)
        return rule

    def __call__(self, nexus: ITNexus, cdb: bytes) -> Fault | None:
        for rule in self.rules:
            if rule.matches(nexus, cdb):
                return rule.action
        return None
