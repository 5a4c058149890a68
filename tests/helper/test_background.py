"""``scsi-pr-helper -d``: the parent returns once the daemon serves, or fails with the daemon's
error; under a service manager it reports READY=1 with MAINPID= the daemon.

The real executable for the whole life cycle, and ``background._wait_for`` in-process against
forked children for the endings a real daemon does not reach on demand.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scsi_pr.helper import background
from scsi_pr.helper.client import Client
from scsi_pr.helper.executable import helper_executable
from scsi_pr.helper.systemd import ServiceNotifier, notify_address
from scsi_pr.rig.processes import NotifySocket
from scsi_pr.sim.cdb import persistent_reserve_in
from scsi_pr.sim.constants import PersistentReserveInAction, Status

EXE = helper_executable()
READ_KEYS = persistent_reserve_in(PersistentReserveInAction.READ_KEYS, 64)
EXIT_TIMEOUT = 30  # the parent's whole start; a hang is what this bounds


def _stop_daemon(pid: int) -> None:
    """SIGTERM the daemon (not our child: its parent has exited) and wait for it to go."""
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + EXIT_TIMEOUT
    status = Path(f"/proc/{pid}/status")
    while status.exists() and "zombie" not in status.read_text():
        assert time.monotonic() < deadline, f"daemon {pid} did not exit on SIGTERM"
        time.sleep(0.02)


@pytest.fixture
def image(tmp_path: Path) -> Iterator[int]:
    path = tmp_path / "lu.img"
    path.write_bytes(bytes(1 << 16))
    fd = os.open(path, os.O_RDWR)
    yield fd
    os.close(fd)


def test_the_parent_returns_once_the_daemon_serves(tmp_path: Path, image: int) -> None:
    sock, pidfile = tmp_path / "d.sock", tmp_path / "d.pid"
    r = subprocess.run(
        [EXE, "-d", "-f", str(pidfile), "--backend", "sim", "-k", str(sock)],
        capture_output=True, text=True, timeout=EXIT_TIMEOUT, check=False,
    )  # fmt: skip
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    pid = int(pidfile.read_text())  # written before the parent returned, no waiting
    try:
        assert pid != os.getpid() and Path(f"/proc/{pid}/status").exists()
        assert os.getsid(pid) == pid  # a session of its own: no terminal's signals reach it
        assert os.readlink(f"/proc/{pid}/cwd") == "/"  # holds no directory busy
        for fd in (0, 1, 2):  # the terminal let go
            assert os.readlink(f"/proc/{pid}/fd/{fd}") == os.devnull
        with Client(str(sock)) as c:  # serving already: no retry
            assert c.execute(image, READ_KEYS).status == Status.GOOD
    finally:
        _stop_daemon(pid)
    assert not sock.exists() and not pidfile.exists()


def test_a_daemon_that_fails_to_start_fails_the_parent_with_its_error(tmp_path: Path) -> None:
    """The pidfile is the daemon's (after the fork): under daemon(0, 0) its failure was exit 0
    from the parent and a message to /dev/null."""
    sock, pidfile = tmp_path / "d.sock", tmp_path / "no-such-dir" / "d.pid"
    r = subprocess.run(
        [EXE, "-d", "-f", str(pidfile), "--backend", "sim", "-k", str(sock)],
        capture_output=True, text=True, timeout=EXIT_TIMEOUT, check=False,
    )  # fmt: skip
    assert r.returncode == 1
    assert r.stderr == f"scsi-pr-helper: Could not create '{pidfile}': No such file or directory\n"
    assert not sock.exists()  # the daemon cleaned up after itself


def test_under_a_manager_the_parent_says_ready_with_the_daemon_as_main_pid(
    tmp_path: Path,
) -> None:
    sock, pidfile = tmp_path / "d.sock", tmp_path / "d.pid"
    with NotifySocket() as manager:
        r = subprocess.run(
            [EXE, "-d", "-f", str(pidfile), "--backend", "sim", "-k", str(sock)],
            capture_output=True, text=True, timeout=EXIT_TIMEOUT, check=False,
            env=manager.env(),
        )  # fmt: skip
        assert (r.returncode, r.stderr) == (0, "")
        pid = int(pidfile.read_text())
        try:
            said = manager.poll()
            assert said == [f"READY=1\nSTATUS=serving {sock}\nMAINPID={pid}"]
        finally:
            _stop_daemon(pid)
        # the daemon is the main process now: its stopping is told too
        assert manager.poll()[1:] == ["STOPPING=1"]


# -- the parent's wait, in-process --------------------------------------------------------
@pytest.fixture
def parent_signals() -> Iterator[None]:
    """``_wait_for`` resets SIGINT/SIGTERM/SIGHUP to their default: give pytest its own back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


