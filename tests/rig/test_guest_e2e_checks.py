"""scsi_pr.rig.guest_e2e's checks, replayed on a recorded run (no VM needed).

``data/guest_e2e_lio61.log`` is the console and host-step log of one real run inside the LIO VM:
Debian 6.1 LIO, a nested TCG guest, round r0 through the C ``qemu-pr-helper`` and round r1
through ``scsi-pr-helper``. Replaying it through ``evaluate`` must find nothing wrong; changing
any one observed fact must be caught, either as a departure from the expected values or as a
difference between the helpers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from scsi_pr.rig.backends import initiator_name
from scsi_pr.rig.guest.console import Console, StepResult
from scsi_pr.rig.guest.steps import Pause
from scsi_pr.rig.guest_e2e.checks import Port, RunResult, compare_runs, evaluate
from scsi_pr.rig.guest_e2e.cli import summary
from scsi_pr.rig.guest_e2e.driver import HELPERS
from scsi_pr.rig.guest_e2e.observation import Observation, host_log_line, parse_host_log_line
from scsi_pr.rig.guest_e2e.sequence import (
    GUEST_KEY,
    HOST_KEY,
    SEQUENCE,
    WE_RO,
    guest_steps,
    parse_pause,
    round_prefix,
)
from scsi_pr.sim.constants import LU_SCOPE
from scsi_pr.sim.pr_in_data import FullStatusDescriptor, parse_full_status_descriptors
from scsi_pr.sim.transportid import TransportId

RECORDED = Path(__file__).parent / "data" / "guest_e2e_lio61.log"
GUEST = Port(1, TransportId.from_name(initiator_name(0)).encode().hex())
HOST = Port(2, TransportId.from_name(initiator_name(1)).encode().hex())
CONNECTED = [{"id": "pr0", "connected": True}]


def replay(lines: list[str]) -> tuple[Console, list[RunResult], list[str]]:
    console = Console()
    host: dict[str, StepResult] = {}
    for line in lines:
        if line.startswith("#"):
            continue
        result = parse_host_log_line(line)
        if result is not None:
            host[result.name] = result
        else:
            console.feed(line)
    runs = [RunResult(h, pr_managers=list(CONNECTED)) for h in HELPERS]
    differences = evaluate(runs, {**console.steps, **host}, GUEST, HOST)
    return console, runs, differences


def recorded() -> list[str]:
    return RECORDED.read_text().splitlines()


def edit(lines: list[str], old: str, new: str) -> list[str]:
    hits = [i for i, line in enumerate(lines) if old in line]
    assert len(hits) == 1, f"{old!r} occurs {len(hits)} times"
    out = list(lines)
    out[hits[0]] = out[hits[0]].replace(old, new)
    return out


def test_recorded_run_passes_every_check() -> None:
    console, runs, differences = replay(recorded())
    assert console.done and console.errors == []
    assert console.pauses == [p.name for p in guest_steps(2) if isinstance(p, Pause)]
    assert [r.problems for r in runs] == [[], []]
    assert differences == []
    assert summary(runs, differences) == (True, [
        "qemu-pr-helper: 26 steps, 0 problems",
        "scsi-pr-helper: 26 steps, 0 problems",
        "guest e2e: PASS",
    ])  # fmt: skip
    # round r1 inherited the LU from r0: three generations later (LIO skips unregister)
    assert [r.base_generation for r in runs] == [0, 3]


def test_recorded_full_status_decodes_to_both_registrations() -> None:
    _, runs, _ = replay(recorded())
    got = parse_full_status_descriptors(bytes.fromhex(runs[1].observations["status2"].data))
    guest_tid, host_tid = bytes.fromhex(GUEST.transport_id), bytes.fromhex(HOST.transport_id)
    assert got == (
        FullStatusDescriptor(GUEST_KEY, False, True, LU_SCOPE, WE_RO, 1, guest_tid),
        FullStatusDescriptor(HOST_KEY, False, False, None, None, 2, host_tid),
    )


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        # ours reports another holder type in READ FULL STATUS
        ("@@OUT r1.status2  00     00 00 00 00 00 00 00 a1  00 00 00 00 01 05",
         "@@OUT r1.status2  00     00 00 00 00 00 00 00 a1  00 00 00 00 01 06", "status2"),
        # a wrong PRgeneration
        ("@@OUT r1.keys1   PR generation=0x4", "@@OUT r1.keys1   PR generation=0x5", "keys1"),
        # REPORT CAPABILITIES without WRITE EXCLUSIVE - REGISTRANTS ONLY in its type mask
        ("@@OUT r1.caps  00     00 08 1d 90 ea", "@@OUT r1.caps  00     00 08 1d 90 ca", "caps"),
        # RESERVATION CONFLICT turned into GOOD
        ("@@RC r1.bad_register 24", "@@RC r1.bad_register 0", "bad_register"),
        # the status of a CHECK CONDITION lost (sense not passed through)
        ("@@RC r1.bad_type 5", "@@RC r1.bad_type 2", "bad_type"),
        # PR kept working with the helper stopped: it was never in the path
        ("@@RC r1.keys_nohelper 11", "@@RC r1.keys_nohelper 0", "keys_nohelper"),
    ],
)  # fmt: skip
def test_any_changed_fact_in_our_round_is_caught(old: str, new: str, problem: str) -> None:
    _, runs, differences = replay(edit(recorded(), old, new))
    assert runs[0].problems == []
    assert any(p.startswith(problem + ":") for p in runs[1].problems), runs[1].problems
    assert any(d.startswith(problem + ":") for d in differences), differences


def test_a_missing_step_is_a_problem() -> None:
    lines = [line for line in recorded() if not line.startswith("@@RC r1.release ")]
    _, runs, _ = replay(lines)
    assert "release: no result" in runs[1].problems


def test_a_host_side_change_is_caught() -> None:
    lines = edit(
        recorded(), '"name": "r1.host.reserve", "rc": 24', '"name": "r1.host.reserve", "rc": 0'
    )
    _, runs, differences = replay(lines)
    assert "host.reserve: exit status 0, expected 24" in runs[1].problems
    assert any(d.startswith("host.reserve:") for d in differences)
    ok, lines = summary(runs, differences)
    assert not ok and lines[-1] == "guest e2e: FAIL"
    assert "  host.reserve: exit status 0, expected 24" in lines


def test_disconnected_pr_manager_is_a_problem() -> None:
    console = Console()
    runs = [RunResult("qemu-pr-helper", pr_managers=[{"id": "pr0", "connected": False}])]
    evaluate(runs, console.steps, GUEST, HOST)
    assert any(p.startswith("query-pr-managers") for p in runs[0].problems)
    assert "keys0: no result" in runs[0].problems


def test_rounds_compare_generations_relative_to_their_start() -> None:
    a = RunResult("a", {"k": Observation(0, 3, "")}, base_generation=2)
    b = RunResult("b", {"k": Observation(0, 7, "")}, base_generation=6)
    assert compare_runs([a, b]) == []
    b.base_generation = 5
    assert compare_runs([a, b]) == ["k: a gave Observation(rc=0, generation=1, data=''), "
                                    "b gave Observation(rc=0, generation=2, data='')"]  # fmt: skip


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        # half a key: READ KEYS data that is not a whole number of keys
        ("@@OUT r1.keys1  00     00 00 00 00 00 00 00 a1",
         "@@OUT r1.keys1  00     00 00 00 00 00 00 00", "keys1: READ KEYS"),
        # a reservation SCOPE SPC-5 does not define
        ("@@OUT r1.resv1  00     00 00 00 00 00 00 00 a1  00 00 00 00 00 05",
         "@@OUT r1.resv1  00     00 00 00 00 00 00 00 a1  00 00 00 00 00 35", "resv1: READ RES"),
    ],
)  # fmt: skip
def test_malformed_data_is_a_problem_not_a_crash(old: str, new: str, problem: str) -> None:
    _, runs, _ = replay(edit(recorded(), old, new))
    assert runs[0].problems == []
    assert any(p.startswith(problem) for p in runs[1].problems), runs[1].problems


def test_host_log_lines_round_trip() -> None:
    r = StepResult("r0.host.keys", 0, ["  PR generation=0x3", " 00     00 a1"], [])
    assert parse_host_log_line(host_log_line(r)) == r
    assert parse_host_log_line("@@RC r0.keys 0") is None


def test_guest_steps_repeat_the_sequence_per_round() -> None:
    steps = guest_steps(2)
    names = [s.name for s in steps]
    assert names[: len(SEQUENCE)] == ["r0." + s.name for s in SEQUENCE]
    assert names[len(SEQUENCE)] == "r1.start"
    assert names[len(SEQUENCE) + 1 :] == ["r1." + s.name for s in SEQUENCE]


def test_pause_names_give_back_their_round() -> None:
    pauses = [p.name for p in guest_steps(3) if isinstance(p, Pause)]
    assert parse_pause(pauses[-1]) == (2, "stop_helper")
    assert [parse_pause(p) for p in pauses if p.endswith(".start")] == [(1, "start"), (2, "start")]
    assert all(p.startswith(round_prefix(parse_pause(p)[0])) for p in pauses)
