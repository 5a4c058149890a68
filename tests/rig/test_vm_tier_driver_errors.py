"""What the VM tier's driver (``rig/vm_tier.py``) reports of a phase it could not run, pinned
where mutation testing and a review found it unchecked (``scripts/mutate rig/vm_tier.py``).

A driver error in a lane (``run_phase`` itself raised, or the beside lane could not make the
phase's output file) becomes a failed phase with exit status -1: no status pytest gives (0-5),
nor the watchdog's None for a run it abandoned. The line printed as the phase ends, the VM's
summary, its ``--results`` file and the host's ``--merge`` of that file all say -1, so a driver
error never reads as pytest's own failure (1) or a hang, and the lane's other phases still run.

As in tests/rig/test_vm_tier_driver.py, ``run_phase`` is faked and udevd is never touched.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scsi_pr.rig import vm_tier

DRIVER_ERROR_LINE = (
    "  guest-e2e  no tests; pytest exit -1; 0s, driver error: OSError: no space left"
)


def test_a_driver_error_is_exit_status_minus_one_in_the_vm_and_in_the_merge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The beside lane's guest-e2e cannot be run (its ``run_phase`` raises): its line, as it
    ends and in the summary, says exit -1; the results file keeps -1 for the host, whose
    merged summary says it again, and the VM and the merge both fail."""

    def fake_run_phase(name, argv, spec, workdir, *, backends, out=None):  # type: ignore[no-untyped-def]
        if name == "guest-e2e":
            raise OSError("no space left")
        return vm_tier.Phase(name, rc=0)

    monkeypatch.setattr(vm_tier, "run_phase", fake_run_phase)
    monkeypatch.setattr(vm_tier, "show_guest_cpu", lambda: None)
    monkeypatch.setattr(vm_tier.udev, "stop", lambda: pytest.fail("udevd stopped"))
    results = tmp_path / "results-0.json"
    argv = ["--workdir", str(tmp_path / "work"), "--phases", "main,guest-e2e"]
    assert vm_tier.main([*argv, "--vm", "0", "--results", str(results)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines.count(DRIVER_ERROR_LINE) == 2, lines  # as it ended, and in the summary
    assert lines[-1] == "VM tier: no tests ran"

    recorded = {r["name"]: r for r in json.loads(results.read_text())}
    assert (recorded["guest-e2e"]["rc"], recorded["main"]["rc"]) == (-1, 0)
    assert recorded["guest-e2e"]["verdict"] == "driver error: OSError: no space left"
    assert recorded["guest-e2e"]["abandoned"] is False

    assert vm_tier.main(["--merge", str(results)]) == 1
    merged = capsys.readouterr().out.splitlines()
    assert DRIVER_ERROR_LINE in merged, merged


def test_a_beside_phase_whose_output_file_cannot_be_made_is_a_driver_error_not_a_lost_lane(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """paths' output file cannot be opened (here a directory stands where it goes): paths is a
    driver error, the lane's next phases still run, and the lane's output says why there is
    none for paths instead of the driver dying before its summary."""
    ran: list[str] = []

    def fake_run_phase(name, argv, spec, workdir, *, backends, out=None):  # type: ignore[no-untyped-def]
        ran.append(name)
        return vm_tier.Phase(name, rc=0)

    monkeypatch.setattr(vm_tier, "run_phase", fake_run_phase)
    monkeypatch.setattr(vm_tier, "show_guest_cpu", lambda: None)
    monkeypatch.setattr(vm_tier.udev, "stop", lambda: pytest.fail("udevd stopped"))
    work = tmp_path / "work"
    (work / "paths.out").mkdir(parents=True)
    assert vm_tier.main(["--workdir", str(work), "--phases", "paths,guest-e2e"]) == 1
    assert ran == ["guest-e2e"]
    out = capsys.readouterr().out
    lane = out[out.index("== VM tier, paths: its output") :].splitlines()
    assert lane[1].startswith("(not kept: [Errno 21] Is a directory: ") and "paths.out" in lane[1]
    assert lane[2:4] == ["", "== VM tier, guest-e2e: its output"]
    assert "  paths      no tests; pytest exit -1; 0s, driver error: IsADirectoryError: " in out


@pytest.mark.parametrize(("vm", "groups"), [("0", "0"), ("1", "1")])
def test_vm_groups_names_only_the_vm_a_caller_chose(
    vm: str, groups: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``scripts/vm-tier --vm N`` passes ``--vm N`` to ``--vm-groups`` too: it boots that VM
    alone, not every VM each running VM N's phases."""
    assert vm_tier.main(["--vm-groups", "--vm", vm]) == 0
    assert capsys.readouterr().out.split() == groups.split()
