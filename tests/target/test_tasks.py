"""Task management, the CmdSN window and writes waiting for data, through a ``TargetConnection``
(RFC 7143 4.2.2, 11.5/11.6; RFC 3720 6.3)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from wire import READ_10, SETTINGS, WRITE_10, Initiator, abort_task

from scsi_pr.target.proto import (
    ReadyToTransfer,
    Reject,
    RejectReason,
    ScsiCommand,
    ScsiDataIn,
    ScsiDataOut,
    TaskManagementFunction,
    TaskManagementFunctionRequest,
    TaskManagementFunctionResponse,
    TaskManagementResponseCode,
)
from scsi_pr.target.proto.events import CommandReceived, ConnectionClosed, TaskManagementReceived


def test_abort_task_of_a_write_still_collecting() -> None:
    ini = Initiator(InitialR2T="Yes")
    ini.login()
    ini.command(2, WRITE_10, 8192, write=True)
    ini.send(TaskManagementFunctionRequest(function=TaskManagementFunction.ABORT_TASK,
                                           initiator_task_tag=3, referenced_task_tag=2,
                                           cmd_sn=101))  # fmt: skip
    event = ini.last(TaskManagementReceived)
    assert event.aborted == (2,) and event.function == TaskManagementFunction.ABORT_TASK
    ini.conn.complete_task_management(3, TaskManagementResponseCode.FUNCTION_COMPLETE)
    (response,) = ini.pull()
    assert isinstance(response, TaskManagementFunctionResponse) and response.response == 0
    assert ini.conn.session is not None and ini.conn.session.tasks == []


def test_abort_task_of_a_write_handed_out_is_left_to_the_lu() -> None:
    """A write whose data all came is no longer collecting: the LU's side aborts it (its
    flight), and the session keeps it until then."""
    ini = Initiator()
    ini.login()
    ini.command(2, WRITE_10, 512, write=True, data=b"x" * 512)
    assert ini.last(CommandReceived).initiator_task_tag == 2
    abort_task(ini, 2, 100, answered=False)
    assert ini.last(TaskManagementReceived).aborted == ()
    assert ini.conn.session is not None and sorted(ini.conn.session.tasks) == [2, 92]
    ini.conn.abort_command(2)
    assert ini.conn.session.tasks == [92]


def stalling_initiator(timeout: float) -> tuple[Initiator, int]:
    """Logged in, with a write waiting for 1024 bytes after its R2T; and the R2T's TTT."""
    ini = Initiator(settings=replace(SETTINGS, data_out_timeout=timeout), InitialR2T="Yes")
    ini.login()
    (r2t,) = ini.command(2, WRITE_10, 1024, write=True)
    assert isinstance(r2t, ReadyToTransfer)
    return ini, r2t.target_transfer_tag


def test_a_write_whose_data_stop_coming_ends_the_connection() -> None:
    """ErrorRecoveryLevel 0 cannot recover a lost Data-Out: after ``data_out_timeout`` with
    none, the connection ends (as LIO's dataout_timeout does); each Data-Out restarts it."""
    ini, ttt = stalling_initiator(3.0)
    ini.tick(1.0)
    ini.tick(3.9)
    assert not ini.conn.should_close
    ini.send(ScsiDataOut(initiator_task_tag=2, target_transfer_tag=ttt, data=b"x" * 512))
    ini.tick(4.5)
    (reject,) = ini.send(ScsiDataOut(initiator_task_tag=77, target_transfer_tag=ttt, data=b"y"))
    assert isinstance(reject, Reject)  # a Data-Out for no write is no progress
    ini.tick(7.4)
    assert not ini.conn.should_close
    ini.tick(7.5)
    assert ini.conn.should_close
    closed = ini.last(ConnectionClosed)
    assert "Data-Out" in closed.reason and not closed.clean


def test_every_data_out_restarts_the_data_out_timeout() -> None:
    ini, ttt = stalling_initiator(3.0)
    for offset, now in ((0, 2.0), (256, 4.5), (512, 7.0)):
        ini.send(ScsiDataOut(initiator_task_tag=2, target_transfer_tag=ttt, buffer_offset=offset,
                             data=b"x" * 256))  # fmt: skip
        ini.tick(now)
    ini.tick(9.9)
    assert not ini.conn.should_close
    ini.tick(10.0)
    assert ini.conn.should_close


