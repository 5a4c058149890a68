"""The lockstep differential on real LIO: the model with this kernel's LIO profile and a LIO
LUN get the same commands from three initiators, step by step, and must answer alike.

``SCSI_PR_LOCKSTEP_STEPS`` sets the budget (default 2,000 for CI; ``scripts/soak --lio`` runs
50,000). The count compared is printed in the run's summary. A difference fails the test with
the minimised replay script (``scsi-pr lockstep --replay FILE`` runs it again).
"""

from __future__ import annotations

import os
import platform

import pytest
from needs import unavailable
from run_summary import SUMMARY

from scsi_pr.rig.backends import Backend, BackendUnavailable, SimBackend, open_backend
from scsi_pr.rig.lockstep.run import run
from scsi_pr.sim import profiles

pytestmark = pytest.mark.vm
INITIATORS = 3
STEPS = int(os.environ.get("SCSI_PR_LOCKSTEP_STEPS", "2000"))


def test_model_and_lio_answer_alike_step_by_step() -> None:
    profile = profiles.lio_profile_for(platform.release()) or profiles.LIO_6_1

    def open_model() -> Backend:
        return SimBackend(initiators=INITIATORS, profile=profile.name)

    def open_device() -> Backend:
        return open_backend("lio", INITIATORS)

    try:
        open_device().__exit__(None, None, None)
    except BackendUnavailable as e:
        unavailable(f"needs LIO (the VM): {e}")
    report = run(open_model, open_device, STEPS, INITIATORS)
    SUMMARY.append(report.summary(profile.name, f"lio on {platform.release()}"))
    if report.minimal is not None:
        pytest.fail(report.minimal.replay([report.summary(profile.name, "lio")]), pytrace=False)
    assert report.compared >= STEPS
