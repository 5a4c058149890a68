"""Host tier: every scenario on the simulated LU, directly and through real helper sockets.

The verdicts asserted here are the scenario engine's, which checks each step's status, sense,
data-in and the PR state a separate observer initiator reads back; so a model or helper bug in
fencing, preemption, APTPL or REGISTER AND MOVE fails these tests.
"""

from __future__ import annotations

import pytest
from needs import unavailable

from scsi_pr.rig.backends import BackendUnavailable
from scsi_pr.rig.scenarios.cli import run_scenario
from scsi_pr.rig.scenarios.engine import EXIT_CODES, Verdict
from scsi_pr.rig.scenarios.library import SCENARIOS

HOST_BACKENDS = ("sim", "helper-sim")
#: capabilities the host backends lack: sim has no helper process to restart (by design).
#: When a backend gains one, this test fails (PASS is not UNSUPPORTED) and the entry must go:
#: a gap is recorded here, never silently accepted.
NOT_ON = {
    ("helper-restart", "sim"): "restart_helper",
}


def expected_verdict(name: str, backend: str) -> Verdict:
    return Verdict.UNSUPPORTED if (name, backend) in NOT_ON else Verdict.PASS


@pytest.mark.parametrize("backend_name", HOST_BACKENDS)
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_on_host_backends(name: str, backend_name: str) -> None:
    try:
        run = run_scenario(SCENARIOS[name], backend_name)
    except BackendUnavailable as e:
        unavailable(f"backend {backend_name} unavailable: {e}")
    want = expected_verdict(name, backend_name)
    assert run.verdict == want, f"{run.message}\n" + "\n".join(run.failures)
    assert run.exit_code == EXIT_CODES[want]
    if want == Verdict.UNSUPPORTED:
        assert NOT_ON[(name, backend_name)] in run.message
        assert run.rows == []  # nothing was sent
        return
    # every step ran and left a row; no expectation was skipped
    steps = {r.step for r in run.rows}
    assert steps == set(range(1, len(SCENARIOS[name].items) + 1))
    assert all(r.ok is not False for r in run.rows)
    assert run.failures == []


def test_fence_scsi_fenced_node_conflicts_and_reads() -> None:
    """The facts the issue names, read from the timeline rather than the verdict alone."""
    run = run_scenario(SCENARIOS["fence-scsi"], "sim")
    rows = [r for r in run.rows if r.actor == "node2" and r.phase == "node2 is fenced"]
    by_command = {r.command.split()[0]: r for r in rows}
    assert by_command["TEST"].result == (
        "CHECK CONDITION (UNIT ATTENTION: REGISTRATIONS PREEMPTED)"
    )
    assert by_command["WRITE(16)"].result == "RESERVATION CONFLICT"
    assert by_command["READ(16)"].result == "GOOD"
    fence = next(r for r in run.rows if "PREEMPT AND ABORT" in r.command)
    assert fence.state is not None and fence.state.holder == "node1"
    assert list(fence.state.keys) == ["node1"]


def test_split_brain_has_exactly_one_winner_each_time() -> None:
    for _ in range(5):
        run = run_scenario(SCENARIOS["split-brain"], "sim")
        assert run.verdict == Verdict.PASS, run.message
        race = [r for r in run.rows if r.note in ("won the race", "lost the race")]
        assert sorted(r.note for r in race) == ["lost the race", "won the race"]
        winner = next(r.actor for r in race if r.note == "won the race")
        assert run.rows[-1].state is not None
        assert run.rows[-1].state.holder == winner
        assert list(run.rows[-1].state.keys) == [winner]


def test_failover_aptpl_state_survives_power_cycles() -> None:
    run = run_scenario(SCENARIOS["failover-aptpl"], "sim")
    assert run.verdict == Verdict.PASS, run.message
    cycles = [r for r in run.rows if r.command == "power cycle"]
    assert [c.state.holder for c in cycles if c.state] == ["node1", "node2"]
    # the power cycle raised POWER ON unit attentions, shown on their own rows
    assert any("POWER ON" in r.result for r in run.rows if r.kind == "ua")
