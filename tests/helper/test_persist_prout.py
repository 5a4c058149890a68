"""``prout_work``'s words for REGISTER AND MOVE: the failure line names the service action
"register and move" (lower case, unlike the other actions' table), held to the real
sg_persist on the same device answers (``sg_persist_oracle``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sg_persist_oracle import answering, fixed_sense

from scsi_pr.sim.constants import Status
from scsi_pr.sim.result import CommandResult

MOVE = ["-n", "-o", "-M", "-K", "aa", "-S", "ee", "-Q", "2", "-T", "1",
        "-X", "sas,5001405000000002"]  # fmt: skip


@pytest.mark.parametrize(
    ("result", "verbose", "code", "line"),
    [
        (CommandResult(Status.RESERVATION_CONFLICT), [], 24,
         "PR out (register and move): Reservation conflict\n"),
        (CommandResult(Status.CHECK_CONDITION, fixed_sense(0x05, 0x24, 0x00)), [], 5,
         "PR out (register and move): bad field in cdb or parameter list (perhaps unsupported "
         "service action)\n"),
        (CommandResult(Status.CHECK_CONDITION, fixed_sense(0x05, 0x20, 0x00)), ["-v"], 9,
         "PR out (register and move): command not supported\n"),
        (CommandResult(Status.BUSY), ["-v"], 26,
         "PR out (register and move): Busy, type: SCSI status\n"),
        (CommandResult(Status.GOOD), ["-v"], 0,
         "PR out: 'register and move' command successful\n"),
    ],
    ids=["conflict", "illegal", "invalid-op", "busy", "good"],
)  # fmt: skip
def test_register_and_move_outcome(
    shim: Path, tmp_path: Path, result: CommandResult, verbose: list[str], code: int, line: str
) -> None:
    """Each outcome of REGISTER AND MOVE in sg_persist's words and exit status."""
    run = answering(shim, tmp_path, result).check([*MOVE, *verbose], code=code)
    assert line in run.stderr.splitlines(keepends=True)
