"""Steps of a lockstep run and their replay file: what was sent, decoded for humans.

A replay file is JSON lines, one step each (initiator index, CDB and data-out in hex); lines
starting with ``#`` are comments (the decoded command and both answers), so the file reads as
a script and runs again as one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from scsi_pr.rig.errors import RigError, reason
from scsi_pr.sim.describe import describe


class ReplayError(RigError, ValueError):
    """A replay file that cannot be read back: says which line and why."""


@dataclass(frozen=True)
class Step:
    """One command sent by initiator ``initiator`` (an index into both sides' initiators)."""

    initiator: int
    cdb: bytes
    data: bytes = b""

    def line(self) -> str:
        return f"initiator {self.initiator}: {describe(self.cdb, self.data)}"

    def to_json(self) -> str:
        return json.dumps({"initiator": self.initiator, "cdb": self.cdb.hex(),
                           "data": self.data.hex()})  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> Step:
        item = json.loads(text)
        if not isinstance(item, dict) or set(item) != {"initiator", "cdb", "data"}:
            raise ValueError("a step is an object with initiator, cdb and data")
        initiator = item["initiator"]
        if not isinstance(initiator, int) or isinstance(initiator, bool) or initiator < 0:
            raise ValueError(f"initiator {initiator!r} is not an index")
        cdb, data = bytes.fromhex(item["cdb"]), bytes.fromhex(item["data"])
        if not cdb:
            raise ValueError("empty CDB")
        return cls(initiator, cdb, data)


def replay_text(steps: Iterable[tuple[Step, str]], header: Iterable[str] = ()) -> str:
    """The replay script: ``header`` lines, then each step's decoded line and answers as a
    comment above the step itself."""
    lines = [f"# {h}" for h in header]
    for number, (step, answers) in enumerate(steps, 1):
        lines.append(f"# {number:>3}  {step.line()}")
        lines += [f"#      {a}" for a in answers.splitlines()]
        lines.append(step.to_json())
    return "\n".join(lines) + "\n"


def read_replay(path: Path, initiators: int | None = None) -> list[Step]:
    """The steps of the replay file at ``path``; ReplayError for any file that is not one
    (unreadable, not UTF-8, a bad line), so the CLI refuses it in one line, not a traceback.

    ``initiators``: the run's count; a step naming an initiator beyond it is refused here, by
    its line, rather than as a LockstepError half-way through the replay."""
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ReplayError(f"cannot read {path}: {reason(e)}") from e
    steps = []
    for number, raw in enumerate(content.splitlines(), 1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        try:
            step = Step.from_json(text)
        except (ValueError, TypeError, KeyError) as e:
            raise ReplayError(f"{path}:{number}: {e}") from e
        if initiators is not None and step.initiator >= initiators:
            raise ReplayError(
                f"{path}:{number}: initiator {step.initiator}, but the run has {initiators} "
                "(see --initiators)"
            )
        steps.append(step)
    if not steps:
        raise ReplayError(f"{path}: no steps")
    return steps
