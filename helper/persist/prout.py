"""sg_persist's PR OUT path (``prout_work``): send the command, report how it went."""

from __future__ import annotations

from scsi_pr.helper.persist.build import prout_command
from scsi_pr.helper.persist.command import Transport, failure_text, run_command
from scsi_pr.helper.persist.options import Options
from scsi_pr.helper.persist.outcome import Outcome
from scsi_pr.sim.constants import PersistentReserveOutAction

PROUT_SA_TEXT = ("Register", "Reserve", "Release", "Clear", "Preempt", "Preempt and abort",
                 "Register and ignore existing key", "Register and move",
                 "Replace lost reservation", "[reserved 0x9]")  # fmt: skip


def prout_work(transport: Transport, op: Options, out: Outcome) -> int:
    """Run ``op.prout_sa``; the exit category (0 when the device took it)."""
    cdb, params = prout_command(op)
    move = op.prout_sa == PersistentReserveOutAction.REGISTER_AND_MOVE
    what = "register and move" if move else PROUT_SA_TEXT[op.prout_sa]
    code, _ = run_command(transport, "Persistent reservation out", cdb, params, 0, op.verbose, out)
    if code:
        out.err(failure_text("out", what, code, op.verbose))
    elif op.verbose:
        if move:
            out.err("PR out: 'register and move' command successful\n")
        else:
            out.err(f"PR out: command ({what}) successful\n")
    return code
