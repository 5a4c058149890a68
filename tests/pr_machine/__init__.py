"""A hypothesis state machine that checks any PR device against an oracle written from SPC-5.

Reusable on every backend: the machine reaches the device only through one callable,
``execute(initiator_index, cdb, data) -> CommandResult`` (plus an optional ``power_cycle``), so
the same rules can drive the in-process model or, step by step, a LIO LUN in a VM.

- ``rules``: the state machine (``PRMachine``): commands, invariants.
- ``plumbing``: how the machine sends a step and checks it (``PRMachine``'s base): unit
  attentions, the PR state read back, branch picking.
- ``oracle``: the second reading of SPC-5 the machine compares against, independent of ``sim/``.
- ``deviations``: LIO's known deviations, as tagged branches accepted only where the harness
  lists them (``LIO_DEVIATIONS``).
- ``device``: how the machine reaches a device (``Target``) and reads PR IN answers back.
"""

from __future__ import annotations

from pr_machine.deviations import LIO_DEVIATIONS, OracleWithDeviations
from pr_machine.device import (
    Observed,
    Target,
)
from pr_machine.oracle import Branch, Oracle, Outcome, PRState, media_conflicts
from pr_machine.rules import PRMachine

__all__ = [
    "LIO_DEVIATIONS",
    "Branch",
    "Observed",
    "Oracle",
    "OracleWithDeviations",
    "Outcome",
    "PRMachine",
    "PRState",
    "Target",
    "media_conflicts",
]
