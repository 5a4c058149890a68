"""Readiness notification (``scsi_pr.helper.systemd``): the notifier against a datagram socket
standing in for systemd's, then the real helper told to notify, as a ``Type=notify`` unit
starts it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from scsi_pr.helper.client import Client
from scsi_pr.helper.executable import helper_executable
from scsi_pr.helper.systemd import (
    NotifyError,
    ServiceNotifier,
    listener_name,
    notify_address,
    socket_activation,
)
from scsi_pr.rig.processes import NotifySocket, wait_ready

EXE = helper_executable()


class Manager:
    """systemd's end: a bound datagram socket, its messages read with a deadline."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(60)  # only catches a hang

    def message(self) -> str:
        return self.sock.recv(4096).decode()


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[Manager]:
    m = Manager(tmp_path / "notify")
    yield m
    m.sock.close()


@pytest.mark.parametrize(
    ("value", "address"),
    [("/run/systemd/notify", "/run/systemd/notify"), ("@name", "\0name"), ("@n", "\0n")],
)
def test_notify_socket_names_a_path_or_an_abstract_socket(value: str, address: str) -> None:
    assert notify_address(value) == address


@pytest.mark.parametrize(
    ("pid", "fds", "count"),
    [("ours", "1", 1), ("ours", "2", 2), ("ours", "0", 0), ("ours", "-1", 0), ("ours", "x", 0),
     ("ours", None, 0), ("other", "1", 0), ("x", "1", 0), (None, "1", 0)],
)  # fmt: skip
def test_socket_activation_counts_the_fds_passed_to_us(
    monkeypatch: pytest.MonkeyPatch, pid: str | None, fds: str | None, count: int
) -> None:
    """sd_listen_fds(3) as QEMU checks it: LISTEN_PID must be our pid, LISTEN_FDS a number."""
    values = {"ours": str(os.getpid()), "other": str(os.getpid() + 1)}
    for name, value in (("LISTEN_PID", pid), ("LISTEN_FDS", fds)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, values.get(value, value))
    assert socket_activation() == count


@pytest.mark.parametrize("value", ["run/notify", "@", "", "vsock:2:1234"])
def test_a_notify_socket_we_cannot_use_is_an_error_naming_it(value: str) -> None:
    with pytest.raises(NotifyError, match=f"NOTIFY_SOCKET={value!r}: not an absolute path"):
        notify_address(value)


def test_without_a_manager_nothing_is_sent_and_nothing_fails() -> None:
    notifier = ServiceNotifier(None)
    notifier.ready("serving")
    notifier.stopping()
    notifier.close()


def test_ready_and_stopping_reach_the_manager(manager: Manager) -> None:
    notifier = ServiceNotifier(str(manager.path))
    notifier.ready("serving /run/x.sock")
    assert manager.message() == "READY=1\nSTATUS=serving /run/x.sock"
    notifier.stopping()
    assert manager.message() == "STOPPING=1"
    notifier.close()
    notifier.ready("again")  # closed: nothing to send to, nothing raised


