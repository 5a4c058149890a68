"""Hypothesis's cache of constants drawn from our source, filled on the host for the VM.

Hypothesis (6.131 on) draws some values from literals in the "local" modules a process has
imported (not stdlib, not site-packages: ours, and Debian's rtslib-fb and pyudev under
dist-packages). At a process's first example it parses each such module's AST and caches the
result in its storage directory (``.hypothesis/constants``, one file per source hash). The
guest cannot write there (its checkout is a read-only image), so every VM phase that ran a
hypothesis test parsed some 70 modules again under TCG: 28 s of the 156 s of the conformance
suite on ``lio`` (cProfile in the VM, 2026-12-05). Hypothesis has no switch to turn the
feature off (HypothesisWorks/hypothesis#4627 asks for one), so the host fills the cache before
the image is built (``warm``, a second here) and the image carries it: the guest reads a file
per module instead of parsing it.

Only public API is used: the cache is filled by running examples with everything the guest
imports already imported, which is what fills it in any test run.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

#: the parts of ``scsi_pr`` the guest's processes import (pyproject's package-dir)
PARTS = ("sim", "helper", "rig", "target")
#: where hypothesis keeps its storage under a checkout (its default: the working directory's)
STORAGE = ".hypothesis"
#: what of the storage the VM's image carries (not the example database: the guest's own)
CONSTANTS = "constants"
WARM_TIMEOUT = 300.0


def import_everything() -> None:
    """Every module of ours, and rtslib-fb and pyudev as ``rig.lio`` finds them."""
    for part in PARTS:
        package = importlib.import_module(f"scsi_pr.{part}")
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if not info.name.endswith("__main__"):
                importlib.import_module(info.name)
    from scsi_pr.rig import lio

    try:
        lio._rtslib()
        importlib.import_module("pyudev")
    except (lio.LioUnavailable, ImportError):
        pass  # no rtslib-fb here: the guest parses it itself


def run_examples() -> None:
    """Draw until hypothesis has used a constant: it collects them only then (one draw in
    twenty decides to), so 2,000 integer draws make a miss vanishingly unlikely."""
    from hypothesis import Phase, given, settings
    from hypothesis import strategies as st

    @settings(max_examples=20, database=None, phases=[Phase.generate])
    @given(st.lists(st.integers(), min_size=100, max_size=100))
    def example(_: list[int]) -> None:
        pass

    example()


def warm(root: Path) -> None:
    """Fill ``root``'s constants cache in a process of its own (importing everything has no
    place in the caller's). A failure costs the guest time, never a result: it is reported."""
    env = dict(os.environ, HYPOTHESIS_STORAGE_DIRECTORY=str(root / STORAGE))
    cmd = [sys.executable, "-m", "scsi_pr.rig.hypothesis_cache"]
    try:
        done = subprocess.run(
            cmd, cwd=root, env=env, capture_output=True, text=True, timeout=WARM_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        print(f"scsi-pr vm: {' '.join(cmd)} took over {WARM_TIMEOUT:g} s", file=sys.stderr)
        return
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"scsi-pr vm: warming hypothesis's constants cache failed: {why}", file=sys.stderr)


def main() -> int:
    import_everything()
    run_examples()
    storage = os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY", STORAGE)
    if not any(Path(storage, CONSTANTS).glob("*")):
        print(f"no constants were cached in {storage}/{CONSTANTS}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
