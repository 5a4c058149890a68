"""The VM tier split over VMs booted side by side: which phases go where, each VM's outcomes
written for the host, one summary of all, and a VM that is stopped taking QEMU with it."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from scsi_pr.rig import guest_cpu, vm_tier

pytest_plugins = ["pytester"]


def _fake_phases(monkeypatch: pytest.MonkeyPatch, outcome: dict[str, str]) -> list[str]:
    ran: list[str] = []

    def fake_run_phase(name, argv, spec, workdir, *, backends, out=None):
        ran.append(name)
        result = {"nodeid": f"t::{name}", "when": "call", "outcome": outcome.get(name, "passed"),
                  "reason": ""}  # fmt: skip
        return vm_tier.Phase(name, rc=0, seconds=1.0, results=[result], start_cpu=2.0, cpu=10.0)

    monkeypatch.setattr(vm_tier, "run_phase", fake_run_phase)
    # never this machine's udevd: a VM without a phase that needs it stops it
    monkeypatch.setattr(vm_tier.udev, "stop", lambda: ran.append("udev stopped") or True)
    return ran


@pytest.mark.parametrize(
    ("phases", "groups"),
    [
        (None, "0 1"),
        ("main,mpath", "0"),
        ("lio-hangs", "1"),
        ("iscsi,lio-hangs", "1"),
        ("paths,lio-hangs", "0 1"),
        ("main,iscsi", "0 1"),
    ],
)
def test_the_hang_phase_and_the_iscsi_phase_ask_for_a_vm_of_their_own(
    phases: str | None, groups: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--vm-groups"] + (["--phases", phases] if phases else [])
    assert vm_tier.main(argv) == 0
    assert capsys.readouterr().out.split() == groups.split()


@pytest.mark.parametrize(("vm", "cpus"), [(0, "2"), (1, "1")])
def test_the_hang_vm_gets_one_vcpu_and_the_first_two(
    vm: int, cpus: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two for the first VM's two lanes; one for the hang VM, whose second vCPU only spun
    beside the first VM (docs/performance.md)."""
    assert vm_tier.main(["--vm-cpus", str(vm)]) == 0
    assert capsys.readouterr().out == f"{cpus}\n"


