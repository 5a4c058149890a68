"""The helper process of the hostile-client and fuzz tests: ``daemon_process.Helper`` with every
audit event traced to a file, its fd count, and a SIGTERM with a deadline."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from daemon_process import EXE
from daemon_process import Helper as DaemonHelper

from scsi_pr.helper.audit import parse_audit_line
from scsi_pr.rig import processes

__all__ = ["DEADLINE", "EXE", "Helper"]

# A deadline for exits and settling that catches a hang, not slowness: the machine is shared.
DEADLINE = 20.0


class Helper(DaemonHelper):
    """``scsi-pr-helper --backend sim`` with ``extra`` options and its audit trace in
    ``trace`` (every event)."""

    def __init__(self, tmp: Path, name: str = "h", *extra: str) -> None:
        self.trace = tmp / f"{name}.trace"
        super().__init__(tmp, name, "-T", f"prh_*,file={self.trace}", *extra)

    def output(self) -> str:
        return processes.log_tail(self.log)

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def settle_fds(self, baseline: int) -> int:
        """The helper's fd count once it is back at ``baseline`` (or at the deadline)."""
        deadline = time.monotonic() + DEADLINE
        count = self.fds()
        while count > baseline and time.monotonic() < deadline:
            time.sleep(0.05)
            count = self.fds()
        return count

    def terminate_within(self, limit: float = DEADLINE) -> tuple[int, float]:
        """SIGTERM; (exit status, seconds taken). A helper still running after ``limit`` s is
        killed and the test fails."""
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(limit)
        except subprocess.TimeoutExpired:
            processes.kill(self.proc)
            pytest.fail(f"helper ignored SIGTERM for {limit}s; log: {self.output()}")
        return code, time.monotonic() - start

    def audit(self) -> list[tuple[str, dict[str, str]]]:
        """Every trace line parsed (a line that does not parse fails the test)."""
        lines = self.trace.read_text(errors="surrogateescape").splitlines()
        return [(rec.event, rec.fields) for rec in map(parse_audit_line, lines)]
