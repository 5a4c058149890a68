"""One PERSISTENT RESERVE command and what sg3_utils makes of its outcome
(``sg_ll_persistent_reserve_in/out`` with ``sg_cmds_process_resp``): the ``-v`` traces, the
sense and status reports, the exit category, and the ``PR in/out (...)`` failure line.

The device is behind a ``Transport``: this module never does I/O itself, so the same code runs
over a helper socket (``transport.HelperTransport``) and over the device model in tests.
"""

from __future__ import annotations

import errno
import time
from dataclasses import dataclass
from typing import Protocol

from scsi_pr.helper.persist.exit_codes import Exit, category_text, convert_errno
from scsi_pr.helper.persist.hexdump import hex_dump
from scsi_pr.helper.persist.outcome import Outcome
from scsi_pr.helper.persist.sense import sense_category, sense_length, sense_text
from scsi_pr.sim.constants import Opcode, Status


@dataclass(frozen=True)
class Response:
    """SCSI status, sense (any length; the helper sends 96) and data-in of one command."""

    status: int
    sense: bytes = b""
    data: bytes = b""
    #: how long the command took, when the transport knows better than a wall clock
    duration_ms: int | None = None


class Transport(Protocol):
    """Sends one PR CDB to the device; raises OSError when it cannot (no helper, I/O).

    ``close`` is called once the run is over, whatever happened; a transport that holds
    nothing may inherit this one, which does nothing."""

    def execute(self, cdb: bytes, data: bytes = b"") -> Response: ...

    def close(self) -> None:
        return None


# SCSI statuses other than GOOD/CHECK CONDITION that sg_cmds_process_resp turns into a category.
STATUS_CATEGORY = {
    Status.RESERVATION_CONFLICT: Exit.RES_CONFLICT,
    Status.CONDITION_MET: Exit.CONDITION_MET,
    Status.BUSY: Exit.BUSY,
    Status.TASK_SET_FULL: Exit.TS_FULL,
    Status.ACA_ACTIVE: Exit.ACA_ACTIVE,
    Status.TASK_ABORTED: Exit.TASK_ABORTED,
}
STATUS_TEXT = {
    0x00: "Good", 0x02: "Check Condition", 0x04: "Condition Met", 0x08: "Busy",
    0x10: "Intermediate (obsolete)", 0x14: "Intermediate-Condition Met (obsolete)",
    0x18: "Reservation Conflict", 0x22: "Command terminated (obsolete)",
    0x28: "Task Set Full", 0x30: "ACA Active", 0x40: "Task Aborted",
}  # fmt: skip
# Sense categories that sg3_utils reports quietly (only with -v): the caller words them.
QUIET_CATEGORIES = {
    Exit.NOT_READY, Exit.INVALID_OP, Exit.ILLEGAL_REQ, Exit.LBA_OUT_OF_RANGE,
    Exit.ABORTED_COMMAND, Exit.COPY_ABORTED, Exit.DATA_PROTECT, Exit.PROTECTION,
    Exit.NO_SENSE, Exit.MISCOMPARE,
}  # fmt: skip


def _resid_line(leadin: str, requested: int, got: int) -> str:
    """libsgutils' residual line for data-in (its "got" twice is its own format string; a PR
    OUT never prints the data-out form: sg_persist asks for no residual there)."""
    return (
        f"    {leadin}: pass-through requested {requested} bytes (data-in), got  got {got} bytes\n"
    )


def run_command(
    transport: Transport,
    leadin: str,
    cdb: bytes,
    data_out: bytes,
    allocation: int,
    verbose: int,
    out: Outcome,
) -> tuple[int, bytes]:
    """sg_ll_persistent_reserve_in/out + sg_cmds_process_resp: (exit category, data-in)."""
    if verbose:
        out.err(f"    {leadin} cdb: [{' '.join(f'{b:02x}' for b in cdb)}]\n")
        if verbose > 1 and cdb[0] == Opcode.PERSISTENT_RESERVE_OUT:
            out.err(f"    {leadin} parameters:\n")
            out.err(hex_dump(data_out, 0))
    started = time.monotonic()
    try:
        response = transport.execute(cdb, data_out)
    except OSError as e:
        err = e.errno or errno.EIO
        if verbose or err != errno.ENXIO:
            out.err(f"{leadin}: pass-through os error: {e.strerror or e}\n")
        if err == errno.ENXIO:  # sg3_utils reads ENXIO as "not ready"
            return Exit.NOT_READY, b""
        return convert_errno(err), b""
    if verbose > 2:
        elapsed = response.duration_ms
        if elapsed is None:
            elapsed = int((time.monotonic() - started) * 1000)
        out.err(f"      duration={elapsed} ms\n")
    data = response.data[:allocation] if cdb[0] == Opcode.PERSISTENT_RESERVE_IN else b""
    # named and tested for GOOD / CHECK CONDITION without the reserved bits, but categorised
    # as received: sg3_utils does both (RESERVATION CONFLICT with bit 0 set is only named)
    status = response.status & 0x7E
    sense = response.sense[: sense_length(response.sense)]
    if status == Status.GOOD:
        if verbose > 1 and allocation and len(data) != allocation:
            out.err(_resid_line(leadin, allocation, len(data)))
        if verbose > 2 and data:
            out.err(f"    {leadin}: response")
            if verbose == 3:
                out.err(f"{', first 256 bytes' if len(data) > 256 else ''}:\n")
                out.err(hex_dump(data[:256], -1))
            else:
                out.err(":\n")
                out.err(hex_dump(data, 0))
        return Exit.OK, data
    if status == Status.CHECK_CONDITION or status == 0x22:
        category = sense_category(sense)
        check_data_in = category in (Exit.RECOVERED, Exit.MEDIUM_HARD)
        if verbose or category not in QUIET_CATEGORIES:
            out.err(f"{leadin}:\n")
            out.err(sense_text(sense, verbose > 1))
            if allocation and len(data) != allocation and (verbose > 2 or check_data_in or data):
                out.err(_resid_line(leadin, allocation, len(data)))
        return (Exit.OK if category in (Exit.RECOVERED, Exit.NO_SENSE) else category), data
    if response.status in STATUS_CATEGORY:
        return STATUS_CATEGORY[Status(response.status)], b""
    text = STATUS_TEXT.get(status, f"Unknown status [0x{status:x}]")
    out.err(f"{leadin}: scsi status: {text}\n")
    # sg3_utils then converts "no OS error" (0) into its exit status: the command "succeeds"
    return Exit.OK, b""


def failure_text(direction: str, what: str, code: int, verbose: int) -> str:
    """The ``PR in/out (<service action>): ...`` line sg_persist prints for a failed command."""
    if code == Exit.INVALID_OP:
        return f"PR {direction} ({what}): command not supported\n"
    if code == Exit.ILLEGAL_REQ:
        return (
            f"PR {direction} ({what}): bad field in cdb or parameter list (perhaps "
            "unsupported service action)\n"
        )
    return f"PR {direction} ({what}): {category_text(code, verbose)}\n"
