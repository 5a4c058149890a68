"""What one step showed its initiator, taken from what ``sg_persist --hex`` printed.

sg3_utils prints a PR IN header (``PR generation=0x…``) as text and only the descriptors as a
hex dump (READ KEYS, READ RESERVATION, READ FULL STATUS; REPORT CAPABILITIES in full): an
observation keeps the generation and those bytes, which ``scsi_pr.sim.pr_in_data`` reads. Host
steps are logged as JSON lines so a recorded run can be replayed
(tests/rig/test_guest_e2e_checks.py).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from scsi_pr.rig.guest.console import StepResult

_GENERATION = re.compile(r"PR generation=0x([0-9a-fA-F]+)")
HOST_LOG_TAG = "host-result"


@dataclass(frozen=True)
class Observation:
    """One step as the initiator saw it: exit status, PRgeneration and the response bytes that
    ``sg_persist --hex`` printed (descriptors only for READ KEYS/RESERVATION/FULL STATUS)."""

    rc: int | None
    generation: int | None
    data: str  # hex

    @classmethod
    def from_step(cls, result: StepResult | None) -> Observation:
        if result is None:
            return cls(None, None, "")
        gen = next((int(m.group(1), 16) for m in map(_GENERATION.search, result.out) if m), None)
        return cls(result.rc, gen, result.data.hex())


def host_log_line(result: StepResult) -> str:
    """A host step as one JSON log line, so a recorded run can be replayed (tests/rig)."""
    return f"{HOST_LOG_TAG} " + json.dumps(
        {"name": result.name, "rc": result.rc, "out": result.out, "err": result.err}
    )


def parse_host_log_line(line: str) -> StepResult | None:
    """The host step ``host_log_line`` wrote, or None for any other line (guest console)."""
    tag, _, payload = line.partition(" ")
    if tag != HOST_LOG_TAG:
        return None
    d = json.loads(payload)
    return StepResult(d["name"], d["rc"], d["out"], d["err"])
