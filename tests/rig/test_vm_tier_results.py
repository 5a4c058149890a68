"""The VM tier's accounting (``rig/vm_tier_results.py``) without a VM or a pytest run: how a
phase's result log becomes outcomes, when a phase has failed, the summary people and CI logs
read (compared whole: it is the contract), and the results files VMs hand to the host."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scsi_pr.rig import vm_tier_results
from scsi_pr.rig.pytest_plugin import LIO_HANGS
from scsi_pr.rig.vm_tier_results import (
    ORDER,
    Phase,
    Reported,
    conclude,
    cpu_marks,
    merge,
    outcomes,
    read_log,
    report,
    summary_line,
    write_results,
)


def _result(nodeid: str, outcome: str, reason: str = "") -> dict[str, str]:
    return {"nodeid": nodeid, "when": "call", "outcome": outcome, "reason": reason}


HUNG = _result("t::hung", "xfailed", f"{LIO_HANGS}: PREEMPT AND ABORT wedged the LUN")
DEVIATES = _result("t::deviates", "xfailed", "LIO deviation: SPC-5 x")


# -- counts and the verdict of one phase --------------------------------------------------------


def test_counts_tell_a_known_hang_from_a_known_deviation() -> None:
    """Both are xfails, but the summary must say which: a hang is a different defect, and
    only the reason's prefix tells them apart (one that merely mentions hangs is not one)."""
    mentions = _result("t::mentions", "xfailed", f"not {LIO_HANGS}")
    phase = Phase("x", results=[HUNG, HUNG, DEVIATES, mentions, _result("t::p", "passed")])
    assert phase.counts() == {"LIO hangs": 2, "xfailed (LIO deviation)": 2, "passed": 1}


@pytest.mark.parametrize("outcome", ["failed", "error", "xpassed"])
def test_a_failed_errored_or_unexpectedly_passing_test_fails_the_phase(outcome: str) -> None:
    """Whatever pytest's exit status: an xpass means a known defect is gone unnoticed."""
    phase = Phase("x", rc=0, results=[_result("t::a", "passed"), _result("t::b", outcome)])
    assert phase.failed()


@pytest.mark.parametrize("outcome", ["passed", "skipped", "xfailed"])
def test_passes_skips_and_known_defects_do_not_fail_a_phase(outcome: str) -> None:
    assert not Phase("x", rc=0, results=[_result("t::a", outcome)]).failed()


@pytest.mark.parametrize(
    ("rc", "abandoned", "results", "failed"),
    [
        (0, False, [], False),  # nothing selected here and nothing wrong
        (5, False, [], False),  # pytest's "no tests collected"
        (1, False, [], True),  # a collection error: the log cannot show it
        (2, False, [_result("t::a", "passed")], True),  # interrupted: the status alone tells
        (None, False, [], True),  # never ran to an exit status
        (-9, True, [HUNG], False),  # abandoned, but only known hangs left: not a failure
        (None, True, [], True),  # hung before any test reported or was collected
        (0, True, [], True),
    ],
)
def test_when_the_exit_status_and_abandonment_fail_a_phase(
    rc: int | None, abandoned: bool, results: list[dict[str, str]], failed: bool
) -> None:
    assert Phase("x", rc=rc, abandoned=abandoned, results=results).failed() is failed


# -- the result log -----------------------------------------------------------------------------


def test_read_log_takes_every_record_and_skips_blank_lines(tmp_path: Path) -> None:
    log = tmp_path / "main.jsonl"
    assert read_log(log) == []  # a phase that never got as far as its log
    log.write_text('{"collected": ["t::a"], "cpu": 1.5}\n\n   \n{"cpu": 3.0}\n')
    assert read_log(log) == [{"collected": ["t::a"], "cpu": 1.5}, {"cpu": 3.0}]


def test_cpu_marks_are_the_collected_and_final_records_cpu() -> None:
    """A test's record with its own "cpu" field is neither mark: only the record that is CPU
    alone ends the run, only a "collected" record starts it."""
    records = [
        {"collected": ["t::a"]},  # an older plugin's, without CPU: not the start
        {"collected": ["t::b"], "cpu": 1.5},
        {"collected": ["t::c"], "cpu": 2.5},
        {"nodeid": "t::b", "cpu": 2.0},
        {"cpu": 7.0},
        {"cpu": 9.0},
    ]
    assert cpu_marks(records) == (1.5, 7.0)
    assert cpu_marks([]) == (None, None)
    assert cpu_marks([{"nodeid": "t::a", "cpu": 2.0}]) == (None, None)


