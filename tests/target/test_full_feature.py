"""Full feature phase field by field: what each reply carries, which StatSN it takes, what a
task management function or a logout covers. Each test pins decisions the end-to-end tests pass
through without looking (mutation testing of ``target/proto`` named them). The connection once
it is closing, and what each refusal, timeout and error says: test_full_feature_errors.py."""

from __future__ import annotations

from dataclasses import replace

import pytest
from wire import (
    INITIATOR,
    READ_10,
    SETTINGS,
    TARGET,
    WRITE_10,
    Initiator,
    abort_task,
    logged_in,
    nop,
    pairs,
    send_data,
    write,
)

from scsi_pr.sim.constants import INSUFFICIENT_RESOURCES, SenseKey
from scsi_pr.sim.result import fixed_sense
from scsi_pr.target.proto import (
    LogoutRequest,
    LogoutResponse,
    NopIn,
    NopOut,
    ReadyToTransfer,
    Reject,
    RejectReason,
    ScsiCommand,
    ScsiDataOut,
    ScsiResponse,
    SnackRequest,
    TaskManagementFunction,
    TaskManagementFunctionRequest,
    TaskManagementFunctionResponse,
    TaskManagementResponseCode,
    TextRequest,
    TextResponse,
    encode_pdu,
)
from scsi_pr.target.proto.constants import LogoutReason, LogoutResponseCode
from scsi_pr.target.proto.errors import LocalProtocolError
from scsi_pr.target.proto.events import (
    CommandReceived,
    LogoutReceived,
    Rejected,
    TaskManagementReceived,
)
from scsi_pr.target.proto.login import TargetNode
from scsi_pr.target.proto.text import parse_text

LUN_3 = 3 << 48  # single level, peripheral addressing
CLOSED_SUCCESSFULLY = LogoutResponseCode.CONNECTION_OR_SESSION_CLOSED_SUCCESSFULLY


# -- R2T, the command handed out, the response --------------------------------------------------
def test_an_r2t_names_its_task_and_carries_stat_sn_without_taking_it() -> None:
    ini = logged_in()
    (r2t,) = write(ini, 2, 1024, lun=LUN_3)
    assert isinstance(r2t, ReadyToTransfer)
    assert (r2t.lun, r2t.initiator_task_tag, r2t.r2t_sn) == (LUN_3, 2, 0)
    assert (r2t.buffer_offset, r2t.desired_data_transfer_length) == (0, 1024)
    assert (r2t.stat_sn, r2t.exp_cmd_sn, r2t.max_cmd_sn) == (1, 101, 107)
    session = ini.conn.session
    assert session is not None and r2t.target_transfer_tag in session.tags
    ttt = r2t.target_transfer_tag
    ini.send(ScsiDataOut(final=True, lun=LUN_3, initiator_task_tag=2, target_transfer_tag=ttt,
                         data=b"w" * 1024))  # fmt: skip
    event = ini.last(CommandReceived)
    assert (event.lun, event.lun_field, event.cdb) == (3, LUN_3, WRITE_10)
    assert (event.read, event.write, event.immediate) == (False, True, False)
    assert (event.expected_data_transfer_length, event.attributes) == (1024, 1)
    ini.conn.complete_command(2, 0)
    (response,) = ini.pull()
    assert isinstance(response, ScsiResponse) and response.stat_sn == 1  # the R2T took none
    assert response.data == b""  # no sense
    assert r2t.target_transfer_tag not in session.tags  # released with the task


def test_a_write_larger_than_the_target_buffers_is_refused_with_its_sense() -> None:
    ini = Initiator(settings=replace(SETTINGS, max_write_length=4096))
    ini.login()
    (r2t,) = write(ini, 2, 4096)
    assert isinstance(r2t, ReadyToTransfer)  # exactly the limit: taken
    (refused,) = write(ini, 3, 4097)
    assert isinstance(refused, ScsiResponse) and refused.initiator_task_tag == 3
    assert refused.status == 0x02
    assert refused.data[2:] == fixed_sense(SenseKey.ILLEGAL_REQUEST, INSUFFICIENT_RESOURCES)
    assert (refused.stat_sn, refused.exp_cmd_sn, refused.max_cmd_sn) == (1, 102, 108)
    assert nop(ini).stat_sn == 2  # one StatSN each


