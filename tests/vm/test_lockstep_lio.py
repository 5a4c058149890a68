"""The lockstep differential on real LIO: the model with this kernel's LIO profile and a LIO
LUN get the same commands from three initiators, step by step, and must answer alike.

``SCSI_PR_LOCKSTEP_STEPS`` sets the budget (default 2,000 for CI; ``scripts/soak --lio`` runs
50,000). The count compared is printed in the run's summary. A difference fails the test with
the minimised replay script (``scsi-pr lockstep --replay FILE`` runs it again). PREEMPT AND
ABORT runs apart, in the hang phase (``SCSI_PR_LOCKSTEP_ABORT_RUNS``, default 3).
"""

from __future__ import annotations

import os
import platform

import pytest
from needs import unavailable
from run_summary import SUMMARY

from scsi_pr.rig.backends import Backend, BackendUnavailable, SimBackend, open_backend
from scsi_pr.rig.lockstep.abort import DEFAULT_RUNS, run_preempt_and_abort
from scsi_pr.rig.lockstep.run import run
from scsi_pr.sim import profiles

pytestmark = pytest.mark.vm
INITIATORS = 3
STEPS = int(os.environ.get("SCSI_PR_LOCKSTEP_STEPS", "2000"))
ABORT_RUNS = int(os.environ.get("SCSI_PR_LOCKSTEP_ABORT_RUNS", str(DEFAULT_RUNS)))
PROFILE = profiles.lio_profile_for(platform.release()) or profiles.LIO_6_1


def open_model() -> Backend:
    return SimBackend(initiators=INITIATORS, profile=PROFILE.name)


def open_device() -> Backend:
    return open_backend("lio", INITIATORS)


def needs_lio() -> None:
    try:
        open_device().__exit__(None, None, None)
    except BackendUnavailable as e:
        unavailable(f"needs LIO (the VM): {e}")


def test_model_and_lio_answer_alike_step_by_step() -> None:
    needs_lio()
    profile = PROFILE
    try:
        report = run(open_model, open_device, STEPS, INITIATORS)
    finally:  # the LU as the next test finds any: a difference leaves its program's state
        open_device().__exit__(None, None, None)
    SUMMARY.append(report.summary(profile.name, f"lio on {platform.release()}"))
    if report.minimal is not None:
        pytest.fail(report.minimal.replay([report.summary(profile.name, "lio")]), pytrace=False)
    assert report.compared >= STEPS


@pytest.mark.lio_hangs(reason="each PREEMPT AND ABORT that succeeds wedges its LU on tcm_loop")
def test_preempt_and_abort_in_lockstep() -> None:
    """In the hang phase, last: programs ending in PREEMPT AND ABORT, each on a fresh pair. Both
    sides must give the same answer, a PREEMPT AND ABORT that never completes included (the
    profile reproduces LIO's stall); at least one run must reach that stall."""
    needs_lio()
    report = run_preempt_and_abort(open_model, open_device, ABORT_RUNS, INITIATORS)
    SUMMARY.append(report.summary(PROFILE.name, f"lio on {platform.release()}"))
    if report.failed is not None:
        pytest.fail(report.failed.replay([report.summary(PROFILE.name, "lio")]), pytrace=False)
    assert report.runs == ABORT_RUNS + 1 and report.stalled >= 1  # the sure run stalls
