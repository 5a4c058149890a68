"""sg_persist's PR IN path (``prin_work``): send the command, then decode the response with the
service action's printer, or dump it with ``-H`` (``-HH``/``-HHH``: the whole response)."""

from __future__ import annotations

from collections.abc import Callable

from scsi_pr.helper.persist.build import prin_cdb
from scsi_pr.helper.persist.command import Transport, failure_text, run_command
from scsi_pr.helper.persist.exit_codes import Exit
from scsi_pr.helper.persist.hexdump import hex_dump
from scsi_pr.helper.persist.numbers import field_at, signed32
from scsi_pr.helper.persist.options import Options
from scsi_pr.helper.persist.outcome import Outcome
from scsi_pr.helper.persist.read_full_status import format_full_status
from scsi_pr.helper.persist.read_keys import format_keys
from scsi_pr.helper.persist.read_reservation import format_reservation
from scsi_pr.helper.persist.report_capabilities import format_capabilities
from scsi_pr.sim.constants import PersistentReserveInAction

PRIN_SA_TEXT = ("Read keys", "Read reservation", "Report capabilities", "Read full status",
                "[reserved 0x4]", "[reserved 0x5]", "[reserved 0x6]", "[reserved 0x7]")  # fmt: skip

# The printers of the service actions whose response starts with PRGENERATION and ADDITIONAL
# LENGTH: (generation, additional length, response, verbose) -> text.
DECODERS: dict[int, Callable[[int, int, bytes, int], str]] = {
    PersistentReserveInAction.READ_KEYS: lambda g, n, buf, v: format_keys(g, n, buf),
    PersistentReserveInAction.READ_RESERVATION: lambda g, n, buf, v: format_reservation(g, n, buf),
    PersistentReserveInAction.READ_FULL_STATUS: format_full_status,
}


# What the decoders read before ADDITIONAL LENGTH says more: PRGENERATION and ADDITIONAL
# LENGTH, or REPORT CAPABILITIES' whole 8-byte parameter data.
PRIN_FIXED_LEN = 8


def zero_filled(data: bytes, alloc_len: int) -> bytes:
    """The response as sg_persist holds it: in a zero-filled buffer of the allocation length
    (at least the 8-byte header), so the header, REPORT CAPABILITIES and its ``-H`` dump read
    zeros where the device sent nothing. Fields past that go through ``field_at``."""
    return data.ljust(max(alloc_len, PRIN_FIXED_LEN), b"\0")


def prin_work(transport: Transport, op: Options, out: Outcome) -> int:
    """Run ``op.prin_sa`` and print its response; the exit category."""
    action = op.prin_sa
    code, data = run_command(
        transport, "Persistent reservation in", prin_cdb(op), b"", op.alloc_len, op.verbose, out
    )
    if code:
        out.err(failure_text("in", PRIN_SA_TEXT[action], code, op.verbose))
        return code
    buf = zero_filled(data, op.alloc_len)
    if action == PersistentReserveInAction.REPORT_CAPABILITIES:
        if buf[1] != 8:
            out.err("Unexpected response for PRIN Report Capabilities\n")
            if op.hex:
                out.out(hex_dump(buf[: buf[1]], 1))
            return Exit.MALFORMED
        out.out(hex_dump(buf[:8], 1) if op.hex else format_capabilities(buf))
        return Exit.OK
    generation = int.from_bytes(buf[0:4], "big")
    add_len = signed32(buf[4:8])
    if op.hex:
        out.out(_hex_prin(generation, add_len, buf, op))
    elif action in DECODERS:
        out.out(DECODERS[action](generation, add_len, buf, op.verbose))
    return Exit.OK


def _hex_prin(generation: int, add_len: int, buf: bytes, op: Options) -> str:
    """``-H``: the header decoded, the rest in hex; ``-HH``/``-HHH``: all of it in hex."""

    def window(start: int, length: int) -> bytes:
        return field_at(buf, start, max(length, 0))

    if op.hex > 1:
        return hex_dump(window(0, add_len + 8), 1 if op.hex == 2 else -1)
    text = f"  PR generation=0x{generation:x}, "
    if add_len <= 0:
        text += f"Additional length={add_len}\n"
    if add_len & 0xFFFFFFFF > (op.alloc_len - 8) & 0xFFFFFFFF:
        text += f"Additional length too large={add_len}, truncate\n"
        return text + hex_dump(window(8, op.alloc_len - 8), 1)
    return text + f"Additional length={add_len}\n" + hex_dump(window(8, add_len), 1)
