"""What a scenario run leaves: its verdict, and one timeline row per command, unit attention
or action.

Verdicts are distinct exit codes so scripts and tests can tell "the device misbehaved" (FAIL)
from "the device hung" (HUNG) and "this backend cannot do that" (UNSUPPORTED).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from scsi_pr.rig.scenarios.model import Scenario
from scsi_pr.rig.scenarios.observe import PrState


class RowKind(StrEnum):
    COMMAND = "command"
    UA = "ua"  # a unit attention reported while clearing them before a step
    ACTION = "action"
    HANG = "hang"  # a command (or action) that never answered


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


@dataclass
class Row:
    """One line of the timeline."""

    step: int
    time: float
    actor: str
    command: str
    result: str
    kind: RowKind
    ok: bool | None = None  # None: informational, no expectation
    expected: str = ""
    failures: list[str] = field(default_factory=list)
    state: PrState | None = None
    elapsed_ms: float = 0.0
    phase: str = ""
    note: str = ""
    #: SCSI status of the answer the row shows; None where there is none (actions, hangs)
    status: int | None = None

    def fail(self, *failures: str) -> None:
        """Record failed expectations: the row is not ok whatever else it showed."""
        self.failures += failures
        self.ok = False

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
        return row_failures(self.rows)

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


def row_failures(rows: list[Row]) -> list[str]:
    """Every failed expectation, labelled with its step and actor, in timeline order."""
    return [f"step {r.step} ({r.actor}): {f}" for r in rows for f in r.failures]
