"""The VM tier's driver on the host (``rig/vm_tier.py``): a phase that hangs, one that is slow
but progressing, one hung before any test, and the lanes: which phases share what, which run
side by side, which wait.

Phases run real pytest processes on the ``sim`` backend (pytester); the lanes' tests replace
``run_phase``.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from pathlib import Path

import pytest

from scsi_pr.rig import vm_tier, vm_tier_results

pytest_plugins = ["pytester"]


PHASE_TESTS = """
import time
import pytest

def test_good(backend):
    pass

@pytest.mark.deviates("sim", reason="pretend", clause="SPC-5 x")
def test_known_deviation(backend):
    assert False

def test_wedges(backend):
    time.sleep(60)

def test_never_reached(backend):
    pass
"""


def test_a_wedged_hang_phase_counts_unreported_tests_as_lio_hangs(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    """The phase is abandoned at its deadline; what never reported is "LIO hangs", the rest
    keeps its real outcome, and nothing of it is a pass."""
    test_file = pytester.makepyfile(PHASE_TESTS)
    spec = vm_tier.PhaseSpec("", (), budget=5.0, quiet_limit=10.0, hang_phase=True,
                             startup_limit=60.0)  # fmt: skip
    phase = vm_tier.run_phase("lio-hangs", [str(test_file)], spec, tmp_path, backends=("sim",))
    assert phase.abandoned
    assert phase.counts() == {"passed": 1, "xfailed (LIO deviation)": 1, "LIO hangs": 2}
    assert not phase.failed()
    line = vm_tier_results.summary_line([phase])
    assert line == "VM tier: 1 passed, 2 LIO hangs, 1 xfailed (LIO deviation)"


def test_a_wedged_main_phase_is_a_failure(pytester: pytest.Pytester, tmp_path: Path) -> None:
    test_file = pytester.makepyfile(PHASE_TESTS)
    spec = vm_tier.PhaseSpec("", (), budget=5.0, quiet_limit=10.0, startup_limit=60.0)
    phase = vm_tier.run_phase("main", [str(test_file)], spec, tmp_path, backends=("sim",))
    assert phase.abandoned
    assert phase.verdict.startswith("hung: no progress for 10s")
    assert phase.counts()["error"] == 2
    assert phase.failed()
    log = [json.loads(x) for x in (tmp_path / "main.jsonl").read_text().splitlines()]
    assert len(log[0]["collected"]) == 4


SLOW_TESTS = """
import time

import pytest

@pytest.mark.parametrize("i", range(6))
def test_slow(backend, i):
    time.sleep(1.5)
