"""Drive the lockstep machine for a budget of steps; minimise and report a difference."""

from __future__ import annotations

import time
from dataclasses import dataclass

from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from scsi_pr.rig.lockstep.machine import StepCounter, machine_class
from scsi_pr.rig.lockstep.session import Opener, Session, minimise

PER_SESSION = 50  # steps per hypothesis example, each on a freshly reset pair
#: the longest session: hypothesis draws a session's steps from one bounded buffer, so it cut
#: longer ones short (about 437 steps, silently) and from about 300 a two-session round failed
#: its ``large_base_example`` health check, a traceback (measured, hypothesis 6.170)
MAX_PER_SESSION = 200


@dataclass
class Report:
    compared: int
    sessions: int
    seconds: float
    #: the session that found a difference, and the shortest program that still shows one
    failed: Session | None = None
    minimal: Session | None = None

    def summary(self, model: str, device: str) -> str:
        found = "0 differences" if self.failed is None else "a difference"
        return (f"lockstep: {self.compared} steps compared in {self.sessions} sessions "
                f"(model {model} vs device {device}), {found}, {self.seconds:.0f} s")  # fmt: skip


def run(
    open_model: Opener,
    open_device: Opener,
    steps: int,
    initiators: int,
    per_session: int = PER_SESSION,
) -> Report:
    """Compare at least ``steps`` steps, or stop at the first difference."""
    if not 1 <= per_session <= MAX_PER_SESSION:
        raise ValueError(f"per_session {per_session}: 1..{MAX_PER_SESSION}")
    started = time.monotonic()
    counter = StepCounter()
    sessions = 0

    def open_session() -> Session:
        nonlocal sessions
        sessions += 1
        return Session.open(open_model, open_device)

    while counter.compared < steps and counter.failed is None:
        remaining = steps - counter.compared
        config = settings(
            max_examples=max(1, -(-remaining // per_session)),
            stateful_step_count=per_session,
            deadline=None,
            database=None,
            # no shrinking by hypothesis: ``minimise`` drops steps itself, on fresh pairs
            phases=[Phase.generate],
            # every step is a command on a real device: slow by design
            suppress_health_check=[HealthCheck.too_slow],
            report_multiple_bugs=False,
            print_blob=False,
        )
        try:
            run_state_machine_as_test(machine_class(open_session, counter, initiators),
                                      settings=config)  # fmt: skip
        except Exception:
            if counter.failed is None:
                raise
    report = Report(counter.compared, sessions, time.monotonic() - started, counter.failed)
    if report.failed is not None:
        program = [r.step for r in report.failed.history]
        report.minimal = minimise(open_model, open_device, program)
        report.seconds = time.monotonic() - started
    return report