COLLECTED = [
    {"collected": ["t::a", "t::b"], "cpu": 1.0},
    _result("t::a", "passed"),
    {"collected": ["t::c"]},
]


def test_outcomes_of_a_run_that_ended_are_what_it_reported() -> None:
    assert outcomes(COLLECTED, abandoned=False, hang_phase=True) == [_result("t::a", "passed")]


@pytest.mark.parametrize(("hang_phase", "outcome"), [(True, "xfailed"), (False, "error")])
def test_an_abandoned_run_counts_every_collected_test_that_never_reported(
    hang_phase: bool, outcome: str
) -> None:
    """In the hang phase they are "LIO hangs"; elsewhere nothing should hang: errors."""
    reason = f"{LIO_HANGS}: never reported, the run was abandoned"
    assert outcomes(COLLECTED, abandoned=True, hang_phase=hang_phase) == [
        _result("t::a", "passed"),
        _result("t::b", outcome, reason),
        _result("t::c", outcome, reason),
    ]
    counts = Phase("x", abandoned=True, results=outcomes(COLLECTED, True, hang_phase)).counts()
    assert counts == ({"passed": 1, "LIO hangs": 2} if hang_phase else {"passed": 1, "error": 2})


# -- the log as it grows ------------------------------------------------------------------------


def test_reported_counts_only_complete_lines_each_read_once(tmp_path: Path) -> None:
    """The watcher calls it for every sign of life: a line still being written waits for its
    end, a line is never counted twice, and collected tests add up over records."""
    log = tmp_path / "main.jsonl"
    reported = Reported(log)
    assert reported() == (0, None)  # no log yet
    log.write_bytes(b'{"collected": ["t::a", "t::b"]}\n{"nodeid": "t::a"}\n{"nodeid": "t::')
    assert reported() == (1, 2)
    assert reported() == (1, 2)
    with log.open("ab") as f:
        f.write(b'b"}\nnot json\n{"collected": ["t::c"]}\n{"cpu": 1.0}\n')
    assert reported() == (2, 3)
    assert reported() == (2, 3)
    log.unlink()  # unreadable now: what it knew stands
    assert reported() == (2, 3)


def test_reported_waits_for_a_line_in_a_log_of_one_partial_line(tmp_path: Path) -> None:
    log = tmp_path / "main.jsonl"
    log.write_bytes(b'{"nodeid": "t::a"}')
    reported = Reported(log)
    assert reported() == (0, None)
    with log.open("ab") as f:
        f.write(b"\n")
    assert reported() == (1, None)


# -- the summary --------------------------------------------------------------------------------


def test_report_prints_the_phase_line_and_what_needs_looking_at(
    capsys: pytest.CaptureFixture[str],
) -> None:
    long_reason = "x" * 299 + "yz"
    phase = Phase(
        "iscsi",
        rc=1,
        seconds=12.5,
        verdict="slow",
        start_cpu=2.4,
        cpu=10.6,
        results=[
            _result("t::p", "passed"),
            _result("t::f", "failed", long_reason),
            _result("t::e", "error", "boom"),
            _result("t::x", "xpassed", "fixed?"),
            _result("t::s", "skipped", "no LIO"),
            DEVIATES,
            HUNG,
        ],
    )
    report(phase)
    assert capsys.readouterr().out.splitlines() == [
        "  iscsi      1 LIO hangs, 1 error, 1 failed, 1 passed, 1 skipped, "
        "1 xfailed (LIO deviation), 1 xpassed; pytest exit 1; 12s, slow; CPU 11s (2s to collect)",
        f"    FAILED: t::f: {'x' * 299}y",
        "    ERROR: t::e: boom",
        "    XPASSED: t::x: fixed?",
        f"    known defect: t::hung: {LIO_HANGS}: PREEMPT AND ABORT wedged the LUN",
    ]
    report(phase, details=False)
    assert capsys.readouterr().out.splitlines()[1:] == []


