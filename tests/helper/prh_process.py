"""A helper process for the hostile-client and fuzz tests: ``scsi-pr-helper --backend sim`` (or a
``HelperServer`` run directly, for parameters the command line does not have yet) with every
audit event traced to a file, its fd count, and a SIGTERM with a deadline."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scsi_pr.helper.audit import parse_audit_line
from scsi_pr.helper.executable import helper_executable
from scsi_pr.rig import processes

EXE = helper_executable()
# A deadline for exits and settling that catches a hang, not slowness: the machine is shared.
DEADLINE = 20.0


# The limits are HelperServer parameters (the CLI flags come later): run one directly.
SERVE = """
import asyncio, signal, socket, sys
from scsi_pr.helper.audit import Audit
from scsi_pr.helper.daemon import HelperServer
from scsi_pr.helper.executors.sim import SimExecutor
from scsi_pr.helper.systemd import ServiceNotifier

path, trace, max_clients, idle_timeout, grace, state_dir = (sys.argv[1:] + ["-"] * 6)[:6]

async def main() -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(128)
    with open(trace, "a") as log:
        server = HelperServer(
            SimExecutor(state_dir=state_dir if state_dir != "-" else None),
            Audit.from_patterns(["prh_*"], log),
            max_clients=int(max_clients) if max_clients != "-" else None,
            idle_timeout=float(idle_timeout) if idle_timeout != "-" else None,
            shutdown_grace=float(grace) if grace != "-" else 30.0,
        )
        await server.serve(listener, stop, lambda: ServiceNotifier.from_environment().ready(path))

asyncio.run(main())
"""


class Helper:
    """One helper process with its audit trace in ``trace`` (every event)."""

    def __init__(self, tmp: Path, name: str = "h", *extra: str, server: bool = False) -> None:
        """``scsi-pr-helper --backend sim`` with ``extra`` options, or with ``server`` a
        ``HelperServer`` run directly with ``extra`` as its limits (see ``SERVE``)."""
        self.sock = tmp / f"{name}.sock"
        self.log = tmp / f"{name}.log"
        self.trace = tmp / f"{name}.trace"
        if server:
            argv = [sys.executable, "-c", SERVE, str(self.sock), str(self.trace)]
        else:
            argv = [EXE, "--backend", "sim", "-k", str(self.sock), "-T", f"prh_*,file={self.trace}"]
        try:
            self.proc = processes.spawn_notifying([*argv, *extra], self.log, DEADLINE, name=name)
        except processes.NotListening as e:
            raise AssertionError(str(e)) from None

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

    def stop(self) -> int:
        return processes.stop(self.proc, timeout=DEADLINE)

    def audit(self) -> list[tuple[str, dict[str, str]]]:
        """Every trace line parsed (a line that does not parse fails the test)."""
        lines = self.trace.read_text(errors="surrogateescape").splitlines()
        return [(rec.event, rec.fields) for rec in map(parse_audit_line, lines)]