def test_read_data_sense_and_residuals() -> None:
    ini = logged_in()
    ini.command(2, READ_10, 4096, read=True)
    assert ini.last(CommandReceived).data == b""  # a read carries no data out
    ini.conn.complete_command(2, 0x02, data=b"r" * 1024, sense=b"\x70" + bytes(17))
    *data_in, response = ini.pull()
    assert [len(p.data) for p in data_in] == [1024]
    assert isinstance(response, ScsiResponse) and response.data[2:] == b"\x70" + bytes(17)
    assert response.residual_underflow and response.residual_count == 3072
    write(ini, 3, 0)  # nothing to write: handed out at once
    ini.conn.complete_command(3, 0, data=b"ignored")  # data for a command that reads nothing
    (response,) = ini.pull()
    assert isinstance(response, ScsiResponse) and response.data == b""
    send_data(ini, 4, write(ini, 4, 2048), 2048)
    ini.conn.complete_command(4, 0, transferred=512)
    (response,) = ini.pull()
    assert response.residual_underflow and response.residual_count == 1536
    ini.command(5, READ_10, 512, read=True)
    ini.conn.complete_command(5, 0x18)  # a read that moved nothing
    (response,) = ini.pull()
    assert isinstance(response, ScsiResponse) and response.status == 0x18
    assert response.residual_underflow and response.residual_count == 512
    send_data(ini, 6, write(ini, 6, 512), 512)
    ini.conn.complete_command(6, 0, data=b"ignored")  # a write that used what it got
    (response,) = ini.pull()  # no Data-In: the command reads nothing; no residual
    assert isinstance(response, ScsiResponse) and response.data == b""
    assert not response.residual_underflow and response.residual_count == 0


@pytest.mark.parametrize("call", ["complete_command", "abort_command", "complete_task_management"])
def test_answering_a_task_that_is_not_there_is_a_local_error(call: str) -> None:
    ini = logged_in()
    nop(ini)
    session = ini.conn.session
    assert session is not None
    args: tuple = (99, 0) if call != "abort_command" else (99,)
    with pytest.raises(LocalProtocolError, match="ITT 0x63"):
        getattr(session, call)(*args)
    write(ini, 7, 0)  # a SCSI command, not a function: the wrong kind of task
    abort = TaskManagementFunctionRequest(function=TaskManagementFunction.ABORT_TASK_SET,
                                          initiator_task_tag=8, cmd_sn=ini.cmd_sn)  # fmt: skip
    ini.send(abort)
    other = {"complete_command": 8, "abort_command": 8, "complete_task_management": 7}[call]
    with pytest.raises(LocalProtocolError):
        getattr(session, call)(*((other, 0) if call != "abort_command" else (other,)))


# -- NOP-In ----------------------------------------------------------------------------------------
def test_nop_in_echoes_the_lun_and_carries_the_window() -> None:
    ini = logged_in()
    (nop_in,) = ini.send(NopOut(lun=LUN_3, initiator_task_tag=9, cmd_sn=100, exp_stat_sn=1))
    assert isinstance(nop_in, NopIn) and nop_in.lun == LUN_3
    assert (nop_in.stat_sn, nop_in.exp_cmd_sn, nop_in.max_cmd_sn) == (1, 101, 108)
    session = ini.conn.session
    assert session is not None and session.status.exp_stat_sn == 1
    ini.send(NopOut(immediate=True, initiator_task_tag=10, cmd_sn=101, exp_stat_sn=2))
    assert session.status.exp_stat_sn == 2  # the initiator acknowledged StatSN 1


def test_a_ping_carries_stat_sn_without_taking_it_and_its_echo_frees_its_tag() -> None:
    ini = logged_in()
    ini.tick(1.0)
    (ping,) = ini.tick(11.0)
    assert isinstance(ping, NopIn) and ping.initiator_task_tag == 0xFFFFFFFF
    assert (ping.stat_sn, ping.exp_cmd_sn, ping.max_cmd_sn) == (1, 100, 107)
    session = ini.conn.session
    assert session is not None and ping.target_transfer_tag in session.tags
    (reject,) = ini.send(NopOut(immediate=True, target_transfer_tag=ping.target_transfer_tag + 1))
    assert isinstance(reject, Reject) and reject.reason == RejectReason.INVALID_PDU_FIELD
    assert ini.send(NopOut(immediate=True, target_transfer_tag=ping.target_transfer_tag)) == []
    assert session.ping is None and ping.target_transfer_tag not in session.tags
    assert nop(ini).stat_sn == 2  # the Reject took one StatSN, the ping none


