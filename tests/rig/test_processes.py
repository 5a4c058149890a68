"""scsi_pr.rig.processes with stand-in helpers: plain Python processes that listen on a Unix
socket, exit early, or never listen."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scsi_pr.rig.processes import (
    NotListening,
    cpu_seconds,
    free_port,
    kill,
    spawn_listening,
    start_target,
    stop,
)

LISTENS = (
    "import socket, sys, time\n"
    "s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen()\n"
    "print('listening', flush=True); time.sleep(60)\n"
)
EXITS = "import sys; print('no LUN here', flush=True); sys.exit(3)"
NEVER = "import os, sys, time; open(sys.argv[2], 'w').write(str(os.getpid())); time.sleep(60)"


def python(code: str, *args: Path) -> list[str]:
    return [sys.executable, "-c", code, *map(str, args)]


def test_a_listening_helper_is_returned_running_and_stops_on_sigterm(tmp_path: Path) -> None:
    sock, log = tmp_path / "s", tmp_path / "helper.log"
    proc = spawn_listening(python(LISTENS, sock), sock, log, 20, name="stand-in")
    assert proc.poll() is None
    assert stop(proc) == -signal.SIGTERM
    assert log.read_text() == "listening\n"


def test_an_exiting_helper_is_reported_with_its_output(tmp_path: Path) -> None:
    sock = tmp_path / "s"
    with pytest.raises(NotListening, match="stand-in exited with 3: no LUN here"):
        spawn_listening(python(EXITS), sock, tmp_path / "helper.log", 20, name="stand-in")


def test_a_helper_that_never_listens_is_stopped_at_the_deadline(tmp_path: Path) -> None:
    sock, pid_file = tmp_path / "s", tmp_path / "pid"
    with pytest.raises(NotListening, match=r"did not listen on .*: no progress \(CPU time\)"):
        spawn_listening(python(NEVER, sock, pid_file), sock, tmp_path / "helper.log", 2.0)
    assert not Path(f"/proc/{pid_file.read_text()}").exists()  # stopped and reaped


SLOW = (
    "import socket, sys, time\n"
    "end = time.monotonic() + 4\n"
    "while time.monotonic() < end: pass\n"  # busy, as an interpreter importing under load
    "s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(); time.sleep(60)\n"
)


def test_a_slow_start_that_keeps_working_is_waited_for(tmp_path: Path) -> None:
    # Four seconds to listen, with a quiet limit of two: the deadline follows its CPU time.
    sock = tmp_path / "s"
    proc = spawn_listening(python(SLOW, sock), sock, tmp_path / "helper.log", 2.0)
    assert proc.poll() is None
    stop(proc)


def test_cpu_seconds_of_a_process_and_of_none() -> None:
    busy = subprocess.Popen(python("import time\nend = time.monotonic() + 1\n"
                                   "while time.monotonic() < end: pass"))  # fmt: skip
    busy.wait()
    assert cpu_seconds(busy.pid) is None  # reaped: gone
    assert (cpu_seconds(os.getpid()) or 0) > 0


def test_kill_does_not_wait_for_sigterm() -> None:
    proc = subprocess.Popen(python("import signal, time; signal.signal(15, signal.SIG_IGN); "
                                   "time.sleep(60)"))  # fmt: skip
    assert kill(proc) == -signal.SIGKILL
    assert kill(proc) == -signal.SIGKILL  # a second call only reports


def test_our_target_is_returned_once_it_accepts_connections(tmp_path: Path) -> None:
    """The real ``scsi-pr target serve``, as the rig, the libiscsi runner and the iSCSI guests
    start it: listening on its portal when returned, in a session of its own if asked."""
    port, log = free_port(), tmp_path / "target.log"
    proc = start_target(("127.0.0.1", port), "iqn.2024-01.org.scsi-pr:t", tmp_path / "state",
                        "1M", log, 30, new_session=True)  # fmt: skip
    try:
        assert proc.poll() is None
        socket.create_connection(("127.0.0.1", port)).close()  # listening when returned
        assert os.getsid(proc.pid) == proc.pid
    finally:
        assert stop(proc) == 0  # it ends cleanly on SIGTERM
    assert (tmp_path / "state").is_dir()


def test_a_target_refusing_its_options_is_reported_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "target.log"
    said = r"(?s)target serve exited with 2: .*unrecognized arguments: --no-such"
    with pytest.raises(NotListening, match=said):
        start_target(("127.0.0.1", free_port()), "iqn.2024-01.org.scsi-pr:t",
                     tmp_path / "state", "1M", log, 30, extra=("--no-such",))  # fmt: skip


# -- SIGTERM and what a process started in groups of their own ---------------------------------
_WATCHING_CHILD = """
import sys
from scsi_pr.rig.processes import exit_on_sigterm
from scsi_pr.rig.watchdog import run_watched
if sys.argv[2] == "handled":
    exit_on_sigterm()
run_watched(["sh", "-c", "echo $$ > " + sys.argv[1] + "; exec sleep 600"], quiet_limit=600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


@pytest.mark.parametrize("handled", [True, False], ids=["exit_on_sigterm", "default"])
def test_sigterm_stops_what_a_watched_run_started_only_when_handled(
    tmp_path: Path, handled: bool
) -> None:
    """``run_watched`` puts its command in a session of its own; Python's default SIGTERM ends
    the watcher at once and leaves it running (how an ``iscsi-test-cu`` outlived its recorder
    by 80 minutes). With ``exit_on_sigterm`` the watcher's ``finally`` kills the group."""
    pidfile = tmp_path / "pid"
    argv = [sys.executable, "-c", _WATCHING_CHILD, str(pidfile), "handled" if handled else "no"]
    child = subprocess.Popen(argv)
    inner = -1
    try:
        while not (pidfile.exists() and pidfile.read_text().strip()):  # the child's start
            assert child.poll() is None, "the watcher ended before its command started"
            time.sleep(0.05)
        inner = int(pidfile.read_text())
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=60) == (143 if handled else -signal.SIGTERM)
        # the watcher's ``finally`` killed and reaped the group before it exited
        assert _alive(inner) is not handled
    finally:
        child.kill()
        if inner > 0 and _alive(inner):
            os.kill(inner, signal.SIGKILL)


def test_the_recorders_stop_their_work_on_sigterm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``python -m scsi_pr.rig.libiscsi record`` and ``guest_e2e --save-booted``, which
    ``scripts/vm-tier`` stops with SIGTERM, turn it into SystemExit before they start work."""
    from scsi_pr.rig import libiscsi
    from scsi_pr.rig.guest_e2e import cli

    original = signal.getsignal(signal.SIGTERM)  # an earlier test's main may have set it
    try:
        seen: list[object] = []
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        monkeypatch.setattr(libiscsi, "record", lambda *a: seen.append(signal.getsignal(15)) or 0)
        assert libiscsi.main(["record", str(tmp_path)]) == 0
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        monkeypatch.setattr(cli, "save_booted", lambda *a: seen.append(signal.getsignal(15)) or 0)
        assert cli.main(["--save-booted", str(tmp_path)]) == 0
        assert len(seen) == 2 and all(callable(h) for h in seen), seen  # not SIG_DFL (an int)
        for handler in seen:
            with pytest.raises(SystemExit) as caught:
                handler(signal.SIGTERM, None)  # type: ignore[operator]
            assert caught.value.code == 143
    finally:
        signal.signal(signal.SIGTERM, original)
