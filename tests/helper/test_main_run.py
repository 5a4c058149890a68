"""``scsi-pr-helper``'s ``main`` in process: every start-up failure's message and what it
leaves behind (nothing), and whole runs that serve a client and stop on a signal: the pidfile
while serving, ``-d``'s default pidfile and its parent told, the service manager told, a
socket from systemd, the audit's destination, the CPU mask.

Why in process, and what is faked: ``main_driver``.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import sys
import threading
from pathlib import Path

import pytest
from main_driver import (
    DEADLINE,
    SIGNALS,
    Privileges,
    activated,
    lock_held_elsewhere,
    only_line,
    read_keys,
    run_main,
    serve,
    sim_argv,
)
from session_driver import open_fds

from scsi_pr.helper import main as helper_main
from scsi_pr.helper.audit import parse_audit_line
from scsi_pr.helper.client import Client
from scsi_pr.helper.executors.base import Executor, Reply
from scsi_pr.helper.main import StateDirUnusable, answers
from scsi_pr.helper.options import DEFAULT_PIDFILE, Options
from scsi_pr.helper.systemd import FIRST_SOCKET_ACTIVATION_FD

pytestmark = pytest.mark.usefixtures("main_process")


# -- start-up failures -------------------------------------------------------------------------
def test_main_returns_the_option_parser_s_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(["scsi-pr-helper", "--version"]) == 0
    assert capsys.readouterr().out.startswith("scsi-pr-helper scsi-pr ")
    assert run_main(["scsi-pr-helper", "--backend", "nope"]) == 1


def test_main_reads_sys_argv_when_given_none(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["/nowhere/scsi-pr-helper", "--version"])
    assert helper_main.main() == 0
    assert capsys.readouterr().out.startswith("/nowhere/scsi-pr-helper scsi-pr ")


def test_main_without_argv_runs_as_its_program_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An empty argv (execve allows one) is the bare program: no options, its own name."""
    seen: list[list[str]] = []

    def parse(argv: list[str], out: object, err: object) -> Options:
        seen.append(list(argv))
        raise helper_main.Exit(5)

    monkeypatch.setattr(helper_main, "parse", parse)
    assert run_main([]) == 5
    assert run_main(["", "-v"]) == 5  # an empty argv[0] stays as it is
    assert seen == [["scsi-pr-helper"], ["", "-v"]]


def test_main_names_itself_as_typed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    program = tmp_path / "scsi-pr-helper"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert run_main([str(program), "--version"]) == 0
    assert capsys.readouterr().out.startswith("scsi-pr-helper scsi-pr ")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("-T", "file=/nonexistent/dir/trace"),
         "[Errno 2] No such file or directory: '/nonexistent/dir/trace'"),
        (("-T", "colour=red"), "Invalid parameter 'colour'"),
    ],
    ids=["trace-file", "trace-key"],
)  # fmt: skip
def test_main_trace_failures_stop_it_before_the_socket(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    privileges: Privileges,
    extra: tuple[str, ...],
    message: str,
) -> None:
    assert run_main([*sim_argv(tmp_path), *extra]) == 1
    assert only_line(capsys.readouterr().err) == f"scsi-pr-helper: {message}"
    assert not (tmp_path / "h.sock").exists()
    assert privileges.calls == []


def test_main_cpus_failure_is_the_cpu_list_s_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], privileges: Privileges
) -> None:
    from scsi_pr.helper import cpus

    argv = [a for a in sim_argv(tmp_path) if a not in ("--cpus", "all")]
    with pytest.raises(cpus.CpuListError) as expected:
        cpus.confine(cpus.parse("65535"))
    assert run_main([*argv, "--cpus", "65535"]) == 1
    assert only_line(capsys.readouterr().err) == f"scsi-pr-helper: {expected.value}"


def test_main_executor_failure_is_its_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(opts: Options) -> Executor:
        raise ValueError("target port 3 is not one of the LU's 1..2")

    monkeypatch.setattr(helper_main, "make_executor", broken)
    assert run_main(sim_argv(tmp_path)) == 1
    assert only_line(capsys.readouterr().err) == (
        "scsi-pr-helper: target port 3 is not one of the LU's 1..2"
    )

    def absent(opts: Options) -> Executor:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "/s")

    monkeypatch.setattr(helper_main, "make_executor", absent)
    assert run_main(sim_argv(tmp_path)) == 1
    assert only_line(capsys.readouterr().err) == (
        "scsi-pr-helper: [Errno 2] No such file or directory: '/s'"
    )