def test_an_idle_initiator_is_pinged_a_full_interval_after_its_last_bytes() -> None:
    """Activity is whatever arrives (NOP-Outs included), measured at the tick after it."""
    ini = logged_in()
    ini.tick(1.0)
    nop(ini)
    ini.tick(5.0)
    assert ini.tick(14.9) == []
    (ping,) = ini.tick(15.0)
    assert isinstance(ping, NopIn)
    ini.tick(19.9)
    assert not ini.conn.should_close  # 4.9 s of the 5 s it gets
    ini.tick(20.0)
    assert ini.conn.should_close


def test_the_login_timeout_counts_from_the_connection() -> None:
    ini = Initiator(target={"now": 100.0})
    ini.tick(129.9)
    assert not ini.conn.should_close
    ini.tick(130.0)
    assert ini.conn.should_close


# -- task management ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("function", "lun", "rtt", "aborted"),
    [
        (TaskManagementFunction.ABORT_TASK, 0, 3, (3,)),
        (TaskManagementFunction.ABORT_TASK_SET, LUN_3, 0xFFFFFFFF, (3,)),
        (TaskManagementFunction.CLEAR_TASK_SET, 0, 0xFFFFFFFF, (2,)),
        (TaskManagementFunction.LOGICAL_UNIT_RESET, LUN_3, 0xFFFFFFFF, (3,)),
        (TaskManagementFunction.TARGET_WARM_RESET, 0, 0xFFFFFFFF, (2, 3)),
        (TaskManagementFunction.TARGET_COLD_RESET, LUN_3, 0xFFFFFFFF, (2, 3)),
    ],
)
def test_each_function_ends_the_collecting_writes_it_covers(
    function: int, lun: int, rtt: int, aborted: tuple[int, ...]
) -> None:
    ini = logged_in()
    write(ini, 2, 1024)
    write(ini, 3, 1024, lun=LUN_3)
    ini.send(TaskManagementFunctionRequest(function=function, lun=lun, initiator_task_tag=9,
                                           referenced_task_tag=rtt, cmd_sn=ini.cmd_sn))  # fmt: skip
    event = ini.last(TaskManagementReceived)
    assert (event.function, event.lun, event.referenced_task_tag) == (function, lun >> 48, rtt)
    assert event.aborted == aborted
    session = ini.conn.session
    assert session is not None and sorted(session.tasks) == sorted({2, 3, 9} - set(aborted))
    ini.conn.complete_task_management(9, TaskManagementResponseCode.FUNCTION_COMPLETE)
    (response,) = ini.pull()
    assert isinstance(response, TaskManagementFunctionResponse)
    assert response.initiator_task_tag == 9 and response.response == 0


def test_another_sessions_reset_ends_the_writes_on_its_lun() -> None:
    ini = logged_in()
    write(ini, 2, 1024)
    write(ini, 3, 1024, lun=LUN_3)
    assert ini.conn.abort_collecting(3) == [3]
    assert ini.conn.abort_collecting(5) == []
    assert ini.conn.abort_collecting(None) == [2]
    write(ini, 4, 1024)
    ini.conn.close("done")
    assert ini.conn.abort_collecting(None) == []
    assert ini.conn.session is not None and 4 in ini.conn.session.tasks


def test_task_reassign_is_not_supported_at_error_recovery_level_0() -> None:
    ini = logged_in()
    reassign = TaskManagementFunction.TASK_REASSIGN
    (response,) = ini.send(TaskManagementFunctionRequest(function=reassign, initiator_task_tag=4,
                                                         cmd_sn=100))  # fmt: skip
    assert isinstance(response, TaskManagementFunctionResponse) and response.initiator_task_tag == 4
    assert (
        response.response == TaskManagementResponseCode.TASK_ALLEGIANCE_REASSIGNMENT_NOT_SUPPORTED
    )


def test_a_rejected_request_carries_its_own_header() -> None:
    ini = logged_in()
    write(ini, 2, 1024)
    pdu = ScsiCommand(read=True, initiator_task_tag=2, cmd_sn=ini.cmd_sn, cdb=READ_10,
                      expected_data_transfer_length=512)  # fmt: skip
    (reject,) = ini.send(pdu)
    assert isinstance(reject, Reject) and reject.reason == RejectReason.TASK_IN_PROGRESS
    assert reject.data == encode_pdu(pdu)[:48]
    assert abort_task(ini, 7, 200).initiator_task_tag == 97


