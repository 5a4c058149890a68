"""Running ``scsi-pr-helper``'s ``main`` inside the pytest process for the life-cycle tests
(``test_main.py``, ``test_main_run.py``): what ``main`` changes in the process put back, the
privilege drop recorded instead of made (it is irreversible), systemd's socket activation
given for one call, and a whole run: ``main`` in the main thread (its signal handlers need
it), a client thread that waits for the socket, sends its requests, then the stop signal.

Why in process: mutation testing sees only code run in the pytest process; the subprocess
tests (``test_daemon.py``, ``test_privileges.py``) check the whole program besides.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from scsi_pr.helper import caps, state_owner
from scsi_pr.helper import main as helper_main
from scsi_pr.helper.client import Client
from scsi_pr.helper.executors.base import Reply
from scsi_pr.helper.main import answers
from scsi_pr.helper.systemd import FIRST_SOCKET_ACTIVATION_FD
from scsi_pr.sim.cdb import persistent_reserve_in

DEADLINE = 30.0  # only against hangs: a working helper serves within a fraction of it
READ_KEYS = persistent_reserve_in(0, 8)
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@pytest.fixture
def main_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """What ``main`` changes in the process it runs in, put back: the three signals' handlers
    and the CPU mask (``--cpus auto`` confines the calling thread). No systemd variables."""
    handlers = {sig: signal.getsignal(sig) for sig in SIGNALS}
    mask = os.sched_getaffinity(0)
    for name in ("LISTEN_PID", "LISTEN_FDS", "NOTIFY_SOCKET"):
        monkeypatch.delenv(name, raising=False)
    yield
    for sig, handler in handlers.items():
        signal.signal(sig, handler)
    for task in os.listdir("/proc/self/task"):  # confine() moves every thread
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task), mask)


@dataclass
class Privileges:
    """The calls ``main`` makes into ``caps`` and ``state_owner``, recorded instead of made."""

    calls: list[tuple[object, ...]] = field(default_factory=list)
    raises: BaseException | None = None
    writable: bool = True
    then: Callable[[], None] | None = None

    def no_new_privileges(self) -> None:
        self.calls.append(("no_new_privileges",))
        self._after()

    def drop(self, uid: int | None, gid: int | None, keep: list[int]) -> None:
        self.calls.append(("drop_privileges", uid, gid, keep))
        self._after()

    def hand_over(self, path: str, uid: int | None, gid: int | None) -> None:
        self.calls.append(("hand_over", path, uid, gid))

    def writable_by(self, path: str, uid: int | None, gid: int | None) -> bool:
        self.calls.append(("writable_by", path, uid, gid))
        return self.writable

    def _after(self) -> None:
        if self.raises is not None:
            raise self.raises
        if self.then is not None:
            self.then()


@pytest.fixture
def privileges(monkeypatch: pytest.MonkeyPatch) -> Privileges:
    p = Privileges()
    monkeypatch.setattr(caps, "no_new_privileges", p.no_new_privileges)
    monkeypatch.setattr(caps, "drop_privileges", p.drop)
    monkeypatch.setattr(state_owner, "hand_over", p.hand_over)
    monkeypatch.setattr(state_owner, "writable_by", p.writable_by)
    return p


def lock_held_elsewhere(path: Path) -> bool:
    """Whether another process finds ``path`` locked (lockf locks are per process)."""
    probe = (
        "import fcntl, os, sys\n"
        "fd = os.open(sys.argv[1], os.O_WRONLY)\n"
        "try:\n"
        "    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "except OSError:\n"
        "    sys.exit(3)\n"
    )
    return subprocess.run([sys.executable, "-c", probe, str(path)], check=False).returncode == 3


def run_main(argv: list[str]) -> int:
    return helper_main.main(argv)


def only_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


def sim_argv(tmp_path: Path, *extra: str) -> list[str]:
    return ["scsi-pr-helper", "--backend", "sim", "--cpus", "all",
            "-k", str(tmp_path / "h.sock"), *extra]  # fmt: skip


@contextlib.contextmanager
def activated(
    monkeypatch: pytest.MonkeyPatch, fd_3: int | None, count: str = "1"
) -> Iterator[None]:
    """systemd's socket activation for this process: ``fd_3`` as fd 3 (the test's own fd 3,
    whatever it is, is put back), LISTEN_PID us, LISTEN_FDS ``count``."""
    saved = None
    with contextlib.suppress(OSError):
        saved = os.dup(FIRST_SOCKET_ACTIVATION_FD)
    try:
        if fd_3 is not None:
            os.dup2(fd_3, FIRST_SOCKET_ACTIVATION_FD)
        monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
        monkeypatch.setenv("LISTEN_FDS", count)
        yield
    finally:
        if saved is not None:
            os.dup2(saved, FIRST_SOCKET_ACTIVATION_FD)
            os.close(saved)
        else:
            with contextlib.suppress(OSError):
                os.close(FIRST_SOCKET_ACTIVATION_FD)


@dataclass
class Run:
    """``main`` in this (the main) thread; a client thread that waits for the socket, runs
    ``work``, then sends ``stop``."""

    code: int | None = None
    replies: list[Reply] = field(default_factory=list)
    error: BaseException | None = None


def serve(argv: list[str], socket_path: Path, work: Callable[[Client], list[Reply]],
          stop: signal.Signals = signal.SIGTERM) -> Run:  # fmt: skip
    run = Run()
    returned = threading.Event()

    def client() -> None:
        try:
            deadline = time.monotonic() + DEADLINE
            while not (socket_path.exists() and answers(str(socket_path))):
                if returned.is_set() or time.monotonic() > deadline:
                    return
                time.sleep(0.01)
            with Client(str(socket_path), timeout=DEADLINE) as c:
                run.replies = work(c)
        except BaseException as e:  # reported by the test
            run.error = e
        finally:
            if not returned.is_set():
                os.kill(os.getpid(), stop)

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    try:
        run.code = helper_main.main(argv)
    finally:
        returned.set()
        thread.join(DEADLINE)
    return run


def read_keys(fd: int) -> Callable[[Client], list[Reply]]:
    return lambda c: [c.execute(fd, READ_KEYS, allocation_length=8)]
