"""The reusable PR state machine (tests/pr_machine/) against the model, with power cycles
and an APTPL store, so APTPL round trips are exercised too."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test
from pr_machine import PRMachine, Target

from scsi_pr.rig.backends import SimBackend
from scsi_pr.sim.device import LogicalUnit
from scsi_pr.sim.store import MemoryAptplStore

MACHINE_SETTINGS = settings(
    max_examples=200,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _sim_target() -> Target:
    lu = LogicalUnit(target_ports=(1, 2, 3), store=MemoryAptplStore())
    backend = SimBackend(initiators=3, lu=lu)
    return Target.from_initiators(backend.initiators, power_cycle=backend.power_cycle)


def test_pr_machine_on_model() -> None:
    run_state_machine_as_test(lambda: PRMachine(_sim_target()), settings=MACHINE_SETTINGS)
