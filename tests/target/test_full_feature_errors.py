"""Full feature phase at its edges: a closing connection, its limits, and what each error says."""

from __future__ import annotations

from dataclasses import replace

import pytest
from wire import INITIATOR, READ_10, SETTINGS, TARGET, Initiator, logged_in, send_data, write

from scsi_pr.target.proto import (
    LoginRequest,
    LoginResponse,
    NopIn,
    NopOut,
    Reject,
    RejectReason,
    ScsiCommand,
    ScsiDataOut,
    SnackRequest,
    TaskManagementFunction,
    TaskManagementFunctionRequest,
    TaskManagementResponseCode,
    encode_pdu,
)
from scsi_pr.target.proto.connection import ConnectionState
from scsi_pr.target.proto.constants import LoginStatus
from scsi_pr.target.proto.errors import RemoteProtocolError
from scsi_pr.target.proto.events import ConnectionClosed, Rejected
from scsi_pr.target.proto.login import LoginFailed, TargetNode
from scsi_pr.target.proto.text import parse_text


# -- the connection once it is closing -----------------------------------------------------------
def test_a_closing_connection_takes_no_more_answers_or_requests() -> None:
    ini = logged_in()
    ini.command(2, READ_10, 512, read=True)
    write(ini, 3, 0)
    ini.send(TaskManagementFunctionRequest(function=TaskManagementFunction.ABORT_TASK_SET,
                                           initiator_task_tag=4, cmd_sn=ini.cmd_sn))  # fmt: skip
    ini.conn.close("a newer login reinstated the session")
    ini.drain()
    assert ini.conn.state is ConnectionState.CLOSING
    assert ini.last(ConnectionClosed) == ConnectionClosed("a newer login reinstated the session")
    ini.conn.complete_command(2, 0, data=bytes(512))
    ini.conn.abort_command(3)
    ini.conn.complete_task_management(4, TaskManagementResponseCode.FUNCTION_COMPLETE)
    assert ini.send(NopOut(initiator_task_tag=9, cmd_sn=ini.cmd_sn)) == []
    session = ini.conn.session
    assert session is not None and sorted(session.tasks) == [2, 3, 4]


def test_a_failed_login_reports_why() -> None:
    ini = Initiator()
    from scsi_pr.target.proto import LoginRequest

    (response,) = ini.send(LoginRequest(transit=True, csg=1, nsg=3, data=b"TargetName=x\0"))
    rejected = ini.last(Rejected)
    assert isinstance(rejected.error, LoginFailed)
    assert rejected.error.status == LoginStatus.MISSING_PARAMETER == response.status


def test_the_window_is_the_configured_depth_and_immediate_commands_have_their_own_limit() -> None:
    settings = replace(SETTINGS, login=replace(SETTINGS.login, command_window=4), max_immediate=2)
    ini = Initiator(settings=settings)
    assert ini.login().max_cmd_sn == 103
    for itt in (1, 2):
        ini.command(itt, READ_10, 512, read=True, immediate=True)
    (reject,) = ini.command(3, READ_10, 512, read=True, immediate=True)
    assert isinstance(reject, Reject) and reject.reason == RejectReason.IMMEDIATE_COMMAND_REJECT


def test_a_new_login_naming_a_live_session_is_refused() -> None:
    """The edge's list of live sessions reaches the login: TSIH 7 is one, TSIH 8 is not."""
    from scsi_pr.target.proto import LoginRequest
    from scsi_pr.target.proto.text import build_text

    keys = build_text({"InitiatorName": INITIATOR, "TargetName": TARGET}.items())
    for tsih, status in ((7, LoginStatus.TOO_MANY_CONNECTIONS),
                         (8, LoginStatus.SESSION_DOES_NOT_EXIST)):  # fmt: skip
        ini = Initiator(target={"existing_sessions": (7,)})
        (response,) = ini.send(LoginRequest(transit=True, csg=1, nsg=3, isid=1, tsih=tsih,
                                            data=keys))  # fmt: skip
        assert response.status == status  # type: ignore[attr-defined]


