"""Logins through the live server: CHAP (one-way and mutual) with secrets the initiator
proves with its own MD5, a TSIH that asks to join a session, and a connection that never logs
in. The codec's login rules are tested without sockets (test_login.py, test_login_errors.py);
these pin what the server hands the codec: a random source, the live sessions, the clock."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from initiator import Chap, Initiator, connect, until_good
from live import TARGET, LiveTarget, until

from scsi_pr.sim import cdb
from scsi_pr.target.proto import ChapCredentials, ChapPolicy, LoginStatus
from scsi_pr.target.proto.text import parse_text

HOST = "iqn.2024-01.test:host-a"
USER, SECRET = "host-a-user", b"host-a-secret-1"
DISK, DISK_SECRET = "disk-user", b"disk-secret-22"
POLICY = ChapPolicy(ChapCredentials(USER, SECRET), ChapCredentials(DISK, DISK_SECRET))


@pytest.mark.parametrize("mutual", [False, True], ids=["one-way", "mutual"])
def test_a_chap_login_reaches_full_feature_phase(tmp_path: Path, mutual: bool) -> None:
    chap = Chap(USER, SECRET, (DISK, DISK_SECRET) if mutual else None)
    with LiveTarget(tmp_path, chap=POLICY) as target:
        ini = Initiator(target.address, HOST)
        assert ini.login(TARGET, chap=chap).status == 0
        until_good(ini)
        assert ini.command(cdb.test_unit_ready()).status == 0


def test_challenges_differ_from_login_to_login(tmp_path: Path) -> None:
    """A replayed response must not pass: the target draws each challenge afresh."""
    with LiveTarget(tmp_path, chap=POLICY) as target:
        challenges = set()
        for isid in (1, 2, 3):
            ini = Initiator(target.address, HOST, isid)
            first = ini.login_step(
                0,
                1,
                {
                    "InitiatorName": HOST,
                    "TargetName": TARGET,
                    "SessionType": "Normal",
                    "AuthMethod": "CHAP",
                },
                0,
            )
            assert first.status == 0
            offered = ini.login_step(0, 1, {"CHAP_A": "5"}, 0)
            challenges.add(dict(parse_text(offered.data))["CHAP_C"])
            ini.close()
        assert len(challenges) == 3


@pytest.mark.parametrize("chap", [
    Chap(USER, b"wrong-secret-1"),
    Chap("someone-else", SECRET),
    None,  # AuthMethod None to a target that needs CHAP
])  # fmt: skip
def test_a_login_that_fails_chap_fails_with_authentication_failure(
    tmp_path: Path, chap: Chap | None
) -> None:
    with LiveTarget(tmp_path, chap=POLICY) as target:
        ini = Initiator(target.address, HOST)
        assert ini.login(TARGET, chap=chap).status == LoginStatus.AUTHENTICATION_FAILURE


def test_a_login_naming_a_tsih_cannot_add_a_connection(tmp_path: Path) -> None:
    """MaxConnections is 1 (RFC 7143 11.13.5): the TSIH of a live session is TOO MANY
    CONNECTIONS, one nobody holds SESSION DOES NOT EXIST; the session named goes on."""
    with LiveTarget(tmp_path) as target:
        first = connect(target.address, HOST, TARGET)
        joining = Initiator(target.address, HOST)
        assert joining.login(TARGET, tsih=first.tsih).status == LoginStatus.TOO_MANY_CONNECTIONS
        stranger = Initiator(target.address, HOST)
        assert stranger.login(TARGET, tsih=0x4242).status == LoginStatus.SESSION_DOES_NOT_EXIST
        until_good(first)
        assert first.command(cdb.test_unit_ready()).status == 0


def test_a_connection_that_never_logs_in_is_closed_at_the_login_timeout(tmp_path: Path) -> None:
    with LiveTarget(tmp_path, login_timeout=1.0) as target:
        silent = socket.create_connection(target.address)
        until(lambda: target.connections() == 1, what="the target never saw the connection")
        until(lambda: target.connections() == 0,
              what="the silent connection was kept past its login timeout")  # fmt: skip
        silent.settimeout(10)
        assert silent.recv(1) == b""
        silent.close()


def test_a_slow_login_within_its_timeout_is_served(tmp_path: Path) -> None:
    """The login timeout counts from the connection: one that sends its first Login Request
    after a few of the target's ticks (one a second) still logs in."""
    with LiveTarget(tmp_path, login_timeout=60.0) as target:
        ini = Initiator(target.address, HOST)
        time.sleep(2.5)  # two ticks or more pass; far below the timeout
        assert ini.login(TARGET).status == 0
