"""Starting the nested guest's QEMU (``guest_e2e.driver.start_qemu``): a QEMU that exits at once
is reported with what it printed, at once, not after the monitor's connect timeout
(tests/rig/test_qmp.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from needs import unavailable

from scsi_pr.rig.guest_e2e.driver import E2EError, start_qemu


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
