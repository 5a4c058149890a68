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


#: what rich writes around a transient bar: the cursor hidden first; at the end the last frame's
#: line ended, the cursor shown again and moved back up over the frame, which is erased
HIDE_CURSOR = "\x1b[?25l"
ERASED_AT_THE_END = "\n\x1b[?25h\r\x1b[1A\x1b[2K"
#: the start of every frame: back to the line's start, the line erased
NEW_FRAME = "\r\x1b[2K"


def _terminal(clock: Clock) -> tuple[io.StringIO, Console]:
    """A terminal rich draws on (escape sequences and all) that keeps what it was sent: wide
    enough that no column is squeezed, no colours (the frames are plain text between the
    cursor movements), and the fake ``clock`` as rich's time so the elapsed column and the
    spinner's frame are known."""
    out = io.StringIO()
    return out, Console(file=out, force_terminal=True, width=160, color_system=None, get_time=clock)


def _frames(drawn: str, *, finished: bool = True) -> list[str]:
    """The frames of the bar in ``drawn``, oldest first; with ``finished``, ``drawn`` must end
    the way a transient bar ends (its last frame erased)."""
    assert drawn.startswith(HIDE_CURSOR + NEW_FRAME), repr(drawn)
    body = drawn.removeprefix(HIDE_CURSOR + NEW_FRAME)
    if finished:
        assert body.endswith(ERASED_AT_THE_END), repr(drawn)
        body = body.removesuffix(ERASED_AT_THE_END)
    return body.split(NEW_FRAME)


