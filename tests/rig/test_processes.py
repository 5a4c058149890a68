"""scsi_pr.rig.processes with stand-in helpers: plain Python processes that listen on a Unix
socket, exit early, or never listen."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fake_time import FakeTime

from scsi_pr.helper.systemd import NOTIFY_ENV
from scsi_pr.rig import guest_cpu, processes
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
        try:
            assert stop(proc) == 0  # it ends cleanly on SIGTERM
        finally:
            if proc.poll() is None:  # stop() itself broken (a mutant): leave no target behind
                proc.kill()
                proc.wait()
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


# -- in process: fake clock, fake processes, real sockets --------------------------------------
class FakeProc:
    """A ``Popen`` that runs until ``exit_after`` polls (never, with None), then exits with
    ``code``; ``wait`` and the signals are recorded."""

    def __init__(self, exit_after: int | None = None, code: int = 0, pid: int = 4242) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.polls = 0
        self._exit_after, self._code = exit_after, code
        self.calls: list[tuple[str, float | None]] = []

    def poll(self) -> int | None:
        self.polls += 1
        if self._exit_after is not None and self.polls > self._exit_after:
            self.returncode = self._code
        return self.returncode

    def terminate(self) -> None:
        self.calls.append(("terminate", None))

    def kill(self) -> None:
        self.calls.append(("kill", None))
        self.returncode = -signal.SIGKILL

    def wait(self, timeout: float | None = None) -> int:
        self.calls.append(("wait", timeout))
        if self.returncode is None:
            if timeout is None:
                raise AssertionError("an endless wait on a process that does not exit")
            raise subprocess.TimeoutExpired("fake", timeout)
        return self.returncode


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()  # processes.time: sleep advances monotonic, and is recorded
    monkeypatch.setattr(processes, "time", fake)
    return fake


def cpu_script(monkeypatch: pytest.MonkeyPatch, values: list[float | None]) -> list[int]:
    """``cpu_seconds`` answers ``values`` in turn (the last one from then on); the pids it was
    asked about are returned, as they are asked."""
    asked: list[int] = []

    def cpu(pid: int) -> float | None:
        asked.append(pid)
        return values[min(len(asked), len(values)) - 1]

    monkeypatch.setattr(processes, "cpu_seconds", cpu)
    return asked


def wait(proc: FakeProc, ready: Callable[[], bool], quiet_limit: float, **kw: Any) -> None:
    processes.wait_ready(proc, ready, quiet_limit, **kw)  # type: ignore[arg-type]


def test_wait_ready_returns_at_the_first_ready_without_sleeping(
    clock: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = cpu_script(monkeypatch, [1.0])
    wait(FakeProc(), lambda: True, 5)
    assert clock.slept == [] and asked == [4242]


def test_wait_ready_sleeps_its_interval_between_looks(
    clock: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Polled, then asked, then the CPU time read, at every turn, and ``interval`` (0.02 s
    unless told) between turns."""
    asked = cpu_script(monkeypatch, [None, 0.5, 1.0])
    answers = iter([False, False, True])
    proc = FakeProc()
    wait(proc, lambda: next(answers), 5)
    assert clock.slept == [0.02, 0.02] and proc.polls == 3 and asked == [4242] * 3
    answers = iter([False, False, True])
    wait(FakeProc(), lambda: next(answers), 5, interval=0.5)
    assert clock.slept[2:] == [0.5, 0.5]