def test_main_refuses_a_socket_a_helper_listens_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], privileges: Privileges
) -> None:
    path = tmp_path / "h.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as running:
        running.bind(str(path))
        running.listen(1)
        assert run_main(sim_argv(tmp_path)) == 1
        assert only_line(capsys.readouterr().err) == (
            f"scsi-pr-helper: Failed to bind socket to {path}: a helper is already listening there"
        )
        assert answers(str(path))  # not removed by the failed helper's cleanup
    assert privileges.calls == []


def test_main_says_why_it_cannot_bind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "absent" / "h.sock"
    assert run_main([*sim_argv(tmp_path), "-k", str(path)]) == 1
    assert only_line(capsys.readouterr().err) == (
        f"scsi-pr-helper: Failed to bind socket to {path}: No such file or directory"
    )


def test_main_refuses_a_socket_path_under_socket_activation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with activated(monkeypatch, None):
        assert run_main(sim_argv(tmp_path)) == 1
    assert only_line(capsys.readouterr().err) == (
        "scsi-pr-helper: Unix socket can't be set when using socket activation"
    )


def test_main_refuses_more_than_one_activated_socket(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with activated(monkeypatch, None, "2"):
        assert run_main(["/usr/bin/scsi-pr-helper", "--backend", "sim", "--cpus", "all"]) == 1
    assert only_line(capsys.readouterr().err) == (
        "scsi-pr-helper: /usr/bin/scsi-pr-helper does not support socket activation with "
        "LISTEN_FDS > 1"
    )


def test_main_says_why_an_activated_fd_is_unusable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    not_a_socket = os.open(tmp_path, os.O_RDONLY)
    try:
        with activated(monkeypatch, not_a_socket):
            assert run_main(["scsi-pr-helper", "--backend", "sim", "--cpus", "all"]) == 1
    finally:
        os.close(not_a_socket)
    assert only_line(capsys.readouterr().err) == (
        "scsi-pr-helper: Failed to use socket activation: Socket operation on non-socket"
    )


def test_main_says_why_the_service_manager_cannot_be_told(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    privileges: Privileges,
) -> None:  # fmt: skip
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "absent"))
    assert run_main(sim_argv(tmp_path)) == 1
    assert only_line(capsys.readouterr().err) == (
        f"scsi-pr-helper: NOTIFY_SOCKET: cannot reach {tmp_path / 'absent'}: "
        "No such file or directory"
    )
    assert not (tmp_path / "h.sock").exists()  # the socket made before it is removed
    assert privileges.calls == []


def test_main_says_why_it_cannot_daemonize(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    privileges: Privileges,
) -> None:  # fmt: skip
    def no_fork(name: str, notifier: object) -> object:
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(helper_main, "detach", no_fork)
    assert run_main([*sim_argv(tmp_path), "-d", "-f", str(tmp_path / "h.pid")]) == 1
    assert only_line(capsys.readouterr().err) == (
        "scsi-pr-helper: Failed to daemonize: Resource temporarily unavailable"
    )
    assert not (tmp_path / "h.pid").exists()
    assert not (tmp_path / "h.sock").exists()


def test_main_refuses_a_locked_pidfile_and_leaves_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    privileges: Privileges,
) -> None:  # fmt: skip
    pidfile = tmp_path / "h.pid"

    def locked(path: str) -> int:
        assert path == str(pidfile)
        raise OSError(errno.EAGAIN, "Cannot lock pid file: Resource temporarily unavailable")

    monkeypatch.setattr(helper_main, "write_pidfile", locked)
    pidfile.write_text("1\n")
    assert run_main([*sim_argv(tmp_path), "-f", str(pidfile)]) == 1
    assert only_line(capsys.readouterr().err) == (
        "scsi-pr-helper: Cannot lock pid file: Resource temporarily unavailable"
    )
    assert pidfile.read_text() == "1\n"  # another helper's: not ours to remove
    assert not (tmp_path / "h.sock").exists()
    assert privileges.calls == []


@pytest.mark.parametrize(
    ("error", "message"),
    [(PermissionError(errno.EPERM, "Operation not permitted"),
      "Failed to drop privileges: Operation not permitted"),
     (StateDirUnusable("state dir /s is not writable by uid 5, gid 6"),
      "state dir /s is not writable by uid 5, gid 6")],
    ids=["caps", "state-dir"],
)  # fmt: skip
def test_main_stops_when_the_privilege_drop_fails_and_cleans_up(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    privileges: Privileges,
    error: BaseException,
    message: str,
) -> None:
    privileges.raises = error
    pidfile = tmp_path / "h.pid"
    before = open_fds()
    assert run_main([*sim_argv(tmp_path), "-f", str(pidfile)]) == 1
    assert only_line(capsys.readouterr().err) == f"scsi-pr-helper: {message}"
    assert not pidfile.exists()
    assert not (tmp_path / "h.sock").exists()
    assert open_fds() == before  # listener and pidfile closed


