"""``scsi_pr.rig.udev`` on the host: the rules the rigs install, settling, and stopping udevd
only where it runs (the real udevd is the VM's; here ``udevadm`` is recorded, never run, and
the rules and the control socket live under tmp_path)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from scsi_pr.rig import udev

#: one recorded ``subprocess.run``: its argv and its keyword arguments
Call = tuple[list[str], dict[str, object]]


@pytest.fixture
def udevadm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Call]:
    """udevadm as if installed (and only udevadm: a lookup of any other name finds nothing),
    each call recorded with its keywords; udevd's control socket and the rules directory under
    tmp_path, the latter two levels deep so that installing has to create its parents."""
    calls: list[Call] = []
    monkeypatch.setattr(udev, "CONTROL", tmp_path / "control")
    monkeypatch.setattr(udev, "RULES_DIR", tmp_path / "run" / "rules.d")
    monkeypatch.setattr(
        udev.shutil, "which", lambda name: "/usr/bin/udevadm" if name == "udevadm" else None
    )

    def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
        calls.append((argv, kwargs))
        return subprocess.CompletedProcess(argv, 0)

    monkeypatch.setattr(udev.subprocess, "run", run)
    return calls


@pytest.fixture
def no_udevadm(udevadm: list[Call], monkeypatch: pytest.MonkeyPatch) -> list[Call]:
    """A host without udevadm at all (a container): any call would still be recorded."""
    monkeypatch.setattr(udev.shutil, "which", lambda name: None)
    return udevadm


RELOAD: Call = (["udevadm", "control", "--reload"], {"capture_output": True, "timeout": 60})


def test_the_rules_match_only_their_disks_and_turn_off_blkid_and_the_watch() -> None:
    """The whole rule text is the contract with udev: one typo and it silently matches
    nothing (or every disk)."""
    assert udev.MODEL_DISKS.text == (
        'ACTION!="remove", SUBSYSTEM=="block", '
        'ATTRS{vendor}=="SCSI-PR*", ATTRS{model}=="SIMULATED LU*", '
        'ENV{UDEV_DISABLE_PERSISTENT_STORAGE_BLKID_FLAG}="1", OPTIONS+="nowatch"\n'
    )
    assert udev.LIO_LOOPBACK_DISKS.text == (
        'ACTION!="remove", SUBSYSTEM=="block", DEVPATH=="/devices/tcm_loop_*", '
        'ENV{UDEV_DISABLE_PERSISTENT_STORAGE_BLKID_FLAG}="1", OPTIONS+="nowatch"\n'
    )
    # sorted after 60-block.rules and before 60-persistent-storage.rules, in /run
    assert udev.MODEL_DISKS.path == Path(
        "/run/udev/rules.d/60-persistent-storage-scsi-pr-rig.rules"
    )
    assert udev.LIO_LOOPBACK_DISKS.path == Path(
        "/run/udev/rules.d/60-persistent-storage-scsi-pr-lio.rules"
    )
    names = sorted(["60-block.rules", udev.MODEL_DISKS.file_name,
                    udev.LIO_LOOPBACK_DISKS.file_name, "60-persistent-storage.rules"])  # fmt: skip
    assert names[0] == "60-block.rules" and names[-1] == "60-persistent-storage.rules"


def test_install_writes_the_rule_and_reloads_udev_removal_deletes_it(
    udevadm: list[Call], tmp_path: Path
) -> None:
    """Installing twice (a second rig in the same VM) and removing twice (a cleanup after a
    failed start) both succeed; every change has udev read its rules again."""
    rule = udev.QuietRule("60-x.rules", 'KERNEL=="sdz"')
    path = tmp_path / "run" / "rules.d" / "60-x.rules"
    assert rule.path == path
    rule.install()
    assert path.read_text() == rule.text
    rule.install(on=True)  # the directory exists now
    assert path.read_text() == rule.text
    assert udevadm == [RELOAD, RELOAD]
    rule.install(on=False)
    assert not path.exists()
    rule.install(False)  # already gone
    assert not path.exists() and path.parent.is_dir()
    assert udevadm == [RELOAD] * 4


def test_install_without_udevadm_only_writes_the_file(
    no_udevadm: list[Call], tmp_path: Path
) -> None:
    udev.LIO_LOOPBACK_DISKS.install()
    assert (tmp_path / "run" / "rules.d" / udev.LIO_LOOPBACK_DISKS.file_name).read_text() == (
        udev.LIO_LOOPBACK_DISKS.text
    )
    udev.LIO_LOOPBACK_DISKS.install(on=False)
    assert list((tmp_path / "run" / "rules.d").iterdir()) == []
    assert no_udevadm == []


def test_settle_waits_for_the_queue_longer_than_udevadm_itself_waits(
    udevadm: list[Call],
) -> None:
    """``--timeout`` bounds udevadm's wait; the subprocess timeout is a minute beyond it so
    that udevadm, not us, gives up first."""
    udev.settle()
    assert udevadm == [
        (["udevadm", "settle", "--timeout=120"], {"capture_output": True, "timeout": 180})
    ]


def test_settle_without_udevadm_does_nothing(no_udevadm: list[Call]) -> None:
    udev.settle()
    assert no_udevadm == []


def test_running_means_the_control_socket_exists(udevadm: list[Call], tmp_path: Path) -> None:
    assert not udev.running()
    (tmp_path / "control").touch()
    assert udev.running()


def test_stop_without_a_running_udevd_does_nothing(udevadm: list[Call]) -> None:
    assert not udev.stop()
    assert udevadm == []


def test_stop_asks_udevd_to_exit(udevadm: list[Call], tmp_path: Path) -> None:
    (tmp_path / "control").touch()
    assert udev.stop() is True
    assert udevadm == [(["udevadm", "control", "--exit"], {"capture_output": True, "timeout": 120})]


def test_stop_without_udevadm_does_nothing(no_udevadm: list[Call], tmp_path: Path) -> None:
    """A control socket but no udevadm to talk to it: nothing to run, and not stopped."""
    (tmp_path / "control").touch()
    assert udev.stop() is False
    assert no_udevadm == []


def test_stop_says_so_when_udevadm_fails(
    udevadm: list[Call], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "control").touch()
    monkeypatch.setattr(
        udev.subprocess, "run", lambda argv, **kw: subprocess.CompletedProcess(argv, 1)
    )
    assert udev.stop() is False
