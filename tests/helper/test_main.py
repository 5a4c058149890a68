"""The parts of ``scsi-pr-helper``'s life cycle (``scsi_pr.helper.main``), in process: the
socket it takes or refuses, the pidfile, the executor and server the options make, the
privilege drop's decisions (recorded, not made) and the name it calls itself. ``main`` itself,
its start-up failures and whole runs: ``test_main_run.py``.

Why in process: ``test_daemon.py`` and ``test_privileges.py`` run the real helper as a
subprocess, which checks the whole program but none of these decisions one by one, and
mutation testing sees only code run in the pytest process.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from main_driver import Privileges, lock_held_elsewhere
from session_driver import open_fds

from scsi_pr.helper import main as helper_main
from scsi_pr.helper import state_owner
from scsi_pr.helper.executors import multipath
from scsi_pr.helper.executors.base import Executor
from scsi_pr.helper.executors.ioctl import IoctlExecutor
from scsi_pr.helper.executors.sg import SgExecutor
from scsi_pr.helper.executors.sim import DEFAULT_INITIATOR, SimExecutor
from scsi_pr.helper.main import (
    SocketInUse,
    StateDirUnusable,
    answers,
    hand_over_state_dir,
    invoked_name,
    listen,
    make_executor,
    make_server,
    write_pidfile,
)
from scsi_pr.helper.options import Options
from scsi_pr.sim.nexus import ITNexus


# -- answers / listen --------------------------------------------------------------------------
def test_answers_is_true_for_a_listener_and_false_for_a_stale_file_or_nothing(
    tmp_path: Path,
) -> None:
    live = tmp_path / "live.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(live))
        listener.listen(4)
        assert answers(str(live)) is True
    assert live.exists()
    assert answers(str(live)) is False  # the file stays, nobody listens: refused
    assert answers(str(tmp_path / "absent.sock")) is False


def fill_backlog(stack: contextlib.ExitStack, path: str, most: int) -> int:
    """Connect without blocking, never accepted, until the listener's backlog is full (or
    ``most`` connections wait); how many were queued. The sockets close with ``stack``."""
    for queued in range(most):
        waiting = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
        waiting.setblocking(False)
        try:
            waiting.connect(path)
        except BlockingIOError:
            return queued
    return most


def test_answers_counts_a_full_backlog_as_someone_listening(tmp_path: Path) -> None:
    """A helper too busy to accept is still alive: EAGAIN from a non-blocking connect."""
    path = str(tmp_path / "busy.sock")
    with contextlib.ExitStack() as stack:
        listener = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
        listener.bind(path)
        listener.listen(0)
        assert fill_backlog(stack, path, most=64) < 64
        assert answers(path) is True


def test_listen_serves_on_a_new_path(tmp_path: Path) -> None:
    path = tmp_path / "h.sock"
    with listen(str(path)) as listener:
        assert stat.S_ISSOCK(path.lstat().st_mode)
        assert listener.family == socket.AF_UNIX
        assert listener.type == socket.SOCK_STREAM
        assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(path))
            accepted, _ = listener.accept()
            accepted.close()


def test_listen_keeps_129_clients_waiting_in_its_backlog(tmp_path: Path) -> None:
    """``listen(128)``: Linux queues backlog + 1 connections on an AF_UNIX listener, then a
    non-blocking connect finds it full. QEMU opens one connection per guest disk: a host with
    many guests starting at once must not see refusals while the helper accepts."""
    path = str(tmp_path / "h.sock")
    with contextlib.ExitStack() as stack:
        stack.enter_context(listen(path))
        assert fill_backlog(stack, path, most=200) == 129


def test_listen_replaces_a_stale_socket_file(tmp_path: Path) -> None:
    path = tmp_path / "h.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(path))  # its helper died: the file stays, nobody listens
    old = tmp_path / "old.sock"
    os.link(path, old)  # keeps the stale file's inode from being reused
    with listen(str(path)):
        assert not path.samefile(old)
        assert old.lstat().st_nlink == 1
        assert answers(str(path))


def test_listen_refuses_a_live_socket_and_leaves_it(tmp_path: Path) -> None:
    path = tmp_path / "h.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as running:
        running.bind(str(path))
        running.listen(1)
        before = open_fds()
        with pytest.raises(SocketInUse) as refused:
            listen(str(path))
        assert str(refused.value) == "a helper is already listening there"
        assert open_fds() == before
        assert answers(str(path))  # the running helper keeps its socket file


def test_listen_does_not_remove_a_file_that_is_not_a_socket(tmp_path: Path) -> None:
    path = tmp_path / "h.sock"
    path.write_text("not a socket")
    before = open_fds()
    with pytest.raises(OSError) as failed:
        listen(str(path))
    assert failed.value.errno == errno.EADDRINUSE
    assert path.read_text() == "not a socket"
    assert open_fds() == before  # the socket that failed to bind is closed


# -- the pidfile --------------------------------------------------------------------------------
def test_write_pidfile_writes_our_pid_locks_and_truncates(tmp_path: Path) -> None:
    path = tmp_path / "h.pid"
    path.write_text("123456789012345\nleft over\n")
    fd = write_pidfile(str(path))
    try:
        assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        assert lock_held_elsewhere(path)
        # last: closing any fd of the file (read_text's) drops this process's POSIX locks
        assert path.read_text() == f"{os.getpid()}\n"
    finally:
        os.close(fd)
    assert not lock_held_elsewhere(path)


def test_write_pidfile_creates_the_file_for_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "new.pid"
    old = os.umask(0)
    try:
        fd = write_pidfile(str(path))
    finally:
        os.umask(old)
    os.close(fd)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_write_pidfile_says_why_it_cannot_create(tmp_path: Path) -> None:
    path = tmp_path / "absent" / "h.pid"
    with pytest.raises(OSError) as failed:
        write_pidfile(str(path))
    assert failed.value.errno == errno.ENOENT
    assert failed.value.strerror == f"Could not create '{path}': No such file or directory"


def test_write_pidfile_refuses_a_pidfile_locked_by_a_running_helper(tmp_path: Path) -> None:
    path = tmp_path / "h.pid"
    path.write_text("1\n")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, os, sys\n"
         "fd = os.open(sys.argv[1], os.O_WRONLY)\n"
         "fcntl.lockf(fd, fcntl.LOCK_EX)\n"
         "print('locked', flush=True)\n"
         "sys.stdin.read()\n",
         str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        before = open_fds()
        with pytest.raises(OSError) as failed:
            write_pidfile(str(path))
        assert failed.value.errno in (errno.EAGAIN, errno.EACCES)
        assert failed.value.strerror == f"Cannot lock pid file: {os.strerror(failed.value.errno)}"
        assert open_fds() == before
        assert path.read_text() == "1\n"  # the running helper's pid stays
    finally:
        holder.communicate("")


# -- executor and server -----------------------------------------------------------------------
def test_make_executor_sim_takes_the_options(tmp_path: Path) -> None:
    opts = Options(backend="sim", initiator="iqn.2026-12.test:a", state_dir=str(tmp_path),
                   target_port=3, target_ports=2, profile="lio-6.1")  # fmt: skip
    executor = make_executor(opts)
    assert isinstance(executor, SimExecutor)
    assert executor.nexus == ITNexus.named("iqn.2026-12.test:a", 3)
    assert executor.lus.target_ports == (1, 2, 3)  # a port above --target-ports widens the LU
    assert executor.lus.profile.name == "lio-6.1"
    assert str(executor.lus.state_dir) == str(tmp_path)


def test_make_executor_sim_defaults(tmp_path: Path) -> None:
    executor = make_executor(Options(backend="sim", target_ports=4))
    assert isinstance(executor, SimExecutor)
    assert executor.nexus == ITNexus.named(DEFAULT_INITIATOR, 1)
    assert executor.lus.target_ports == (1, 2, 3, 4)
    assert executor.lus.state_dir is None


def test_make_executor_ioctl() -> None:
    assert type(make_executor(Options(backend="ioctl"))) is IoctlExecutor


@pytest.mark.parametrize(("argv", "verbose", "quiet"), [((), 1, False), (("-v", "-v"), 3, False),
                                                        (("-q",), 1, True)])  # fmt: skip
def test_make_executor_sg_goes_through_multipath_with_the_c_helper_s_verbosity(
    monkeypatch: pytest.MonkeyPatch, argv: tuple[str, ...], verbose: int, quiet: bool
) -> None:
    seen: list[tuple[Executor, int, bool]] = []
    wrapped = IoctlExecutor()

    def with_multipath(inner: Executor, verbose: int = 1, quiet: bool = False) -> Executor:
        seen.append((inner, verbose, quiet))
        return wrapped

    monkeypatch.setattr(multipath, "with_multipath", with_multipath)
    opts = helper_main.parse(["scsi-pr-helper", *argv], sys.stdout, sys.stderr)
    assert make_executor(opts) is wrapped
    [(inner, level, was_quiet)] = seen
    assert type(inner) is SgExecutor
    assert (level, was_quiet) == (verbose, quiet)


def test_make_server_takes_the_options() -> None:
    executor = IoctlExecutor()
    audit = helper_main.Audit.from_patterns([], None)
    opts = Options(loglevel=2, max_clients=7, idle_timeout=2.5, shutdown_grace=4.0)
    server = make_server(opts, executor, audit)
    assert server.executor is executor
    assert server.audit is audit
    assert (server.verbose, server.max_clients, server.idle_timeout, server.shutdown_grace) == (
        2, 7, 2.5, 4.0,
    )  # fmt: skip
    assert make_server(Options(quiet=True), executor, audit).verbose == 0


# -- the privilege drop ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "opts",
    [Options(backend="sg", state_dir="/s", uid=5, gid=6), Options(backend="sim", uid=5, gid=6),
     Options(backend="sim", state_dir="/s")],
    ids=["not-sim", "no-state-dir", "no-user"],
)  # fmt: skip
def test_hand_over_state_dir_does_nothing_without_a_sim_state_dir_and_a_user(
    privileges: Privileges, opts: Options
) -> None:
    hand_over_state_dir(opts)
    assert privileges.calls == []


@pytest.mark.parametrize(("uid", "gid"), [(5, None), (None, 6), (5, 6)])
def test_hand_over_state_dir_gives_it_to_the_user_and_checks_it(
    privileges: Privileges, uid: int | None, gid: int | None
) -> None:
    hand_over_state_dir(Options(backend="sim", state_dir="/s", uid=uid, gid=gid))
    assert privileges.calls == [("hand_over", "/s", uid, gid), ("writable_by", "/s", uid, gid)]


def test_hand_over_state_dir_names_the_ids_it_could_not_give_it_to(
    privileges: Privileges, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(path: str, uid: int | None, gid: int | None) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(state_owner, "hand_over", refuse)
    with pytest.raises(StateDirUnusable) as failed:
        hand_over_state_dir(Options(backend="sim", state_dir="/s", uid=5))
    assert str(failed.value) == (
        f"cannot hand state dir /s to uid 5, gid {os.getgid()}: Operation not permitted"
    )
    with pytest.raises(StateDirUnusable) as failed:
        hand_over_state_dir(Options(backend="sim", state_dir="/s", gid=6))
    assert str(failed.value) == (
        f"cannot hand state dir /s to uid {os.getuid()}, gid 6: Operation not permitted"
    )


def test_hand_over_state_dir_refuses_a_dir_the_user_cannot_write(privileges: Privileges) -> None:
    privileges.writable = False
    with pytest.raises(StateDirUnusable) as failed:
        hand_over_state_dir(Options(backend="sim", state_dir="/s", uid=5, gid=6))
    assert str(failed.value) == "state dir /s is not writable by uid 5, gid 6"
    with pytest.raises(StateDirUnusable) as failed:
        hand_over_state_dir(Options(backend="sim", state_dir="/s", uid=5))
    assert str(failed.value) == f"state dir /s is not writable by uid 5, gid {os.getgid()}"


class Declares(IoctlExecutor):
    capabilities = frozenset({"CAP_SYS_ADMIN", "CAP_SYS_RAWIO"})


def test_drop_privileges_without_root_only_sets_no_new_privileges(
    privileges: Privileges, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    helper_main.drop_privileges(Options(backend="sim", state_dir="/s"), Declares())
    assert privileges.calls == [("no_new_privileges",)]


@pytest.mark.parametrize(("euid", "uid", "gid"), [(0, None, None), (1000, 5, None),
                                                  (1000, None, 6), (0, 5, 6)])  # fmt: skip
def test_drop_privileges_keeps_what_the_executor_declares(
    privileges: Privileges,
    monkeypatch: pytest.MonkeyPatch,
    euid: int,
    uid: int | None,
    gid: int | None,
) -> None:
    """Root, or a user switch asked for: the state dir first, then the drop."""
    monkeypatch.setattr(os, "geteuid", lambda: euid)
    helper_main.drop_privileges(
        Options(backend="sim", state_dir="/s", uid=uid, gid=gid), Declares()
    )
    handed = [] if uid is None and gid is None else [
        ("hand_over", "/s", uid, gid), ("writable_by", "/s", uid, gid)]  # fmt: skip
    assert privileges.calls == [*handed, ("drop_privileges", uid, gid, [17, 21])]


# -- the name it calls itself ------------------------------------------------------------------
def test_invoked_name_is_the_bare_name_when_path_finds_the_same_program(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / "scsi-pr-helper"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    link = tmp_path / "via-link"
    link.symlink_to(program)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert invoked_name(str(program)) == "scsi-pr-helper"
    assert invoked_name(str(tmp_path / "via-link")) == str(link)  # another name: kept
    other = tmp_path / "scsi-pr-helper"
    other.write_text("#!/bin/sh\n")
    other.chmod(0o755)
    assert invoked_name(str(other)) == str(other)  # PATH finds a different program
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert invoked_name(str(program)) == str(program)
