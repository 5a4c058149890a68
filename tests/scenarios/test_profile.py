"""``scsi-pr scenario --profile``: the model as LIO on 6.1 hangs where LIO hangs (PREEMPT AND
ABORT), reported as the verdict HUNG without waiting for a deadline; a profile is refused for a
backend that is not the model."""

from __future__ import annotations

import time

import pytest

from scsi_pr.rig.scenarios.cli import main, run_scenario
from scsi_pr.rig.scenarios.library import SCENARIOS
from scsi_pr.rig.scenarios.results import EXIT_CODES, Verdict

HANGING = sorted(n for n, s in SCENARIOS.items() if s.hangs_lio)


def test_some_scenario_sends_preempt_and_abort() -> None:
    assert HANGING


@pytest.mark.parametrize("name", HANGING)
def test_lio_profile_hangs_where_lio_hangs(name: str) -> None:
    started = time.monotonic()
    run = run_scenario(SCENARIOS[name], "sim", timeout=30, profile="lio-6.1")
    assert run.verdict == Verdict.HUNG, run.message
    assert "PREEMPT AND ABORT" in run.message and "never completes" in run.message
    assert time.monotonic() - started < 20, "a stalled command is reported, not waited for"
    assert run_scenario(SCENARIOS[name], "sim").verdict == Verdict.PASS  # spc5 completes it


def test_cli_profile(capsys: pytest.CaptureFixture[str]) -> None:
    name = HANGING[0]
    assert main([name, "--backend", "sim", "--profile", "lio-6.1"]) == EXIT_CODES[Verdict.HUNG]
    capsys.readouterr()
    assert main([name, "--backend", "lio", "--profile", "lio-6.1"]) == EXIT_CODES[Verdict.ERROR]
    assert "takes no profile" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([name, "--profile", "lio-5"])