#: stand-ins for the daemon, as programs: a forked copy of pytest would run pytest's (or
#: mutmut's) handlers on a signal and could return into the test run
STAND_IN = {
    "exit 1": "import os; os._exit(1)",
    "exit 0": "import os; os._exit(0)",
    "killed": "import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
    "ready": (
        "import os, sys, time; fd = int(sys.argv[1]); os.write(fd, b'+serving here'); "
        f"os.close(fd); time.sleep({EXIT_TIMEOUT})"
    ),
}


def _child(then: str) -> tuple[subprocess.Popen[bytes], int]:
    """A stand-in for the daemon, and the parent's end of the pipe it reports on."""
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-c", STAND_IN[then], str(write_end)], pass_fds=(write_end,)
    )
    os.close(write_end)
    os.set_inheritable(read_end, False)
    return proc, read_end


@pytest.mark.usefixtures("parent_signals")
@pytest.mark.parametrize(
    ("then", "code", "said"),
    [
        ("exit 1", 1, ""),
        ("killed", 128 + signal.SIGKILL, ""),
        ("exit 0", 1, "x: the daemon ended before it served\n"),
    ],
)
def test_a_daemon_that_ends_unready_gives_the_parent_its_status(
    then: str, code: int, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    proc, read_end = _child(then)
    try:
        assert background._wait_for(proc.pid, read_end, "x", ServiceNotifier(None)) == code
    finally:
        os.close(read_end)
        proc.wait(EXIT_TIMEOUT)  # reaped by _wait_for already: Popen learns it is gone
    assert capsys.readouterr().err == said


@pytest.mark.usefixtures("parent_signals")
def test_a_ready_the_manager_cannot_hear_fails_the_parent_and_ends_the_daemon(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with NotifySocket() as manager:
        notifier = ServiceNotifier(notify_address(manager.name))
    # the manager is gone now: READY=1 cannot be sent
    proc, read_end = _child("ready")
    try:
        assert background._wait_for(proc.pid, read_end, "x", notifier) == 1
    finally:
        os.close(read_end)
        notifier.close()
    assert proc.wait(EXIT_TIMEOUT) == -signal.SIGTERM
    assert capsys.readouterr().err.startswith("x: NOTIFY_SOCKET: READY=1 not sent to @")


@pytest.mark.usefixtures("parent_signals")
def test_a_served_daemon_is_reported_with_its_status_and_pid() -> None:
    with NotifySocket() as manager:
        notifier = ServiceNotifier(notify_address(manager.name))
        proc, read_end = _child("ready")
        try:
            assert background._wait_for(proc.pid, read_end, "x", notifier) == 0
            assert manager.poll() == [f"READY=1\nSTATUS=serving here\nMAINPID={proc.pid}"]
        finally:
            os.close(read_end)
            notifier.close()
            proc.kill()
            proc.wait(EXIT_TIMEOUT)


def test_the_daemon_reports_once_then_lets_go_of_the_terminal(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    terminal = os.open(tmp_path / "terminal", os.O_WRONLY | os.O_CREAT)
    try:
        daemon = background.Daemon(write_end, let_go=(terminal,))
        daemon.ready("serving /run/x.sock")
        daemon.ready("again")  # once only: the parent has gone
        assert os.read(read_end, 100) == b"+serving /run/x.sock"
        assert os.read(read_end, 100) == b""  # closed: the parent's wait ends
        os.write(terminal, b"after")  # now /dev/null's
        assert (tmp_path / "terminal").read_bytes() == b""
    finally:
        os.close(read_end)
        os.close(terminal)


def test_a_daemon_whose_parent_is_gone_serves_on(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the parent was killed while it waited
    terminal = os.open(tmp_path / "terminal", os.O_WRONLY | os.O_CREAT)
    try:
        background.Daemon(write_end, let_go=(terminal,)).ready("serving")  # no EPIPE raised
        with pytest.raises(OSError):
            os.fstat(write_end)  # closed all the same
    finally:
        os.close(terminal)
