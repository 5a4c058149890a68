"""The target's log at INFO and above is how its operator learns what happened to each
session: logins with their digests, reinstatements, task management, logouts, closed
connections, I_T nexus losses, refusals, internal errors. These tests pin its lines exactly,
through the live server, so a line that names the wrong session or drops a cause fails."""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from initiator import Chap, Initiator, TargetGone, connect, until_good
from live import TARGET, LiveTarget, until

from scsi_pr.sim import cdb
from scsi_pr.target import handler as handler_module
from scsi_pr.target.handler import peer_name
from scsi_pr.target.lus import ServedLUs
from scsi_pr.target.proto import ChapCredentials, ChapPolicy, LoginStatus
from scsi_pr.target.proto.connection import TargetConnection
from scsi_pr.target.proto.constants import TaskManagementFunction as Tmf
from scsi_pr.target.server import MAX_LOGINS_PENDING

HOST = "iqn.2024-01.test:host-a"
ISID = 0x400001
LOGGER = "scsi_pr.target"


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.INFO, logger=LOGGER):
        yield caplog


def lines(log: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in log.records if r.name.startswith(LOGGER)]


def logged(log: pytest.LogCaptureFixture, line: str) -> None:
    """Wait for ``line`` (the server logs on its own thread)."""
    until(lambda: line in lines(log), 30, f"never logged: {line!r}; logged: {lines(log)}")


def error_logged(log: pytest.LogCaptureFixture, line: str, cause: str) -> None:
    """``line`` was logged once, as an ERROR carrying the exception ``cause``."""
    (record,) = [r for r in log.records if r.getMessage() == line]
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert str(record.exc_info[1]) == cause


@pytest.mark.parametrize(("host", "port", "name"), [
    ("127.0.0.1", 3260, "127.0.0.1:3260"),
    ("::1", 3260, "[::1]:3260"),
    ("fe80::1", 860, "[fe80::1]:860"),
])  # fmt: skip
def test_a_peer_is_named_host_colon_port_with_ipv6_in_brackets(
    host: str, port: int, name: str
) -> None:
    assert peer_name((host, port)) == name
    assert peer_name((host, port, 0, 0)) == name  # IPv6 sockets give four
    assert peer_name("/run/a.sock") == "/run/a.sock"  # anything else as it is
    assert peer_name((host,)) == f"('{host}',)"


def test_start_and_stop_say_where_what_and_with_which_limits(
    tmp_path: Path, log: pytest.LogCaptureFixture
) -> None:
    with LiveTarget(tmp_path, luns=2, max_sessions=9, command_window=7,
                    max_recv_data_segment_length=8192, max_burst_length=131072,
                    max_write_length=1 << 20) as target:  # fmt: skip
        host, port = target.address
    images = f"0: {tmp_path / 'lun0.img'}, 1: {tmp_path / 'lun1.img'}"
    assert lines(log) == [
        f"target {TARGET} listening on {host}:{port},1; LUNs {images}",  # portal, group tag
        "limits: 9 sessions, 7 commands per session, 8192-byte data segments, "
        "131072-byte bursts, 1048576-byte writes",
        f"target {TARGET} stopped",
    ]


@pytest.mark.parametrize(("keys", "digests"), [
    ({}, "header None, data None"),
    ({"HeaderDigest": "CRC32C"}, "header CRC32C, data None"),
    ({"DataDigest": "CRC32C"}, "header None, data CRC32C"),
    ({"HeaderDigest": "CRC32C", "DataDigest": "CRC32C"}, "header CRC32C, data CRC32C"),
])  # fmt: skip
def test_a_login_names_the_session_its_type_and_its_digests(
    tmp_path: Path, log: pytest.LogCaptureFixture, keys: dict[str, str], digests: str
) -> None:
    with LiveTarget(tmp_path) as target:
        ini = Initiator(target.address, HOST, ISID)
        assert ini.login(TARGET, **keys).status == 0
        logged(log, f"login: {ini.session_name} (Normal session, {digests} digest)")
        finder = Initiator(target.address, HOST, ISID + 1)
        assert finder.login(None).status == 0
        who = f"discovery TSIH {finder.tsih} from {finder.peer}"
        logged(log, f"login: {who} (Discovery session, header None, data None digest)")
        finder.close()
        logged(log, f"connection closed: {who}: the initiator closed the connection")
        ini.close()
    assert not [line for line in lines(log) if line.startswith("I_T nexus loss: discovery")]


