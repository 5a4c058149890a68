"""Each VM tier phase collects only its ``paths`` (``rig/vm_tier.py``): under TCG collecting the
whole suite costs a phase ~25x what it costs here. This test holds the paths to the markers:
for every phase, the tests its marks select in the whole suite are exactly those they select
in its paths, so a new ``lio_hangs`` or ``vm`` test in another file fails here, not by being
silently left out of the VM tier."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from scsi_pr.rig import vm_tier

ROOT = Path(__file__).resolve().parents[2]
SCOPED = {name: spec for name, spec in vm_tier.PHASES.items() if spec.paths and not spec.subset}


def _collect(paths: tuple[str, ...], spec: vm_tier.PhaseSpec) -> set[str]:
    backends = [a for b in spec.backends or vm_tier.BACKENDS for a in ("--backend", b)]
    argv = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
            *paths, "-m", spec.marks, *backends]  # fmt: skip
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode in (0, 5), done.stdout[-3000:] + done.stderr[-3000:]
    return {line for line in done.stdout.splitlines() if "::" in line}


def test_every_phase_collects_only_its_paths() -> None:
    assert sorted(SCOPED) == ["guest-e2e", "iscsi", "lio-hangs", "main"]
    subsets = sorted(n for n, spec in vm_tier.PHASES.items() if spec.subset)
    assert subsets == ["mpath", "paths"]  # the conformance suite alone, by choice


@pytest.mark.parametrize("name", sorted(SCOPED))
def test_a_phase_collects_in_its_paths_every_test_its_marks_select(name: str) -> None:
    spec = SCOPED[name]
    assert spec.paths is not None
    with ThreadPoolExecutor(2) as pool:
        whole, scoped = pool.map(lambda p: _collect(p, spec), [("tests",), spec.paths])
    assert whole, f"phase {name} selects no test at all"
    assert scoped == whole, f"phase {name} misses {sorted(whole - scoped)[:5]}"


def test_every_multipath_test_is_in_the_mpath_phases_paths() -> None:
    """mpath chooses the conformance suite by its paths (a subset), and holds every
    ``multipath`` test: the one multipathd is its. A multipath test in another file would
    be run by no phase (main leaves them out)."""
    spec = replace(vm_tier.PHASES["mpath"], marks="multipath")
    with ThreadPoolExecutor(2) as pool:
        whole, scoped = pool.map(lambda p: _collect(p, spec), [("tests",), spec.paths or ()])
    assert whole, "no multipath test at all"
    assert scoped == whole, f"mpath misses {sorted(whole - scoped)[:5]}"
    assert all(t.startswith("tests/vm/test_multipath_vm.py::") for t in whole)
