"""The host tier's bounded mutation run (issue 12): a seeded random sample of the mutants of
``sim/``, ``helper/proto/`` and ``helper/executors/status.py``, each checked against the fast
backend-independent tests. It fails when a sampled mutant survives that ``equivalent.toml`` does
not list, and prints it as ``scripts/mutate`` does (``scripts/mutate --sample N --seed S``
reproduces the run).

SCSI_PR_MUTATION_SAMPLE and SCSI_PR_MUTATION_SEED change the sample (size 12, seed 12 by
default: about three minutes on two busy cores, most of it mutmut's one traced run of the
tests). Without mutmut it skips, and fails in CI (CI=true).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from needs import unavailable

from mutation import equivalents as eq
from mutation import mutmut_run as mm
from mutation import report, stage
from mutation.__main__ import mutate

SAMPLE = int(os.environ.get("SCSI_PR_MUTATION_SAMPLE", "12"))
SEED = int(os.environ.get("SCSI_PR_MUTATION_SEED", "12"))


@pytest.mark.mutation
def test_a_seeded_sample_of_mutants_is_killed(tmp_path: Path) -> None:
    if not mm.available():
        unavailable("mutmut is not installed (pip install -e '.[test]')")
    started = time.monotonic()
    findings = mutate(stage.DEFAULT_TARGETS, tmp_path, sample=SAMPLE, seed=SEED)
    took = time.monotonic() - started
    assert sum(t.total for t in findings.tallies) == SAMPLE, "every sampled mutant was judged"
    assert not findings.failures, (
        f"sample of {SAMPLE} (seed {SEED}, {took:.0f} s):\n"
        + report.render(findings, eq.load(), full=False)
        + "\nkill it with a test that asserts the standard's answer, or list it in "
        + "tests/mutation/equivalent.toml with the reason it cannot be killed"
    )
