"""VM tier: the scenarios on LIO (``--backend lio`` / ``helper-lio``, run by the rig's VM tier).

Scenarios that send PREEMPT AND ABORT hang LIO's tcm_loop (docs/scenarios.md): there the run
must end with the verdict HUNG and "LIO hung at step N" naming that command, never pass and
never stall. They are marked ``lio_hangs`` so the VM tier runs them last, in their own process.
Scenarios needing a capability the backend lacks (power cycle, helper restart) must say
UNSUPPORTED rather than pass.
"""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from scsi_pr.rig.backends import Backend, Capability, open_backend
from scsi_pr.rig.scenarios.engine import Run, Runner, Verdict
from scsi_pr.rig.scenarios.library import SCENARIOS
from scsi_pr.rig.scenarios.model import Scenario

pytestmark = pytest.mark.vm

HANGING = [n for n, s in SCENARIOS.items() if s.hangs_lio]
OTHERS = [n for n in SCENARIOS if n not in HANGING]


def expected(scenario: Scenario, backend: Backend) -> Verdict:
    if scenario.needs - backend.capabilities:
        return Verdict.UNSUPPORTED
    if scenario.hangs_lio and Capability.REAL_KERNEL in backend.capabilities:
        return Verdict.HUNG
    return Verdict.PASS


def run_on(scenario: Scenario, backend: Backend) -> Run:
    """Run on ``backend``, plus one more LU of the same kind per further device where the
    backend can give independent LUs (a real-kernel rig serves one LU: unsupported there)."""
    extra = len(scenario.devices) - 1 if Capability.INDEPENDENT_LUS in backend.capabilities else 0
    with ExitStack() as stack:
        more = [
            stack.enter_context(open_backend(backend.name, len(backend.initiators)))
            for _ in range(extra)
        ]
        return Runner(scenario, backend, more=more).run()


@pytest.mark.parametrize("name", OTHERS)
def test_scenario_on_backend(backend: Backend, name: str) -> None:
    scenario = SCENARIOS[name]
    run = run_on(scenario, backend)
    assert run.verdict == expected(scenario, backend), f"{run.message}\n" + "\n".join(run.failures)


@pytest.mark.lio_hangs(reason="PREEMPT AND ABORT never completes on tcm_loop")
@pytest.mark.parametrize("name", HANGING)
def test_preempt_and_abort_scenario_on_backend(backend: Backend, name: str) -> None:
    scenario = SCENARIOS[name]
    run = run_on(scenario, backend)
    want = expected(scenario, backend)
    assert run.verdict == want, f"{run.message}\n" + "\n".join(run.failures)
    if want == Verdict.HUNG:
        assert run.message.startswith("LIO hung at step ")
        assert "PREEMPT AND ABORT" in run.message
