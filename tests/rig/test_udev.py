"""``scsi_pr.rig.udev`` on the host: stopping udevd only where it runs (the real udevd is the
VM's; here ``udevadm`` is recorded, never run)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from scsi_pr.rig import udev


@pytest.fixture
def udevadm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[list[str]]:
    """udevadm as if installed, each call recorded; udevd's control socket under tmp_path."""
    calls: list[list[str]] = []
    monkeypatch.setattr(udev, "CONTROL", tmp_path / "control")
    monkeypatch.setattr(udev.shutil, "which", lambda name: f"/usr/bin/{name}")

    def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0)

    monkeypatch.setattr(udev.subprocess, "run", run)
    return calls


def test_stop_without_a_running_udevd_does_nothing(udevadm: list[list[str]]) -> None:
    assert not udev.stop()
    assert udevadm == []


def test_stop_asks_udevd_to_exit(udevadm: list[list[str]], tmp_path: Path) -> None:
    (tmp_path / "control").touch()
    assert udev.stop()
    assert udevadm == [["udevadm", "control", "--exit"]]


def test_stop_says_so_when_udevadm_fails(
    udevadm: list[list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "control").touch()
    monkeypatch.setattr(
        udev.subprocess, "run", lambda argv, **kw: subprocess.CompletedProcess(argv, 1)
    )
    assert not udev.stop()
