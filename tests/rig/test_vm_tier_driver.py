"""The VM tier's driver on the host (``rig/vm_tier.py``): a phase that hangs, one that is slow
but progressing, one hung before any test, and the lanes: which phases share what, which run
side by side, which wait.

Phases run real pytest processes on the ``sim`` backend (pytester); the lanes' tests replace
``run_phase``.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import resource
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, BinaryIO

import pytest

from scsi_pr.rig import vm_tier, vm_tier_results
from scsi_pr.rig.backend_lio import ENV_FIRST_GENERATION
from scsi_pr.rig.pytest_plugin import ENV_RESULT_LOG
from scsi_pr.rig.watchdog import ENV_PROGRESS, WatchedRun

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
    """Only main takes over the rig (its LU, the iSCSI rig). paths, guest-e2e and mpath run
    beside it in the first VM, the hang phase in the second, each on generations of its own,
    which no other process uses (nor the nested guest's LU). mpath holds the multipath tests:
    there is one multipathd. The iscsi phase (no LIO, no udev) runs beside the hangs in their
    VM, which has no udevd: with the hangs beside main, main stopped in its udev test."""
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
    by_vm = {vm: [n for n, spec in vm_tier.PHASES.items() if spec.vm == vm] for vm in (0, 1)}
    assert vm_tier.plan(by_vm[0]) == {
        vm_tier.Lane.RIG: ["main"],
        vm_tier.Lane.BESIDE: ["paths", "guest-e2e", "mpath"],
    }
    assert vm_tier.plan(by_vm[1]) == {
        vm_tier.Lane.RIG: ["lio-hangs"],
        vm_tier.Lane.BESIDE: ["iscsi"],
    }
    assert [n for n, spec in vm_tier.PHASES.items() if not spec.udev] == ["iscsi", "lio-hangs"]
    mpath = vm_tier.PHASES["mpath"]
    assert mpath.backends == ("helper-lio-mpath",)
    assert mpath.paths == ("tests/conformance", "tests/vm/test_multipath_vm.py")
    assert mpath.marks == "(uses_backend and not lio_hangs) or multipath"
    assert "not multipath" in vm_tier.PHASES["main"].marks
    assert "helper-lio-mpath" not in (vm_tier.PHASES["paths"].backends or ())


LANES = [(0, "main", ("paths", "guest-e2e", "mpath")), (1, "lio-hangs", ("iscsi",))]


@pytest.mark.parametrize(("vm", "rig", "beside"), LANES)
def test_a_vms_two_lanes_run_side_by_side(
    vm: int, rig: str, beside: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """The rig lane's phase waits until the beside lane's last phase has started (a driver that
    ran the lanes one after another would never get there), and that phase until the rig
    lane's has ended (none waits for another lane's). The beside phases' output comes after
    the rig lane's, whole, not interleaved."""
    started: dict[str, threading.Event] = {n: threading.Event() for n in vm_tier.PHASES}
    rig_ended = threading.Event()
    finished: list[str] = []

    def fake_run_phase(name, argv, spec, workdir, *, backends, out=None):
        started[name].set()
        if name == rig:
            assert started[beside[-1]].wait(60), f"{beside[-1]} did not start beside {rig}"
        if name == beside[-1]:
            assert rig_ended.wait(60), f"{rig} did not end while {name} ran"
        if spec.lane is vm_tier.Lane.BESIDE:
            assert out is not None
            out.write(f"{name} output\n".encode())
        else:
            print(f"{name} output")
        finished.append(name)
        if name == rig:
            rig_ended.set()
        return vm_tier.Phase(name, rc=0)

    monkeypatch.setattr(vm_tier, "run_phase", fake_run_phase)
    monkeypatch.setattr(vm_tier.udev, "stop", lambda: True)
    assert vm_tier.main(["--workdir", str(tmp_path), "--vm", str(vm)]) == 0
    assert finished == [*beside[:-1], rig, beside[-1]]
    text = capsys.readouterr().out
    at = [text.index(f"{name} output") for name in (rig, *beside)]
    assert at == sorted(at) and at[-1] < text.index("summary")


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


# -- one phase's pytest run, the watcher faked --------------------------------------------------


class _Tracker:
    """Stands in for ``progress.Tracker``: records what the watcher's signs of life told it."""

    made: list[_Tracker] = []

    def __init__(self, description: str) -> None:
        self.description = description
        self.updates: list[tuple[int, str, int | None]] = []
        _Tracker.made.append(self)

    def __enter__(self) -> _Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, done: int, what: str, total: int | None) -> None:
        self.updates.append((done, what, total))


