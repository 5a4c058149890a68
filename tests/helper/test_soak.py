"""``scripts/soak`` (``scsi_pr.helper.soak``) with small amounts: every phase runs against real
helpers and reports nothing lost; a finding, a skipped phase and bad amounts show as they must."""

from __future__ import annotations

import io
import itertools
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from scsi_pr.helper import soak
from scsi_pr.helper.fuzz_frames import (
    Ending,
    FdKind,
    Frame,
    Opening,
    Outcome,
    Part,
    _settle,
    _split,
    frames,
    outcome,
)
from scsi_pr.helper.soak import PhaseResult, Plan

SMALL = ["--frames", "3000", "--fuzz-clients", "2", "--clients", "8", "--seconds", "1"]
SMALL += ["--rounds", "1", "--seed", "7"]


def run(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    code = soak.main(argv, Console(file=out, width=200, color_system=None))
    return code, out.getvalue()


def test_a_small_soak_loses_nothing(tmp_path: Path) -> None:
    code, text = run([*SMALL, "--workdir", str(tmp_path)])
    assert code == 0, text
    assert "scripts/soak, seed 7" in text and "nothing lost" in text
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if line.count("│") == 5}
    assert set(rows) == {"fuzz", "load", "kill -9"}, text
    assert "3,000 frames from 2 clients, seed 7" in rows["fuzz"]
    assert "8 clients for 1 s" in rows["load"]
    assert "1 rounds with APTPL" in rows["kill -9"]
    for line in rows.values():
        assert line.split("│")[4].strip() == "0"  # lost or wrong
    assert not (tmp_path / "fuzz.trace").exists()  # the audit trace was read and removed
    assert (tmp_path / "fuzz.log").read_text() == ""  # -q: the helper said nothing


def test_a_finding_fails_the_run_and_is_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    def lossy(plan: Plan, workdir: Path, progress: object) -> PhaseResult:
        result = PhaseResult("kill -9", f"{plan.rounds} rounds")
        result.find("lost: initiator 1 [bold]round 1")  # markup in findings stays text
        return result

    monkeypatch.setitem(soak.PHASES, "kill -9", (lossy, lambda plan: plan.rounds))
    code, text = run(["--frames", "0", "--seconds", "0", "--rounds", "2", "--seed", "1"])
    assert code == 1
    assert "kill -9: lost: initiator 1 [bold]round 1" in text
    assert "something was lost" in text
    assert text.count("skipped") == 2  # fuzz and load had amount 0


def test_bad_amounts_are_usage_errors() -> None:
    with pytest.raises(SystemExit) as caught:
        soak.main(["--clients", "-1"], Console(file=io.StringIO()))
    assert caught.value.code == 2


def test_scripts_soak_runs_the_module() -> None:
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [str(root / "scripts" / "soak"), "--help"], capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "--frames" in done.stdout and "--rounds" in done.stdout and "--seed" in done.stdout


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_frames_never_played_are_a_finding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first full soak: a generator bug ended the frame stream after 295,965 of 1,000,000
    frames (a fuzzer thread died with it), and the table still counted only the anomalies."""

    def broken(seed: int) -> Iterator[Frame]:
        yield from itertools.islice(frames(seed), 100)
        raise ValueError("empty range for randrange() (1, 1, 0)")

    monkeypatch.setattr(soak, "frames", broken)
    argv = ["--frames", "300", "--fuzz-clients", "1", "--seconds", "0", "--rounds", "0"]
    code, text = run([*argv, "--seed", "3", "--workdir", str(tmp_path)])
    assert code == 1, text
    assert "fuzz: only 100 of 300 frames were played" in text
    assert "fuzz: fuzzer thread died: ValueError: empty range" in text
    assert (tmp_path / "fuzz.trace").exists()  # kept to explain the finding


def test_a_one_byte_parameter_list_is_a_frame_not_a_crash() -> None:
    """``_split`` drew a cut inside a 1-byte parameter list (randrange(1, 1)); the rng draws
    stay the same, so every other frame of a seed is unchanged."""
    rng = random.Random(1)
    for _ in range(200):
        parts = _split(rng, b"x", 0, (FdKind.PIPE,))
        assert parts == [Part(b"x", (FdKind.PIPE,))]


@pytest.mark.parametrize("opening", [Opening.HANDSHAKE, Opening.UNREAD, Opening.RAW])
def test_an_answered_frame_with_bytes_after_its_request_is_not_kept(opening: Opening) -> None:
    """The first full soak (seed 20261201): frame 287,799, garbage that happened to start with
    a valid READ KEYS and 73 more bytes, kept its connection; the next frame on it was read
    from the middle of those bytes and its refusal was reported as the helper's fault."""
    head = (Part(bytes(4)),) if opening is Opening.RAW else ()
    cdb = bytes.fromhex("5e00") + bytes(5) + bytes.fromhex("0100") + bytes(7)
    parts = (*head, Part(cdb, (FdKind.IMAGE,)), Part(b"more bytes"))
    settled = _settle(random.Random(0), Frame("garbage", opening, parts, Ending.KEEP))
    assert outcome(settled)[0] is Outcome.ANSWERED
    assert settled.ending is Ending.ANSWER_CLOSE
    exact = Frame("garbage", opening, parts[:-1], Ending.KEEP)
    assert _settle(random.Random(0), exact).ending is Ending.KEEP
