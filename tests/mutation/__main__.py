"""``scripts/mutate [--sample N] [--seed S] [--jobs J] [--keep DIR] [PATHS...]``: mutation-test
PATHS (default ``sim/``, ``helper/proto/``, ``helper/executors/status.py``) against the fast
backend-independent tests; print the score per path and every survivor not listed in
``equivalent.toml``. Exit 0 when there is none, 1 when there is, 2 when the run could not give
an answer."""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from mutation import equivalents as eq
from mutation import mutmut_run as mm
from mutation import report, stage
from mutation.errors import MutationError

ROOT = Path(__file__).resolve().parents[2]


def sample_names(names: Sequence[str], size: int | None, seed: int) -> list[str] | None:
    """A reproducible sample of ``size`` mutant names (None: all of them)."""
    if size is None or size >= len(names):
        return None
    return sorted(random.Random(seed).sample(sorted(names), size))


def mutate(
    targets: Sequence[str],
    work: Path,
    *,
    sample: int | None = None,
    seed: int = 0,
    jobs: int = 2,
) -> report.Findings:
    """Stage, generate, run (all mutants or a sample) and tally; ``work`` must be empty."""
    equivalents = eq.load()
    if not mm.available():
        raise mm.MutmutError("mutmut is not installed (pip install -e '.[test]')")
    log = work / "mutmut.log"
    stage.build(ROOT, work, targets)
    mm.generate(work, jobs, log)
    everything = list(mm.verdicts(work))
    if not everything:
        raise mm.MutmutError(f"no mutants made from {list(targets)}; see {log}")
    chosen = sample_names(everything, sample, seed)
    mm.run(work, chosen, jobs, log)
    return report.collect(ROOT, work, targets, chosen, equivalents)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/mutate", description=__doc__)
    parser.add_argument("paths", nargs="*", default=list(stage.DEFAULT_TARGETS))
    parser.add_argument("--sample", type=int, help="run N mutants drawn at random")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample (default 0)")
    parser.add_argument("--jobs", type=int, default=2, help="mutants run at once (default 2)")
    parser.add_argument("--keep", type=Path, help="stage in DIR and keep it (mutmut show ...)")
    args = parser.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="scsi-pr-mutate-"))
    work.mkdir(parents=True, exist_ok=True)
    if any(work.iterdir()):
        parser.error(f"{work} is not empty")
    started = time.monotonic()
    try:
        findings = mutate(args.paths, work, sample=args.sample, seed=args.seed, jobs=args.jobs)
    except MutationError as e:
        print(f"scripts/mutate: {e}", file=sys.stderr)
        return 2
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    full = args.sample is None
    equivalents = [
        e
        for e in eq.load()
        if not isinstance(e, eq.Equivalent) or report.target_of(args.paths, e.file)
    ]
    print(report.render(findings, equivalents, full))
    what = f"sample of {args.sample} (seed {args.seed})" if not full else "every mutant"
    print(f"\n{what}; {time.monotonic() - started:.0f} s")
    return 1 if findings.failures else 0


if __name__ == "__main__":
    sys.exit(main())