def test_the_terminal_bar_draws_description_count_elapsed_and_what(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A known total: the first frame at the start (nothing done, nothing being done), the last
    one at the end with the count, a total learnt later, the bar, the time and what is being
    done cut to 60 characters; then the bar is erased, so the command's own output that
    follows starts on a clean line."""
    monkeypatch.delenv("CI", raising=False)
    clock = Clock()
    out, console = _terminal(clock)
    with Tracker("benchmarks", total=4, console=console) as t:
        assert t.bar is True
        assert _frames(out.getvalue(), finished=False) == [
            "⠋ benchmarks " + " " * 40 + " 0/4 0:00:00  "
        ]
        clock.now += 65
        t.update(3, "x" * 70, total=5)
    assert t.progress is None
    assert _frames(out.getvalue())[-1] == (
        "⠹ benchmarks " + "━" * 24 + " " * 16 + " 3/5 0:01:05 " + "x" * 60
    )


def test_the_terminal_spinner_counts_work_of_unknown_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No total: no bar and no M/N, the count alone; ``update`` without ``what`` (before any)
    draws none, ``advance`` counts one more and says what it is at."""
    monkeypatch.delenv("CI", raising=False)
    clock = Clock()
    out, console = _terminal(clock)
    with Tracker("booting", console=console) as t:
        assert _frames(out.getvalue(), finished=False) == ["⠋ booting 0 0:00:00  "]
        t.update(5)
        t.update(what="guest up")
        t.update(6)
        t.advance("login")
    frames = _frames(out.getvalue())
    assert frames[-1] == "⠋ booting 7 0:00:00 login"


def test_the_terminal_bar_draws_brackets_as_they_are(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the bar shows is text, not rich markup: a pytest id's parameters stay, and one
    that reads as a closing tag (``[/dev/sg0]``) is no error when the bar is drawn or ends."""
    monkeypatch.delenv("CI", raising=False)
    clock = Clock()
    out, console = _terminal(clock)
    with Tracker("tests [lio]", console=console) as t:
        t.update(2, "test_x[sim-3]")
    assert _frames(out.getvalue())[-1] == "⠋ tests [lio] 2 0:00:00 test_x[sim-3]"
    out, console = _terminal(clock)
    with Tracker("tests", console=console) as t:
        t.update(1, "test_open[/dev/sg0]")
    assert _frames(out.getvalue())[-1] == "⠋ tests 1 0:00:00 test_open[/dev/sg0]"


def test_the_terminal_bar_dims_what_is_being_done(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=160, color_system="standard",
                      get_time=Clock())  # fmt: skip
    with Tracker("boot", console=console) as t:
        t.update(1, "login")
    assert "\x1b[2mlogin\x1b[0m" in out.getvalue()


def test_a_bar_stopped_early_is_gone_and_later_updates_draw_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The VM boot stops its spinner at the guest's first line and may stop it again on every
    later one: the bar is erased once, and neither a second stop nor an update (within the plain
    line's minute) writes anything over the guest's output."""
    monkeypatch.delenv("CI", raising=False)
    clock = Clock()
    monkeypatch.setattr(progress.time, "monotonic", clock)
    out, console = _terminal(clock)
    with Tracker("booting the VM (TCG)", console=console) as t:
        t.update(1, "SeaBIOS")
        t.stop()
        drawn = out.getvalue()
        assert _frames(drawn)[-1] == "⠋ booting the VM (TCG) 1 0:00:00 SeaBIOS"
        t.stop()
        t.update(2, "[    0.000000] Linux version 6.1")
    assert out.getvalue() == drawn and t.progress is None


def test_a_plain_line_is_text_as_it_is_even_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain line repeats a test's name or a device's output: brackets in it are not rich
    markup, and numbers are not coloured, even on a console that could colour them."""
    clock = Clock()
    monkeypatch.setattr(progress.time, "monotonic", clock)
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=160, color_system="truecolor")
    with Tracker("bench 2", total=40, console=console, bar=False, every=0) as t:
        t.update(12, "test_x[bold]sg0[/bold] 0x12")
    assert out.getvalue() == "bench 2: 12/40, 0:00 (test_x[bold]sg0[/bold] 0x12)\n"


def test_bar_or_plain_follows_the_console_and_can_be_forced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Outside CI a terminal gets the bar and anything else plain lines; ``bar`` overrides the
    choice both ways."""
    monkeypatch.delenv("CI", raising=False)
    clock = Clock()
    monkeypatch.setattr(progress.time, "monotonic", clock)
    out = io.StringIO()
    with Tracker("log", console=Console(file=out), every=0) as t:
        t.update(1, "a")
    assert (t.bar, out.getvalue()) == (False, "log: 1, 0:00 (a)\n")
    out, console = _terminal(clock)
    with Tracker("terminal", console=console, every=0) as t:
        t.update(1, "a")
    assert t.bar is True and _frames(out.getvalue())[-1] == "⠋ terminal 1 0:00:00 a"
    out, console = _terminal(clock)
    with Tracker("forced plain", console=console, every=0, bar=False) as t:
        t.update(1, "a")
    assert (t.bar, out.getvalue()) == (False, "forced plain: 1, 0:00 (a)\n")
    assert Tracker("forced bar", console=Console(file=io.StringIO()), bar=True).bar is True


def test_plain_lines_go_to_stderr_by_default(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A command's stdout (a timeline, JSON) stays its own: progress goes to stderr."""
    clock = Clock()
    monkeypatch.setattr(progress.time, "monotonic", clock)
    with Tracker("scenario", bar=False, every=0) as t:
        t.update(what="collecting")
    assert capsys.readouterr() == ("", "scenario: 0, 0:00 (collecting)\n")


def test_plain_lines_keep_their_minute_from_the_last_line_not_the_last_update(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Exactly ``every`` seconds after the start (or the last line) a line comes, not a moment
    before; updates in between only change what the next line says."""
    clock = Clock()
    monkeypatch.setattr(progress.time, "monotonic", clock)
    out = io.StringIO()
    with Tracker("VM tier main", total=None, file=out, bar=False) as t:
        clock.now += progress.PLAIN_EVERY - 0.5
        t.advance("test_a")
        assert out.getvalue() == ""
        clock.now += 0.5
        t.advance("test_b")
        clock.now += progress.PLAIN_EVERY / 2
        t.advance("test_c")
        clock.now += progress.PLAIN_EVERY / 2
        t.advance()
        clock.now += 3 * progress.PLAIN_EVERY + 5
        t.update(4, total=10)
    assert out.getvalue().splitlines() == [
        "VM tier main: 2, 1:00 (test_b)",
        "VM tier main: 4, 2:00 (test_c)",
        "VM tier main: 4/10, 5:05 (test_c)",
    ]


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