def test_a_write_handed_to_the_lu_is_not_waiting_for_data() -> None:
    ini, ttt = stalling_initiator(3.0)
    ini.send(ScsiDataOut(final=True, initiator_task_tag=2, target_transfer_tag=ttt,
                         data=b"x" * 1024))  # fmt: skip
    assert ini.last(CommandReceived).initiator_task_tag == 2
    ini.tick(1.0)
    ini.tick(9.0)  # the LU takes its time; the initiator has nothing more to send
    assert not ini.conn.should_close


def test_reused_task_tag_is_task_in_progress() -> None:
    ini = Initiator(InitialR2T="Yes")
    ini.login()
    ini.command(2, WRITE_10, 512, write=True)
    (reject,) = ini.command(2, READ_10, 512, read=True)
    assert isinstance(reject, Reject) and reject.reason == RejectReason.TASK_IN_PROGRESS
    # RFC 3720 6.3: the rejected command's CmdSN (101) is not received; the next waits for it
    assert reject.exp_cmd_sn == 101
    assert ini.command(4, READ_10, 512, read=True) == []
    ini.cmd_sn = 101
    ini.command(3, READ_10, 512, read=True)  # the gap plugged by sending CmdSN 101 again
    received = [e.initiator_task_tag for e in ini.events if isinstance(e, CommandReceived)]
    assert received == [3, 4]


def test_abort_task_of_a_lost_command_closes_its_cmd_sn_gap() -> None:
    """RFC 7143 11.6.1 b: RefCmdSN in the window, before the function's own CmdSN."""
    ini = Initiator()
    ini.login()
    ini.cmd_sn = 101  # CmdSN 100 (ITT 1) never reached the target
    ini.command(2, READ_10, 512, read=True)
    assert not any(isinstance(e, CommandReceived) for e in ini.events)
    response = abort_task(ini, 1, 100)
    assert response.response == TaskManagementResponseCode.FUNCTION_COMPLETE
    assert ini.last(CommandReceived).initiator_task_tag == 2
    assert not any(isinstance(e, TaskManagementReceived) for e in ini.events)


@pytest.mark.parametrize(
    ("ref_cmd_sn", "why"),
    [(99, "before ExpCmdSN"), (108, "past MaxCmdSN"), (102, "not before the function's CmdSN")],
)
def test_abort_task_of_an_unknown_task_outside_the_window(ref_cmd_sn: int, why: str) -> None:
    """RFC 7143 11.6.1 c: "Task does not exist", and the gap stays."""
    ini = Initiator()
    ini.login()
    ini.cmd_sn = 101
    ini.command(2, READ_10, 512, read=True)
    response = abort_task(ini, 1, ref_cmd_sn)
    assert response.response == TaskManagementResponseCode.TASK_DOES_NOT_EXIST, why
    assert response.exp_cmd_sn == 100
    assert not any(isinstance(e, CommandReceived) for e in ini.events)


def test_abort_task_of_a_command_waiting_behind_a_gap() -> None:
    """RFC 7143 11.6.1 a: it exists, so it is aborted (never run, no response) and its CmdSN
    counts as received when the gap before it closes."""
    ini = Initiator()
    ini.login()
    ini.cmd_sn = 101
    ini.command(2, READ_10, 512, read=True)
    response = abort_task(ini, 2, 101)
    assert response.response == TaskManagementResponseCode.FUNCTION_COMPLETE
    ini.cmd_sn = 100
    ini.command(1, READ_10, 512, read=True)
    assert [e.initiator_task_tag for e in ini.events if isinstance(e, CommandReceived)] == [1]
    ini.conn.complete_command(1, 0, data=bytes(512))
    (data_in,) = ini.pull()
    assert isinstance(data_in, ScsiDataIn) and data_in.exp_cmd_sn == 102