def test_report_of_a_phase_without_tests_or_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    report(Phase("lio-hangs", seconds=300.4, abandoned=True, verdict="hung: no sign of life"))
    report(Phase("main", rc=0, seconds=0.4, cpu=3.0))  # killed before it collected
    report(Phase("paths", rc=0, start_cpu=3.0))  # collected, then no final record
    assert capsys.readouterr().out.splitlines() == [
        "  lio-hangs  no tests; abandoned; 300s, hung: no sign of life",
        "  main       no tests; pytest exit 0; 0s, in time; CPU 3s",
        "  paths      no tests; pytest exit 0; 0s, in time",
    ]


def test_summary_line_orders_outcomes_as_people_read_them() -> None:
    """Passes first, then what fails, then known defects and skips; kinds outside ``ORDER``
    (the two xfail kinds) after those, alphabetically; kinds with no test are left out."""
    phases = [
        Phase("a", results=[HUNG, _result("t::s", "skipped"), _result("t::p", "passed")]),
        Phase("b", results=[DEVIATES, _result("t::x", "xpassed"), _result("t::p2", "passed")]),
        Phase("c", results=[_result("t::e", "error"), _result("t::f", "failed")]),
    ]
    assert summary_line(phases) == (
        "VM tier: 2 passed, 1 failed, 1 error, 1 xpassed, 1 skipped, 1 LIO hangs, "
        "1 xfailed (LIO deviation)"
    )
    assert summary_line([Phase("a"), Phase("b")]) == "VM tier: no tests ran"
    assert summary_line([]) == "VM tier: no tests ran"
    assert ORDER == ("passed", "failed", "error", "xfailed", "xpassed", "skipped")


def test_conclude_prints_every_phase_the_cpu_and_the_summary(
    capsys: pytest.CaptureFixture[str],
) -> None:
    phases = [
        Phase("main", rc=0, seconds=10.0, results=[_result("t::p", "passed")], cpu=20.4),
        Phase("iscsi", rc=1, seconds=5.0, results=[_result("t::f", "failed", "no")]),
        Phase("paths", rc=0, seconds=1.0, cpu=9.4),
    ]
    assert conclude(phases) == 1
    assert capsys.readouterr().out.splitlines() == [
        "",
        "== VM tier summary ==",
        "  main       1 passed; pytest exit 0; 10s, in time; CPU 20s",
        "  iscsi      1 failed; pytest exit 1; 5s, in time",
        "    FAILED: t::f: no",
        "  paths      no tests; pytest exit 0; 1s, in time; CPU 9s",
        "  CPU of the phases' pytest runs: 30s (the VMs' own work besides)",
        "VM tier: 1 passed, 1 failed",
    ]


def test_conclude_passes_when_no_phase_failed_and_omits_unknown_cpu(
    capsys: pytest.CaptureFixture[str],
) -> None:
    phases = [Phase("main", rc=0, results=[_result("t::p", "passed")]), Phase("iscsi", rc=5)]
    assert conclude(phases) == 0
    assert capsys.readouterr().out.splitlines() == [
        "",
        "== VM tier summary ==",
        "  main       1 passed; pytest exit 0; 0s, in time",
        "  iscsi      no tests; pytest exit 5; 0s, in time",
        "VM tier: 1 passed",
    ]
    assert conclude([]) == 0  # nothing chosen: nothing failed


# -- results files and their merge --------------------------------------------------------------


