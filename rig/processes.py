"""Helper processes seen from outside: wait until one listens, stop it.

The backends, the benchmark and the tests all start ``scsi-pr-helper`` (or the C helper) and
must know when its Unix socket accepts connections; QEMU refuses to start against a socket that
does not, so "listening" means a connect() succeeded, not that the file exists.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from scsi_pr.rig.errors import RigError


class NotListening(RigError):
    """The process exited, or its socket did not accept a connection in time."""


def wait_listening(
    proc: subprocess.Popen[bytes],
    sock: Path,
    timeout: float,
    *,
    name: str = "helper",
    output: Callable[[], str] = lambda: "",
    interval: float = 0.02,
) -> None:
    """Return once ``sock`` accepts a connection; raise NotListening if ``proc`` exits first
    (with ``output()`` in the message) or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise NotListening(f"{name} exited with {proc.returncode}: {output()}")
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(str(sock))
                return
            except OSError:
                pass
        time.sleep(interval)
    raise NotListening(f"{name} did not listen on {sock} within {timeout}s")


def stop(proc: subprocess.Popen[bytes], timeout: float = 10) -> int:
    """SIGTERM, then SIGKILL if it has not exited after ``timeout`` seconds; its exit status."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