def test_a_reinstatement_names_both_sessions_and_ends_the_old_one_as_a_nexus_loss(
    tmp_path: Path, log: pytest.LogCaptureFixture
) -> None:
    with LiveTarget(tmp_path) as target:
        old = connect(target.address, HOST, TARGET)
        logged(log, f"login: {old.session_name} (Normal session, header None, data None digest)")
        new = connect(target.address, HOST, TARGET)
        logged(log, f"session reinstatement: {new.session_name} replaces TSIH {old.tsih}")
        logged(log, f"I_T nexus loss: {old.session_name} (session reinstated by a new login)")
        new.close()
        old.close()


def test_task_management_and_logout_name_the_session_and_the_outcome(
    tmp_path: Path, log: pytest.LogCaptureFixture
) -> None:
    with LiveTarget(tmp_path) as target:
        ini = connect(target.address, HOST, TARGET)
        until_good(ini)
        who = ini.session_name
        assert ini.task_management(Tmf.LOGICAL_UNIT_RESET) == 0
        logged(log, f"task management: {who} LOGICAL_UNIT_RESET -> FUNCTION_COMPLETE")
        assert ini.task_management(Tmf.ABORT_TASK_SET) == 0
        logged(log, f"task management: {who} ABORT_TASK_SET -> FUNCTION_COMPLETE")
        assert ini.task_management(0x3F) == 5
        logged(log, f"task management: {who} function 0x3f -> "
                    "TASK_MANAGEMENT_FUNCTION_NOT_SUPPORTED")  # fmt: skip
        ini.logout()
        logged(log, f"logout: {who}")
        logged(log, f"I_T nexus loss: {who} (logout)")
    assert lines(log).count(f"I_T nexus loss: {who} (logout)") == 1  # not again at the close


@pytest.mark.parametrize("reset", [False, True], ids=["FIN", "RST"])
def test_a_dropped_connection_and_a_stopping_target_are_each_one_nexus_loss(
    tmp_path: Path, log: pytest.LogCaptureFixture, reset: bool
) -> None:
    """A host that closes, or crashes (RST: the target's read fails, which ends the stream
    as well), is one closed connection and one nexus loss."""
    with LiveTarget(tmp_path) as target:
        dropped = connect(target.address, HOST, TARGET)
        who = dropped.session_name
        if reset:  # linger 0: the close sends RST
            dropped.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        dropped.close()
        logged(log, f"connection closed: {who}: the initiator closed the connection")
        logged(log, f"I_T nexus loss: {who} (the initiator closed the connection)")
        kept = connect(target.address, HOST, TARGET, isid=ISID + 1)
        kept_name = kept.session_name
        logged(log, f"login: {kept_name} (Normal session, header None, data None digest)")
    kept.close()
    assert f"I_T nexus loss: {kept_name} (target stopping)" in lines(log)
    assert lines(log).count(f"I_T nexus loss: {who} (the initiator closed the connection)") == 1


def test_a_refused_login_says_who_and_how_full_the_target_is(
    tmp_path: Path, log: pytest.LogCaptureFixture
) -> None:
    with LiveTarget(tmp_path, max_sessions=1) as target:
        first = connect(target.address, HOST, TARGET)
        second = Initiator(target.address, "iqn.2024-01.test:host-b")
        assert second.login(TARGET).status == LoginStatus.OUT_OF_RESOURCES
        host, port = second.sock.getsockname()[:2]  # the address as asyncio gives it
        logged(log, f"refusing a login from ('{host}', {port}): 1 sessions open "
                    "(--max-sessions 1)")  # fmt: skip
        first.close()
        second.close()


