"""One connection's handling of its commands on the live target: what it answers when the
LUs fail, when the LU stalls its answers, what a write's residual says, and that an internal
error ends the session instead of leaving it waiting."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from initiator import Initiator, TargetGone, connect, until_good
from live import TARGET, LiveTarget, until

from scsi_pr.helper.lu_identity import identify_path
from scsi_pr.sim import cdb
from scsi_pr.target import task_management
from scsi_pr.target.proto import ScsiCommand, TaskManagementFunction

HOST_A = "iqn.2024-01.test:host-a"
GOOD, CHECK_CONDITION = 0x00, 0x02
TASK_DOES_NOT_EXIST = 1
STALL = 60.0  # seconds: far longer than any test here waits, so only an abort ends it


@pytest.fixture
def target(tmp_path: Path) -> Iterator[LiveTarget]:
    with LiveTarget(tmp_path, luns=1, nop_interval=3600.0) as live:
        yield live


@pytest.fixture
def a(target: LiveTarget) -> Initiator:
    ini = connect(target.address, HOST_A, TARGET)
    until_good(ini)
    return ini


def _stall(target: LiveTarget, tmp_path: Path, seconds: float) -> None:
    """Every answer of LUN 0 waits ``seconds`` (``scsi-pr sim stall``: the model's fault)."""
    assert target.server is not None
    target.server.lus.shared.set_stall(identify_path(tmp_path / "lun0.img")[0], seconds)


def test_a_failing_lu_is_a_hardware_error_not_a_dropped_command(
    target: LiveTarget,
    a: Initiator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A state dir the LUs cannot use (here: any exception) still answers as SCSI: CHECK
    CONDITION, HARDWARE ERROR, INTERNAL TARGET FAILURE; the session goes on."""
    assert target.server is not None

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError("state dir gone")

    monkeypatch.setattr(target.server.lus, "execute", broken)
    with caplog.at_level(logging.ERROR, logger="scsi_pr.target"):
        reply = a.command(cdb.inquiry())
    assert (reply.status, reply.key_asc_ascq) == (CHECK_CONDITION, (0x04, 0x44, 0x00))
    (record,) = caplog.records  # the operator learns which session, which opcode, and why
    assert record.getMessage() == f"{a.session_name}: command 12 failed"
    assert record.exc_info is not None and str(record.exc_info[1]) == "state dir gone"
    monkeypatch.undo()
    assert a.command(cdb.test_unit_ready()).status == GOOD


def test_a_stalled_answer_comes_after_its_stall(
    target: LiveTarget, a: Initiator, tmp_path: Path
) -> None:
    _stall(target, tmp_path, 0.3)
    start = time.monotonic()
    assert a.command(cdb.test_unit_ready()).status == GOOD
    assert time.monotonic() - start >= 0.3  # a lower bound only: the stall was waited out
    _stall(target, tmp_path, 0.0)
    assert a.command(cdb.test_unit_ready()).status == GOOD


def test_abort_task_ends_a_stalled_answer_at_once_and_forgets_the_task(
    target: LiveTarget, a: Initiator, tmp_path: Path
) -> None:
    """ABORT TASK of a command whose answer the LU stalls: FUNCTION COMPLETE without waiting
    the stall out, the command never answered; the task is then gone (TASK DOES NOT EXIST),
    as is a task that completed."""
    _stall(target, tmp_path, STALL)
    itt = a.next_itt()
    tur = cdb.test_unit_ready().ljust(16, b"\0")
    a.send(ScsiCommand(final=True, initiator_task_tag=itt, cmd_sn=a.cmd_sn,
                       exp_stat_sn=a.exp_stat_sn, cdb=tur))  # fmt: skip
    a.cmd_sn += 1
    assert target.server is not None
    handler = next(iter(target.server.handlers))
    until(lambda: target.call(lambda: itt in handler.flights), what="never in flight")
    start = time.monotonic()
    assert a.task_management(TaskManagementFunction.ABORT_TASK, referenced=itt) == 0
    assert time.monotonic() - start < STALL  # the abort ended the wait (no upper bound else)
    abort = TaskManagementFunction.ABORT_TASK
    assert a.task_management(abort, referenced=itt) == TASK_DOES_NOT_EXIST
    _stall(target, tmp_path, 0.0)
    done = a.command(cdb.test_unit_ready())
    assert done.status == GOOD  # the next answer is this command's, not the aborted one's
    assert a.task_management(abort, referenced=a.itt - 1) == TASK_DOES_NOT_EXIST


@pytest.mark.parametrize(
    ("command", "sent", "residual"),
    [(cdb.write_10(0, 2), 512, (True, False, 512)),  # two blocks asked, one block sent
     (cdb.write_10(0, 1), 1024, (False, True, 512)),  # one block asked, two sent
     (cdb.test_unit_ready(), 8, (False, True, 8))],  # no data-out wanted at all
    ids=["overflow", "underflow", "unused"],
)  # fmt: skip
def test_a_write_s_residual_says_what_it_used(
    a: Initiator, command: bytes, sent: int, residual: tuple[bool, bool, int]
) -> None:
    """RFC 7143 11.4.5.1: the residual compares the initiator's Expected Data Transfer Length
    with the data-out the command used."""
    reply = a.command(command, data=b"D" * sent)
    assert (reply.status, reply.residual) == (GOOD, residual)


def test_an_internal_error_in_a_function_ends_the_session(
    a: Initiator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug while applying a task management function must not leave the initiator waiting
    for ever: the session ends (its connection closes), as the log says."""

    async def broken(*args: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(task_management, "apply", broken)
    with pytest.raises(TargetGone):
        a.task_management(TaskManagementFunction.ABORT_TASK_SET)