def test_a_process_that_exits_while_waited_for_is_reported_with_its_output(
    clock: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its exit is checked before readiness: a process that said READY=1 and died is gone."""
    cpu_script(monkeypatch, [1.0])
    with pytest.raises(processes.NotListening) as caught:
        wait(FakeProc(exit_after=2, code=7), lambda: False, 5, output=lambda: "the log's end")
    assert str(caught.value) == "helper exited with 7: the log's end"
    assert clock.slept == [0.02, 0.02]
    with pytest.raises(processes.NotListening) as caught:
        wait(FakeProc(exit_after=0, code=0), lambda: True, 5, name="qemu")
    assert str(caught.value) == "qemu exited with 0: "


def test_no_cpu_progress_for_the_quiet_limit_ends_the_wait(
    clock: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CPU time that stays the same (or cannot be read) is no progress: the wait ends the
    first time *more* than ``quiet_limit`` seconds passed since the start."""
    cpu_script(monkeypatch, [2.0, 2.0, None])
    with pytest.raises(processes.NotListening) as caught:
        wait(FakeProc(), lambda: False, 1.5, interval=0.5)
    assert str(caught.value) == "helper did not become ready: no progress (CPU time) for 1.5s"
    assert clock.slept == [0.5] * 4  # 0, 0.5, 1 and 1.5 past the start are not over the limit


def test_cpu_progress_restarts_the_quiet_limit(
    clock: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Progress is CPU time above what was seen (from nothing when the first read fails): it
    moves the quiet limit's start to when it was seen."""
    # None before the first look (0 seen), 0.5 at +0, +1 and +2, 0.6 at +3 (progress)
    cpu_script(monkeypatch, [None, 0.5, 0.5, 0.5, 0.6, 0.6])
    with pytest.raises(processes.NotListening) as caught:
        wait(FakeProc(), lambda: False, 2, interval=1, name="slow", what="listen on s")
    assert str(caught.value) == "slow did not listen on s: no progress (CPU time) for 2s"
    # the last progress at +3: +4 and +5 are within 2 s, +6 is not
    assert clock.slept == [1] * 6


def test_a_process_that_keeps_working_is_waited_for_at_most_max_start(
    clock: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Steady progress, never ready: it ends the first time more than ``MAX_START`` (900 s)
    passed, however long the quiet limit."""
    seen = iter(range(10_000))
    monkeypatch.setattr(processes, "cpu_seconds", lambda pid: float(next(seen)))
    with pytest.raises(processes.NotListening) as caught:
        wait(FakeProc(), lambda: False, 3600, interval=100, name="spin", what="say READY=1")
    assert str(caught.value) == "spin did not say READY=1 in 900s"
    assert clock.slept == [100] * 10  # +0 to +900 are not over it, +1000 is


def test_wait_listening_waits_for_a_connect(
    clock: FakeTime, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A socket file that nobody listens on is not ready; the message names the socket; the
    interval and output go through."""
    cpu_script(monkeypatch, [1.0])
    sock = tmp_path / "s"
    with pytest.raises(processes.NotListening) as caught:
        processes.wait_listening(FakeProc(), sock, 1, interval=0.25)  # type: ignore[arg-type]
    assert str(caught.value) == f"helper did not listen on {sock}: no progress (CPU time) for 1s"
    assert clock.slept == [0.25] * 5
    with pytest.raises(processes.NotListening):  # 0.02 s between looks unless told
        processes.wait_listening(FakeProc(), sock, 0.03)  # type: ignore[arg-type]
    assert clock.slept[5:] == [0.02, 0.02]
    with pytest.raises(processes.NotListening, match=r"^h exited with 1: out$"):
        processes.wait_listening(
            FakeProc(exit_after=0, code=1),
            sock,
            1,
            name="h",
            output=lambda: "out",  # type: ignore[arg-type]
        )
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(sock))
        server.listen()
        processes.wait_listening(FakeProc(), sock, 1)  # type: ignore[arg-type]


def test_unix_listening_means_a_connect_succeeds(tmp_path: Path) -> None:
    sock = tmp_path / "s"
    assert processes.unix_listening(sock) is False  # no file
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(sock))
        assert processes.unix_listening(sock) is False  # bound, not listening
        server.listen()
        assert processes.unix_listening(sock) is True


@pytest.mark.parametrize("error", [OSError, ValueError, IndexError])
def test_cpu_seconds_of_a_task_that_cannot_be_read_is_none(
    monkeypatch: pytest.MonkeyPatch, error: type[Exception]
) -> None:
    """Gone (OSError), or its stat read half-written (ValueError, IndexError): no answer."""

    def usage(pid: int) -> guest_cpu.Usage:
        raise error("unreadable")

    monkeypatch.setattr(processes.guest_cpu, "usage", usage)
    assert processes.cpu_seconds(1) is None


def test_cpu_seconds_is_own_time_not_the_childrens(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[int] = []

    def usage(pid: int) -> guest_cpu.Usage:
        asked.append(pid)
        return guest_cpu.Usage("x", False, 1.5, 99.0)

    monkeypatch.setattr(processes.guest_cpu, "usage", usage)
    assert processes.cpu_seconds(77) == 1.5 and asked == [77]


def test_sigterm_becomes_system_exit_with_the_shells_status() -> None:
    original = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        processes.exit_on_sigterm()
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler)
        with pytest.raises(SystemExit) as caught:
            handler(signal.SIGTERM, None)
        assert caught.value.code == 143
        with pytest.raises(SystemExit) as caught:
            handler(signal.SIGINT, None)
        assert caught.value.code == 130
    finally:
        signal.signal(signal.SIGTERM, original)


def test_notify_socket_hears_ready_only_as_a_line_of_its_own() -> None:
    """sd_notify's datagrams are newline-separated assignments: ``READY=1`` counts in any of
    them, as a whole line; everything heard is kept in order, undecodable bytes replaced."""
    with processes.NotifySocket() as notify, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        assert re.fullmatch(rf"@scsi-pr-notify-{os.getpid()}-[0-9a-f]{{12}}", notify.name)
        env = notify.env()
        assert env[NOTIFY_ENV] == notify.name
        assert {k: v for k, v in env.items() if k != NOTIFY_ENV} == {
            k: v for k, v in os.environ.items() if k != NOTIFY_ENV
        }
        s.connect("\0" + notify.name[1:])
        assert notify.poll() == [] and not notify.ready()
        for datagram in (b"STATUS=READY=1", b"READY=10", b"XREADY=1\n", b"\xffSTATUS=x"):
            s.send(datagram)
        assert not notify.ready()
        s.send(b"STATUS=serving\nREADY=1\nMAINPID=9")
        assert notify.ready()
        assert notify.messages == [
            "STATUS=READY=1", "READY=10", "XREADY=1\n", "\ufffdSTATUS=x",
            "STATUS=serving\nREADY=1\nMAINPID=9",
        ]  # fmt: skip
        assert notify.poll() is notify.messages
        s.send(b"x" * 5000)  # longer than a read: the rest is cut off, as a datagram is
        assert notify.poll()[-1] == "x" * 4096
    assert notify._sock.fileno() == -1  # closed by ``with``
    other = processes.NotifySocket()
    assert other.name != notify.name
    other.close()
    assert other._sock.fileno() == -1


def test_free_port_is_one_nobody_listens_on(monkeypatch: pytest.MonkeyPatch) -> None:
    port = processes.free_port()
    assert isinstance(port, int) and 0 < port < 65536
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))  # free on the loopback address it was taken from
    bound: list[object] = []

    class Recording(socket.socket):
        def bind(self, address: Any) -> None:
            bound.append(address)
            super().bind(address)

    monkeypatch.setattr(processes.socket, "socket", Recording)
    processes.free_port()
    processes.free_port("0.0.0.0")
    assert bound == [("127.0.0.1", 0), ("0.0.0.0", 0)]


