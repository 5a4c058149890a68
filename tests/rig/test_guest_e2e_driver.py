"""Starting the nested guest's QEMU (``guest_e2e.driver.start_qemu``) and its monitor
(``rig.qmp.Qmp``): a QEMU that exits at once is reported with what it printed, at once, not
after the monitor's connect timeout."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from needs import unavailable

from scsi_pr.rig import qmp
from scsi_pr.rig.guest_e2e.driver import E2EError, start_qemu
from scsi_pr.rig.qmp import Qmp, QmpError


def test_the_monitor_wait_ends_when_qemu_has_exited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_wait(seconds: float) -> None:
        raise AssertionError("waited for a monitor whose QEMU had exited")

    monkeypatch.setattr(qmp.time, "sleep", no_wait)
    with pytest.raises(QmpError) as caught:
        Qmp(tmp_path / "qmp.sock", alive=lambda: False)
    assert str(caught.value) == "QEMU exited before its monitor listened"


def test_without_a_process_to_ask_the_wait_is_the_timeout(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Qmp(tmp_path / "qmp.sock", timeout=0.0)


def test_a_qemu_that_refuses_to_start_says_why(tmp_path: Path) -> None:
    if shutil.which("qemu-system-x86_64") is None:
        unavailable("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
    argv = ["qemu-system-x86_64", "-machine", "no-such-machine", "-display", "none"]
    with pytest.raises(E2EError) as caught:
        start_qemu(argv, tmp_path / "qmp.sock")
    message = str(caught.value)
    assert message.startswith("QEMU did not start (exit 1): ")
    assert "QEMU exited before its monitor listened" in message  # not the connect timeout's
    assert "unsupported machine type" in message  # what QEMU printed