def test_main_says_why_an_activated_socket_cannot_serve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    privileges: Privileges,
) -> None:  # fmt: skip
    with (
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as datagram,
        activated(monkeypatch, datagram.fileno()),
    ):
        assert run_main(["scsi-pr-helper", "--backend", "sim", "--cpus", "all"]) == 1
    assert only_line(capsys.readouterr().err) == (
        f"scsi-pr-helper: fd {FIRST_SOCKET_ACTIVATION_FD} is not a listening stream socket"
    )


def test_a_signal_before_the_loop_ends_main_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], privileges: Privileges
) -> None:
    """SIGTERM, SIGHUP or SIGINT once the socket exists but before the loop takes over: no
    traceback, exit 0, the socket file and pidfile removed."""
    pidfile = tmp_path / "h.pid"
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)  # what a shell's background job inherits
    for sig in SIGNALS:
        privileges.then = lambda sig=sig: os.kill(os.getpid(), sig)
        assert run_main([*sim_argv(tmp_path), "-f", str(pidfile)]) == 0
        assert capsys.readouterr().err == ""
        assert not pidfile.exists()
        assert not (tmp_path / "h.sock").exists()


# -- a whole run -------------------------------------------------------------------------------
@pytest.mark.parametrize("stop", SIGNALS, ids=lambda s: s.name)
def test_main_serves_then_stops_on_a_signal_leaving_nothing_behind(
    tmp_path: Path,
    device: int,
    state_dir: Path,
    privileges: Privileges,
    capsys: pytest.CaptureFixture[str],
    stop: signal.Signals,
) -> None:
    sock, pidfile = tmp_path / "h.sock", tmp_path / "h.pid"
    argv = [*sim_argv(tmp_path), "--state-dir", str(state_dir), "-f", str(pidfile), "-q"]
    before = open_fds()
    run = serve(argv, sock, read_keys(device), stop)
    assert run.error is None
    assert run.code == 0
    assert [(r.status, r.data) for r in run.replies] == [(0, bytes(8))]
    assert not sock.exists()
    assert not pidfile.exists()
    assert open_fds() == before
    assert capsys.readouterr().err == ""  # -q: no audit lines
    # root without -u/-g still drops to the executor's set (none for sim)
    dropped = ("drop_privileges", None, None, []) if os.geteuid() == 0 else ("no_new_privileges",)
    assert privileges.calls == [dropped]


def test_main_writes_its_pid_while_it_serves(
    tmp_path: Path, device: int, privileges: Privileges
) -> None:
    sock, pidfile = tmp_path / "h.sock", tmp_path / "h.pid"
    seen: list[str] = []

    def work(c: Client) -> list[Reply]:
        seen.append("locked" if lock_held_elsewhere(pidfile) else "free")
        seen.append(pidfile.read_text())  # after: its close drops the helper's lock
        return read_keys(device)(c)

    run = serve([*sim_argv(tmp_path), "-f", str(pidfile)], sock, work)
    assert run.error is None and run.code == 0
    assert seen == ["locked", f"{os.getpid()}\n"]