def _fake_watcher(
    monkeypatch: pytest.MonkeyPatch, records: list[dict[str, Any]], *, hung: bool = False
) -> list[dict[str, Any]]:
    """``run_watched`` that writes ``records`` to the phase's result log, a sign of life for
    each, and ends (or is abandoned, ``hung``); the calls it got, for the test to read."""
    calls: list[dict[str, Any]] = []
    _Tracker.made = []

    def fake_run_watched(cmd: list[str], **kw: Any) -> WatchedRun:
        log = Path(kw["env"][ENV_RESULT_LOG])
        calls.append({"cmd": cmd, "log existed": log.exists(), **kw})
        for i, record in enumerate(records):
            with log.open("a") as f:
                f.write(json.dumps(record) + "\n")
            kw["on_progress"](f"sign {i}")
        return WatchedRun(rc=None if hung else 1, seconds=12.0, hung=hung, slow=not hung,
                          quiet_limit=kw["quiet_limit"], last_what="sign")  # fmt: skip

    monkeypatch.setattr(vm_tier, "run_watched", fake_run_watched)
    monkeypatch.setattr(vm_tier, "Tracker", _Tracker)
    return calls


RECORDS = [
    {"collected": ["t::a", "t::b", "t::c"], "cpu": 1.5},
    {"nodeid": "t::a", "when": "call", "outcome": "passed", "reason": ""},
    {"nodeid": "t::b", "when": "call", "outcome": "failed", "reason": "no"},
]