def test_a_vm_there_is_not_has_no_vcpus(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        vm_tier.main(["--vm-cpus", "2"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "python -m scsi_pr.rig.vm_tier: error: --vm-cpus 2: no such VM (the VMs: 0, 1)"
    )


def test_every_vm_of_a_phase_has_its_vcpus() -> None:
    assert {spec.vm for spec in vm_tier.PHASES.values()} == set(vm_tier.VM_CPUS)


def test_each_vm_runs_only_its_own_phases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ran = _fake_phases(monkeypatch, {})
    assert vm_tier.main(["--workdir", str(tmp_path), "--vm", "1"]) == 0
    assert ran[0] == "udev stopped"  # nothing there needs udev
    assert sorted(ran[1:]) == ["iscsi", "lio-hangs"]
    ran.clear()
    assert vm_tier.main(["--workdir", str(tmp_path), "--vm", "0"]) == 0
    assert sorted(ran) == ["guest-e2e", "main", "mpath", "paths"]  # udev kept


def test_a_vm_with_one_phase_that_needs_udev_keeps_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran = _fake_phases(monkeypatch, {})
    monkeypatch.setitem(vm_tier.PHASES, "iscsi", replace(vm_tier.PHASES["iscsi"], udev=True))
    assert vm_tier.main(["--workdir", str(tmp_path), "--vm", "1"]) == 0
    assert sorted(ran) == ["iscsi", "lio-hangs"]


@pytest.mark.parametrize("phases", [None, "main,lio-hangs", "paths,iscsi"])
def test_phases_of_two_vms_without_vm_are_refused(
    phases: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """One kernel would run the hangs beside LIO's other tests (measured: main stopped in its
    udev test), or the iscsi phase's iSCSI rig beside main's (one port 3260)."""
    ran = _fake_phases(monkeypatch, {})
    argv = ["--workdir", str(tmp_path)] + (["--phases", phases] if phases else [])
    with pytest.raises(SystemExit) as exit_:
        vm_tier.main(argv)
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "python -m scsi_pr.rig.vm_tier: error: phases of VMs 0, 1 chosen: each VM's run in a "
        "kernel of its own (--vm N, as scripts/vm-tier does)"
    )
    assert ran == []


def test_two_vms_results_merge_into_one_summary_and_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _fake_phases(monkeypatch, {"iscsi": "failed"})
    first, second = tmp_path / "results-0.json", tmp_path / "results-1.json"
    argv = ["--workdir", str(tmp_path), "--phases", "main,iscsi,lio-hangs"]
    assert vm_tier.main([*argv, "--vm", "0", "--results", str(first)]) == 0
    assert vm_tier.main([*argv, "--vm", "1", "--results", str(second)]) == 1
    assert not list(tmp_path.glob("*.part"))
    capsys.readouterr()
    assert vm_tier.main(["--merge", str(first), "--merge", str(second)]) == 1
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1] == "VM tier: 2 passed, 1 failed"
    assert "FAILED: t::iscsi" in out
    assert "; CPU 10s (2s to collect)" in out
    assert "CPU of the phases' pytest runs: 30s" in out
    assert [line.split()[0] for line in out.splitlines() if "pytest exit" in line] == [
        "main", "iscsi", "lio-hangs",
    ]  # fmt: skip


def test_merging_passes_only_when_every_vm_passed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _fake_phases(monkeypatch, {})
    first = tmp_path / "results-0.json"
    assert (
        vm_tier.main(["--workdir", str(tmp_path), "--phases", "main", "--results", str(first)]) == 0
    )
    assert vm_tier.main(["--merge", str(first)]) == 0
    assert capsys.readouterr().out.strip().endswith("VM tier: 1 passed")


@pytest.mark.parametrize("content", [None, "", "{not json", '[{"name": "x", "colour": 1}]'])
def test_a_vm_that_left_no_results_fails_the_merge(
    content: str | None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Killed before it wrote them (or a file not ours): a failed phase, never fewer tests."""
    good = tmp_path / "results-0.json"
    good.write_text(json.dumps([{"name": "main", "rc": 0, "results": []}]))
    bad = tmp_path / "results-1.json"
    if content is not None:
        bad.write_text(content)
    assert vm_tier.main(["--merge", str(good), "--merge", str(bad)]) == 1
    assert "no results in results-1.json" in capsys.readouterr().out


STOPPABLE_VM = """
import sys
from scsi_pr.rig import vm

vm.ensure_tools = lambda: None
vm.vm_kernel.find = lambda kernel: "/boot/vmlinuz-test"
# the stand-in for vng and its QEMU: its own session, like the real one, so only the `finally`
# of `scsi-pr vm run` can stop it
vm.vng_command = lambda *a, **k: ["sh", "-c", "echo $$ > %(pid)s; exec sleep 300"]
sys.exit(vm.main(["run", "--no-image", "--quiet-timeout", "600", "--", "true"]))
"""


def test_a_terminated_vm_run_takes_its_vm_with_it(tmp_path: Path) -> None:
    """scripts/vm-tier stops a VM it booted beside the first with SIGTERM: the VM goes too."""
    pid_file = tmp_path / "vm.pid"
    runner = subprocess.Popen([sys.executable, "-c", STOPPABLE_VM % {"pid": pid_file}],
                              stdout=subprocess.DEVNULL)  # fmt: skip
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert runner.poll() is None, "scsi-pr vm run ended before its VM started"
        time.sleep(0.05)
    vm_pid = int(pid_file.read_text())
    runner.send_signal(signal.SIGTERM)
    assert runner.wait() == 128 + signal.SIGTERM
    # it waited for the group it killed: the stand-in is gone, or a zombie not yet reaped
    try:
        state = guest_cpu.usage(vm_pid).state
    except FileNotFoundError:
        state = "gone"
    assert state in ("gone", "Z"), f"the VM stand-in is still running ({state})"


BURNS_CPU_IN_A_CHILD = """
import subprocess, sys

def test_work_in_a_child(backend):
    subprocess.run([sys.executable, "-c", "import time\\nt = time.process_time()\\n"
                    "while time.process_time() - t < 1.0: pass"], check=True)
"""


def test_a_phase_reports_its_cpu_children_included(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    """The CPU a phase used, logged by the plugin once collected and at the end: what a VM
    tier phase costs on a host whose cores are the limit. A child's second counts."""
    test_file = pytester.makepyfile(BURNS_CPU_IN_A_CHILD)
    spec = vm_tier.PhaseSpec("", (), budget=60.0, quiet_limit=60.0, startup_limit=60.0)
    phase = vm_tier.run_phase("main", [str(test_file)], spec, tmp_path, backends=("sim",))
    assert phase.counts() == {"passed": 1}
    assert phase.start_cpu is not None and phase.cpu is not None
    assert phase.start_cpu > 0 and phase.cpu - phase.start_cpu >= 1.0


def test_each_vm_gets_its_number_and_results_file_before_the_callers_arguments() -> None:
    """scripts/vm-tier runs the driver once per VM with ``--vm N --results FILE`` and the
    caller's arguments; after a ``--`` among those (how pytest's own options are passed) the
    driver's options would be pytest's: that VM would run every phase and leave no results."""
    script = (Path(__file__).parents[2] / "scripts" / "vm-tier").read_text()
    starts = [m.start() for m in re.finditer(r"scsi_pr\.rig\.vm_tier", script)]
    calls = [" ".join(script[i:].split("2>&1")[0].split()) for i in starts]
    runs = [c for c in calls if "--results" in c and "vm_tier --vm-cpus" not in c[:30]]
    assert len(runs) == 2, calls
    for call in runs:
        assert call.index("--vm") < call.index("--results") < call.index('"$@"'), call


def test_each_vm_boots_with_the_vcpus_the_driver_gives_it() -> None:
    """Every ``scsi-pr vm run`` of a VM's driver asks ``--vm-cpus`` for that same VM: a fixed
    count there would give the hang VM the two vCPUs that cost the tier a third of its CPU."""
    script = (Path(__file__).parents[2] / "scripts" / "vm-tier").read_text()
    runs = [
        line
        for line in script.replace("\\\n", " ").splitlines()
        if "scsi-pr vm run" in line and "--results" in line
    ]
    assert len(runs) == 2, runs
    for line in runs:
        cpus = re.search(
            r'--cpus "\$\(python -m scsi_pr\.rig\.vm_tier --vm-cpus ("[^"]+")\)"', line
        )
        vm = re.search(r'--vm ("[^"]+")', line)
        assert cpus is not None and vm is not None, line
        assert cpus.group(1) == vm.group(1), line
