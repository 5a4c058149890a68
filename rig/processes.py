"""Helper processes seen from outside: start one, wait until it listens, stop it.

The backends, the benchmark, the guest end-to-end run and the tests all start
``scsi-pr-helper`` (or the C helper) and must know when its Unix socket accepts connections;
QEMU refuses to start against a socket that does not, so "listening" means a connect()
succeeded, not that the file exists. (The connection makes the helper send its handshake to a
client that leaves at once; both helpers take that in stride.)
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


def spawn_listening(
    argv: list[str], sock: Path, log: Path, timeout: float, *, name: str = "helper"
) -> subprocess.Popen[bytes]:
    """Start ``argv`` with its output appended to ``log``; return it once ``sock`` listens.
    If it does not, it is stopped and NotListening says why, with the log's tail."""
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_listening(proc, sock, timeout, name=name, output=lambda: log_tail(log))
    except NotListening:
        stop(proc)
        raise
    return proc


def log_tail(log: Path, size: int = 2000) -> str:
    """The end of a process's log, for an error message."""
    try:
        return log.read_text(errors="replace")[-size:]
    except OSError as e:
        return f"(no log: {e})"


def stop(proc: subprocess.Popen[bytes], timeout: float = 10) -> int:
    """SIGTERM, then SIGKILL if it has not exited after ``timeout`` seconds; its exit status."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            kill(proc)
    return proc.returncode


def kill(proc: subprocess.Popen[bytes]) -> int:
    """SIGKILL unless it has exited, then reap it; its exit status. For a process past saving
    (a guest's QEMU that did not finish), where a polite SIGTERM would only add a wait."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    return proc.returncode