def test_main_without_pidfile_options_writes_none(
    tmp_path: Path, device: int, privileges: Privileges, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[str] = []
    monkeypatch.setattr(helper_main, "write_pidfile", lambda path: written.append(path) or -1)
    run = serve(sim_argv(tmp_path), tmp_path / "h.sock", read_keys(device))
    assert run.error is None and run.code == 0
    assert written == []


def test_main_daemonized_writes_the_default_pidfile_and_tells_the_parent(
    tmp_path: Path, device: int, privileges: Privileges, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``-d`` without ``-f``: the C helper's default pidfile; ready goes to the parent."""
    written: list[str] = []
    told: list[str] = []
    pid_fd = os.open(tmp_path / "pid", os.O_CREAT | os.O_WRONLY, 0o600)

    def write(path: str) -> int:
        written.append(path)
        return pid_fd

    class Daemon:
        def ready(self, status: str) -> None:
            told.append(status)

    detached: list[tuple[str, object]] = []

    def detach(name: str, notifier: object) -> Daemon:
        detached.append((name, notifier))
        return Daemon()

    monkeypatch.setattr(helper_main, "write_pidfile", write)
    monkeypatch.setattr(helper_main, "detach", detach)
    removed: list[str] = []
    real_unlink = os.unlink

    def unlink(path: str) -> None:  # the real default pidfile may be a running helper's
        if path == DEFAULT_PIDFILE:
            removed.append(path)
        else:
            real_unlink(path)

    monkeypatch.setattr(os, "unlink", unlink)
    sock = tmp_path / "h.sock"
    run = serve([*sim_argv(tmp_path), "-d"], sock, read_keys(device))
    assert run.error is None and run.code == 0
    assert written == removed == [DEFAULT_PIDFILE]
    assert [name for name, _ in detached] == ["scsi-pr-helper"]
    assert isinstance(detached[0][1], helper_main.ServiceNotifier)
    assert told == [f"serving {sock}"]
    with pytest.raises(OSError):
        os.fstat(pid_fd)  # closed by main


def test_main_tells_the_service_manager_it_serves_and_stops(
    tmp_path: Path, device: int, privileges: Privileges, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager_path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(str(manager_path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(manager_path))
        sock = tmp_path / "h.sock"
        run = serve(sim_argv(tmp_path), sock, read_keys(device))
        assert run.error is None and run.code == 0
        manager.settimeout(DEADLINE)
        messages = [manager.recv(4096).decode(), manager.recv(4096).decode()]
    assert messages == [f"READY=1\nSTATUS=serving {sock}", "STOPPING=1"]
    assert "NOTIFY_SOCKET" not in os.environ


def test_main_serves_an_activated_socket_and_leaves_its_file(
    tmp_path: Path, device: int, privileges: Privileges, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The socket is systemd's: served, closed at exit, its file not ours to remove."""
    path = tmp_path / "activated.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as systemd_socket:
        systemd_socket.bind(str(path))
        systemd_socket.listen(8)
        with activated(monkeypatch, systemd_socket.fileno()):
            run = serve(["scsi-pr-helper", "--backend", "sim", "--cpus", "all"], path,
                        read_keys(device))  # fmt: skip
            assert run.error is None and run.code == 0
            with pytest.raises(OSError):
                os.fstat(FIRST_SOCKET_ACTIVATION_FD)  # closed by main
    assert [(r.status, r.data) for r in run.replies] == [(0, bytes(8))]
    assert path.exists()


def test_main_audits_to_the_trace_file(
    tmp_path: Path, device: int, privileges: Privileges, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "trace"
    run = serve([*sim_argv(tmp_path), "-q", "-T", f"prh_command,file={trace}"],
                tmp_path / "h.sock", read_keys(device))  # fmt: skip
    assert run.error is None and run.code == 0
    lines = trace.read_text().splitlines()
    assert [parse_audit_line(line).event for line in lines] == ["prh_command"]
    assert capsys.readouterr().err == ""


def test_main_audits_to_stderr_by_default(
    tmp_path: Path, device: int, privileges: Privileges, capsys: pytest.CaptureFixture[str]
) -> None:
    run = serve(sim_argv(tmp_path), tmp_path / "h.sock", read_keys(device))
    assert run.error is None and run.code == 0
    assert [parse_audit_line(line).event for line in capsys.readouterr().err.splitlines()] == [
        "prh_command"
    ]


@pytest.mark.parametrize("cpus", [None, "all"], ids=["auto", "all"])
def test_main_s_cpu_mask(
    tmp_path: Path, device: int, privileges: Privileges, cpus: str | None
) -> None:
    """By default (``auto``) the helper's threads keep to one CPU of those allowed; ``all``
    leaves the mask as it was. Read from another thread while ``main`` serves."""
    allowed = os.sched_getaffinity(0)
    main_tid = threading.get_native_id()
    seen: list[set[int]] = []

    def work(c: Client) -> list[Reply]:
        seen.append(os.sched_getaffinity(main_tid))
        return read_keys(device)(c)

    argv = [a for a in sim_argv(tmp_path) if a not in ("--cpus", "all")]
    run = serve(argv if cpus is None else [*argv, "--cpus", cpus], tmp_path / "h.sock", work)
    assert run.error is None and run.code == 0
    if cpus is None:
        assert len(seen[0]) == 1 and seen[0] <= allowed
    else:
        assert seen == [allowed]


def test_main_ends_cleanly_when_its_socket_and_pidfile_were_removed_under_it(
    tmp_path: Path, device: int, privileges: Privileges
) -> None:
    """An administrator's cleanup (or tmpfiles.d) removed both while it served: its own removal
    at exit finds nothing, which is not an error."""
    sock, pidfile = tmp_path / "h.sock", tmp_path / "h.pid"

    def work(c: Client) -> list[Reply]:
        replies = read_keys(device)(c)
        sock.unlink()
        pidfile.unlink()
        return replies

    run = serve([*sim_argv(tmp_path), "-f", str(pidfile)], sock, work)
    assert run.error is None and run.code == 0
    assert [(r.status, r.data) for r in run.replies] == [(0, bytes(8))]