def test_a_phase_runs_its_pytest_watched_on_its_own_log_and_generations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The pytest command, its environment (the result log and heartbeat file the watcher
    follows, the phase's own LU generations, our environment besides) and the phase's limits
    are what the phase runs under; a stale log of an earlier run is gone before it starts."""
    calls = _fake_watcher(monkeypatch, [*RECORDS, {"cpu": 4.5}])
    monkeypatch.setenv("SCSI_PR_SOMETHING_OF_OURS", "kept")
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)  # ours to set, not inherited
    for stale in ("mpath.jsonl", "mpath.progress"):
        (tmp_path / stale).write_text('{"nodeid": "t::stale", "outcome": "failed"}\n')
    spec = vm_tier.PhaseSpec("m", (), budget=600.0, quiet_limit=300.0, startup_limit=90.0,
                             first_generation=0x40)  # fmt: skip
    out = io.BytesIO()
    phase = vm_tier.run_phase("mpath", ["tests/conformance", "-m", "m"], spec, tmp_path,
                              backends=("helper-lio-mpath", "lio"), out=out)  # fmt: skip
    (call,) = calls
    log, beat = tmp_path / "mpath.jsonl", tmp_path / "mpath.progress"
    assert call["cmd"] == [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfExX",
        "tests/conformance", "-m", "m", "--backend", "helper-lio-mpath", "--backend", "lio",
    ]  # fmt: skip
    assert not call["log existed"] and not beat.exists()
    env = call["env"]
    assert (env["PYTHONUNBUFFERED"], env[ENV_RESULT_LOG], env[ENV_PROGRESS]) == (
        "1", str(log), str(beat)
    )  # fmt: skip
    assert env[ENV_FIRST_GENERATION] == "0x40"
    assert env["SCSI_PR_SOMETHING_OF_OURS"] == "kept"
    assert (call["quiet_limit"], call["startup_limit"], call["budget"]) == (300.0, 90.0, 600.0)
    assert call["progress_files"] == [log, beat]
    assert call["out"] is out
    assert capsys.readouterr().out == (
        "\n== VM tier, mpath (beside the others; its output follows when done): pytest -p "
        "no:cacheprovider -q -rfExX tests/conformance -m m --backend helper-lio-mpath "
        "--backend lio\n"
    )
    (tracker,) = _Tracker.made
    assert tracker.description == "VM tier mpath: tests done"
    assert tracker.updates == [
        (0, "sign 0", 3), (1, "sign 1", 3), (2, "sign 2", 3), (2, "sign 3", 3)
    ]  # fmt: skip
    assert phase == vm_tier.Phase("mpath", rc=1, seconds=12.0, results=RECORDS[1:],
                                  verdict="slow", start_cpu=1.5, cpu=4.5)  # fmt: skip


def test_a_phase_on_the_rigs_generations_leaves_them_to_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Generation 0 is the rig's own: no override, whatever our environment says; output to
    our stdout (``out`` None) says nothing of "beside"."""
    calls = _fake_watcher(monkeypatch, [])
    monkeypatch.delenv(ENV_FIRST_GENERATION, raising=False)
    spec = vm_tier.PhaseSpec("m", (), budget=1.0, quiet_limit=2.0)
    phase = vm_tier.run_phase("main", ["tests"], spec, tmp_path)
    (call,) = calls
    assert ENV_FIRST_GENERATION not in call["env"]
    assert call["startup_limit"] == 600.0 and call["out"] is None
    assert call["cmd"][-2 * len(vm_tier.BACKENDS) :] == [
        a for b in vm_tier.BACKENDS for a in ("--backend", b)
    ]
    assert capsys.readouterr().out == (f"\n== VM tier, main: {' '.join(call['cmd'][2:])}\n")
    assert (phase.results, phase.start_cpu, phase.cpu) == ([], None, None)


@pytest.mark.parametrize(("hang_phase", "outcome"), [(True, "xfailed"), (False, "error")])
def test_an_abandoned_phase_says_so_and_counts_what_never_reported(
    hang_phase: bool,
    outcome: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _fake_watcher(monkeypatch, RECORDS, hung=True)
    spec = vm_tier.PhaseSpec("m", (), budget=1.0, quiet_limit=300.0, hang_phase=hang_phase)
    phase = vm_tier.run_phase("lio-hangs", ["tests"], spec, tmp_path, backends=("lio",))
    verdict = "hung: no progress for 300s (last sign of life: sign)"
    assert (phase.rc, phase.abandoned, phase.verdict) == (None, True, verdict)
    assert capsys.readouterr().out.splitlines()[-1] == f"== lio-hangs: abandoned, {verdict}"
    assert phase.results[:2] == RECORDS[1:]
    assert [(r["nodeid"], r["outcome"]) for r in phase.results[2:]] == [("t::c", outcome)]
    assert (phase.start_cpu, phase.cpu) == (1.5, None)


# -- the driver's command line, phases faked ----------------------------------------------------


class _Ran:
    """What the driver asked of ``run_phase``, by phase."""

    def __init__(self) -> None:
        self.calls: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []


def _fake_run_phase(
    monkeypatch: pytest.MonkeyPatch,
    outcome: dict[str, str] | None = None,
    hook: Callable[[str], None] | None = None,
) -> _Ran:
    ran = _Ran()

    def fake_run_phase(
        name: str,
        argv: list[str],
        spec: vm_tier.PhaseSpec,
        workdir: Path,
        *,
        backends: tuple[str, ...],
        out: BinaryIO | None = None,
    ) -> vm_tier.Phase:
        ran.calls[name] = {"argv": argv, "spec": spec, "workdir": workdir, "backends": backends,
                           "out": out, "thread": threading.current_thread()}  # fmt: skip
        if hook is not None:
            hook(name)
        if out is None:
            print(f"{name} runs", flush=True)
        else:
            out.write(f"{name} runs\n".encode())
        ran.order.append(name)
        kind = (outcome or {}).get(name, "passed")
        result = {"nodeid": f"t::{name}", "when": "call", "outcome": kind, "reason": "why"}
        return vm_tier.Phase(name, rc=0, seconds=1.0, results=[result])

    monkeypatch.setattr(vm_tier, "run_phase", fake_run_phase)
    monkeypatch.setattr(vm_tier, "show_guest_cpu", lambda: print("(guest CPU)"))
    monkeypatch.setattr(vm_tier.udev, "stop", lambda: pytest.fail("udevd stopped"))
    return ran


def test_each_phase_runs_its_paths_marks_and_backends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without paths on the command line a phase collects only its own (collecting the whole
    suite costs each phase ~25x under TCG), on its own backends or the LIO pair."""
    ran = _fake_run_phase(monkeypatch)
    monkeypatch.setattr(vm_tier.udev, "stop", lambda: True)
    for vm in ("0", "1"):
        assert vm_tier.main(["--workdir", str(tmp_path), "--vm", vm]) == 0
    assert list(ran.calls) and set(ran.calls) == set(vm_tier.PHASES)
    for name, call in ran.calls.items():
        spec = vm_tier.PHASES[name]
        assert spec.paths, name
        assert call["argv"] == [*spec.paths, "-m", spec.marks, *spec.extra], name
        assert call["spec"] is spec and call["workdir"] == tmp_path
        assert call["backends"] == (spec.backends or vm_tier.BACKENDS), name
    assert ran.calls["main"]["backends"] == vm_tier.BACKENDS
    assert ran.calls["iscsi"]["backends"] == ("iscsi",)


def test_paths_on_the_command_line_replace_every_phases_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran = _fake_run_phase(monkeypatch)
    argv = [
        "--workdir",
        str(tmp_path),
        "--phases",
        "main,,paths,",
        "--",
        "tests/sim",
        "-k",
        "x",
    ]
    assert vm_tier.main(argv) == 0
    assert ran.calls["main"]["argv"] == [
        "tests/sim", "-k", "x", "-m", vm_tier.PHASES["main"].marks, "--durations=15",
    ]  # fmt: skip
    assert ran.calls["paths"]["argv"] == [
        "tests/sim", "-k", "x", "-m", "uses_backend and not lio_hangs", "--durations=10",
    ]  # fmt: skip
    assert sorted(ran.order) == ["main", "paths"]


def test_a_phase_without_paths_of_its_own_runs_the_default_tests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran = _fake_run_phase(monkeypatch)
    monkeypatch.setitem(vm_tier.PHASES, "main", replace(vm_tier.PHASES["main"], paths=None))
    assert vm_tier.main(["--workdir", str(tmp_path), "--phases", "main"]) == 0
    marks = vm_tier.PHASES["main"].marks
    assert ran.calls["main"]["argv"] == ["tests", "-m", marks, "--durations=15"]


def test_the_driver_prints_each_phase_as_it_ends_and_one_summary_in_phase_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A phase's counts show as soon as it ends (a later one may take long), its failures only
    in the summary; the summary lists the phases in ``PHASES`` order, not as they ended (paths
    ends before main here); what a beside phase's pytest printed follows the rig lane's, whole,
    under a header of its own."""
    paths_reported = threading.Event()
    report = vm_tier.report

    def reporting(phase: vm_tier.Phase, details: bool = True) -> None:
        report(phase, details)
        if phase.name == "paths":
            paths_reported.set()

    def hook(name: str) -> None:
        if name == "main":
            assert paths_reported.wait(60), "paths did not run beside main"

    _fake_run_phase(monkeypatch, {"main": "failed"}, hook)
    monkeypatch.setattr(vm_tier, "report", reporting)
    assert vm_tier.main(["--workdir", str(tmp_path), "--phases", "paths,main"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "  paths      1 passed; pytest exit 0; 1s, in time",
        "main runs",
        "  main       1 failed; pytest exit 0; 1s, in time",
        "",
        "== VM tier, paths: its output",
        "paths runs",
        "(guest CPU)",
        "",
        "== VM tier summary ==",
        "  main       1 failed; pytest exit 0; 1s, in time",
        "    FAILED: t::main: why",
        "  paths      1 passed; pytest exit 0; 1s, in time",
        "VM tier: 1 passed, 1 failed",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["paths.out"]


def test_the_beside_lane_is_a_daemon_thread_named_for_its_phases(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon: a lane stuck for good must not keep the driver (and the VM) from ending."""
    ran = _fake_run_phase(monkeypatch)
    monkeypatch.setattr(vm_tier.udev, "stop", lambda: True)
    assert vm_tier.main(["--workdir", str(tmp_path / "new" / "dir"), "--vm", "0"]) == 0
    lane = ran.calls["paths"]["thread"]
    assert lane.name == "vm-tier-paths+guest-e2e+mpath" and lane.daemon
    assert all(ran.calls[n]["thread"] is lane for n in ("guest-e2e", "mpath"))
    assert ran.calls["main"]["thread"] is threading.main_thread()
    assert ran.calls["main"]["out"] is None
    assert sorted(p.name for p in (tmp_path / "new" / "dir").iterdir()) == [
        "guest-e2e.out", "mpath.out", "paths.out",
    ]  # fmt: skip
    assert vm_tier.main(["--workdir", str(tmp_path / "hangs"), "--vm", "1"]) == 0
    assert ran.calls["iscsi"]["thread"].name == "vm-tier-iscsi"
    assert ran.calls["lio-hangs"]["thread"] is threading.main_thread()


def test_no_phase_chosen_runs_nothing_and_leaves_udev_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A VM none of whose phases is chosen has nothing to stop udevd for (``--vm 2``)."""
    ran = _fake_run_phase(monkeypatch)
    assert vm_tier.main(["--workdir", str(tmp_path), "--vm", "2"]) == 0
    assert vm_tier.main(["--workdir", str(tmp_path), "--phases", ""]) == 0
    assert ran.order == []
    assert capsys.readouterr().out.splitlines()[-1] == "VM tier: no tests ran"


@pytest.mark.parametrize(("stopped", "said"), [(True, True), (False, False)])
def test_a_vm_whose_phases_need_no_udev_stops_it_and_says_so(
    stopped: bool,
    said: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ran = _fake_run_phase(monkeypatch)
    monkeypatch.setattr(vm_tier.udev, "stop", lambda: ran.order.append("stop") or stopped)
    assert vm_tier.main(["--workdir", str(tmp_path), "--phases", "lio-hangs"]) == 0
    assert ran.order == ["stop", "lio-hangs"]
    line = "VM tier: udevd stopped: no phase here needs it"
    assert (line in capsys.readouterr().out.splitlines()) is said


def test_the_default_workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """/tmp/scsi-pr-vm-tier in the VM (here redirected, not to touch this machine's /tmp)."""
    asked: list[str] = []

    def fake_path(p: str) -> Path:
        asked.append(p)
        return tmp_path / "workdir"

    ran = _fake_run_phase(monkeypatch)
    monkeypatch.setattr(vm_tier, "Path", fake_path)
    assert vm_tier.main(["--phases", "main"]) == 0
    assert asked == ["/tmp/scsi-pr-vm-tier"]
    assert (
        ran.calls["main"]["workdir"] == tmp_path / "workdir"
        and ran.calls["main"]["workdir"].is_dir()
    )


def test_unknown_phases_are_refused_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        vm_tier.main(["--phases", "nope,main,bogus"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "python -m scsi_pr.rig.vm_tier: error: unknown phase(s) bogus, nope"
    )


def test_the_command_lines_options_as_help_shows_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """scripts/vm-tier and people read these."""
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as exit_:
        vm_tier.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        "usage: python -m scsi_pr.rig.vm_tier [-h] [--workdir WORKDIR] [--phases PHASES] "
        "[--vm VM] [--vm-groups] [--vm-cpus VM] [--results RESULTS] [--merge RESULTS] "
        "[pytest_args ...]"
    )
    assert out[2].startswith(vm_tier.__doc__.split("\n")[0])
    assert out[out.index("positional arguments:") :] == [
        "positional arguments:",
        "  pytest_args        paths (default: tests)",
        "",
        "options:",
        "  -h, --help         show this help message and exit",
        "  --workdir WORKDIR",
        "  --phases PHASES    comma separated, from main, paths, guest-e2e, mpath, iscsi, "
        "lio-hangs",
        "  --vm VM            run only the chosen phases that go to this VM",
        "  --vm-groups        print the VMs the chosen phases go to, and exit (scripts/vm-tier "
        "boots one each)",
        "  --vm-cpus VM       print the vCPUs scripts/vm-tier gives this VM, and exit",
        "  --results RESULTS  also write the outcomes here, for --merge",
        "  --merge RESULTS    print one summary of these --results files (repeatable) and exit",
    ]


# -- where the VM's CPU went --------------------------------------------------------------------


def test_show_guest_cpu_prints_the_report_and_the_drivers_share(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    totals, usages = {"user": 1.0}, [object()]

    def fake_report(t: object, u: object, *, uevents: int | None) -> list[str]:
        assert (t, u, uevents) == (totals, usages, 7)
        return ["  line one", "  line two"]

    usage = {resource.RUSAGE_SELF: (2.0, 1.2), resource.RUSAGE_CHILDREN: (10.0, 4.4)}
    monkeypatch.setattr(vm_tier.guest_cpu, "read", lambda: (totals, usages))
    monkeypatch.setattr(vm_tier.guest_cpu, "report", fake_report)
    monkeypatch.setattr(vm_tier.guest_cpu, "uevents", lambda: 7)

    def rusage(who: int) -> SimpleNamespace:
        utime, stime = usage[who]
        return SimpleNamespace(ru_utime=utime, ru_stime=stime)

    monkeypatch.setattr(vm_tier.resource, "getrusage", rusage)
    vm_tier.show_guest_cpu()
    assert capsys.readouterr().out == (
        "\n== guest CPU since boot ==\n  line one\n  line two\n"
        "  this driver: 3s itself, 14s in the phases and what else it ran\n"
    )


@pytest.mark.parametrize("error", [OSError("no /proc"), ValueError("no /proc")])
def test_unreadable_guest_cpu_is_said_and_nothing_else(
    error: Exception, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def unreadable() -> None:
        raise error

    monkeypatch.setattr(vm_tier.guest_cpu, "read", unreadable)
    monkeypatch.setattr(vm_tier.resource, "getrusage", lambda who: pytest.fail("read on"))
    vm_tier.show_guest_cpu()
    assert capsys.readouterr().out == "\n== guest CPU: unreadable (no /proc)\n"


# -- the order of the driver's output on a pipe -------------------------------------------------

FLUSHED = """
import os, sys, threading


def scenario(vm_tier, watchdog, setattr, workdir):
    def fake_run_watched(cmd, *, out, **kw):
        # a phase's pytest writes to the descriptor it inherits, or to the beside lane's file
        if out is None:
            os.write(1, b"main's pytest output\\n")
        else:
            out.write(b"paths' pytest output\\n")
        return watchdog.WatchedRun(rc=0, seconds=1.0, hung=False, slow=False, quiet_limit=5.0,
                                   last_what="")

    # main starts once paths, beside it, has ended and said so: the order of lines is fixed
    paths_reported = threading.Event()
    report, run_phase = vm_tier.report, vm_tier.run_phase

    def reporting(phase, details=True):
        report(phase, details)
        if phase.name == "paths":
            paths_reported.set()

    def run_after_paths(name, *args, **kwargs):
        if name == "main":
            assert paths_reported.wait(60), "paths never ended"
        return run_phase(name, *args, **kwargs)

    setattr(vm_tier, "run_watched", fake_run_watched)
    setattr(vm_tier, "report", reporting)
    setattr(vm_tier, "run_phase", run_after_paths)
    setattr(vm_tier, "show_guest_cpu", lambda: None)
    setattr(vm_tier, "BACKENDS", ("lio",))
    vm_tier.main(["--workdir", workdir, "--phases", "main,paths"])


if __name__ == "__main__":
    from scsi_pr.rig import vm_tier, watchdog

    assert vm_tier.__file__ == sys.argv[1]  # the module under test, not another copy
    scenario(vm_tier, watchdog, setattr, sys.argv[2])
"""


def test_the_drivers_headers_come_before_what_they_head(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """In the VM our stdout is a pipe: a phase's header must be out before its pytest writes
    to the descriptor, and the beside lane's header before the lane's output, which is written
    to stdout's bytes, not through its text buffer. Here (captured, unbuffered) the lines are
    in the order printed; on a pipe, in a process of its own, they must be too."""
    from scsi_pr.rig import watchdog

    namespace: dict[str, Any] = {"__name__": "scenario"}
    exec(FLUSHED, namespace)
    namespace["scenario"](vm_tier, watchdog, monkeypatch.setattr, str(tmp_path / "here"))
    here = capfd.readouterr().out
    # as in the VM, where nothing sets PYTHONUNBUFFERED: stdout on a pipe is block-buffered
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    done = subprocess.run(
        [sys.executable, "-c", FLUSHED, vm_tier.__file__, str(tmp_path / "there")],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    paths, main = (
        f"pytest -p no:cacheprovider -q -rfExX {' '.join(spec.paths or ())} -m {spec.marks} "
        f"{' '.join(spec.extra)} --backend {' --backend '.join(spec.backends or ('lio',))}"
        for spec in (vm_tier.PHASES["paths"], vm_tier.PHASES["main"])
    )
    assert done.stdout.splitlines() == [
        "",
        f"== VM tier, paths (beside the others; its output follows when done): {paths}",
        "  paths      no tests; pytest exit 0; 1s, in time",
        "",
        f"== VM tier, main: {main}",
        "main's pytest output",
        "  main       no tests; pytest exit 0; 1s, in time",
        "",
        "== VM tier, paths: its output",
        "paths' pytest output",
        "",
        "== VM tier summary ==",
        "  main       no tests; pytest exit 0; 1s, in time",
        "  paths      no tests; pytest exit 0; 1s, in time",
        "VM tier: no tests ran",
    ]
    assert here == done.stdout