"""


def test_a_slow_phase_that_keeps_progressing_runs_to_its_end(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    """9 s of tests, each under the 4 s quiet limit, the whole far over the 2 s budget: slow,
    not hung, every test reported (a fixed 4 s deadline would have cut it off)."""
    test_file = pytester.makepyfile(SLOW_TESTS)
    spec = vm_tier.PhaseSpec("", (), budget=2.0, quiet_limit=4.0 + 6.0, startup_limit=60.0)
    phase = vm_tier.run_phase("main", [str(test_file)], spec, tmp_path, backends=("sim",))
    assert (phase.abandoned, phase.verdict, phase.rc) == (False, "slow", 0)
    assert phase.counts() == {"passed": 6}
    assert not phase.failed()


def test_a_phase_hung_before_any_test_is_a_failure(tmp_path: Path) -> None:
    """Seen in a loaded VM: the hang phase printed nothing before its limit. No test was
    collected, so none can be counted as a known LIO hang: the phase failed."""
    spec = vm_tier.PhaseSpec("", (), budget=1.0, quiet_limit=1.0, hang_phase=True,
                             startup_limit=2.0)  # fmt: skip
    sleeper = tmp_path / "conftest.py"
    sleeper.write_text("import time\ntime.sleep(60)\n")
    phase = vm_tier.run_phase("lio-hangs", [str(tmp_path)], spec, tmp_path, backends=("sim",))
    assert phase.abandoned and phase.results == []
    assert phase.verdict.startswith("hung: no sign of life")
    assert phase.failed()


def test_the_phases_outside_the_rig_lane_build_lus_of_their_own() -> None:
    """Only main and iscsi share the rig (its LU, the iSCSI rig). paths and mpath run beside
    them and the hang phase after both lanes, each on generations of its own, which no other
    process uses (nor the nested guest's LU). mpath waits for main: there is one multipathd.
    The hangs go last: with them beside main, main stopped in its udev test (measured).
    mpath: its own process, on the map backend alone, the conformance suite."""
    from scsi_pr.rig import backend_lio
    from scsi_pr.rig.guest_e2e import driver

    firsts = sorted({spec.first_generation for spec in vm_tier.PHASES.values()})
    assert firsts == [0, vm_tier.PATHS_GENERATIONS, vm_tier.MPATH_GENERATIONS,
                      vm_tier.HANG_GENERATIONS]  # fmt: skip
    spaces = [range(first, first + backend_lio.GENERATIONS) for first in firsts]
    for space, following in itertools.pairwise(spaces):
        assert space.stop <= following.start, "two phases' generations overlap"
    assert spaces[-1].stop <= 256
    assert not any(driver.LU_GENERATION in space for space in spaces)
    assert sorted(n for n, spec in vm_tier.PHASES.items() if spec.first_generation) == [
        "lio-hangs", "mpath", "paths",
    ]  # fmt: skip
    lanes = vm_tier.plan(vm_tier.PHASES)
    assert lanes == {
        vm_tier.Lane.RIG: ["main", "iscsi"],
        vm_tier.Lane.BESIDE: ["paths", "guest-e2e", "mpath"],
        vm_tier.Lane.LAST: ["lio-hangs"],
    }
    assert vm_tier.plan(["lio-hangs", "main"])[vm_tier.Lane.LAST] == ["lio-hangs"]
    assert {n: spec.after for n, spec in vm_tier.PHASES.items() if spec.after} == {
        "mpath": ("main",)
    }
    mpath = vm_tier.PHASES["mpath"]
    assert mpath.backends == ("helper-lio-mpath",) and mpath.paths == ("tests/conformance",)
    assert "helper-lio-mpath" not in (vm_tier.PHASES["paths"].backends or ())


def test_two_lanes_run_side_by_side_and_the_last_phase_after_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """main waits until guest-e2e has started (a driver that ran the lanes one after another
    would never get there); mpath, though its lane gets there first, starts only once main has
    ended; lio-hangs only once every other phase is done. The beside phases' output comes after
    the rig lane's, whole, not interleaved."""
    started: dict[str, threading.Event] = {n: threading.Event() for n in vm_tier.PHASES}
    finished: list[str] = []

    def fake_run_phase(name, argv, spec, workdir, *, backends, out=None):
        started[name].set()
        if name == "main":
            assert started["guest-e2e"].wait(60), "guest-e2e did not start beside main"
            time.sleep(0.3)  # mpath's lane is at it by now: it must still wait
        if name == "mpath":
            assert "main" in finished, "mpath started before main ended"
        if name == "iscsi":
            time.sleep(0.3)  # the last phase must wait for it
        if spec.lane is vm_tier.Lane.LAST:
            assert set(vm_tier.PHASES) - {name} <= set(finished), name
        if spec.lane is vm_tier.Lane.BESIDE:
            assert out is not None
            out.write(f"{name} output\n".encode())
        else:
            print(f"{name} output")
        finished.append(name)
        return vm_tier.Phase(name, rc=0)

    monkeypatch.setattr(vm_tier, "run_phase", fake_run_phase)
    assert vm_tier.main(["--workdir", str(tmp_path)]) == 0
    assert finished[-1] == "lio-hangs"
    assert finished.index("paths") < finished.index("guest-e2e") < finished.index("mpath")
    text = capsys.readouterr().out
    assert text.index("iscsi output") < text.index("paths output")
    assert text.index("mpath output") < text.index("lio-hangs output") < text.index("summary")


def test_a_driver_error_in_one_lane_is_a_failed_phase_not_a_lost_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fake_run_phase(name, argv, spec, workdir, *, backends, out=None):
        if name == "guest-e2e":
            raise OSError("no space left")
        return vm_tier.Phase(name, rc=0)

    monkeypatch.setattr(vm_tier, "run_phase", fake_run_phase)
    assert vm_tier.main(["--workdir", str(tmp_path), "--phases", "main,guest-e2e"]) == 1
    text = capsys.readouterr().out
    assert "driver error: OSError: no space left" in text
    assert "== VM tier summary ==" in text