def test_log_tail_is_the_end_of_the_log(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_bytes(b"a" * 10 + b"\xff" + b"b" * 1999)
    assert processes.log_tail(log) == "\ufffd" + "b" * 1999
    assert processes.log_tail(log, 3) == "bbb"
    missing = tmp_path / "none"
    assert (
        processes.log_tail(missing) == f"(no log: [Errno 2] No such file or directory: '{missing}')"
    )


def test_stop_asks_politely_then_kills(monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM and a wait of ``timeout`` (10 s unless told); SIGKILL and a reap only when
    that wait runs out; nothing at all for a process already gone."""
    proc = FakeProc()
    assert processes.stop(proc) == -signal.SIGKILL  # type: ignore[arg-type]
    assert proc.calls == [("terminate", None), ("wait", 10), ("kill", None), ("wait", None)]
    proc = FakeProc()
    processes.stop(proc, timeout=0.5)  # type: ignore[arg-type]
    assert proc.calls[:2] == [("terminate", None), ("wait", 0.5)]
    gone = FakeProc(exit_after=0, code=3)
    assert processes.stop(gone) == 3 and gone.calls == []  # type: ignore[arg-type]
    assert processes.kill(gone) == 3 and gone.calls == []  # type: ignore[arg-type]


def test_stop_of_a_process_ignoring_sigterm_kills_it() -> None:
    code = (
        "import signal, time; signal.signal(15, signal.SIG_IGN); print(flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen(python(code), stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"\n"  # SIGTERM ignored now
    assert processes.stop(proc, timeout=0.2) == -signal.SIGKILL
    proc.stdout.close()


def test_lower_priority_sets_the_process_and_its_autogroup(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The nice value of the process itself, and ``nice\\n`` to its ``/proc/PID/autogroup``
    where the kernel has one (here a stand-in under tmp_path); no autogroup file is no error."""
    proc = subprocess.Popen(python("import time; time.sleep(60)"))
    try:
        monkeypatch.setattr(processes, "Path", lambda p: tmp_path / p.lstrip("/"))
        processes.lower_priority(proc.pid, 7)  # no /proc/PID under tmp_path: no autogroups
        assert os.getpriority(os.PRIO_PROCESS, proc.pid) == 7
        (tmp_path / "proc" / str(proc.pid)).mkdir(parents=True)
        processes.lower_priority(proc.pid, 9)
        assert os.getpriority(os.PRIO_PROCESS, proc.pid) == 9
        assert (tmp_path / "proc" / str(proc.pid) / "autogroup").read_text() == "9\n"
    finally:
        processes.kill(proc)  # type: ignore[arg-type]


def test_spawn_ready_appends_both_streams_to_the_log_with_the_env_given(tmp_path: Path) -> None:
    """The log is appended to (a rig's earlier start stays), stderr goes with stdout, the
    environment is the one given; ready as soon as the child's file says so."""
    log, flag = tmp_path / "log", tmp_path / "ready"
    log.write_text("earlier\n")
    code = (
        "import os, sys, time; print('out', flush=True); print('err', file=sys.stderr, flush=True)"
        "; open(sys.argv[1], 'w').write(os.environ['MARK']); time.sleep(60)"
    )
    env = {**os.environ, "MARK": "m"}
    ready = lambda: flag.exists() and flag.read_text() == "m"  # noqa: E731
    proc = processes.spawn_ready(python(code, flag), log, ready, 30, name="n", what="w", env=env)
    try:
        assert proc.poll() is None
        assert os.getsid(proc.pid) == os.getsid(0)  # our session unless told otherwise
    finally:
        processes.stop(proc)
    assert log.read_text() == "earlier\nout\nerr\n"


def test_spawn_ready_stops_and_reports_a_process_that_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``wait_ready`` raises goes through with the log's tail, after the process is
    stopped."""
    stopped: list[int] = []
    real_stop = processes.stop
    monkeypatch.setattr(processes, "stop", lambda p: stopped.append(p.pid) or real_stop(p))
    log = tmp_path / "log"
    with pytest.raises(processes.NotListening) as caught:
        processes.spawn_ready(python(EXITS), log, lambda: False, 30, name="n", what="w")
    assert str(caught.value) == "n exited with 3: no LUN here\n"
    assert len(stopped) == 1


def test_spawn_notifying_is_ready_at_ready_1(tmp_path: Path) -> None:
    """A daemon speaking sd_notify is returned once it sends ``READY=1`` to the socket named
    in its environment, in a session of its own when asked."""
    code = ("import os, socket, time; s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
            "s.connect('\\0' + os.environ['NOTIFY_SOCKET'][1:]); s.send(b'READY=1')\n"
            "time.sleep(60)")  # fmt: skip
    proc = processes.spawn_notifying(python(code), tmp_path / "log", 30, name="d", new_session=True)
    try:
        assert proc.poll() is None and os.getsid(proc.pid) == proc.pid
    finally:
        processes.stop(proc)


def test_spawn_notifying_names_what_it_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[str, Any]] = []

    def spawn_ready(argv: list[str], log: Path, ready: Callable[[], bool], quiet: float,
                    **kw: Any) -> str:  # fmt: skip
        seen.append({"argv": argv, "log": log, "ready": ready(), "quiet": quiet, **kw})
        return "proc"

    monkeypatch.setattr(processes, "spawn_ready", spawn_ready)
    assert processes.spawn_notifying(["d"], tmp_path / "log", 5, name="d") == "proc"
    env = seen[0].pop("env")
    assert env[NOTIFY_ENV].startswith("@scsi-pr-notify-")
    assert seen == [{"argv": ["d"], "log": tmp_path / "log", "ready": False, "quiet": 5,
                     "name": "d", "what": "say READY=1", "new_session": False}]  # fmt: skip
    processes.spawn_notifying(["d"], tmp_path / "log", 5, name="d", what="w", new_session=True)
    assert (seen[1]["what"], seen[1]["new_session"]) == ("w", True)
    sock = tmp_path / "s"
    assert processes.spawn_listening(["h"], sock, tmp_path / "log", 6) == "proc"
    ready = seen[2].pop("ready")
    assert seen[2] == {"argv": ["h"], "log": tmp_path / "log", "quiet": 6, "name": "helper",
                       "what": f"listen on {sock}"}  # fmt: skip
    assert ready is False


def test_start_target_argv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The target's command line, what it waits for, and the session it is asked for."""
    seen: list[tuple[list[str], Path, float, dict[str, Any]]] = []

    def spawn(argv: list[str], log: Path, quiet: float, **kw: Any) -> str:
        seen.append((argv, log, quiet, kw))
        return "proc"

    monkeypatch.setattr(processes, "spawn_notifying", spawn)
    log = tmp_path / "log"
    assert processes.start_target(("::1", 3261), "iqn.x:t", tmp_path / "st", "2M", log, 9) == "proc"
    processes.start_target(
        ("h", 1), "i", tmp_path, "1", log, 1, extra=["--a", "b"], new_session=True
    )
    head = [sys.executable, "-m", "scsi_pr", "target", "serve", "--iqn"]
    name = "scsi-pr target serve"
    first = [*head, "iqn.x:t", "--portal", "::1:3261", "--state-dir", str(tmp_path / "st")]
    second = [*head, "i", "--portal", "h:1", "--state-dir", str(tmp_path)]
    assert seen == [
        ([*first, "--size", "2M"], log, 9,
         {"name": name, "what": "say it listens on ::1:3261", "new_session": False}),
        ([*second, "--size", "1", "--a", "b"], log, 1,
         {"name": name, "what": "say it listens on h:1", "new_session": True}),
    ]  # fmt: skip
