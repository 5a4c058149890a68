"""Task management on the live target, with commands in flight: which tasks each function
ends, that it answers only once they have settled, and who is told.

Commands are held in flight by locking LUN 0 as another process sharing the state dir would
(``locked_elsewhere``): the first command on it waits on the target's worker thread for the
lock, every later command of any session and LUN queues behind it in arrival order. A command
the worker is running when it is aborted completes on the model (only its answer is dropped);
one that has not started never runs (``target.task_management``). With TAS=0 no aborted task
is answered at all (SAM-5 7.2, RFC 7143 11.6), and the function's response waits until every
task it ended has settled (RFC 7143 4.2.3.3: no aborted task answers after it).
"""

from __future__ import annotations

import logging
import select
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from initiator import Initiator, TargetGone, connect, until_good
from live import TARGET, LiveTarget, locked_elsewhere, until

from scsi_pr.sim import cdb
from scsi_pr.target.proto import (
    ReadyToTransfer,
    Reject,
    ScsiCommand,
    ScsiDataOut,
    ScsiResponse,
    TaskManagementFunction,
    TaskManagementFunctionRequest,
    TaskManagementFunctionResponse,
)

HOST_A, HOST_B = "iqn.2024-01.test:host-a", "iqn.2024-01.test:host-b"
GOOD, RESERVATION_CONFLICT = 0x00, 0x18
RESERVE_6, RELEASE_6 = bytes([0x16, 0, 0, 0, 0, 0]), bytes([0x17, 0, 0, 0, 0, 0])
COMMANDS_CLEARED = (0x06, 0x2F, 0x00)  # COMMANDS CLEARED BY ANOTHER INITIATOR
LUN_RESET_UA = (0x06, 0x29, 0x03)
RESET_UA = (0x06, 0x29, 0x00)  # POWER ON, RESET, OR BUS DEVICE RESET OCCURRED
POWER_ON_UA = (0x06, 0x29, 0x01)  # POWER ON OCCURRED
F = TaskManagementFunction


class HeldTarget(LiveTarget):
    """A live target that counts the calls inside its LUs' ``run``: a command there is past
    its aborted check (``ConnectionHandler._run_command``), so it has started and completes
    on the model whatever ends it. Queued is not started: under load the worker may not have
    taken a queued command yet when a function aborts it, and then it never runs."""

    def __init__(self, state_dir: Path, **config: Any) -> None:
        super().__init__(state_dir, **config)
        self.inside = 0
        self._counting = threading.Lock()

    def __enter__(self) -> HeldTarget:
        super().__enter__()
        assert self.server is not None
        lus = self.server.lus
        run = lus.run

        def counted(lun: int, fn: Any) -> Any:
            with self._counting:
                self.inside += 1
            try:
                return run(lun, fn)
            finally:
                with self._counting:
                    self.inside -= 1

        lus.run = counted  # type: ignore[method-assign]
        return self


@pytest.fixture
def target(tmp_path: Path) -> Iterator[HeldTarget]:
    # no NOP-In pings: a test reads "nothing answered yet" as no bytes at all
    with HeldTarget(tmp_path, luns=2, nop_interval=3600.0) as live:
        yield live


@pytest.fixture
def a_and_b(target: HeldTarget) -> tuple[Initiator, Initiator]:
    """Two sessions (two I_T nexuses), their unit attentions of the login taken."""
    a = connect(target.address, HOST_A, TARGET)
    b = connect(target.address, HOST_B, TARGET)
    for ini in (a, b):
        until_good(ini), until_good(ini, lun=1)
    return a, b


def _send(ini: Initiator, command: bytes, lun: int = 0, write: int = 0) -> int:
    """Send one command without waiting for anything; its task tag."""
    itt = ini.next_itt()
    ini.send(ScsiCommand(final=True, read=False, write=bool(write), lun=lun << 48,
                         initiator_task_tag=itt, expected_data_transfer_length=write,
                         cmd_sn=ini.cmd_sn, exp_stat_sn=ini.exp_stat_sn,
                         cdb=command.ljust(16, b"\0")))  # fmt: skip
    ini.cmd_sn += 1
    return itt


def _send_function(ini: Initiator, function: int, lun: int = 0) -> int:
    itt = ini.next_itt()
    ini.send(TaskManagementFunctionRequest(immediate=True, function=function, lun=lun << 48,
                                           initiator_task_tag=itt, referenced_task_tag=0xFFFFFFFF,
                                           cmd_sn=ini.cmd_sn,
                                           exp_stat_sn=ini.exp_stat_sn))  # fmt: skip
    return itt


