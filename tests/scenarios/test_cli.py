"""``scsi-pr scenario``: exit codes, JSON, and the SVG chart."""

from __future__ import annotations

import io
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from scsi_pr.rig.backends import BACKENDS, BackendUnavailable, Capability
from scsi_pr.rig.cli import main as umbrella
from scsi_pr.rig.progress import Tracker
from scsi_pr.rig.scenarios import cli, library
from scsi_pr.rig.scenarios.cli import main
from scsi_pr.rig.scenarios.commands import Write
from scsi_pr.rig.scenarios.fileread import loads
from scsi_pr.rig.scenarios.model import CONFLICT, Action, Scenario, ScenarioError, Source, Step
from scsi_pr.rig.scenarios.render import SvgTargetError

SVG_NS = "{http://www.w3.org/2000/svg}"


def test_pass_exits_zero_and_prints_the_timeline(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "240")  # rich wraps cells to the terminal width
    assert umbrella(["scenario", "fence-scsi", "--backend", "sim"]) == 0
    out = capsys.readouterr().out
    assert "PREEMPT AND ABORT" in out and "RESERVATION CONFLICT" in out
    assert "PASS:" in out


@pytest.mark.parametrize("name", [n for n in library.SCENARIOS if n != "helper-restart"])
def test_at_80_columns_each_step_fits_two_lines(
    name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The narrow timeline: no line over 80, a step and its note on at most two lines, the
    time and keys columns dropped (the caption lists the keys), commands abbreviated."""
    monkeypatch.setenv("COLUMNS", "80")
    assert main([name]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 80
    body = [line for line in lines if line.startswith("│")]
    steps = [line for line in body if line.split("│")[1].strip().isdigit()]
    phases = len({i.phase for i in library.SCENARIOS[name].items})
    assert len(body) <= 2 * len(steps) + phases, "a step, its note; and the phase headings"
    header = next(line for line in lines if line.startswith("┃"))
    assert "keys" not in header and " t " not in header and "who" in header
    assert not any("PR OUT " in line for line in body), "abbreviated"
    monkeypatch.setenv("COLUMNS", "160")
    assert main([name]) == 0
    wide = capsys.readouterr().out
    assert "keys" in next(line for line in wide.splitlines() if line.startswith("┃"))
    assert "PR OUT " in wide


def test_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["wsfc-validation", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["verdict"] == "pass" and doc["exit_code"] == 0
    assert doc["scenario"] == "wsfc-validation" and doc["backend"] == "sim"
    assert set(doc["initiators"]) == {"nodeA", "nodeB", "observer"}
    rows = doc["timeline"]
    assert {r["step"] for r in rows} == set(range(1, 15))
    conflicts = [r for r in rows if r["result"] == "RESERVATION CONFLICT"]
    assert [r["actor"] for r in conflicts] == ["nodeB", "nodeB"]
    assert rows[-1]["state"] == {
        "generation": rows[-1]["state"]["generation"],
        "keys": {},
        "holder": None,
        "type": None,
    }


def test_failed_expectation_exits_non_zero(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "240")
    # Expects a conflict where any device must accept the write: no reservation exists.
    wrong = Scenario(
        "wrong",
        "wrong expectation",
        "",
        ("a", "b"),
        (Step("a", Write(0), expect=(CONFLICT,)),),
        Source("test", ("tests/scenarios/test_cli.py",)),
    )
    monkeypatch.setitem(library.SCENARIOS, "wrong", wrong)
    assert main(["wrong"]) == 1
    out = capsys.readouterr().out
    assert "FAIL:" in out and "expected RESERVATION CONFLICT, got GOOD" in out


def test_unsupported_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["helper-restart", "--backend", "sim"]) == 4
    assert "UNSUPPORTED" in capsys.readouterr().out


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["no-such-scenario"]) == 2  # neither a built-in nor a file
    with pytest.raises(SystemExit) as e:
        main(["fence-scsi", "--backend", "nope"])
    assert e.value.code == 2
    assert main([]) == 2
    assert "NAME or FILE is required" in capsys.readouterr().err
    assert main(["fence-scsi", "--timeout", "0"]) == 2


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in library.SCENARIOS)


@pytest.mark.parametrize("name", list(library.SCENARIOS))
def test_svg_is_well_formed_and_names_every_initiator(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "sub" / f"{name}.svg"
    code = main([name, "--json", "--svg", str(path)])
    doc = json.loads(capsys.readouterr().out)
    assert code == doc["exit_code"]
    root = ET.parse(path).getroot()  # raises on malformed XML
    assert root.tag == f"{SVG_NS}svg"
    texts = [t.text or "" for t in root.iter(f"{SVG_NS}text")]
    actors = library.SCENARIOS[name].actors
    for actor in actors:
        assert actor in texts, f"lane for {actor} missing"
        assert doc["initiators"][actor] in texts, f"initiator port of {actor} missing"
    assert "LUN" in texts
    # one arrow per command row, with its answer underneath
    commands = [r for r in doc["timeline"] if r["kind"] in ("command", "ua")]
    lines = [ln for ln in root.iter(f"{SVG_NS}line") if ln.get("marker-end")]
    assert len(lines) == len(commands)


def test_json_is_the_run_field_by_field(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--json`` as docs/scenarios.md gives it to scripts: every field of the run and of each
    row under its own name, keys and generation as numbers are read, elapsed milliseconds to
    the microsecond, and each failure labelled with its step and actor."""
    wrong = Scenario(
        "wrong",
        "a wrong expectation",
        "",
        ("a", "b"),
        (Step("a", Write(0), expect=(CONFLICT,), phase="the write", note="no reservation"),),
        Source("a test", ("tests/scenarios/test_cli.py", "docs/scenarios.md"), "nothing"),
        keys={"a": 0xABC},
    )
    monkeypatch.setitem(library.SCENARIOS, "wrong", wrong)
    assert main(["wrong", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    row = doc["timeline"][-1]
    assert doc == {
        "scenario": "wrong",
        "title": "a wrong expectation",
        "backend": "sim",
        "verdict": "fail",
        "exit_code": 1,
        "message": doc["message"],
        "initiators": doc["initiators"],
        "keys": {"a": "0xabc"},
        "source": {
            "software": "a test",
            "files": ["tests/scenarios/test_cli.py", "docs/scenarios.md"],
            "assumed": "nothing",
        },
        "failures": ["step 1 (a): WRITE(16) lba=0: expected RESERVATION CONFLICT, got GOOD"],
        "timeline": doc["timeline"],
    }
    assert set(doc["initiators"]) == {"a", "b", "observer"} and doc["message"]
    elapsed = row["elapsed_ms"]
    assert isinstance(elapsed, float) and elapsed > 0 and round(elapsed, 3) == elapsed
    assert row == {
        "step": 1,
        "time": 0.0,
        "actor": "a",
        "command": "WRITE(16) lba=0",
        "result": "GOOD",
        "kind": "command",
        "ok": False,
        "expected": "RESERVATION CONFLICT",
        "failures": ["WRITE(16) lba=0: expected RESERVATION CONFLICT, got GOOD"],
        "state": {"generation": 0, "keys": {}, "holder": None, "type": None},
        "elapsed_ms": elapsed,
        "phase": "the write",
        "note": "no reservation",
    }


def test_show_describes_a_scenario_line_by_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``show NAME``: the title, the summary, where the sequence comes from and what was
    assumed, each actor with its key where it has one, the phases in order (each once), and
    what a backend must be able to do."""
    scenario = Scenario(
        "described",
        "a title",
        "a summary",
        ("a", "b"),
        (
            Step("a", Write(0), phase="one"),
            Action("power cycle", Capability.POWER_CYCLE, phase="two"),
            Step("b", Write(0), phase="one", stall=1.0),
        ),
        Source("cluster software", ("src/a.c", "src/b.c"), "the order of two steps"),
        keys={"b": 0xB0B},
    )
    monkeypatch.setitem(library.SCENARIOS, "described", scenario)
    assert main(["show", "described"]) == 0
    assert capsys.readouterr().out == (
        "described: a title\n\na summary\n\nsource: cluster software\n  src/a.c\n  src/b.c\n"
        "assumed: the order of two steps\n\nactors: a, b (key 0xb0b)\nsteps: 3, in phases:\n"
        "  one\n  two\nneeds a backend that can: power_cycle, stall\n"
    )
    bare = Scenario("bare", "t", "s", ("a",), (Step("a", Write(0)),), Source("x", ()))
    monkeypatch.setitem(library.SCENARIOS, "bare", bare)
    assert main(["show", "bare"]) == 0
    assert (
        capsys.readouterr().out == "bare: t\n\ns\n\nsource: x\n\nactors: a\nsteps: 1, in phases:\n"
    )


def test_show_as_file_prints_a_file_as_it_is_once_it_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``show FILE --as-file`` gives the file's own text, byte for byte (no newline added); a
    file that would not run is refused with its place, as ``run`` refuses it."""
    path = tmp_path / "mine.toml"
    path.write_text(library.builtin_text("failover") + "# my own comment")
    assert main(["show", str(path), "--as-file"]) == 0
    assert capsys.readouterr().out == path.read_text()
    path.write_text(library.builtin_text("failover").replace('"WE-RO"', '"WE-R0"', 1))
    assert main(["show", str(path), "--as-file"]) == 2
    assert capsys.readouterr().err.startswith(f"scsi-pr scenario show: {path}:")


def test_a_name_that_is_neither_says_which_built_ins_there_are(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Neither a built-in nor a file: the message lists the built-ins and adds no reason of
    its own (a name the file system cannot even hold adds the system's reason)."""
    assert main(["show", "no-such"]) == 2
    assert capsys.readouterr().err == (
        f"scsi-pr scenario show: no scenario 'no-such': neither a built-in"
        f" ({', '.join(library.SCENARIOS)}) nor a file\n"
    )
    assert main(["show", "x" * 5000]) == 2
    assert "nor a file (" in capsys.readouterr().err


def test_show_as_file_writes_a_built_in_that_has_no_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A built-in added in code has no shipped file: ``--as-file`` writes it, and what it
    writes reads back as that scenario."""
    scenario = Scenario("in-code", "t", "s", ("a",), (Step("a", Write(0)),), Source("x", ()))
    monkeypatch.setitem(library.SCENARIOS, "in-code", scenario)
    assert main(["show", "in-code", "--as-file"]) == 0
    assert loads(capsys.readouterr().out) == scenario


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse's wrapping aside


def test_help_names_every_option_and_the_exit_statuses(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--help`` is where a user learns the command: its forms, every option with its
    argument and default, the built-ins, and what each exit status means."""
    monkeypatch.setenv("COLUMNS", "400")
    text = _help(["--help"], capsys)
    builtins = ", ".join(library.SCENARIOS)
    for part in (
        "usage: scsi-pr scenario [run] NAME|FILE [options] | scsi-pr scenario show NAME|FILE "
        "[--as-file] | scsi-pr scenario --list",
        "Run a reservation-conflict scenario — a built-in or a scenario file (docs/scenarios.md)"
        " — and show its timeline. 'show NAME --as-file' prints a built-in as a file to copy and"
        " edit.",
        f"NAME|FILE a built-in ({builtins}) or a scenario file (TOML)",
        "--backend {" + ",".join(BACKENDS) + "} device to run on (default: sim)",
        "--profile {spc5,lio-6.1,lio-6.12} how the model answers on helper-sim and sim (default "
        "spc5; lio-6.1: as LIO on 6.1, docs/lio-deviations.md)",
        "--svg FILE write the sequence chart here",
        "--json print the run as JSON, not a table",
        "--timeout SECONDS per-command deadline before the run is declared hung (default 30)",
        "--list list the scenarios and exit",
        "exit status: 0 pass, 1 expectation failed, 2 could not run, 3 device hung, 4 backend "
        "lacks a needed capability",
    ):
        assert part in text, part
    show = _help(["show", "--help"], capsys)
    assert show == (
        "usage: scsi-pr scenario show [-h] [--as-file] NAME|FILE Describe a scenario, or print "
        "the scenario file that defines it. positional arguments: NAME|FILE a built-in or a "
        "scenario file options: -h, --help show this help message and exit --as-file print it "
        "as a scenario file (TOML) to copy, edit and run with 'scenario run FILE'"
    )


def test_usage_errors_say_what_is_wrong(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each refusal on stderr, whole, with exit status 2; a timeout under a second is fine."""
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.endswith("scsi-pr scenario: a scenario NAME or FILE is required (see --list)\n")
    assert err.startswith("usage: scsi-pr scenario ")
    assert main(["failover", "--timeout", "0"]) == 2
    assert capsys.readouterr().err == "scsi-pr scenario: --timeout must be positive, not 0.0\n"
    assert main(["failover", "--timeout", "0.5", "--json"]) == 0
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["scsi-pr-scenario", "--list"])
    assert main() == 0  # argv from the command line
    assert capsys.readouterr().out.startswith("fence-scsi ")


def test_the_chart_is_announced_and_a_disk_that_refuses_it_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--svg``: the timeline ends with where the chart went; a write that fails after the
    run (checked before, the disk may still refuse) is an error of its own, status 2."""
    monkeypatch.setenv("COLUMNS", "240")
    chart = tmp_path / "c.svg"
    assert main(["failover", "--svg", str(chart)]) == 0
    assert capsys.readouterr().out.endswith(f"\nsequence chart: {chart}\n") and chart.is_file()

    def refuse(run: object, path: Path) -> None:
        raise SvgTargetError(path, "No space left on device")

    monkeypatch.setattr(cli, "write_svg", refuse)
    assert main(["failover", "--svg", str(chart)]) == 2
    captured = capsys.readouterr()
    assert captured.err == (
        f"scsi-pr scenario: --svg: cannot write SVG to {str(chart)!r}: No space left on device\n"
    )
    assert "sequence chart" not in captured.out


def test_the_progress_bar_is_fed_each_item_as_it_starts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The bar on stderr names the scenario and its backend, knows how many items there are,
    and is told each one's label as it starts."""
    seen: list[tuple[str, float | None, list[tuple[float | None, str | None]]]] = []

    class Recording(Tracker):
        def __init__(self, description: str, total: float | None = None) -> None:
            super().__init__(description, total, bar=False, file=io.StringIO())
            seen.append((description, total, []))

        def update(self, done: float | None = None, what: str | None = None,
                   total: float | None = None) -> None:  # fmt: skip
            seen[-1][2].append((done, what))

    monkeypatch.setattr(cli, "Tracker", Recording)
    assert main(["failover", "--json"]) == 0
    items = library.SCENARIOS["failover"].items
    ((description, total, updates),) = seen
    assert (description, total) == ("failover on sim", len(items))
    assert [done for done, _ in updates] == list(range(len(items)))
    assert updates[0][1] and all(isinstance(what, str) for _, what in updates)


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        (BackendUnavailable("no LIO here"), "backend sim unavailable: no LIO here"),
        (ScenarioError("t has 2 devices, not 1"), "t has 2 devices, not 1"),
    ],
)
def test_a_run_that_cannot_start_says_why(
    error: Exception, shown: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """A backend that is not there, or a scenario it cannot take: one line on stderr, status 2,
    nothing on stdout."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(cli, "run_scenario", refuse)
    assert main(["failover"]) == 2
    assert capsys.readouterr() == ("", f"scsi-pr scenario: {shown}\n")


def test_each_actor_and_the_observer_get_an_initiator(monkeypatch: pytest.MonkeyPatch) -> None:
    """The backend is opened with one initiator per actor plus the observer, no more."""
    asked: list[int] = []
    real = cli.open_backend

    def recording(name: str, initiators: int, *rest: object) -> object:
        asked.append(initiators)
        return real(name, initiators, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(cli, "open_backend", recording)
    scenario = library.SCENARIOS["failover"]
    assert cli.run_scenario(scenario, "sim").verdict == "pass"
    assert asked == [len(scenario.actors) + 1]