def test_the_variable_is_taken_from_the_environment(
    manager: Manager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read once and removed, so that no child process speaks for the daemon."""
    monkeypatch.setenv("NOTIFY_SOCKET", str(manager.path))
    notifier = ServiceNotifier.from_environment()
    assert "NOTIFY_SOCKET" not in os.environ
    notifier.ready("up")
    assert manager.message().startswith("READY=1\n")
    notifier.close()
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert ServiceNotifier.from_environment().address is None


def test_an_abstract_manager_socket_is_reached() -> None:
    with NotifySocket() as manager:
        notifier = ServiceNotifier(notify_address(manager.name))
        assert not manager.ready()
        notifier.stopping()
        assert not manager.ready()  # a word, but not READY=1
        notifier.ready("up")
        assert manager.ready()
        assert manager.messages == ["STOPPING=1", "READY=1\nSTATUS=up"]
        notifier.close()


def test_an_unreachable_manager_is_an_error_at_once(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    with pytest.raises(NotifyError) as raised:
        ServiceNotifier(str(gone))
    assert str(raised.value) == f"NOTIFY_SOCKET: cannot reach {gone}: No such file or directory"
    with pytest.raises(NotifyError) as raised:
        ServiceNotifier("\0scsi-pr-test-nobody-binds-this")
    assert str(raised.value) == (
        "NOTIFY_SOCKET: cannot reach @scsi-pr-test-nobody-binds-this: Connection refused"
    )


def test_a_manager_gone_after_the_start_fails_ready_but_not_stopping(manager: Manager) -> None:
    notifier = ServiceNotifier(str(manager.path))
    manager.sock.close()
    with pytest.raises(NotifyError) as raised:
        notifier.ready("up")
    assert str(raised.value) == (
        f"NOTIFY_SOCKET: READY=1 not sent to {manager.path}: Connection refused"
    )
    notifier.stopping()  # best effort
    notifier.close()


def test_the_helper_says_ready_once_it_serves_and_stopping_on_sigterm(
    tmp_path: Path, manager: Manager
) -> None:
    """As a ``Type=notify`` unit: READY=1 (with the socket in STATUS) only when a client can be
    served, STOPPING=1 when SIGTERM begins the orderly exit."""
    sock = tmp_path / "h.sock"
    env = {**os.environ, "NOTIFY_SOCKET": str(manager.path)}
    proc = subprocess.Popen([EXE, "--backend", "sim", "-k", str(sock)], env=env)
    try:
        assert manager.message() == f"READY=1\nSTATUS=serving {sock}"
        with Client(str(sock)) as client:  # served, not only listening: the handshake came
            client.connect()
            assert client.helper_features is not None
        proc.send_signal(signal.SIGTERM)
        assert manager.message() == "STOPPING=1"
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_helper_refuses_a_notify_socket_it_cannot_use(tmp_path: Path) -> None:
    for value, said in [
        ("relative", "not an absolute path"),
        (str(tmp_path / "no"), "cannot reach"),
    ]:
        env = {**os.environ, "NOTIFY_SOCKET": value}
        done = subprocess.run([EXE, "--backend", "sim", "-k", str(tmp_path / "h.sock")], env=env,
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert done.returncode == 1
        assert said in done.stderr and done.stderr.startswith("scsi-pr-helper: NOTIFY_SOCKET")
        assert not (tmp_path / "h.sock").exists()  # refused, and nothing left behind


def test_the_rig_waits_for_ready_without_connecting(tmp_path: Path) -> None:
    """``wait_ready`` on a NotifySocket: the helper is served when it returns, and its first
    client is the test's (``prh_connect`` in the audit log once, not twice)."""
    sock, log = tmp_path / "h.sock", tmp_path / "h.log"
    with NotifySocket() as notify, log.open("wb") as out:
        proc = subprocess.Popen([EXE, "--backend", "sim", "-T", "prh_*", "-k", str(sock)],
                                env=notify.env(), stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            wait_ready(proc, notify.ready, 20, name="helper")
            with Client(str(sock)) as client:
                client.connect()
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0
    assert log.read_text().count("prh_connect") == 1


ACTIVATE = """
import os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
if sys.argv[2] == "listening":
    s.listen()
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="1")
os.execv(sys.argv[3], sys.argv[3:])
"""


@pytest.mark.parametrize("kind", ["listening", "not-listening"])
def test_an_activated_helper_says_ready_only_for_a_listener_it_can_serve(
    tmp_path: Path, manager: Manager, kind: str
) -> None:
    """Socket activation and notification together (a ``.socket`` unit with a ``Type=notify``
    service): READY=1 only once the passed fd is known to be a listening socket."""
    sock = tmp_path / "a.sock"
    env = {**os.environ, "NOTIFY_SOCKET": str(manager.path)}
    argv = [sys.executable, "-c", ACTIVATE, str(sock), kind, EXE, "--backend", "sim"]
    proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    try:
        if kind == "listening":
            assert manager.message() == f"READY=1\nSTATUS=serving {sock}"
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if kind == "listening":
        assert proc.returncode == 0
        assert manager.message() == "STOPPING=1"
    else:
        assert proc.returncode == 1 and "fd 3 is not a listening stream socket" in err
        manager.sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            manager.sock.recv(4096)  # it exited without a word: no READY=1 for a dead listener


def test_a_listener_is_named_as_a_unit_would_name_it(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as path, socket.socket(socket.AF_UNIX) as abstract, \
            socket.socket(socket.AF_UNIX) as unnamed, socket.socket() as tcp:  # fmt: skip
        path.bind(str(tmp_path / "h.sock"))
        abstract.bind("\0scsi-pr-test-listener")
        tcp.bind(("127.0.0.1", 0))
        assert listener_name(path) == str(tmp_path / "h.sock")
        assert listener_name(abstract) == "@scsi-pr-test-listener"
        assert listener_name(unnamed) == "an unnamed socket"
        assert listener_name(tcp) == f"127.0.0.1:{tcp.getsockname()[1]}"