COMPLETE = ("function", 0)  # a task management response FUNCTION COMPLETE, in ``_answers``


def _answers(ini: Initiator, count: int) -> dict[int, object]:
    """The next ``count`` answers: task tag -> SCSI status, or ("function", its response)."""
    got: dict[int, object] = {}
    while len(got) < count:
        pdu = ini.receive()
        if isinstance(pdu, ScsiResponse):
            got[pdu.initiator_task_tag] = pdu.status
        elif isinstance(pdu, TaskManagementFunctionResponse):
            got[pdu.initiator_task_tag] = ("function", pdu.response)
        else:
            raise AssertionError(f"unexpected {pdu!r}")
    return got


def _silent(ini: Initiator) -> bool:
    """Nothing from the target on this connection (a short look: it proves only a negative
    that the code under test would have broken at once)."""
    return not select.select([ini.sock], [], [], 0.3)[0]


def _in_flight(target: HeldTarget, count: int) -> None:
    """``count`` commands handed to the worker, the first of them started and waiting for
    the lock (read on the loop's thread, so never during its own no-waiting try)."""
    server = target.server
    assert server is not None
    until(lambda: target.call(lambda: (server.queued, target.inside)) == (count, 1),
          what="commands never queued")  # fmt: skip


def _aborted(target: HeldTarget) -> list[bool]:
    """Whether each command in flight, session by session, is marked aborted."""
    server = target.server
    assert server is not None
    return target.call(lambda: [f.aborted for h in server.handlers for f in h.flights.values()])


def test_abort_task_set_ends_the_session_s_tasks_on_that_lun_once_settled(
    target: HeldTarget, a_and_b: tuple[Initiator, Initiator], tmp_path: Path
) -> None:
    """ABORT TASK SET (SAM-5 7.3): this I_T nexus's tasks on this LU, no other session's and
    no other LU's. Answered only after the running one completed; the queued RESERVE(6)
    never ran."""
    a, b = a_and_b
    assert target.server is not None
    with locked_elsewhere(target.server.lus, tmp_path / "lun0.img"):
        _send(a, cdb.test_unit_ready())
        _in_flight(target, 1)
        _send(a, RESERVE_6)
        others = _send(b, cdb.test_unit_ready())
        other_lun = _send(a, cdb.test_unit_ready(), lun=1)
        _in_flight(target, 4)
        function = _send_function(a, F.ABORT_TASK_SET)
        until(lambda: _aborted(target) == [True, True, False, False])
        assert _silent(a), "answered while an aborted task was still running"
    assert _answers(a, 2) == {function: COMPLETE, other_lun: GOOD}
    assert _answers(b, 1) == {others: GOOD}
    assert b.command(RESERVE_6).status == GOOD, "the aborted RESERVE(6) ran"
    assert b.command(RELEASE_6).status == GOOD
    assert until_good(a) == []  # ABORT TASK SET tells nobody


def test_clear_task_set_ends_every_session_s_tasks_and_tells_the_others(
    target: HeldTarget, a_and_b: tuple[Initiator, Initiator], tmp_path: Path
) -> None:
    """CLEAR TASK SET (SAM-5 7.5): every I_T nexus's tasks on this LU; the others whose tasks
    it ended (a command or a write still collecting its data) get COMMANDS CLEARED BY
    ANOTHER INITIATOR, the issuer does not. Another LU's tasks, a write collecting data
    there included, go on."""
    a, b = a_and_b
    assert target.server is not None
    with locked_elsewhere(target.server.lus, tmp_path / "lun0.img"):
        _send(a, cdb.test_unit_ready())
        _in_flight(target, 1)
        _send(b, RESERVE_6)
        other_lun = _send(b, cdb.test_unit_ready(), lun=1)
        _in_flight(target, 3)
        function = _send_function(a, F.CLEAR_TASK_SET)
        until(lambda: _aborted(target) == [True, True, False])
        assert _silent(a), "answered while a cleared task was still running"
    assert _answers(a, 1) == {function: COMPLETE}
    assert _answers(b, 1) == {other_lun: GOOD}  # its RESERVE(6) is not answered
    assert a.command(RESERVE_6).status == GOOD, "the cleared RESERVE(6) ran"
    assert a.command(RELEASE_6).status == GOOD
    assert until_good(b) == [COMMANDS_CLEARED] and until_good(a) == []