# -- text, logout, SNACK -------------------------------------------------------------------------
def test_text_keys_in_full_feature_phase_each_get_their_answer() -> None:
    ini = logged_in()
    keys = b"X-vendor=1\0MaxRecvDataSegmentLength=16777216\0SendTargets=\0HeaderDigest=CRC32C\0"
    (text,) = ini.send(TextRequest(initiator_task_tag=3, cmd_sn=100, data=keys))
    assert isinstance(text, TextResponse)
    assert parse_text(text.data) == (
        ("X-vendor", "NotUnderstood"),
        ("MaxRecvDataSegmentLength", "Reject"),  # past 2**24 - 1
        ("TargetName", TARGET),
        ("TargetAddress", "192.0.2.1:3260,1"),
        ("HeaderDigest", "Reject"),  # declared at login, not again
    )


def test_send_targets_hides_targets_the_initiator_may_not_see() -> None:
    hidden = TargetNode("iqn.2024-01.test:other", allowed_initiators=frozenset({"iqn.x:y"}))
    shown = TargetNode("iqn.2024-01.test:third", allowed_initiators=frozenset({INITIATOR}))
    login = replace(SETTINGS.login, targets=(*SETTINGS.login.targets, hidden, shown))
    ini = Initiator(settings=replace(SETTINGS, login=login))
    ini.login("Discovery")
    (text,) = ini.send(TextRequest(initiator_task_tag=3, cmd_sn=100, data=b"SendTargets=All\0"))
    names = [v for k, v in pairs(text.data) if k == "TargetName"]
    assert names == [TARGET, "iqn.2024-01.test:third"]


def test_a_long_text_answer_takes_a_transfer_tag_and_gives_it_back() -> None:
    many = tuple(TargetNode(f"iqn.2024-01.test:disk-{i:03}") for i in range(40))
    settings = replace(SETTINGS, login=replace(SETTINGS.login, targets=many))
    ini = Initiator(settings=settings, MaxRecvDataSegmentLength="512")
    ini.login("Discovery")
    (first,) = ini.send(TextRequest(initiator_task_tag=3, cmd_sn=100, data=b"SendTargets=All\0"))
    assert isinstance(first, TextResponse) and not first.final
    session = ini.conn.session
    assert session is not None and first.target_transfer_tag in session.tags
    answer, part = first.data, first
    for cmd_sn in range(101, 200):  # each Text Request takes a CmdSN of its own
        (part,) = ini.send(TextRequest(initiator_task_tag=3, cmd_sn=cmd_sn,
                                       target_transfer_tag=part.target_transfer_tag))  # fmt: skip
        answer += part.data
        if part.final:
            break
    assert len([k for k, _ in pairs(answer) if k == "TargetName"]) == 40
    assert first.target_transfer_tag not in session.tags


@pytest.mark.parametrize(
    ("reason", "cid", "code"),
    [
        (LogoutReason.CLOSE_THE_SESSION, 5, CLOSED_SUCCESSFULLY),
        (LogoutReason.CLOSE_THE_CONNECTION, 0, CLOSED_SUCCESSFULLY),
        (LogoutReason.CLOSE_THE_CONNECTION, 1, LogoutResponseCode.CID_NOT_FOUND),
        (LogoutReason.REMOVE_THE_CONNECTION_FOR_RECOVERY, 0,
         LogoutResponseCode.CONNECTION_RECOVERY_IS_NOT_SUPPORTED),
    ],
)  # fmt: skip
def test_logout_answers(reason: int, cid: int, code: int) -> None:
    ini = logged_in()
    (r2t,) = write(ini, 2, 1024)
    (response,) = ini.send(LogoutRequest(immediate=True, reason_code=reason, cid=cid,
                                         initiator_task_tag=7, cmd_sn=ini.cmd_sn))  # fmt: skip
    assert isinstance(response, LogoutResponse) and response.initiator_task_tag == 7
    assert response.response == code
    session = ini.conn.session
    assert session is not None
    done = code == CLOSED_SUCCESSFULLY
    assert (r2t.target_transfer_tag in session.tags) is not done  # a logout ends every task
    assert ini.conn.should_close is done
    if done:
        assert ini.last(LogoutReceived).reason == reason


def test_a_snack_is_rejected_at_error_recovery_level_0() -> None:
    ini = logged_in()
    (reject,) = ini.send(SnackRequest())
    assert isinstance(reject, Reject) and reject.reason == RejectReason.SNACK_REJECT
    assert isinstance(ini.last(Rejected).error, type(ini.last(Rejected).error))
