"""``scsi-pr explain``: bytes a person pasted, in words: a CDB, a sense buffer, a status
byte, PR IN parameter data, or every hex run of a trace (``sg_persist -vv``, a QEMU trace, our
audit log).

    scsi-pr explain 5f 01 05 00 00 00 00 00 18 00 [PARAMETER-LIST]
    scsi-pr explain 70000600000000000a000000002a0500
    scsi-pr explain --as keys 00000003000000080000000000000abc
    sg_persist -vv ... 2>&1 | scsi-pr explain -

Hex may be spaced, joined, ``0x``-prefixed or colon-separated. Separate byte tokens on the
command line form one blob; two blobs (quoted) are a PR OUT CDB and its parameter list, or
explained one after the other. ``-`` reads a trace from stdin and explains every run of six or
more hex bytes. Exit status 2 for input that is not hex.

The decoding (``explain``, ``explain_trace``) is pure. What the bytes are is decided in a fixed
order, because nothing in them says it for sure: sense data first (its response code 70h-73h is
unambiguous enough), then a CDB (a known opcode, exactly its CDB length or padded to 16), then a
status (one byte); PR IN parameter data carries no marker at all, so it is read only when
``as_`` names the service action. The likely causes are for persistent reservations, the reason
people paste these bytes; the meanings follow SPC-5 r17 and what LIO is measured doing
(docs/lio-deviations.md).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable

from scsi_pr.rig.errors import RigError
from scsi_pr.sim.constants import Opcode, SenseKey, Status
from scsi_pr.sim.describe import describe
from scsi_pr.sim.pr_in import KEY
from scsi_pr.sim.pr_in_data import (
    PrInDataError,
    parse_read_full_status,
    parse_read_keys,
    parse_read_reservation,
    parse_report_capabilities,
)
from scsi_pr.sim.result import SenseData, sense_key_specific
from scsi_pr.sim.transportid import TransportIdError, decode_transport_id

#: (sense key, ASC, ASCQ) -> what usually caused it, for a PR user
CAUSES: dict[tuple[int, int, int], str] = {
    (SenseKey.UNIT_ATTENTION, 0x2A, 0x03): "another I_T nexus ran CLEAR (or PREEMPT of an "
    "all-registrants reservation): this nexus's registration is gone; register again",
    (SenseKey.UNIT_ATTENTION, 0x2A, 0x04): "the reservation went away or changed type (the "
    "holder released it or unregistered, or a PREEMPT changed TYPE): read it again",
    (SenseKey.UNIT_ATTENTION, 0x2A, 0x05): "another I_T nexus preempted this nexus's key: it is "
    "fenced, and its writes conflict under a registrants-only reservation",
    (SenseKey.UNIT_ATTENTION, 0x29, 0x00): "power on, reset or bus device reset: without APTPL "
    "the registrations and the reservation are gone",
    (SenseKey.UNIT_ATTENTION, 0x29, 0x01): "power on: without APTPL the PR state is gone",
    (SenseKey.UNIT_ATTENTION, 0x29, 0x03): "a LUN reset (TMF): PR state survives it",
    (SenseKey.UNIT_ATTENTION, 0x29, 0x07): "the I_T nexus was lost (e.g. an iSCSI session "
    "ended): PR state survives, the initiator must log in again",
    (SenseKey.ILLEGAL_REQUEST, 0x26, 0x04): "RELEASE by the holder with a TYPE (or SCOPE) other "
    "than the reservation's; LIO answers RESERVATION CONFLICT here instead",
    (SenseKey.ILLEGAL_REQUEST, 0x24, 0x00): "a reserved TYPE or SCOPE, or a service action the "
    "device does not support (REGISTER AND MOVE without a reservation on LIO)",
    (SenseKey.ILLEGAL_REQUEST, 0x26, 0x00): "a parameter list field: SPEC_I_PT or ALL_TG_PT "
    "unsupported or naming a registered I_T nexus, a zero SERVICE ACTION RESERVATION KEY where "
    "one is needed, a bad TransportID or RELATIVE TARGET PORT IDENTIFIER",
    (SenseKey.ILLEGAL_REQUEST, 0x1A, 0x00): "PR OUT parameter list length: 24 bytes unless "
    "SPEC_I_PT is set",
    (SenseKey.ILLEGAL_REQUEST, 0x20, 0x00): "qemu-pr-helper: PR OUT on a read-only fd (or the "
    "device does not know the opcode)",
    (SenseKey.ILLEGAL_REQUEST, 0x55, 0x04): "the device holds as many registrations as it can",
    (SenseKey.NOT_READY, 0x08, 0x00): "LIO: RESERVE, RELEASE, CLEAR or REGISTER AND MOVE from an "
    "unregistered I_T nexus while no reservation exists, or LIO could not write its APTPL file "
    "(no <dbroot>/pr)",
    (SenseKey.ABORTED_COMMAND, 0x00, 0x06): "qemu-pr-helper built this: its SG_IO failed (no "
    "CAP_SYS_RAWIO, not a SCSI device, the device went away)",
    (SenseKey.ABORTED_COMMAND, 0x29, 0x07): "the helper's transport lost the I_T nexus",
    (SenseKey.HARDWARE_ERROR, 0x44, 0x00): "internal target failure (the model: a bug; please "
    "report it with these bytes)",
}

#: status byte -> meaning for a PR user
STATUS_MEANING: dict[int, str] = {
    Status.GOOD: "the command completed",
    Status.CHECK_CONDITION: "look at the sense data for why",
    Status.BUSY: "the device (or qemu-pr-helper, for a driver timeout) asks to retry",
    Status.RESERVATION_CONFLICT: "the command conflicts with the reservation (this I_T nexus "
    "is not the holder and the TYPE does not let it in), or a PR OUT's RESERVATION KEY is not "
    "this nexus's, or it is not registered",
    Status.TASK_SET_FULL: "the device queue is full: retry",
}

#: a PR IN reply shorter than its ADDITIONAL LENGTH (SPC-5 6.16.1: the device stops at it)
CUT = "cut off by ALLOCATION LENGTH"


def _keys(blob: bytes) -> list[str]:
    got = parse_read_keys(blob, allow_truncated=True)
    keys = ", ".join(f"{k:#x}" for k in got.keys) or "none"
    count = got.additional_length // KEY.size  # what ADDITIONAL LENGTH says, not what arrived
    cut = "" if got.complete else f" ({len(got.keys)} of {count} arrived, the rest {CUT})"
    return [f"READ KEYS: PRGENERATION {got.generation}, {count} registered: {keys}{cut}"]


def _reservation(blob: bytes) -> list[str]:
    got = parse_read_reservation(blob, allow_truncated=True)
    res = got.reservation
    if res is None:
        what = "no reservation" if got.complete else f"reserved (its descriptor {CUT})"
        return [f"READ RESERVATION: PRGENERATION {got.generation}, {what}"]
    key = "every registrant holds it (key 0)" if res.type.all_registrants else f"key {res.key:#x}"
    return [f"READ RESERVATION: PRGENERATION {got.generation}, {res.type.abbreviation}, {key}"]


def _capabilities(blob: bytes) -> list[str]:
    got = parse_report_capabilities(blob)
    flags = [n.upper() for n in ("rlr_c", "crh", "sip_c", "atp_c", "ptpl_c", "tmv", "ptpl_a")
             if getattr(got, n)]  # fmt: skip
    types = " ".join(t.abbreviation for t in sorted(got.type_mask)) or "none"
    return [f"REPORT CAPABILITIES: {' '.join(flags) or 'no flags'}; ALLOW COMMANDS "
            f"{got.allow_commands:03b}b; types {types}"]  # fmt: skip


def _full_status(blob: bytes) -> list[str]:
    got = parse_read_full_status(blob, allow_truncated=True)
    count = len(got.descriptors)
    length = got.additional_length
    cut = "" if got.complete else f" arrived of ADDITIONAL LENGTH {length} bytes (the rest {CUT})"
    lines = [f"READ FULL STATUS: PRGENERATION {got.generation}, {count} registered I_T "
             f"{'nexus' if count == 1 else 'nexuses'}{cut}"]  # fmt: skip
    for d in got.descriptors:
        try:
            who = str(decode_transport_id(d.transport_id)[0])
        except TransportIdError:
            who = f"TransportID {d.transport_id.hex()}"
        holder = "" if d.type is None else f", holds {d.type.abbreviation}"  # R_HOLDER's TYPE
        every = ", ALL_TG_PT" if d.all_tg_pt else ""
        lines.append(f"  key {d.key:#x}: {who} via target port {d.relative_target_port}"
                     f"{every}{holder}")  # fmt: skip
    return lines


#: what ``as_`` may name, and the reader of that PR IN service action's parameter data
PR_IN_READERS: dict[str, Callable[[bytes], list[str]]] = {
    "keys": _keys,
    "reservation": _reservation,
    "capabilities": _capabilities,
    "full-status": _full_status,
}
#: CDB length by group code (opcode bits 7-5), SPC-5 4.2.5.1
CDB_LENGTH = {0: 6, 1: 10, 2: 10, 4: 16, 5: 12}
HEX_RUN = re.compile(r"(?:\b[0-9a-fA-F]{2}\b[ :]?){6,}")


class ExplainError(RigError, ValueError):
    """The input is not hex, or not what ``as_`` says."""


def parse_hex(text: str) -> bytes:
    """Bytes from ``5f 00 ...``, ``5f00...``, ``0x5f,0x00`` or ``5f:00``; ExplainError else."""
    cleaned = re.sub(r"0x|[\s,:]", "", text)
    if not cleaned or len(cleaned) % 2 or not re.fullmatch(r"[0-9a-fA-F]+", cleaned):
        raise ExplainError(f"not hex bytes: {text!r}")
    return bytes.fromhex(cleaned)


def hex_runs(text: str) -> list[bytes]:
    """Every run of six or more hex byte tokens in a trace, one per run, in order."""
    return [parse_hex(m.group(0)) for m in HEX_RUN.finditer(text)]


def explain_sense(sense: bytes) -> list[str]:
    parsed = SenseData.parse(sense)
    if parsed is None:
        return [f"sense: too short to read ({len(sense)} bytes)"]
    kind = "fixed" if sense[0] & 0x7F in (0x70, 0x71) else "descriptor"
    current = "deferred" if sense[0] & 0x7F in (0x71, 0x73) else "current"
    lines = [f"sense ({kind} format, {current}): {parsed} "
             f"({parsed.key:X}h/{parsed.asc:02X}h/{parsed.ascq:02X}h)"]  # fmt: skip
    specific = sense_key_specific(sense)
    if specific and parsed.key == SenseKey.ILLEGAL_REQUEST:
        where = "CDB" if specific[0] & 0x40 else "parameter list"
        bit = f", bit {specific[0] & 0x07}" if specific[0] & 0x08 else ""
        lines.append(f"  the field at {where} byte {int.from_bytes(specific[1:], 'big')}{bit}")
    cause = CAUSES.get(parsed.triple)
    if cause:
        lines.append(f"  likely: {cause}")
    return lines


def looks_like_cdb(blob: bytes) -> bool:
    """A known opcode, and exactly its CDB's length (or zero-padded to 16 bytes, as QEMU and
    the helper protocol carry every CDB): PR IN data, which starts with zeros, is not TEST
    UNIT READY."""
    length = CDB_LENGTH.get(blob[0] >> 5)
    if blob[0] not in {int(op) for op in Opcode} or length is None:
        return False
    return len(blob) == length or (len(blob) == 16 and not any(blob[length:]))


def explain(blob: bytes, as_: str | None = None, data: bytes = b"") -> list[str]:
    """Lines saying what ``blob`` is. ``as_`` reads it as PR IN parameter data of that service
    action (``PR_IN_READERS``); ``data`` is a PR OUT parameter list that goes with a CDB."""
    if not blob:
        raise ExplainError("nothing to explain")
    if as_ is not None:
        reader = PR_IN_READERS.get(as_)
        if reader is None:
            raise ExplainError(f"--as {as_!r}: choose from {', '.join(PR_IN_READERS)}")
        try:
            return reader(blob)
        except PrInDataError as e:
            raise ExplainError(f"not {as_} parameter data: {e}") from e
    if blob[0] & 0x7F in (0x70, 0x71, 0x72, 0x73) and len(blob) >= 8:
        return explain_sense(blob)
    if looks_like_cdb(blob):
        length = CDB_LENGTH[blob[0] >> 5]
        lines = [describe(blob[:length], data)]
        if blob[0] == Opcode.PERSISTENT_RESERVE_OUT and not data:
            lines.append("  (give the parameter list as the next argument to see the keys)")
        return lines
    if len(blob) == 1:
        try:
            name = Status(blob[0]).name.replace("_", " ")
        except ValueError:
            return [f"status {blob[0]:#04x}: not a SAM-5 status code"]
        meaning = STATUS_MEANING.get(blob[0])
        return [f"status {blob[0]:#04x} {name}" + (f": {meaning}" if meaning else "")]
    return [f"{len(blob)} bytes: not sense data, a known CDB or a status; PR IN parameter "
            "data needs --as " + "|".join(PR_IN_READERS)]  # fmt: skip


def explain_trace(text: str) -> list[str]:
    """Every hex run of a trace, in order; a PR OUT CDB takes the run after it as its parameter
    list when that is at least 24 bytes long (sg_persist -vv prints them one after the other)."""
    runs = hex_runs(text)
    lines: list[str] = []
    index = 0
    while index < len(runs):
        blob = runs[index]
        data = b""
        follows = runs[index + 1] if index + 1 < len(runs) else b""
        if blob[0] == Opcode.PERSISTENT_RESERVE_OUT and len(follows) >= 24:
            data, index = follows, index + 1
        lines += explain(blob, data=data)
        index += 1
    return lines or ["no run of six or more hex bytes found"]


# -- the command line ---------------------------------------------------------------------
PR_OUT = Opcode.PERSISTENT_RESERVE_OUT
BYTE_TOKEN = re.compile(r"(0x)?[0-9a-fA-F]{2},?")


def blobs(words: list[str]) -> list[bytes]:
    """One blob when every word is a single byte (``5f 00 …``), else one blob per word."""
    if all(BYTE_TOKEN.fullmatch(w) for w in words):
        return [parse_hex(" ".join(words))]
    return [parse_hex(w) for w in words]


def main(argv: list[str] | None = None) -> int:
    usage_text = (__doc__ or "").split("\n\nThe decoding")[0]
    p = argparse.ArgumentParser(prog="scsi-pr explain", description=usage_text,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--as", dest="as_", choices=sorted(PR_IN_READERS),
                   help="read the bytes as this PR IN service action's parameter data")  # fmt: skip
    p.add_argument("hex", nargs="*", help="bytes in hex, or - for a trace on stdin")
    args = p.parse_args(argv)
    try:
        if args.hex in ([], ["-"]):
            lines = explain_trace(sys.stdin.read())
        else:
            parts = blobs(args.hex)
            if len(parts) == 2 and args.as_ is None and parts[0][0] == PR_OUT:
                lines = explain(parts[0], data=parts[1])
            else:
                lines = [line for blob in parts for line in explain(blob, as_=args.as_)]
    except ExplainError as e:
        print(f"scsi-pr explain: {e}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0