def _write_collecting(ini: Initiator, lun: int) -> tuple[int, int]:
    """A WRITE(10) of one block waiting for its data: (task tag, target transfer tag)."""
    itt = _send(ini, cdb.write_10(7, 1), lun=lun, write=512)
    r2t = ini.receive()
    assert isinstance(r2t, ReadyToTransfer)
    return itt, r2t.target_transfer_tag


def _send_data(ini: Initiator, itt: int, ttt: int, lun: int) -> None:
    ini.send(ScsiDataOut(final=True, lun=lun << 48, initiator_task_tag=itt,
                         target_transfer_tag=ttt, exp_stat_sn=ini.exp_stat_sn,
                         data=b"W" * 512))  # fmt: skip


@pytest.mark.parametrize("function", [F.CLEAR_TASK_SET, F.LOGICAL_UNIT_RESET],
                         ids=["clear-task-set", "lun-reset"])  # fmt: skip
def test_another_lun_s_write_collecting_data_goes_on(
    target: HeldTarget, a_and_b: tuple[Initiator, Initiator], function: int
) -> None:
    """A function on LUN 0 leaves a write to LUN 1 that waits for its data alone: the data
    sent after it is written, and its session is told nothing."""
    a, b = a_and_b
    itt, ttt = _write_collecting(b, lun=1)
    assert a.task_management(function) == 0
    _send_data(b, itt, ttt, lun=1)
    assert _answers(b, 1) == {itt: GOOD}
    assert b.command(cdb.read_10(7, 1), lun=1, read=512).data == b"W" * 512
    assert until_good(b, lun=1) == []


def test_lun_reset_ends_every_session_s_tasks_on_that_lun_once_settled(
    target: HeldTarget, a_and_b: tuple[Initiator, Initiator], tmp_path: Path
) -> None:
    """LOGICAL UNIT RESET (SAM-5 7.7): every I_T nexus's tasks on the LU, answered after the
    running one completed; another LU's go on and see no reset."""
    a, b = a_and_b
    assert target.server is not None
    with locked_elsewhere(target.server.lus, tmp_path / "lun0.img"):
        _send(a, cdb.test_unit_ready())
        _in_flight(target, 1)
        other_lun = _send(b, cdb.test_unit_ready(), lun=1)
        _in_flight(target, 2)
        function = _send_function(a, F.LOGICAL_UNIT_RESET)
        until(lambda: _aborted(target) == [True, False])
        assert _silent(a), "answered while a reset task was still running"
    assert _answers(a, 1) == {function: COMPLETE}
    assert _answers(b, 1) == {other_lun: GOOD}
    assert until_good(b) == [LUN_RESET_UA] and until_good(b, lun=1) == []


def test_a_session_that_drops_does_not_stop_another_s_clear_task_set(
    target: HeldTarget, a_and_b: tuple[Initiator, Initiator], tmp_path: Path
) -> None:
    """CLEAR TASK SET waits for the other session's task it ended; that session's connection
    dropping meanwhile (its tasks cancelled with it) ends the wait, not the function."""
    a, b = a_and_b
    server = target.server
    assert server is not None
    with locked_elsewhere(server.lus, tmp_path / "lun0.img"):
        _send(b, cdb.test_unit_ready())
        _in_flight(target, 1)
        function = _send_function(a, F.CLEAR_TASK_SET)
        until(lambda: _aborted(target) == [True])
        b.close()
        until(lambda: target.connections() == 1, what="b never dropped")
    assert _answers(a, 1) == {function: COMPLETE}
    assert a.command(cdb.test_unit_ready()).status == GOOD


def test_a_write_whose_session_cleared_it_is_rejected_and_never_written(
    target: HeldTarget, a_and_b: tuple[Initiator, Initiator]
) -> None:
    """The issuer's own write collecting data ends with its CLEAR TASK SET (the codec ends
    it): the data sent after it is refused and writes nothing; the issuer is not told."""
    a, _ = a_and_b
    itt, ttt = _write_collecting(a, lun=0)
    assert a.task_management(F.CLEAR_TASK_SET) == 0
    _send_data(a, itt, ttt, lun=0)
    assert isinstance(a.receive(), Reject)
    assert a.command(cdb.read_10(7, 1), read=512).data == bytes(512)
    assert until_good(a) == []


