"""The reusable PR state machine (tests/pr_machine/) on the selected backend, step by step
through the initiators' ``execute``. Where the device's profile deviates (LIO, or the model as
LIO) the known deviations are accepted branches and PREEMPT AND ABORT is left out (it hangs
tcm_loop), so what fails here is a new difference."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test
from pr_machine import PRMachine, Target

from scsi_pr.helper.executors import limits as L
from scsi_pr.rig.pytest_plugin import KERNEL_BACKENDS
from scsi_pr.sim.deviations import PREEMPT_AND_ABORT_STALLS
from scsi_pr.sim.profiles import Profile

#: few examples: on a real LUN every step is several SG_IO round trips in a TCG VM
EXAMPLES = {"sim": 60, "helper-sim": 20}
DEFAULT_EXAMPLES = 20


@pytest.mark.path_limit(L.IOCTL_NO_READ_FULL_STATUS.name)
@pytest.mark.path_limit(L.IOCTL_NO_REGISTER_AND_MOVE.name)
@pytest.mark.path_limit(L.IOCTL_SENSE_LOST.name)
@pytest.mark.path_limit(L.IOCTL_ILLEGAL_REQUEST_AS_EINVAL.name)
@pytest.mark.path_limit(L.IOCTL_UNIT_ATTENTION_LOST.name)
@pytest.mark.path_limit(L.MPATH_REGISTRATION_PER_PATH.name)
def test_pr_machine(
    nexuses: list,
    request: pytest.FixtureRequest,
    device_profile: Profile,
    path_limits: frozenset[str],
) -> None:
    backend = request.node.callspec.params.get("backend", "sim")
    if L.MPATH_REGISTRATION_PER_PATH.name in path_limits:
        # The oracle gives each initiator one I_T nexus; a multipath host has one per path
        # and which one holds a reservation is the library's choice. The machine drives the
        # host's first path directly (its other path stays unregistered); the map's answers
        # are the other conformance tests' (marked with the mpath limits).
        nexuses = [nexuses[0].direct, *nexuses[1:]]
    target = Target.from_initiators(
        nexuses,
        deviations=frozenset(d.name for d in device_profile.deviations),
        preempt_and_abort=PREEMPT_AND_ABORT_STALLS not in device_profile,
        path_limits=path_limits,
    )
    run_state_machine_as_test(
        lambda: PRMachine(target),
        settings=settings(
            max_examples=EXAMPLES.get(backend, DEFAULT_EXAMPLES),
            stateful_step_count=30,
            deadline=None,
            database=None,
            # a step is a command on a real (or simulated) device: slow by design
            suppress_health_check=[HealthCheck.too_slow],
            # Shrinking replays hundreds of programs: minutes on a TCG VM. The failure report
            # still lists every step with its result (the machine's notes).
            phases=[Phase.explicit, Phase.generate] if backend in KERNEL_BACKENDS else list(Phase),
        ),
    )