def test_an_internal_error_names_the_peer_and_its_cause(
    tmp_path: Path, log: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: object, event: object) -> None:
        raise RuntimeError("broken on purpose")

    monkeypatch.setattr(handler_module.ConnectionHandler, "_apply", broken)
    with LiveTarget(tmp_path) as target:
        ini = connect(target.address, HOST, TARGET)
        who = ini.session_name
        with pytest.raises((TargetGone, OSError)):  # no answer: the session ends instead
            ini.task_management(Tmf.LOGICAL_UNIT_RESET)
        logged(log, f"{ini.peer}: internal error")
        logged(log, f"I_T nexus loss: {who} (internal error)")
        logged(log, f"connection closed: {who}: internal error")
    peer = ini.peer
    ini.close()
    error_logged(log, f"{peer}: internal error", "broken on purpose")


def test_failed_lu_work_nobody_waits_for_is_logged_with_its_cause(
    tmp_path: Path, log: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A login's attach runs on the worker without a waiter: its failure would vanish."""

    def broken(self: object, nexus: object) -> None:
        raise RuntimeError("attach broken on purpose")

    monkeypatch.setattr(ServedLUs, "attach", broken)
    with LiveTarget(tmp_path) as target:
        ini = connect(target.address, HOST, TARGET)
        logged(log, "LU work failed")
        ini.close()
    error_logged(log, "LU work failed", "attach broken on purpose")


def test_a_failed_login_names_the_peer_the_error_and_why(
    tmp_path: Path, log: pytest.LogCaptureFixture
) -> None:
    policy = ChapPolicy(ChapCredentials("host-a-user", b"host-a-secret-1"))
    with LiveTarget(tmp_path, chap=policy) as target:
        ini = Initiator(target.address, HOST)
        assert ini.login(TARGET, chap=Chap("host-a-user", b"wrong-secret-1")).status != 0
        why = "AUTHENTICATION_FAILURE: CHAP response of 'host-a-user' does not match"
        logged(log, f"{ini.peer}: LoginFailed: {why}")
        logged(log, f"connection closed: {ini.peer}: login failed: {why}")
        (record,) = [r for r in log.records if "LoginFailed" in r.getMessage()]
        assert record.levelno == logging.WARNING
        ini.close()


def test_too_many_connections_not_logged_in_close_the_oldest_and_say_so(
    tmp_path: Path, log: pytest.LogCaptureFixture
) -> None:
    with LiveTarget(tmp_path) as target:
        silent = [socket.create_connection(target.address) for _ in range(MAX_LOGINS_PENDING)]
        try:
            until(lambda: target.connections() == MAX_LOGINS_PENDING, 30,
                  "the target did not see them all")  # fmt: skip
            silent.append(socket.create_connection(target.address))
            oldest = peer_name(silent[0].getsockname())
            logged(log, f"closing {oldest}: {MAX_LOGINS_PENDING} connections not logged in")
            logged(log, f"connection closed: {oldest}: too many connections not logged in")
            (record,) = [r for r in log.records if r.getMessage().startswith("closing ")]
            assert record.levelno == logging.WARNING
        finally:
            for s in silent:
                s.close()


def test_each_connection_is_logged_at_debug_with_its_peer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger=LOGGER), LiveTarget(tmp_path) as target:
        ini = Initiator(target.address, HOST)
        logged(caplog, f"connection from {ini.peer}")
        (record,) = [r for r in caplog.records if r.getMessage().startswith("connection from")]
        assert record.levelno == logging.DEBUG
        ini.close()


def test_a_handler_that_dies_of_a_bug_still_ends_its_session_as_a_nexus_loss(
    tmp_path: Path, log: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read loop's own failure (here the codec raising) is a bug, reported by the loop;
    the session still ends as an I_T nexus loss with a reason, and the socket is closed."""
    with LiveTarget(tmp_path) as target:
        ini = connect(target.address, HOST, TARGET)
        who = ini.session_name

        def broken(self: object, data: bytes) -> None:
            raise RuntimeError("codec broken on purpose")

        monkeypatch.setattr(TargetConnection, "receive_data", broken)
        with pytest.raises((TargetGone, OSError)):
            ini.command(cdb.test_unit_ready())
        logged(log, f"I_T nexus loss: {who} (connection handler stopped)")
        until(lambda: bool(target.unhandled), 30, "the loop never reported the failure")
        assert [str(c.get("exception")) for c in target.unhandled] == ["codec broken on purpose"]
        target.unhandled.clear()  # reported, and expected
    ini.close()