def test_abort_task_of_a_write_collecting_data_completes_and_the_data_is_refused(
    target: HeldTarget, a_and_b: tuple[Initiator, Initiator]
) -> None:
    """ABORT TASK (SAM-5 7.2) of a write still waiting for its data: the codec ends it, the
    function is FUNCTION COMPLETE (the task existed), and the data sent after is refused
    and writes nothing."""
    a, _ = a_and_b
    itt, ttt = _write_collecting(a, lun=0)
    assert a.task_management(F.ABORT_TASK, referenced=itt) == 0
    _send_data(a, itt, ttt, lun=0)
    assert isinstance(a.receive(), Reject)
    assert a.command(cdb.read_10(7, 1), read=512).data == bytes(512)
    assert a.task_management(F.ABORT_TASK, referenced=itt) == 1  # TASK DOES NOT EXIST now


def test_target_warm_reset_is_a_hard_reset_of_every_lu_and_sessions_go_on(
    target: HeldTarget, a_and_b: tuple[Initiator, Initiator]
) -> None:
    """TARGET WARM RESET (SAM-5 6.3.2): on every LU, the SPC-2 reservation is released and
    every nexus gets POWER ON, RESET, OR BUS DEVICE RESET OCCURRED (29h/00h); persistent
    reservations and the sessions stay."""
    a, b = a_and_b
    assert a.command(RESERVE_6, lun=1).status == GOOD
    command, data = cdb.prout(0x00, 0, 0xA)  # REGISTER key A
    assert a.command(command, data=data).status == GOOD
    assert b.task_management(F.TARGET_WARM_RESET) == 0
    for ini in (a, b):
        assert until_good(ini) == [RESET_UA] and until_good(ini, lun=1) == [RESET_UA]
    assert b.command(RESERVE_6, lun=1).status == GOOD  # a's was released
    reply = a.command(cdb.persistent_reserve_in(0x00, 64), read=64)
    assert reply.data[8:16] == (0xA).to_bytes(8, "big")  # registrations survive


def test_target_cold_reset_power_cycles_every_lu_then_ends_every_session(
    target: HeldTarget, a_and_b: tuple[Initiator, Initiator], caplog: pytest.LogCaptureFixture
) -> None:
    """TARGET COLD RESET (RFC 7143 11.5.1): a power cycle of every LU (registrations without
    APTPL go), answered, then every session ends; a new session is told POWER ON OCCURRED
    (29h/01h) on each LU, and nothing else (no I_T nexus loss on top: the power cycle
    already told every nexus)."""
    a, b = a_and_b
    command, data = cdb.prout(0x00, 0, 0xA)
    assert a.command(command, data=data).status == GOOD
    with caplog.at_level(logging.INFO, logger="scsi_pr.target"):
        assert a.task_management(F.TARGET_COLD_RESET) == 0
        for ini in (a, b):
            with pytest.raises((TargetGone, OSError)):
                ini.receive()
        closed = lambda: [m for r in caplog.records  # noqa: E731
                          if (m := r.getMessage()).startswith("connection closed: ")]  # fmt: skip
        until(lambda: len(closed()) == 2)
    assert all(line.endswith(": target cold reset") for line in closed())  # the log says why
    again = connect(target.address, HOST_A, TARGET)  # a's I_T nexus again
    assert until_good(again) == [POWER_ON_UA] and until_good(again, lun=1) == [POWER_ON_UA]
    reply = again.command(cdb.persistent_reserve_in(0x00, 64), read=64)
    assert reply.data[4:8] == bytes(4)  # no registrations: APTPL was off


def test_the_debug_trace_says_which_aborted_commands_ran_and_that_none_was_answered(
    target: HeldTarget,
    a_and_b: tuple[Initiator, Initiator],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A unit attention lost to an aborted command is found in this trace: the command that
    ran shows its answer, the one that never ran says so, and both that nobody got them."""
    a, _ = a_and_b
    assert target.server is not None
    with caplog.at_level(logging.DEBUG, logger="scsi_pr.target"):
        with locked_elsewhere(target.server.lus, tmp_path / "lun0.img"):
            _send(a, cdb.test_unit_ready())
            _in_flight(target, 1)
            _send(a, RESERVE_6)
            _in_flight(target, 2)
            function = _send_function(a, F.ABORT_TASK_SET)
            until(lambda: _aborted(target) == [True, True])
        assert _answers(a, 1) == {function: COMPLETE}  # both settled, traced
    lines = [r.getMessage().split(" lun 0 ")[1] for r in caplog.records
             if r.getMessage().startswith("command: ")]  # fmt: skip
    assert lines == [
        "TEST UNIT READY -> GOOD (aborted: not delivered)",
        "RESERVE(6) -> aborted before it ran (aborted: not delivered)",
    ]
