"""Progress of long work: a bar on a terminal, a plain line a minute elsewhere, fed by real work
(the watched run's output, the VM tier's result log, the scenario engine's items)."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from rich.console import Console

from scsi_pr.rig import progress
from scsi_pr.rig.backends import SimBackend
from scsi_pr.rig.progress import Tracker
from scsi_pr.rig.scenarios.engine import Runner
from scsi_pr.rig.scenarios.library import SCENARIOS
from scsi_pr.rig.vm_tier_results import Reported
from scsi_pr.rig.watchdog import run_watched


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_come_once_a_minute_with_count_time_and_what(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    monkeypatch.setattr(progress.time, "monotonic", clock)
    out = io.StringIO()
    with Tracker("VM tier main", total=40, file=out, bar=False) as t:
        t.update(3, "test_a")
        clock.now += 59
        t.update(5, "test_b")
        assert out.getvalue() == ""  # less than a minute: nothing yet
        clock.now += 2
        t.update(12, "test_c")
        clock.now += 30
        t.advance("test_d")
    assert out.getvalue() == "VM tier main: 12/40, 1:01 (test_c)\n"
    assert t.done == 13


def test_unknown_total_and_a_total_learnt_later(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(progress.time, "monotonic", clock)
    out = io.StringIO()
    with Tracker("booting", file=out, bar=False, every=0) as t:
        t.update(0)
        t.update(7, total=9)
    assert out.getvalue().splitlines() == ["booting: 0, 0:00", "booting: 7/9, 0:00"]


def test_a_terminal_gets_a_transient_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    out = io.StringIO()
    t = Tracker("benchmarks", total=2, console=Console(file=out, force_terminal=True))
    with t:
        t.update(1, "helper")
        assert t.progress is not None
    assert t.progress is None and "benchmarks" in out.getvalue()


def test_ci_never_gets_a_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    assert Tracker("x", file=sys.stderr).bar is False


def test_the_vm_tier_counts_reported_and_collected_tests(tmp_path: Path) -> None:
    log = tmp_path / "main.jsonl"
    reported = Reported(log)
    assert reported() == (0, None)
    lines = [{"collected": ["a", "b", "c"]}, {"nodeid": "a", "outcome": "passed"}]
    log.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert reported() == (1, 3)
    with log.open("a") as f:  # counted once each, and a half-written line not yet
        f.write(json.dumps({"nodeid": "b", "outcome": "passed"}) + '\n{"nodeid": "c"')
    assert reported() == (2, 3)


def test_a_watched_run_reports_output_before_forwarding_it() -> None:
    """The VM boot's spinner stops on the guest's first line: it must stop before that line is
    written, or the line lands in the middle of the spinner."""
    events: list[str] = []

    class Sink(io.BytesIO):
        def write(self, data: bytes) -> int:  # type: ignore[override]
            events.append("write")
            return super().write(data)

    code = "print('guest up')"
    run_watched([sys.executable, "-c", code], quiet_limit=30, out=Sink(), poll=0.05,
                on_progress=lambda what: events.append("progress"))  # fmt: skip
    assert events[:2] == ["progress", "write"]


def test_the_engine_feeds_the_bar_item_by_item() -> None:
    seen: list[tuple[int, str]] = []
    scenario = SCENARIOS["wsfc-validation"]
    Runner(scenario, SimBackend(initiators=3), on_item=lambda n, w: seen.append((n, w))).run()
    assert [n for n, _ in seen] == list(range(len(scenario.items)))
    assert seen[0][1].startswith("PR OUT REGISTER") and seen[0][1].endswith("from nodeA")
