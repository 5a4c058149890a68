"""The timeline's colours on a terminal, as docs/scenarios.md describes them: green GOOD, red
RESERVATION CONFLICT, orange CHECK CONDITION, magenta for a command that never answered; a
✓ or a bold red ✗ before each answer, failed expectations in red under it; phase headings
bold cyan, notes and unit-attention rows dim; the verdict line in its verdict's colour.
Checked in the terminal's own escape codes (256 colours), which is what a user sees."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from scsi_pr.rig.scenarios import library
from scsi_pr.rig.scenarios.cli import run_scenario
from scsi_pr.rig.scenarios.commands import Write
from scsi_pr.rig.scenarios.model import CONFLICT, Scenario, Source, Step
from scsi_pr.rig.scenarios.render import print_timeline, shown_name, to_json
from scsi_pr.rig.scenarios.results import Row, RowKind, Run, Verdict

GREEN, RED, ORANGE, MAGENTA = "\x1b[32m", "\x1b[31m", "\x1b[38;5;208m", "\x1b[35m"
BOLD_RED, DIM, DIM_ITALIC, RESET = "\x1b[1;31m", "\x1b[2m", "\x1b[2;3m", "\x1b[0m"


def styled(run: Run) -> str:
    console = Console(record=True, width=168, color_system="256", force_terminal=True,
                      file=io.StringIO())  # fmt: skip
    print_timeline(run, console)
    return console.export_text(styles=True)


def line_with(text: str, fragment: str) -> str:
    return next(line for line in text.splitlines() if fragment in line)


def test_each_answer_in_its_colour_after_its_mark() -> None:
    text = styled(run_scenario(library.SCENARIOS["failover"], "sim"))
    register = line_with(text, "REGISTER key=0x0 sark=0xb96e0001")
    assert f"{GREEN}✓ {RESET}{GREEN}GOOD{RESET}" in register
    conflict = line_with(text, "the old owner's writes are refused")
    assert f"{GREEN}✓ {RESET}{RED}RESERVATION CONFLICT{RESET}" in conflict
    check = line_with(text, "TEST UNIT READY")
    assert f"{GREEN}✓ {RESET}{ORANGE}CHECK CONDITION" in check
    assert f"{DIM}TEST UNIT READY " in check  # a unit attention cleared before a step
    assert f"{DIM_ITALIC}  · heartbeat timeout{RESET}" in line_with(text, "heartbeat")
    assert "\x1b[1;36mnode1 dies; node2 takes over" in text
    assert text.splitlines()[-1] == f"\x1b[1;32mPASS: all 12 steps as expected{RESET}"


def test_a_failed_expectation_is_a_bold_red_cross_with_its_reason_in_red(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wrong = Scenario("wrong", "t", "s", ("a",), (Step("a", Write(0), expect=(CONFLICT,)),),
                     Source("x", ()))  # fmt: skip
    text = styled(run_scenario(wrong, "sim"))
    assert f"{BOLD_RED}✗ {RESET}{GREEN}GOOD{RESET}" in text
    assert f"{RED}WRITE(16) lba=0: expected RESERVATION CONFLICT, got GOOD" in text
    assert text.splitlines()[-1].startswith(f"{BOLD_RED}FAIL: ")


def test_a_command_that_never_answered_is_magenta_and_so_is_the_verdict() -> None:
    scenario = Scenario("hung", "t", "s", ("a",), (Step("a", Write(0)),), Source("x", ()))
    hang = Row(1, 0.0, "a", "WRITE(16) lba=0", "no answer in 30 s", RowKind.HANG)
    info = Row(2, 0.0, "a", "an event", "—", RowKind.ACTION, status=None)
    text = styled(Run(scenario, "sim", Verdict.HUNG, "it hung", [hang, info], {}))
    assert f"{DIM}  {RESET}{MAGENTA}no answer in 30 s{RESET}" in line_with(text, "no answer")
    assert f"{DIM}  {RESET}{ORANGE}—{RESET}" in line_with(text, "an event")
    assert text.splitlines()[-1] == f"\x1b[1;35mHUNG: it hung{RESET}"


@pytest.mark.parametrize(
    ("verdict", "code"),
    [(Verdict.ERROR, "\x1b[1;31m"), (Verdict.UNSUPPORTED, "\x1b[1;33m")],
)
def test_the_other_verdicts_colours(verdict: Verdict, code: str) -> None:
    scenario = Scenario("v", "t", "s", ("a",), (Step("a", Write(0)),), Source("x", ()))
    text = styled(Run(scenario, "sim", verdict, "why", [], {}))
    assert text.splitlines()[-1] == f"{code}{verdict.value.upper()}: why{RESET}"


def test_a_name_is_shown_whole_up_to_80_characters_then_cut_with_its_length() -> None:
    assert shown_name("x" * 80) == repr("x" * 80)
    assert shown_name("x" * 81) == f"{'x' * 80!r}… (81 characters)"


def test_json_is_indented_by_two_and_a_row_without_state_has_null() -> None:
    """``--json`` for people as well as scripts: two-space indents; a row that observed no
    state (a hang) says ``null`` rather than leaving the field out."""
    scenario = Scenario("hung", "t", "s", ("a",), (Step("a", Write(0)),), Source("x", ()))
    hang = Row(1, 0.0, "a", "WRITE(16) lba=0", "no answer", RowKind.HANG)
    text = to_json(Run(scenario, "sim", Verdict.HUNG, "it hung", [hang], {}))
    assert text.startswith('{\n  "scenario": "hung",\n  "title": "t",\n')
    assert json.loads(text)["timeline"][0]["state"] is None