def test_results_written_round_trip_through_merge(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a VM writes is every field of its phases, whole, and nothing half-written beside."""
    phases = [
        Phase("main", rc=0, seconds=3.0, results=[_result("t::p", "passed")], verdict="slow",
              start_cpu=1.0, cpu=4.0),
        Phase("lio-hangs", rc=-9, abandoned=True, results=[HUNG], verdict="hung: quiet"),
    ]  # fmt: skip
    path = tmp_path / "results-0.json"
    path.write_text("stale")
    write_results(path, phases)
    assert [Phase(**r) for r in json.loads(path.read_text())] == phases
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results-0.json"]
    assert merge([path]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2:4] == [
        "  main       1 passed; pytest exit 0; 3s, slow; CPU 4s (1s to collect)",
        "  lio-hangs  1 LIO hangs; abandoned; 0s, hung: quiet",
    ]
    assert out[-1] == "VM tier: 1 passed, 1 LIO hangs"


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (None, "FileNotFoundError"),
        ("{not json", "JSONDecodeError"),
        ('[{"name": "x", "colour": 1}]', "TypeError"),
    ],
)
def test_a_missing_or_unreadable_results_file_is_a_failed_phase(
    content: str | None, error: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its VM ended before it wrote them: the phase is named after the file, abandoned, and
    says why; the other VMs' phases still show."""
    good = tmp_path / "results-0.json"
    write_results(good, [Phase("main", rc=0, results=[_result("t::p", "passed")])])
    bad = tmp_path / "results-1.json"
    if content is not None:
        bad.write_text(content)
    assert merge([good, bad]) == 1
    assert capsys.readouterr().out.splitlines()[2:] == [
        "  main       1 passed; pytest exit 0; 0s, in time",
        f"  results-1  no tests; abandoned; 0s, no results in results-1.json ({error}): "
        "its VM ended without them",
        "VM tier: 1 passed",
    ]


def test_merge_keeps_every_vms_phases_in_the_order_of_its_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "results-0.json", tmp_path / "results-1.json"
    write_results(first, [Phase("main", rc=0, results=[_result("t::p", "passed")])])
    write_results(second, [Phase("lio-hangs", rc=0, results=[HUNG])])
    assert merge([first, second]) == 0
    assert capsys.readouterr().out.splitlines()[2:] == [
        "  main       1 passed; pytest exit 0; 0s, in time",
        "  lio-hangs  1 LIO hangs; pytest exit 0; 0s, in time",
        f"    known defect: t::hung: {HUNG['reason']}",
        "VM tier: 1 passed, 1 LIO hangs",
    ]


class _Killed(BaseException):
    """The VM killed between writing its results and renaming them into place."""


def test_a_vm_killed_while_writing_leaves_no_results_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What was written sits under another name, which ``--merge`` never reads: the phase
    counts as failed instead of as the fewer tests a half-written file would hold."""
    path = tmp_path / "results-1.json"

    def killed(self: Path, target: Path) -> Path:
        raise _Killed

    monkeypatch.setattr(Path, "rename", killed)
    with pytest.raises(_Killed):
        write_results(path, [Phase("lio-hangs", rc=0, results=[HUNG])])
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results-1.json.part"]
    assert merge([path]) == 1
    assert capsys.readouterr().out.splitlines()[-2:] == [
        "  results-1  no tests; abandoned; 0s, no results in results-1.json "
        "(FileNotFoundError): its VM ended without them",
        "VM tier: no tests ran",
    ]


FLUSHED = """
import os, sys


def scenario(r):
    phase = r.Phase("main", rc=0)
    r.report(phase, details=False)
    os.write(1, b"a phase's pytest output\\n")
    r.conclude([phase])
    os.write(1, b"the VM shuts down\\n")


if __name__ == "__main__":
    from scsi_pr.rig import vm_tier_results

    assert vm_tier_results.__file__ == sys.argv[1]  # the module under test, not another copy
    scenario(vm_tier_results)
"""
EXPECTED = [
    "  main       no tests; pytest exit 0; 0s, in time",
    "a phase's pytest output",
    "",
    "== VM tier summary ==",
    "  main       no tests; pytest exit 0; 0s, in time",
    "VM tier: no tests ran",
    "the VM shuts down",
]


def test_phase_lines_and_the_summary_reach_the_output_before_what_follows(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """In the VM our stdout is a pipe, and what comes next does not go through its buffer (a
    phase's pytest writes to the descriptor; the VM may be killed once the tier is done): a
    phase's line and the summary line must be out when printed, or the log shows them late
    or not at all. Here (captured, unbuffered) they are in the order printed; on a pipe, in a
    process of its own, they must be too."""
    namespace: dict[str, object] = {"__name__": "scenario"}
    exec(FLUSHED, namespace)
    namespace["scenario"](vm_tier_results)  # type: ignore[operator]
    assert capfd.readouterr().out.splitlines() == EXPECTED
    # as in the VM, where nothing sets PYTHONUNBUFFERED: stdout on a pipe is block-buffered
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    done = subprocess.run(
        [sys.executable, "-c", FLUSHED, vm_tier_results.__file__],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == EXPECTED