def test_the_chap_challenge_comes_from_the_connections_random_source() -> None:
    from scsi_pr.target.proto import ChapCredentials, ChapPolicy, LoginRequest
    from scsi_pr.target.proto.text import build_text

    chap = ChapPolicy(ChapCredentials("host1", b"host1-secret"))
    node = TargetNode(TARGET, chap=chap)
    source = bytes(range(200, 256))
    ini = Initiator(settings=replace(SETTINGS, login=replace(SETTINGS.login, targets=(node,))),
                    target={"random_bytes": lambda n: source[:n]})  # fmt: skip
    keys = {"InitiatorName": INITIATOR, "TargetName": TARGET, "AuthMethod": "CHAP"}
    ini.send(LoginRequest(transit=True, csg=0, nsg=1, isid=1, data=build_text(keys.items())))
    (response,) = ini.send(LoginRequest(transit=True, csg=0, nsg=1, isid=1,
                                        data=build_text([("CHAP_A", "5")])))  # fmt: skip
    challenge = dict(parse_text(response.data))["CHAP_C"]  # type: ignore[attr-defined]
    assert bytes.fromhex(challenge[2:]) == source[: len(challenge[2:]) // 2]


def test_a_data_out_timer_starts_afresh_for_the_next_write() -> None:
    """Between two writes no write waits: the second one's wait is its own."""
    ini = logged_in()
    (r2t,) = write(ini, 2, 512)
    ini.tick(1.0)
    send_data(ini, 2, [r2t], 512)
    ini.tick(2.0)  # nothing waits now
    ini.conn.complete_command(2, 0)
    write(ini, 3, 512)
    ini.tick(20.0)
    ini.tick(49.9)
    assert not ini.conn.should_close
    ini.tick(50.0)
    assert ini.conn.should_close


@pytest.mark.parametrize(
    ("pdu", "reason"),
    [
        (SnackRequest(), "SnackRequest is not taken"),
        (ScsiCommand(read=True, initiator_task_tag=2, cmd_sn=101, cdb=READ_10,
                     expected_data_transfer_length=512), "ITT 0x2 is in use"),
        (TaskManagementFunctionRequest(function=TaskManagementFunction.ABORT_TASK_SET,
                                       initiator_task_tag=2), "ITT 0x2 is in use"),
        (ScsiCommand(read=True, initiator_task_tag=4, cmd_sn=101, cdb=READ_10, data=b"x",
                     expected_data_transfer_length=512),
         "immediate data with a command that writes nothing"),
        (ScsiDataOut(initiator_task_tag=9, data=b"x"), "Data-Out for no write (ITT 0x9)"),
        (NopOut(immediate=True, target_transfer_tag=5), "NOP-Out echoes TTT 0x5"),
    ],
)  # fmt: skip
def test_each_refusal_says_why(pdu: object, reason: str) -> None:
    ini = logged_in()
    write(ini, 2, 1024)
    (reject,) = ini.send(pdu)  # type: ignore[arg-type]
    assert isinstance(reject, Reject)
    assert str(ini.last(Rejected).error) == reason


def test_a_discovery_session_says_why_it_takes_no_command() -> None:
    ini = Initiator()
    ini.login("Discovery")
    ini.command(2, READ_10, 512, read=True)
    assert str(ini.last(Rejected).error) == "a discovery session takes only Text and Logout (13.21)"


def test_timeouts_say_which() -> None:
    ini = Initiator()
    ini.tick(30.0)
    assert ini.last(ConnectionClosed).reason == "login not complete within 30.0 s"
    ini = logged_in()
    ini.tick(1.0)
    ini.tick(11.0)
    ini.tick(16.0)
    assert ini.last(ConnectionClosed).reason == "no NOP-Out answered our ping within 5 s"


def _with_ahs(pdu: bytes) -> bytes:
    """``pdu`` with a 4-byte Additional Header Segment no Login Request may carry."""
    return pdu[:4] + b"\x01" + pdu[5:48] + bytes(4) + pdu[48:]


@pytest.mark.parametrize(
    ("wire", "status", "reason"),
    [
        (b"\x1c" + encode_pdu(NopOut())[1:], LoginStatus.INVALID_DURING_LOGIN,
         "login failed: INVALID_DURING_LOGIN: opcode 0x1c is not defined"),
        (encode_pdu(NopIn()), LoginStatus.INVALID_DURING_LOGIN,
         "login failed: INVALID_DURING_LOGIN: Opcode.NOP_IN is not sent by the peer"),
        (encode_pdu(NopOut()), LoginStatus.INVALID_DURING_LOGIN,
         "login failed: INVALID_DURING_LOGIN: NopOut"),
        (_with_ahs(encode_pdu(LoginRequest())), LoginStatus.INITIATOR_ERROR,
         "login failed: INITIATOR_ERROR: LoginRequest carries no Additional Header Segment"),
        (encode_pdu(LoginRequest(data=b"a=b\0" * 3000)), None,
         "login failed: data segment of 12000 bytes exceeds MaxRecvDataSegmentLength 8192"),
    ],
)  # fmt: skip
def test_protocol_errors_during_login_fail_it(wire: bytes, status: int | None, reason: str) -> None:
    """No Reject during login (11.13.5): a Login Response with the status the error calls for,
    none when the stream itself cannot be trusted (the connection just closes)."""
    ini = Initiator()
    out = ini.send_bytes(wire)
    if status is None:
        assert out == []
    else:
        (response,) = out
        assert isinstance(response, LoginResponse) and response.status == status
        assert response.stat_sn == 0  # before any request named an ExpStatSN
    assert isinstance(ini.last(Rejected).error, RemoteProtocolError)
    assert ini.last(ConnectionClosed).reason == reason and ini.conn.should_close


def test_an_error_that_ends_the_connection_says_so() -> None:
    ini = logged_in()
    ini.send(NopOut(immediate=True, initiator_task_tag=1, data=b"x" * 70000))
    assert ini.last(ConnectionClosed).reason.startswith("protocol error: data segment of 70000")


def test_a_lost_data_out_for_no_write_is_rejected_once_and_reported_twice() -> None:
    """Its data digest failed, and it named no write either: one Reject on the wire, both
    errors in the events."""
    ini = Initiator(digests=True)
    ini.login()
    wire = bytearray(encode_pdu(ScsiDataOut(initiator_task_tag=77, data=b"x" * 64),
                                header_digest=True, data_digest=True))  # fmt: skip
    wire[60] ^= 1
    (reject,) = ini.send_bytes(bytes(wire))
    assert isinstance(reject, Reject) and reject.reason == RejectReason.DATA_DIGEST_ERROR
    errors = [type(e.error).__name__ for e in ini.events if isinstance(e, Rejected)]
    assert errors == ["DataDigestError", "UnknownTransfer"]