def test_aborted_command_gets_no_reply_and_frees_its_slot() -> None:
    ini = Initiator()
    ini.login()
    ini.command(1, READ_10, 512, read=True)
    ini.conn.abort_command(1)  # a task management function aborted it while it ran
    assert ini.pull() == [] and ini.conn.session is not None and ini.conn.session.tasks == []
    ini.command(1, READ_10, 512, read=True)  # the ITT is free again
    ini.conn.complete_command(1, 0, data=bytes(512))
    (pdu,) = ini.pull()
    assert isinstance(pdu, ScsiDataIn) and pdu.max_cmd_sn == 109  # two slots opened


LUN_3 = 3 << 48  # single level, peripheral addressing


def _held_reads(ini: Initiator, *luns: int) -> None:
    """CmdSN 100 lost: reads numbered 101, 102, ... (ITT 11, 12, ...) on ``luns`` wait."""
    ini.cmd_sn = 101
    for n, lun in enumerate(luns, start=1):
        ini.send(ScsiCommand(read=True, lun=lun, initiator_task_tag=10 + n, cmd_sn=ini.cmd_sn,
                             expected_data_transfer_length=512, cdb=READ_10))  # fmt: skip
        ini.cmd_sn += 1
    assert not any(isinstance(e, CommandReceived) for e in ini.events)


def _received(ini: Initiator) -> list[int]:
    return [e.initiator_task_tag for e in ini.events if isinstance(e, CommandReceived)]


@pytest.mark.parametrize(
    ("function", "lun", "aborted"),
    [
        (TaskManagementFunction.ABORT_TASK_SET, LUN_3, (12,)),
        (TaskManagementFunction.CLEAR_TASK_SET, 0, (11, 13)),
        (TaskManagementFunction.LOGICAL_UNIT_RESET, LUN_3, (12,)),
        (TaskManagementFunction.TARGET_WARM_RESET, 0, (11, 12, 13)),
    ],
)
def test_a_function_aborts_the_commands_it_covers_waiting_behind_a_gap(
    function: int, lun: int, aborted: tuple[int, ...]
) -> None:
    """RFC 7143 11.5.1: it acts on every command of the session with a lower CmdSN, the ones
    held behind a CmdSN gap too. They never run and get no response; the others run once
    the gap closes, in CmdSN order."""
    ini = Initiator()
    ini.login()
    _held_reads(ini, 0, LUN_3, 0)
    ini.send(TaskManagementFunctionRequest(immediate=True, function=function, lun=lun,
                                           initiator_task_tag=9, cmd_sn=ini.cmd_sn))  # fmt: skip
    assert ini.last(TaskManagementReceived).aborted == aborted
    ini.conn.complete_task_management(9, TaskManagementResponseCode.FUNCTION_COMPLETE)
    ini.pull()
    ini.cmd_sn = 100
    ini.command(10, READ_10, 512, read=True)
    assert _received(ini) == [10] + [itt for itt in (11, 12, 13) if itt not in aborted]


def test_a_command_numbered_after_the_function_is_not_covered() -> None:
    """Only commands with a CmdSN lower than the function's: one at or after it came later."""
    ini = Initiator()
    ini.login()
    _held_reads(ini, LUN_3, LUN_3)  # CmdSN 101 and 102
    ini.send(TaskManagementFunctionRequest(immediate=True, lun=LUN_3, initiator_task_tag=9,
                                           function=TaskManagementFunction.ABORT_TASK_SET,
                                           cmd_sn=102))  # fmt: skip
    assert ini.last(TaskManagementReceived).aborted == (11,)
    ini.cmd_sn = 100
    ini.command(10, READ_10, 512, read=True)
    assert _received(ini) == [10, 12]


def test_another_sessions_function_aborts_the_commands_held_on_its_lun() -> None:
    ini = Initiator()
    ini.login()
    _held_reads(ini, 0, LUN_3)
    assert ini.conn.abort_collecting(3) == [12]
    assert ini.conn.abort_collecting(3) == []
    ini.cmd_sn = 100
    ini.command(10, READ_10, 512, read=True)
    assert _received(ini) == [10, 11]
