"""``scsi-pr persist``: sg_persist's command line, output and exit codes, through a PR helper.

Why: scripts written for ``sg_persist`` (fence_scsi has ``--sg_persist-path``) need raw SCSI
access on the host. Sending the same PERSISTENT RESERVE IN/OUT through a qemu-pr-helper socket
lets them run unprivileged against any backend the helper serves (real SG_IO, simulated LUs).

What is emulated is the sg_persist shipped in sg3_utils 1.46 (``version: 0.67 20190913``), the
one on this project's reference machines: its getopt_long parsing (abbreviations, clustering,
permutation, error texts), its syntax checks and their exit codes, its output for every PR IN
service action (also with ``--hex``), its sense/status reporting and its exit codes (sg3_utils
``SG_LIB_CAT_*``; OS errors are 50 + errno). Quirks are kept on purpose: a script that worked
with sg_persist must see the same bytes.

Differences, by necessity (docs/persist.md):

* No INQUIRY: the helper forwards only PR IN/OUT (qemu-pr-helper closes the connection on any
  other opcode), so without ``-n`` nothing is printed for it instead of the vendor/product and
  peripheral-type lines; sg_persist itself stops when INQUIRY fails, which would make every
  ``-n``-less call fail for a reason that is not the device's.
* ``--socket PATH`` (else ``$SCSI_PR_HELPER_SOCKET``, else qemu-pr-helper's default) names the
  helper; the device is opened here (O_RDWR, or O_RDONLY with ``-y``) and its fd is passed.
* The helper returns 96 bytes of sense without a length; the length sg_persist would have seen
  is taken from the ADDITIONAL SENSE LENGTH byte.

The core (option parsing, parameter building, response decoding, text) is pure; the I/O edge is
a ``Transport`` whose ``execute(cdb, data)`` returns ``Response`` or raises ``OSError``.
"""

from __future__ import annotations

import errno
import os
import struct
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Protocol, TextIO

from scsi_pr.helper.errors import HelperError
from scsi_pr.sim.cdb import (
    persistent_reserve_in,
    persistent_reserve_out,
    pr_out_parameters,
    register_and_move_parameters,
)
from scsi_pr.sim.constants import (
    Opcode,
    PersistentReserveInAction,
    PersistentReserveOutAction,
    ProtocolIdentifier,
    SenseKey,
    Status,
)

ME = "sg_persist"
VERSION = "0.67 20190913"  # the sg_persist whose behaviour is reproduced, byte for byte
MX_ALLOC_LEN = 8192  # sg_persist's PR IN buffer and the helper's data limit
MX_TIDS = 32
MX_TID_LEN = 256
TRANSPORT_ID_MIN_LEN = 24
SOCKET_ENV = "SCSI_PR_HELPER_SOCKET"
DEFAULT_SOCKET = "/var/run/qemu-pr-helper.sock"  # qemu-pr-helper's compiled-in default
READONLY_ENV = "SG_PERSIST_IN_RDONLY"
COMMAND_TIMEOUT = 60  # seconds; sg3_utils' DEF_PT_TIMEOUT for one command


class Exit(IntEnum):
    """sg3_utils exit statuses (sg_lib.h ``SG_LIB_*``) that sg_persist can return."""

    OK = 0
    SYNTAX_ERROR = 1
    NOT_READY = 2
    MEDIUM_HARD = 3
    ILLEGAL_REQ = 5
    UNIT_ATTENTION = 6
    DATA_PROTECT = 7
    INVALID_OP = 9
    COPY_ABORTED = 10
    ABORTED_COMMAND = 11
    MISCOMPARE = 14
    FILE_ERROR = 15
    NO_SENSE = 20
    RECOVERED = 21
    LBA_OUT_OF_RANGE = 22
    RES_CONFLICT = 24
    CONDITION_MET = 25
    BUSY = 26
    TS_FULL = 27
    ACA_ACTIVE = 28
    TASK_ABORTED = 29
    CONTRADICT = 31
    PROTECTION = 40
    OS_BASE_ERR = 50
    MALFORMED = 97
    SENSE = 98
    OTHER = 99


def convert_errno(err: int) -> int:
    """sg_convert_errno: errno 1..46 -> 51..96, anything else -> 50 (0 stays 0)."""
    if err <= 0:
        return Exit.OS_BASE_ERR if err < 0 else 0
    return Exit.OS_BASE_ERR + err if err < Exit.MALFORMED - Exit.OS_BASE_ERR else Exit.OS_BASE_ERR


# (short text, longer text) per exit status, as sg_exit2str words them.
EXIT_TEXT: dict[int, tuple[str, str | None]] = {
    0: ("No errors", "may also convey true"),
    1: ("Syntax error", "command line options (usually)"),
    2: ("Device not ready", "type: sense key"),
    3: ("Medium or hardware error", "type: sense key (plus blank check for tape)"),
    5: ("Illegal request", "type: sense key, apart from Invalid opcode"),
    6: ("Unit attention", "type: sense key"),
    7: ("Data protect", "type: sense key; write protected media?"),
    9: ("Illegal request, Invalid opcode", "type: sense key + asc,ascq"),
    10: ("Copy aborted", "type: sense key"),
    11: ("Aborted command", "type: sense key, other than protection related (asc=0x10)"),
    14: ("Miscompare", "type: sense key"),
    15: ("File error", None),
    17: ("Illegal request with Info field", None),
    18: ("Medium or hardware error with Info", None),
    20: ("No sense key", "type: probably additional sense code"),
    21: ("Recovered error (warning)", "tye: sense key"),
    22: ("LBA out of range", None),
    24: ("Reservation conflict", "type: SCSI status"),
    25: ("Condition met", "type: SCSI status"),
    26: ("Busy", "type: SCSI status"),
    27: ("Task set full", "type: SCSI status"),
    28: ("ACA aactive", "type: SCSI status"),
    29: ("Task aborted", "type: SCSI status"),
    31: ("Contradict", "command line options contradict or select bad mode"),
    32: ("Logic error", "unexpected situation, contact author"),
    33: ("SCSI command timeout", None),
    36: ("No errors (false)", None),
    40: ("Aborted command, protection error", None),
    41: ("Aborted command, protection error with Info field", None),
    47: ("flock (Unix system call) error", None),
    48: ("NVMe command with non-zero status", None),
    50: ("An OS error occurred", "(errno > 46 or negative)"),
    97: ("Malformed SCSI command", "trouble building command"),
    98: ("Some other sense error", "try '-v' option for more information"),
    99: ("Some other error", "possible transport of driver issue"),
}


def exit_text(code: int, longer: bool) -> str | None:
    """sg_exit2str: the one-line meaning of an exit status, or None when it has none."""
    if code < 0:
        return None
    if code in (0, 36) and not longer:
        return ""
    if Exit.OS_BASE_ERR < code < Exit.MALFORMED:
        return ("OS error: " if longer else "") + os.strerror(code - Exit.OS_BASE_ERR)
    if 128 < code < 255:
        return f"Utility stopped/aborted by signal number: {code - 128}"
    entry = EXIT_TEXT.get(code)
    if entry is None:
        return None
    short, long_ = entry
    return f"{short}, {long_}" if longer and long_ else short


def category_text(code: int, verbose: int) -> str:
    """sg_get_category_sense_str into sg_persist's 80-byte buffer."""
    text = exit_text(code, verbose > 0)
    if text is None:
        text = f"Sense category: {code}"
        if verbose == 0:
            text += ", try '-v' option for more information"
    return text[:79]


# -- sense data -------------------------------------------------------------------------------
SENSE_KEY_TEXT = (
    "No Sense", "Recovered Error", "Not Ready", "Medium Error", "Hardware Error",
    "Illegal Request", "Unit Attention", "Data Protect", "Blank Check", "Vendor specific(9)",
    "Copy Aborted", "Aborted Command", "Equal", "Volume Overflow", "Miscompare", "Completed",
)  # fmt: skip

# The additional sense codes a PR client meets (from devices, LIO and qemu-pr-helper), in the
# wording sg3_utils prints; others print as "ASC=xx, ASCQ=xx (hex)" (docs/persist.md).
ASC_TEXT: dict[tuple[int, int], str] = {
    (0x00, 0x00): "No additional sense information",
    (0x00, 0x06): "I/O process terminated",
    (0x04, 0x00): "Logical unit not ready, cause not reportable",
    (0x04, 0x01): "Logical unit is in process of becoming ready",
    (0x04, 0x02): "Logical unit not ready, initializing command required",
    (0x04, 0x03): "Logical unit not ready, manual intervention required",
    (0x05, 0x00): "Logical unit does not respond to selection",
    (0x08, 0x00): "Logical unit communication failure",
    (0x08, 0x01): "Logical unit communication time-out",
    (0x0B, 0x00): "Warning",
    (0x11, 0x00): "Unrecovered read error",
    (0x1A, 0x00): "Parameter list length error",
    (0x20, 0x00): "Invalid command operation code",
    (0x21, 0x00): "Logical block address out of range",
    (0x24, 0x00): "Invalid field in cdb",
    (0x25, 0x00): "Logical unit not supported",
    (0x26, 0x00): "Invalid field in parameter list",
    (0x26, 0x01): "Parameter not supported",
    (0x26, 0x02): "Parameter value invalid",
    (0x26, 0x04): "Invalid release of persistent reservation",
    (0x27, 0x00): "Write protected",
    (0x27, 0x07): "Space allocation failed write protect",
    (0x29, 0x00): "Power on, reset, or bus device reset occurred",
    (0x29, 0x01): "Power on occurred",
    (0x29, 0x02): "SCSI bus reset occurred",
    (0x29, 0x03): "Bus device reset function occurred",
    (0x29, 0x04): "Device internal reset",
    (0x29, 0x07): "I_T nexus loss occurred",
    (0x2A, 0x00): "Parameters changed",
    (0x2A, 0x03): "Reservations preempted",
    (0x2A, 0x04): "Reservations released",
    (0x2A, 0x05): "Registrations preempted",
    (0x2A, 0x06): "Asymmetric access state changed",
    (0x2C, 0x00): "Command sequence error",
    (0x2C, 0x09): "Previous reservation conflict status",
    (0x2E, 0x02): "Command timeout during processing",
    (0x2F, 0x00): "Commands cleared by another initiator",
    (0x2F, 0x02): "Commands cleared by device server",
    (0x3A, 0x00): "Medium not present",
    (0x3F, 0x00): "Target operating conditions have changed",
    (0x3F, 0x0E): "Reported luns data has changed",
    (0x44, 0x00): "Internal target failure",
    (0x44, 0x01): "Persistent reservation information lost",
    (0x4B, 0x00): "Data phase error",
    (0x55, 0x02): "Insufficient reservation resources",
    (0x55, 0x03): "Insufficient resources",
    (0x55, 0x04): "Insufficient registration resources",
}


def asc_text(asc: int, ascq: int) -> str:
    known = ASC_TEXT.get((asc, ascq))
    if known is not None:
        return f"Additional sense: {known}"
    if asc >= 0x80:
        return f"vendor specific ASC={asc:02x}, ASCQ={ascq:02x} (hex)"
    if ascq >= 0x80:
        return f"ASC={asc:02x}, vendor specific qualification ASCQ={ascq:02x} (hex)"
    return f"ASC={asc:02x}, ASCQ={ascq:02x} (hex)"


def sense_length(sense: bytes) -> int:
    """The sense length SG_IO would have reported (the helper pads to 96 bytes)."""
    if not any(sense):
        return 0
    if 0x70 <= (sense[0] & 0x7F) <= 0x73 and len(sense) > 7:
        return min(len(sense), sense[7] + 8)
    return len(sense.rstrip(b"\0"))  # not SPC sense: all we can drop is the helper's padding


@dataclass(frozen=True)
class SenseHeader:
    """sg_scsi_normalize_sense: response code, key, ASC, ASCQ of fixed or descriptor sense."""

    response_code: int
    key: int
    asc: int
    ascq: int

    @classmethod
    def parse(cls, sense: bytes) -> SenseHeader | None:
        if not sense:
            return None
        code = sense[0] & 0x7F
        if not 0x70 <= code <= 0x73:
            return None
        n = len(sense)
        if code >= 0x72:
            return cls(
                code,
                sense[1] & 0x0F if n > 1 else 0,
                sense[2] if n > 2 else 0,
                sense[3] if n > 3 else 0,
            )
        if n > 7:
            n = min(n, sense[7] + 8)
        return cls(
            code,
            sense[2] & 0x0F if n > 2 else 0,
            sense[12] if n > 12 else 0,
            sense[13] if n > 13 else 0,
        )


# sg_err_category_sense: sense key -> exit status (ILLEGAL REQUEST and ABORTED COMMAND refine).
KEY_CATEGORY: dict[int, int] = {
    SenseKey.NO_SENSE: Exit.NO_SENSE,
    SenseKey.RECOVERED_ERROR: Exit.RECOVERED,
    SenseKey.NOT_READY: Exit.NOT_READY,
    SenseKey.MEDIUM_ERROR: Exit.MEDIUM_HARD,
    SenseKey.HARDWARE_ERROR: Exit.MEDIUM_HARD,
    SenseKey.BLANK_CHECK: Exit.MEDIUM_HARD,
    SenseKey.UNIT_ATTENTION: Exit.UNIT_ATTENTION,
    SenseKey.ILLEGAL_REQUEST: Exit.ILLEGAL_REQ,
    SenseKey.ABORTED_COMMAND: Exit.ABORTED_COMMAND,
    SenseKey.MISCOMPARE: Exit.MISCOMPARE,
    SenseKey.DATA_PROTECT: Exit.DATA_PROTECT,
    SenseKey.COPY_ABORTED: Exit.COPY_ABORTED,
}
ILLEGAL_REQUEST_CATEGORY = {(0x20, 0x00): Exit.INVALID_OP, (0x21, 0x00): Exit.LBA_OUT_OF_RANGE}


def sense_category(sense: bytes) -> int:
    header = SenseHeader.parse(sense) if len(sense) > 2 else None
    if header is None:
        return Exit.SENSE
    if header.key == SenseKey.ILLEGAL_REQUEST:
        return ILLEGAL_REQUEST_CATEGORY.get((header.asc, header.ascq), Exit.ILLEGAL_REQ)
    if header.key == SenseKey.ABORTED_COMMAND and header.asc == 0x10:
        return Exit.PROTECTION
    return KEY_CATEGORY.get(header.key, Exit.SENSE)


RESPONSE_CODE_TEXT = {
    0x70: "Fixed format, current",
    0x71: "Fixed format, <<<deferred>>>",
    0x72: "Descriptor format, current",
    0x73: "Descriptor format, <<<deferred>>>",
}


def _sense_key_specific(key: int, sense: bytes) -> str:
    b15, value = sense[15], int.from_bytes(sense[16:18], "big")
    if key == SenseKey.ILLEGAL_REQUEST:
        where = "Command" if b15 & 0x40 else "Data parameters"
        bit = f" bit {b15 & 0x07}\n" if b15 & 0x08 else "\n"
        return f"  Sense Key Specific: Error in {where}: byte {value}{bit}"
    if key in (SenseKey.NO_SENSE, SenseKey.NOT_READY):
        pct, rem = (value * 100) // 65536, ((value * 100) % 65536) // 656
        return f"  Progress indication: {pct}.{rem:02d}%\n"
    if key in (SenseKey.HARDWARE_ERROR, SenseKey.MEDIUM_ERROR, SenseKey.RECOVERED_ERROR):
        return f"  Actual retry count: 0x{sense[16]:02x}{sense[17]:02x}\n"
    if key == SenseKey.COPY_ABORTED:
        rel = "segment descriptor" if b15 & 0x20 else "parameter list"
        bit = f" bit {b15 & 0x07}\n" if b15 & 0x08 else "\n"
        return f"  Segment pointer: Relative to start of {rel}, byte {value}{bit}"
    if key == SenseKey.UNIT_ATTENTION:
        return f"  Unit attention condition queue: overflow flag is {b15 & 1}\n"
    return f"  Sense_key: 0x{key:x} unexpected\n"


def sense_text(sense: bytes, raw: bool) -> str:
    """sg_get_sense_str with no lead-in: what sg_persist prints for sense it reports."""
    if not sense:
        return " >>> sense buffer empty\n"
    header = SenseHeader.parse(sense)
    out = []
    valid = bool(sense[0] & 0x80)
    if header is None:
        if len(sense) < 4:
            out.append("sense buffer too short (4 byte minimum)\n")
        elif sense[0] & 0x7F == 0x7F:
            return "Vendor specific sense buffer, in hex:\n" + hex_text(sense, "", -1)
        else:
            lines = (
                "Probably uninitialized data.\n  Try to view as SCSI-1 non-extended sense:\n"
                f"  AdValid={int(valid)}  Error class={(sense[0] >> 4) & 7}"
                f"  Error code={sense[0] & 0xF}\n"
            )
            if valid:
                lines += f"  lba=0x{int.from_bytes(sense[1:4], 'big') & 0x1FFFFF:x}\n"
            out.append(lines + "\n")
    else:
        descriptor = header.response_code >= 0x72
        n = len(sense)
        if not descriptor and n > 7:
            n = min(n, sense[7] + 8)
        ovfl = bool(sense[4] & 0x80) if descriptor else bool(n > 2 and sense[2] & 0x10)
        out.append(
            f"{RESPONSE_CODE_TEXT[header.response_code]}; Sense key: {SENSE_KEY_TEXT[header.key]}\n"
        )
        if ovfl and (not descriptor or len(sense) > 4):
            out.append("<<<Sense data overflow (SDAT_OVFL)>>>\n")
        if descriptor:
            out.append(asc_text(header.asc, header.ascq) + "\n")
        elif n > 2:
            if n > 12:
                out.append(asc_text(header.asc, header.ascq) + "\n")
            out.append(_fixed_sense_fields(header, sense, n, valid))
    if raw:
        out.append(f" Raw sense data (in hex), sb_len={len(sense)}")
        if len(sense) > 7 and 0x70 <= sense[0] < 0x74:
            embed = sense[7] + 8
            out.append(f", embedded_len={embed}\n")
        else:
            embed = len(sense)
            out.append("\n")
        out.append(hex_text(sense[:embed].ljust(embed, b"\0"), " " * 8, -1))
    return "".join(out)


def _fixed_sense_fields(header: SenseHeader, sense: bytes, n: int, valid: bool) -> str:
    text = ""
    info = 0
    if n > 6:
        info = int.from_bytes(sense[3:7], "big")
        if valid:
            text += f"  Info fld=0x{info:x} [{info}] "
        elif info > 0:
            text += f"  Valid=0, Info fld=0x{info:x} [{info}] "
    if sense[2] & 0xE0:
        flags = ((0x80, " FMK"), (0x40, " EOM"), (0x20, " ILI"))
        text += "".join(word for bit, word in flags if sense[2] & bit) + "\n"
    elif valid or info > 0:
        text += "\n"
    if n >= 14 and sense[14]:
        text += f"  Field replaceable unit code: {sense[14]}\n"
    if n >= 18 and sense[15] & 0x80:
        text += _sense_key_specific(header.key, sense)
    return text


# -- hex dumps (sg3_utils dStrHexFp / dStrHexStr layouts) ------------------------------------
def _printable(c: int) -> str:
    return chr(c) if 0x20 <= c < 0x7F else "."


def hex_dump(data: bytes, no_ascii: int) -> str:
    """hex2stdout/hex2stderr: > 0 offset + hex, 0 offset + hex + ASCII, < 0 hex only."""
    lines = []
    for start in range(0, len(data), 16):
        chunk = data[start : start + 16]
        hexes = " ".join(f"{c:02x}" for c in chunk[:8])
        if len(chunk) > 8:
            hexes += "  " + " ".join(f"{c:02x}" for c in chunk[8:])
        if no_ascii < 0:
            lines.append(hexes)
            continue
        line = f" {start:02x}".ljust(8) + hexes
        if no_ascii > 0:
            lines.append(line.rstrip())
        else:
            ascii_ = "".join(_printable(c) for c in chunk)
            lines.append(line.ljust(60) + ascii_)
    return "".join(line + "\n" for line in lines)


def hex_text(data: bytes, leadin: str, fmt: int) -> str:
    """hex2str: 16 bytes a line after ``leadin``; ASCII column only when ``fmt`` is 0."""
    out = []
    for start in range(0, len(data), 16):
        chunk = data[start : start + 16]
        hexes = " ".join(f"{c:02x}" for c in chunk[:8])
        if len(chunk) > 8:
            hexes += "  " + " ".join(f"{c:02x}" for c in chunk[8:])
        line = leadin + hexes
        if fmt == 0:
            ascii_ = "".join(_printable(c) for c in chunk).ljust(16)
            line = line.ljust(len(leadin) + 49) + "   " + ascii_
        out.append(line + "\n")
    return "".join(out)


# -- hex number parsing (scanf %x / %lx and sg_get_num) ---------------------------------------
_HEX = "0123456789abcdefABCDEF"


def scan_hex(text: str, bits: int = 64) -> int | None:
    """sscanf(text, "%x") as glibc does it: leading blanks, sign, optional 0x, stops at the
    first non-hex character, saturates on overflow, then keeps the low ``bits``."""
    s = text.lstrip(" \t\n\v\f\r")
    negative = False
    if s[:1] in ("+", "-"):
        negative = s[0] == "-"
        s = s[1:]
    if s[:2].lower() == "0x" and s[2:3] and s[2] in _HEX:
        s = s[2:]
    digits = len(s) - len(s.lstrip(_HEX))
    if digits == 0:
        return None
    value = int(s[:digits], 16)
    if value >= 1 << 64:
        value = (1 << 64) - 1
    elif negative:
        value = -value % (1 << 64)
    return value & ((1 << bits) - 1)


_MULTIPLIERS = {"C": 1, "W": 2, "B": 512, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
_DECIMAL_MULTIPLIERS = {"K": 1000, "M": 1000_000, "G": 1000_000_000}


def get_num(text: str) -> int:
    """sg_get_num: decimal by default, 0x.. or ..h hex, k/m/g (KiB) and kb/kd (1000) suffixes.

    Returns -1 for anything it cannot read, as sg3_utils does. The experimental ``x``/``+``
    arithmetic forms are not supported (they return -1)."""
    s = text.lstrip(" \t")
    if not s:
        return -1
    for i, c in enumerate(s):
        if c in " \t,#-":
            s = s[: min(i, 15)]
            break
    if not s:
        return -1
    if s[:2] in ("0x", "0X"):
        value = scan_hex(s[2:], 32)
        rest = s[2:].lstrip(" ").lstrip("+-")
        rest = rest[len(rest) - len(rest.lstrip(_HEX)) :] if value is not None else ""
        return -1 if value is None or rest else value
    if s[-1] in "hH":
        value = scan_hex(s, 32)
        return -1 if value is None else value
    digits = len(s) - len(s.lstrip("0123456789"))
    sign = 1
    body = s
    if s[:1] in "+-":
        sign = -1 if s[0] == "-" else 1
        body = s[1:]
        digits = len(body) - len(body.lstrip("0123456789"))
    if digits == 0:
        return -1
    num = sign * int(body[:digits])
    suffix = body[digits:].upper()
    if not suffix:
        return num
    c, rest = suffix[0], suffix[1:]
    if c in "CWB":
        return num * _MULTIPLIERS[c]
    if c in "KMG":
        if not rest:
            return num * _MULTIPLIERS[c]
        if rest[0] in "BD":
            return num * _DECIMAL_MULTIPLIERS[c]
        if rest[:2] == "IB":
            return num * _MULTIPLIERS[c]
        return -1
    return -1


# -- TransportIDs given with -X ----------------------------------------------------------------
class TransportIdSyntax(HelperError, ValueError):
    """A -X argument sg_persist would refuse; the message is what it prints."""


def _hex_pairs(text: str, count: int) -> bytes:
    return bytes(int(text[i : i + 2], 16) for i in range(0, count, 2))


def symbolic_transport_id(text: str, messages: list[str]) -> bytes | None:
    """decode_sym_transportid: ``sas,<16 hex>``, ``fcp,<16 hex>``, ``iqn.…[,i,0x<ISID>]`` and
    the other forms of sg_persist(8) "TRANSPORT IDs"; 24+ bytes, or None (message appended)."""
    tid = bytearray(TRANSPORT_ID_MIN_LEN)
    head, rest = text[:4], text[4:]
    hexlen = len(rest) - len(rest.lstrip(_HEX))
    if head in ("sas,", "SAS,"):
        if hexlen != 16:
            messages.append(f"badly formed symbolic SAS TransportID: {rest}")
            return None
        tid[0] = ProtocolIdentifier.SAS
        tid[4:12] = _hex_pairs(rest, 16)
        return bytes(tid)
    if head in ("fcp,", "FCP,", "sbp,", "SBP,"):
        if hexlen != 16:
            kind = "FCP" if head.lower() == "fcp," else "SBP"
            messages.append(f"badly formed symbolic {kind} TransportID: {rest}")
            return None
        fcp = head.lower() == "fcp,"
        tid[0] = ProtocolIdentifier.FIBRE_CHANNEL if fcp else ProtocolIdentifier.IEEE_1394
        tid[8:16] = _hex_pairs(rest, 16)
        return bytes(tid)
    if head in ("srp,", "SRP,"):
        # sg_persist checks for 16 hex digits but converts 32; keep the check, read what is there
        if hexlen != 16:
            messages.append(f"badly formed symbolic SRP TransportID: {rest}")
            return None
        tid[0] = ProtocolIdentifier.SCSI_RDMA
        tid[8:16] = _hex_pairs(rest, 16)
        return bytes(tid)
    if head in ("spi,", "SPI,"):
        parts = rest.split(",")
        try:
            address, port = int(parts[0]), int(parts[1].split()[0] if parts[1] else "x")
        except (ValueError, IndexError):
            messages.append(f"badly formed symbolic SPI TransportID: {rest}")
            return None
        tid[0] = ProtocolIdentifier.PARALLEL_SCSI
        tid[2:4] = (address & 0xFFFF).to_bytes(2, "big")
        tid[6:8] = (port & 0xFFFF).to_bytes(2, "big")
        return bytes(tid)
    if head == "iqn.":
        end = min((i for i in (text.find(" "), text.find("\t")) if i >= 0), default=len(text))
        name = text[:end].encode()
        isid = text.find(",i,0x")
        has_isid = 0 <= isid < end
        alen = max(20, -(-(len(name) + 1) // 4) * 4)
        if alen > 241:
            messages.append(f"iSCSI name too long, alen={alen}")
            return None
        tid = bytearray(max(TRANSPORT_ID_MIN_LEN, 4 + alen))
        tid[0] = ProtocolIdentifier.ISCSI | (0x40 if has_isid else 0)
        tid[3] = alen & 0xFF
        tid[4 : 4 + len(name)] = name
        return bytes(tid)
    if head in ("sop,", "SOP,"):
        # sg_persist's sscanf("%x") can never return 2 here, so "sop," is always refused
        messages.append(f"badly formed symbolic SOP TransportID: {rest}")
        return None
    messages.append(f"unable to parse symbolic TransportID: {text}")
    return None


def hex_list_transport_id(text: str) -> bytes:
    """A TransportID written as comma/space separated hex bytes (build_transportid)."""
    allowed = _HEX + ", "
    k = len(text) - len(text.lstrip(allowed))
    if k != len(text):
        raise TransportIdSyntax(f"build_transportid: error at pos {k + 1}")
    out = bytearray()
    pos = 0
    while True:
        value = scan_hex(text[pos:])
        if value is None:
            raise TransportIdSyntax(f"build_transportid: error at pos {pos + 1}")
        if value > 0xFF:
            raise TransportIdSyntax(
                f"build_transportid: hex number larger than 0xff at pos {pos + 1}"
            )
        out.append(value)
        seps = [i for i in (text.find(",", pos), text.find(" ", pos)) if i >= 0]
        if not seps:
            break
        pos = min(seps) + 1
    return bytes(out)


def file_transport_ids(lines: Sequence[str], messages: list[str]) -> list[bytes]:
    """decode_file_tids: one TransportID per line, ``#`` comments, hex or symbolic forms.

    ``messages`` receives what sg_persist prints on the way (it tries the symbolic forms first,
    and says so, for every line)."""
    tids: list[bytes] = []
    for lineno, raw in enumerate(lines[:512], start=1):
        line = raw.rstrip("\n")
        stripped = line.lstrip(" \t")
        if not stripped or stripped.startswith("#"):
            continue
        col = len(line) - len(stripped)
        sym = symbolic_transport_id(stripped, messages)
        if sym is not None:
            tids.append(sym)
        else:
            body = stripped.split("#", 1)[0]
            bad = len(body) - len(body.lstrip(_HEX + " ,\t"))
            if bad < len(body):
                raise TransportIdSyntax(
                    f"decode_file_tids: syntax error at line {lineno}, pos {col + bad + 1}"
                )
            out = bytearray()
            for v in body.replace(",", " ").split():
                number = int(v, 16)
                if number > 0xFF:
                    raise TransportIdSyntax(
                        f"decode_file_tids: hex number larger than 0xff "
                        f"in line {lineno}, pos {col + 1}"
                    )
                out.append(number)
            tids.append(bytes(out))
        if len(tids) >= MX_TIDS:
            raise TransportIdSyntax("decode_file_tids: array length exceeded")
    return tids


def compact_transport_ids(tids: Sequence[bytes]) -> bytes:
    """compact_transportid_array: iSCSI ones take ADDITIONAL LENGTH + 4 (at least 24) bytes,
    every other protocol exactly 24, zero padded."""
    out = bytearray()
    for tid in tids[:MX_TIDS]:
        padded = tid.ljust(MX_TID_LEN, b"\0")
        if padded[0] & 0x0F == ProtocolIdentifier.ISCSI:
            length = max(TRANSPORT_ID_MIN_LEN, int.from_bytes(padded[2:4], "big") + 4)
        else:
            length = TRANSPORT_ID_MIN_LEN
        out += padded[:length]
    return bytes(out)


def transport_id_text(leadin: str, tid: bytes, length: int, only_one: bool = True) -> str:
    """sg_decode_transportid_str for the TransportIDs of a READ FULL STATUS descriptor."""
    out = []
    data = tid.ljust(max(length, TRANSPORT_ID_MIN_LEN) + 4, b"\0")
    offset, remaining, first = 0, length, True
    while remaining > 0:
        if not first and only_one:
            break
        first = False
        bp = data[offset:]
        if remaining < 24 or remaining % 4:
            # sg3_utils prints its buffer size here (1024), not the TransportID length
            out.append(f"{leadin}Transport Id short or not multiple of 4 [length=1024]:\n")
        else:
            out.append(f"{leadin}Transport Id of initiator:\n")
        fmt, proto = bp[0] >> 6, bp[0] & 0x0F
        normal = min(remaining, TRANSPORT_ID_MIN_LEN)
        bump = TRANSPORT_ID_MIN_LEN
        unexpected = f"{leadin}  [Unexpected TPID format: {fmt}]\n" if fmt else ""
        if proto == ProtocolIdentifier.FIBRE_CHANNEL:
            out.append(f"{leadin}  FCP-2 World Wide Name:\n")
            out += [unexpected, hex_text(bp[8:16], leadin, 1)]
        elif proto == ProtocolIdentifier.PARALLEL_SCSI:
            out.append(
                f"{leadin}  Parallel SCSI initiator SCSI address: "
                f"0x{int.from_bytes(bp[2:4], 'big'):x}\n"
            )
            out.append(unexpected)
            out.append(
                f"{leadin}  relative port number (of corresponding target): "
                f"0x{int.from_bytes(bp[6:8], 'big'):x}\n"
            )
        elif proto == ProtocolIdentifier.IEEE_1394:
            out.append(f"{leadin}  IEEE 1394 EUI-64 name:\n")
            out += [unexpected, hex_text(bp[8:16], leadin, 1)]
        elif proto == ProtocolIdentifier.SCSI_RDMA:
            out += [
                f"{leadin}  RDMA initiator port identifier:\n",
                unexpected,
                hex_text(bp[8:24], leadin, 1),
            ]
        elif proto == ProtocolIdentifier.ISCSI:
            num = int.from_bytes(bp[2:4], "big")
            name = bp[4 : 4 + num].split(b"\0", 1)[0].decode("latin-1")
            if fmt == 0:
                out.append(f"{leadin}  iSCSI name: {name}\n")
            elif fmt == 1:
                out.append(f"{leadin}  iSCSI world wide unique port id: {name}\n")
            else:
                out.append(f"{leadin}  iSCSI   [Unexpected TPID format: {fmt}]\n")
                out.append(hex_text(bp[: num + 4], leadin, 0))
            bump = max(TRANSPORT_ID_MIN_LEN, num + 4)
        elif proto == ProtocolIdentifier.SAS:
            out.append(f"{leadin}  SAS address: 0x{int.from_bytes(bp[4:12], 'big'):x}\n")
            out.append(unexpected)
        elif proto == ProtocolIdentifier.SOP:
            num = int.from_bytes(bp[2:4], "big")
            if fmt == 0:
                out.append(f"{leadin}  SOP Routing ID: 0x{num:x}\n")
            else:
                out.append(f"{leadin}  SOP   [Unexpected TPID format: {fmt}]\n")
                out.append(hex_text(bp[:normal], leadin, 1))
        elif proto == ProtocolIdentifier.NONE:
            out.append(f"{leadin}  No specified protocol\n")
        else:
            names = {
                ProtocolIdentifier.SSA: "SSA (transport id not defined)",
                ProtocolIdentifier.ADT: "ADT",
                ProtocolIdentifier.ATA: "ATAPI",
                ProtocolIdentifier.UAS: "UAS",
                ProtocolIdentifier.PCIE: "PCIE",
            }
            if proto in names:
                out.append(f"{leadin}  {names[ProtocolIdentifier(proto)]}:\n")
                out.append(f"{leadin}  TPID format: {fmt}\n")
            else:
                out.append(f"{leadin}  unknown protocol id=0x{proto:x}  TPID format={fmt}\n")
            out.append(hex_text(bp[:normal], leadin, 1))
        offset += bump
        remaining -= bump
    return "".join(out)


# -- command line ------------------------------------------------------------------------------
class Arg(IntEnum):
    NONE = 0
    REQUIRED = 1


# sg_persist's long options, in its table order (the order getopt reports ambiguities in),
# plus this front end's own --socket at the end.
LONG_OPTIONS: tuple[tuple[str, Arg, str], ...] = (
    ("alloc-length", Arg.REQUIRED, "l"), ("alloc_length", Arg.REQUIRED, "l"),
    ("clear", Arg.NONE, "C"), ("device", Arg.REQUIRED, "d"), ("help", Arg.NONE, "h"),
    ("hex", Arg.NONE, "H"), ("in", Arg.NONE, "i"), ("maxlen", Arg.REQUIRED, "m"),
    ("no-inquiry", Arg.NONE, "n"), ("no_inquiry", Arg.NONE, "n"), ("out", Arg.NONE, "o"),
    ("param-alltgpt", Arg.NONE, "Y"), ("param_alltgpt", Arg.NONE, "Y"),
    ("param-aptpl", Arg.NONE, "Z"), ("param_aptpl", Arg.NONE, "Z"),
    ("param-rk", Arg.REQUIRED, "K"), ("param_rk", Arg.REQUIRED, "K"),
    ("param-sark", Arg.REQUIRED, "S"), ("param_sark", Arg.REQUIRED, "S"),
    ("param-unreg", Arg.NONE, "U"), ("param_unreg", Arg.NONE, "U"),
    ("preempt", Arg.NONE, "P"), ("preempt-abort", Arg.NONE, "A"),
    ("preempt_abort", Arg.NONE, "A"), ("prout-type", Arg.REQUIRED, "T"),
    ("prout_type", Arg.REQUIRED, "T"), ("read-full-status", Arg.NONE, "s"),
    ("read_full_status", Arg.NONE, "s"), ("read-keys", Arg.NONE, "k"),
    ("read_keys", Arg.NONE, "k"), ("readonly", Arg.NONE, "y"),
    ("read-reservation", Arg.NONE, "r"), ("read_reservation", Arg.NONE, "r"),
    ("read-status", Arg.NONE, "s"), ("read_status", Arg.NONE, "s"),
    ("register", Arg.NONE, "G"), ("register-ignore", Arg.NONE, "I"),
    ("register_ignore", Arg.NONE, "I"), ("register-move", Arg.NONE, "M"),
    ("register_move", Arg.NONE, "M"), ("release", Arg.NONE, "L"),
    ("relative-target-port", Arg.REQUIRED, "Q"), ("relative_target_port", Arg.REQUIRED, "Q"),
    ("replace-lost", Arg.NONE, "z"), ("replace_lost", Arg.NONE, "z"),
    ("report-capabilities", Arg.NONE, "c"), ("report_capabilities", Arg.NONE, "c"),
    ("reserve", Arg.NONE, "R"), ("transport-id", Arg.REQUIRED, "X"),
    ("transport_id", Arg.REQUIRED, "X"), ("unreg", Arg.NONE, "U"),
    ("verbose", Arg.NONE, "v"), ("version", Arg.NONE, "V"),
    ("socket", Arg.REQUIRED, "socket"),
)  # fmt: skip
SHORT_OPTIONS = "AcCd:GHhiIkK:l:Lm:MnoPQ:rRsS:T:UvVX:yYzZ"


class GetoptError(HelperError):
    """getopt_long's complaint (already worded as glibc prints it, without the program name)."""


def getopt_long(
    argv: Sequence[str], posixly_correct: bool = False
) -> tuple[list[tuple[str, str | None]], list[str]]:
    """GNU getopt_long over SHORT_OPTIONS/LONG_OPTIONS: permutes operands to the end (unless
    POSIXLY_CORRECT), ``--`` ends options, long names may be abbreviated when unambiguous,
    short flags cluster (``-nik``) and take attached arguments (``-K5``)."""
    opts: list[tuple[str, str | None]] = []
    operands: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            operands.extend(argv[i:])
            break
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            exact = [o for o in LONG_OPTIONS if o[0] == name]
            matches = exact or [o for o in LONG_OPTIONS if o[0].startswith(name)]
            if not matches:
                raise GetoptError(f"unrecognized option '{arg}'")
            found = matches[0]
            ambiguous = [o for o in matches[1:] if o[1:] != found[1:]]
            if ambiguous:
                listed = [o for o in LONG_OPTIONS if o is found or o in ambiguous]
                names = " ".join(f"'--{o[0]}'" for o in listed)
                raise GetoptError(f"option '{arg}' is ambiguous; possibilities: {names}")
            long_name, has_arg, key = found
            if has_arg == Arg.NONE:
                if eq:
                    raise GetoptError(f"option '--{long_name}' doesn't allow an argument")
                opts.append((key, None))
            elif eq:
                opts.append((key, value))
            elif i < len(argv):
                opts.append((key, argv[i]))
                i += 1
            else:
                raise GetoptError(f"option '--{long_name}' requires an argument")
            continue
        if arg.startswith("-") and arg != "-":
            j = 1
            while j < len(arg):
                c = arg[j]
                j += 1
                pos = SHORT_OPTIONS.find(c)
                if pos < 0 or c == ":":
                    raise GetoptError(f"invalid option -- '{c}'")
                if SHORT_OPTIONS[pos + 1 : pos + 2] != ":":
                    opts.append((c, None))
                    continue
                if j < len(arg):
                    opts.append((c, arg[j:]))
                elif i < len(argv):
                    opts.append((c, argv[i]))
                    i += 1
                else:
                    raise GetoptError(f"option requires an argument -- '{c}'")
                break
            continue
        if posixly_correct:
            operands.append(arg)
            operands.extend(argv[i:])
            break
        operands.append(arg)
    return opts, operands


USAGE_MAIN = """\
Usage: sg_persist [OPTIONS] [DEVICE]
  where the main OPTIONS are:
    --clear|-C                 PR Out: Clear
    --help|-h                  print usage message, twice for more
    --in|-i                    request PR In command (default)
    --out|-o                   request PR Out command
    --param-rk=RK|-K RK        PR Out parameter reservation key
                               (RK is in hex)
    --param-sark=SARK|-S SARK    PR Out parameter service action
                                 reservation key (SARK is in hex)
    --preempt|-P               PR Out: Preempt
    --preempt-abort|-A         PR Out: Preempt and Abort
    --prout-type=TYPE|-T TYPE    PR Out type field (see '-hh')
    --read-full-status|-s      PR In: Read Full Status
    --read-keys|-k             PR In: Read Keys (default)
    --read-reservation|-r      PR In: Read Reservation
    --read-status|-s           PR In: Read Full Status
    --register|-G              PR Out: Register
    --register-ignore|-I       PR Out: Register and Ignore
    --register-move|-M         PR Out: Register and Move
                               for '--register-move'
    --release|-L               PR Out: Release
    --replace-lost|-x          PR Out: Replace Lost Reservation
    --report-capabilities|-c   PR In: Report Capabilities
    --reserve|-R               PR Out: Reserve
    --unreg|-U                 optional with PR Out Register and Move

Performs a SCSI PERSISTENT RESERVE (IN or OUT) command. Invoking
'sg_persist DEVICE' will do a PR In Read Keys command. Use '-hh'
for more options and TYPE meanings.
"""

USAGE_OTHER = """\
Usage: sg_persist [OPTIONS] [DEVICE]
  where the other OPTIONS are:
    --alloc-length=LEN|-l LEN    allocation length hex value (used with
                                 PR In only) (default: 8192 (2000 in hex))
    --device=DEVICE|-d DEVICE    supply DEVICE as an option rather than
                                 an argument
    --hex|-H                   output response in hex (for PR In commands)
    --maxlen=LEN|-m LEN        allocation length in decimal, by default.
                               like --alloc-len= (def: 8192, 8k, 2000h)
    --no-inquiry|-n            skip INQUIRY (default: do INQUIRY)
    --param-alltgpt|-Y         PR Out parameter 'ALL_TG_PT'
    --param-aptpl|-Z           PR Out parameter 'APTPL'
    --readonly|-y              open DEVICE read-only (def: read-write)
    --relative-target-port=RTPI|-Q RTPI    relative target port identifier
    --transport-id=TIDS|-X TIDS    one or more TransportIDs can
                                   be given in several forms
    --verbose|-v               output additional debug information
    --version|-V               output version string

For the main options use '--help' or '-h' once.


PR Out TYPE field value meanings:
  0:    obsolete (was 'read shared' in SPC)
  1:    write exclusive
  2:    obsolete (was 'read exclusive')
  3:    exclusive access
  4:    obsolete (was 'shared access')
  5:    write exclusive, registrants only
  6:    exclusive access, registrants only
  7:    write exclusive, all registrants
  8:    exclusive access, all registrants
"""


def usage(help_level: int) -> str:
    return USAGE_MAIN if help_level < 2 else USAGE_OTHER


@dataclass
class Options:
    """sg_persist's ``struct opts_t`` plus the helper socket."""

    inquiry: bool = True
    param_alltgpt: bool = False
    param_aptpl: bool = False
    param_unreg: bool = False
    pr_in: bool = True
    readonly: bool = False
    readwrite_force: bool = False
    hex: int = 0
    prin_sa: int = -1
    prout_sa: int = -1
    verbose: int = 0
    alloc_len: int = MX_ALLOC_LEN
    param_rtp: int = 0
    prout_type: int = 0
    param_rk: int = 0
    param_sark: int = 0
    transport_ids: list[bytes] = field(default_factory=list)
    device: str | None = None
    socket: str | None = None


@dataclass
class Outcome:
    """What a run prints and returns; ``main`` writes it, tests read it."""

    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    code: int = 0
    #: (is_stderr, text) in the order the program produced them
    events: list[tuple[bool, str]] = field(default_factory=list)

    def out(self, text: str) -> None:
        self.stdout.append(text)
        self.events.append((False, text))

    def err(self, text: str) -> None:
        self.stderr.append(text)
        self.events.append((True, text))


class Done(HelperError):
    """Stop with an exit code (after the messages already recorded)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


# Short option -> PR service action it selects.
PRIN_FLAGS = {
    "k": PersistentReserveInAction.READ_KEYS,
    "r": PersistentReserveInAction.READ_RESERVATION,
    "c": PersistentReserveInAction.REPORT_CAPABILITIES,
    "s": PersistentReserveInAction.READ_FULL_STATUS,
}
PROUT_FLAGS = {
    "G": PersistentReserveOutAction.REGISTER,
    "R": PersistentReserveOutAction.RESERVE,
    "L": PersistentReserveOutAction.RELEASE,
    "C": PersistentReserveOutAction.CLEAR,
    "P": PersistentReserveOutAction.PREEMPT,
    "A": PersistentReserveOutAction.PREEMPT_AND_ABORT,
    "I": PersistentReserveOutAction.REGISTER_AND_IGNORE_EXISTING_KEY,
    "M": PersistentReserveOutAction.REGISTER_AND_MOVE,
    "z": PersistentReserveOutAction.REPLACE_LOST_RESERVATION,
}
HEX_ARGS = {"K": ("param_rk", "param-rk", 64), "S": ("param_sark", "param-sark", 64),
            "T": ("prout_type", "prout-type", 32)}  # fmt: skip


def _transport_id_arg(value: str, out: Outcome, read_stdin: Callable[[], list[str]]) -> list[bytes]:
    """build_transportid for one -X argument; raises Done(1) after sg_persist's messages."""
    messages: list[str] = []
    try:
        if value.startswith("-") or value[:5] in ("file=", "FILE="):
            if value.startswith("-"):
                lines = read_stdin()
            else:
                try:
                    with open(value[5:], encoding="latin-1") as f:
                        lines = f.readlines()
                except OSError:
                    raise TransportIdSyntax(
                        f"decode_file_tids: unable to open {value[5:]}"
                    ) from None
            return file_transport_ids(lines, messages)
        sym = symbolic_transport_id(value, messages)
        return [sym if sym is not None else hex_list_transport_id(value)]
    except TransportIdSyntax as e:
        messages.append(str(e))
        messages.append("bad argument to '--transport-id'")
        raise Done(Exit.SYNTAX_ERROR) from None
    finally:
        for m in messages:
            out.err(f"{m}\n")


def parse_options(
    argv: Sequence[str], out: Outcome, env: dict[str, str], read_stdin: Callable[[], list[str]]
) -> Options:
    """sg_persist's main() up to opening the device: every message and exit code of its
    option handling (raises Done when it stops there)."""
    op = Options()
    help_level = 0
    num_prin_sa = num_prout_sa = 0
    want_prin = want_prout = False
    verbose_given = version_given = False
    try:
        parsed, operands = getopt_long(argv, "POSIXLY_CORRECT" in env)
    except GetoptError as e:
        out.err(f"{ME}: {e}\n")
        out.err(usage(1))
        raise Done(Exit.OK) from None
    for key, value in parsed:
        if key in PRIN_FLAGS:
            op.prin_sa = PRIN_FLAGS[key]
            num_prin_sa += 1
        elif key in PROUT_FLAGS:
            op.prout_sa = PROUT_FLAGS[key]
            num_prout_sa += 1
        elif key in HEX_ARGS:
            attr, long_name, bits = HEX_ARGS[key]
            number = scan_hex(value or "", bits)
            if number is None:
                out.err(f"bad argument to '--{long_name}'\n")
                raise Done(Exit.SYNTAX_ERROR)
            setattr(op, attr, number)
        elif key in ("l", "m"):
            name = "maxlen" if key == "m" else "alloc-length"
            number = get_num(value or "") if key == "m" else scan_hex(value or "", 32)
            if number is None or number == -1:
                out.err(f"bad argument to '--{name}'\n")
                raise Done(Exit.SYNTAX_ERROR)
            op.alloc_len = number & 0xFFFFFFFF
            if op.alloc_len > MX_ALLOC_LEN:
                out.err(f"'--{name}' argument exceeds maximum value ({MX_ALLOC_LEN})\n")
                raise Done(Exit.SYNTAX_ERROR)
        elif key == "Q":
            number = scan_hex(value or "", 32)
            if number is None:
                out.err("bad argument to '--relative-target-port'\n")
                raise Done(Exit.SYNTAX_ERROR)
            if number > 0xFFFF:
                out.err("argument to '--relative-target-port' 0 to ffff inclusive\n")
                raise Done(Exit.SYNTAX_ERROR)
            op.param_rtp = number
        elif key == "X":
            op.transport_ids = _transport_id_arg(value or "", out, read_stdin)
        elif key == "y":
            if not op.readwrite_force:
                op.readwrite_force, op.readonly = op.readonly, not op.readonly
        else:
            _FLAG_ACTIONS[key](op, value)
            want_prin |= key == "i"
            want_prout |= key == "o"
            help_level += key == "h"
            verbose_given |= key == "v"
            version_given |= key == "V"
    if operands:
        rest = operands
        if op.device is None:
            op.device, rest = operands[0], operands[1:]
        if rest:
            for extra in rest:
                out.err(f"Unexpected extra argument: {extra}\n")
            out.err(usage(1))
            raise Done(Exit.SYNTAX_ERROR)
    if help_level > 0:
        out.err(usage(help_level))
        raise Done(Exit.OK)
    if verbose_given and version_given:
        out.err("Not in DEBUG mode, so '-vV' has no special action\n")
    if version_given:
        out.err(f"version: {VERSION}\n")
        raise Done(Exit.OK)
    if op.device is None:
        out.err("No device name given\n")
        out.err(usage(1))
        raise Done(Exit.SYNTAX_ERROR)
    _check_service_actions(op, out, want_prin, want_prout, num_prin_sa, num_prout_sa)
    if not op.readwrite_force:
        if READONLY_ENV in env and op.pr_in:
            op.readonly = True
    else:
        op.readonly = False
    return op


_FLAG_ACTIONS: dict[str, Callable[[Options, str | None], None]] = {
    "d": lambda op, v: setattr(op, "device", v),
    "h": lambda op, v: None,
    "H": lambda op, v: setattr(op, "hex", op.hex + 1),
    "i": lambda op, v: None,
    "o": lambda op, v: None,
    "n": lambda op, v: setattr(op, "inquiry", False),
    "U": lambda op, v: setattr(op, "param_unreg", True),
    "v": lambda op, v: setattr(op, "verbose", op.verbose + 1),
    "V": lambda op, v: None,
    "Y": lambda op, v: setattr(op, "param_alltgpt", True),
    "Z": lambda op, v: setattr(op, "param_aptpl", True),
    "socket": lambda op, v: setattr(op, "socket", v),
}


def _check_service_actions(
    op: Options, out: Outcome, want_prin: bool, want_prout: bool, n_in: int, n_out: int
) -> None:
    if want_prout and want_prin:
        out.err("choose '--in' _or_ '--out' (not both)\n")
        out.err(usage(1))
        raise Done(Exit.CONTRADICT)
    if want_prout:
        op.pr_in = False
        if n_out != 1 or n_in != 0:
            out.err(
                ">> For Persistent Reserve Out one and only one appropriate\n>> service "
                "action must be chosen (e.g. '--register')\n"
            )
            raise Done(Exit.CONTRADICT)
    else:
        if n_out > 0:
            out.err(
                ">> When a service action for Persistent Reserve Out is chosen the\n"
                ">> '--out' option must be given (as a safeguard)\n"
            )
            raise Done(Exit.CONTRADICT)
        if n_in == 0:
            out.err(
                ">> No service action given; assume Persistent Reserve In command\n"
                ">> with Read Keys service action\n"
            )
            op.prin_sa = PersistentReserveInAction.READ_KEYS
        elif n_in > 1:
            out.err("Too many service actions given; choose one only\n")
            out.err(usage(1))
            raise Done(Exit.CONTRADICT)
    move = PersistentReserveOutAction.REGISTER_AND_MOVE
    if (op.param_unreg or op.param_rtp) and op.prout_sa != move:
        out.err("--unreg or --relative-target-port only useful with --register-move\n")
        out.err(usage(1))
        raise Done(Exit.CONTRADICT)
    if op.prout_sa == move and len(op.transport_ids) != 1:
        out.err("with --register-move one (and only one) --transport-id should be given\n")
        out.err(usage(1))
        raise Done(Exit.CONTRADICT)
    needs_type = (
        PersistentReserveOutAction.RESERVE,
        PersistentReserveOutAction.RELEASE,
        PersistentReserveOutAction.PREEMPT,
        PersistentReserveOutAction.PREEMPT_AND_ABORT,
    )
    if op.prout_sa in needs_type and op.prout_type == 0:
        out.err("warning>>> --prout-type probably needs to be given\n")
    if op.verbose > 2 and op.transport_ids:
        out.err(
            f"number of tranport-ids decoded from command line (or stdin): "
            f"{len(op.transport_ids)}\n"
        )
        out.err("  Decode given transport-ids:\n")
        for tid in op.transport_ids:
            out.out(transport_id_text("      ", tid.ljust(MX_TID_LEN, b"\0"), MX_TID_LEN))


# -- one command and what sg3_utils makes of its outcome ----------------------------------------
@dataclass(frozen=True)
class Response:
    """SCSI status, sense (any length; the helper sends 96) and data-in of one command."""

    status: int
    sense: bytes = b""
    data: bytes = b""
    #: how long the command took, when the transport knows better than a wall clock
    duration_ms: int | None = None


class Transport(Protocol):
    """Sends one PR CDB to the device; raises OSError when it cannot (no helper, I/O)."""

    def execute(self, cdb: bytes, data: bytes = b"") -> Response: ...


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


def _resid_line(leadin: str, data_in: bool, requested: int, got: int) -> str:
    kind = "in), got" if data_in else "out) but reported"
    return (
        f"    {leadin}: pass-through requested {requested} bytes (data-{kind}  got {got} "
        f"bytes{'' if data_in else ' sent'}\n"
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
    status = response.status & 0x7E
    sense = response.sense[: sense_length(response.sense)]
    if status == Status.GOOD:
        if verbose > 1 and allocation and len(data) != allocation:
            out.err(_resid_line(leadin, True, allocation, len(data)))
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
                out.err(_resid_line(leadin, True, allocation, len(data)))
        return (Exit.OK if category in (Exit.RECOVERED, Exit.NO_SENSE) else category), data
    if status in STATUS_CATEGORY:
        return STATUS_CATEGORY[Status(status)], b""
    text = STATUS_TEXT.get(status, f"Unknown status [0x{status:x}]")
    out.err(f"{leadin}: scsi status: {text}\n")
    # sg3_utils then converts "no OS error" (0) into its exit status: the command "succeeds"
    return Exit.OK, b""


PRIN_SA_TEXT = ("Read keys", "Read reservation", "Report capabilities", "Read full status",
                "[reserved 0x4]", "[reserved 0x5]", "[reserved 0x6]", "[reserved 0x7]")  # fmt: skip
PROUT_SA_TEXT = ("Register", "Reserve", "Release", "Clear", "Preempt", "Preempt and abort",
                 "Register and ignore existing key", "Register and move",
                 "Replace lost reservation", "[reserved 0x9]")  # fmt: skip
PR_TYPE_TEXT = (
    "obsolete [0]", "Write Exclusive", "obsolete [2]", "Exclusive Access", "obsolete [4]",
    "Write Exclusive, registrants only", "Exclusive Access, registrants only",
    "Write Exclusive, all registrants", "Exclusive Access, all registrants",
    "obsolete [9]", "obsolete [0xa]", "obsolete [0xb]", "obsolete [0xc]", "obsolete [0xd]",
    "obsolete [0xe]", "obsolete [0xf]",
)  # fmt: skip


def _failure_text(direction: str, what: str, code: int, verbose: int) -> str:
    if code == Exit.INVALID_OP:
        return f"PR {direction} ({what}): command not supported\n"
    if code == Exit.ILLEGAL_REQ:
        return (
            f"PR {direction} ({what}): bad field in cdb or parameter list (perhaps "
            "unsupported service action)\n"
        )
    return f"PR {direction} ({what}): {category_text(code, verbose)}\n"


def _signed32(data: bytes) -> int:
    return struct.unpack(">i", data)[0]


def _scope_type(byte: int) -> str:
    scope = (byte >> 4) & 0xF
    head = "scope: LU_SCOPE, " if scope == 0 else f"scope: {scope} "
    return f"{head} type: {PR_TYPE_TEXT[byte & 0xF]}\n"


def format_capabilities(buf: bytes) -> str:
    lines = [
        "Report capabilities response:\n",
        f"  Replace Lost Reservation Capable(RLR_C): {int(bool(buf[2] & 0x80))}\n",
        f"  Compatible Reservation Handling(CRH): {int(bool(buf[2] & 0x10))}\n",
        f"  Specify Initiator Ports Capable(SIP_C): {int(bool(buf[2] & 0x08))}\n",
        f"  All Target Ports Capable(ATP_C): {int(bool(buf[2] & 0x04))}\n",
        f"  Persist Through Power Loss Capable(PTPL_C): {int(bool(buf[2] & 0x01))}\n",
        f"  Type Mask Valid(TMV): {int(bool(buf[3] & 0x80))}\n",
        f"  Allow Commands: {(buf[3] >> 4) & 0x7}\n",
        f"  Persist Through Power Loss Active(PTPL_A): {int(bool(buf[3] & 0x01))}\n",
    ]
    if buf[3] & 0x80:
        lines.append("    Support indicated in Type mask:\n")
        for pr_type, byte, bit in (
            (7, 4, 0x80),
            (6, 4, 0x40),
            (5, 4, 0x20),
            (3, 4, 0x08),
            (1, 4, 0x02),
            (8, 5, 0x01),
        ):
            lines.append(f"      {PR_TYPE_TEXT[pr_type]}: {int(bool(buf[byte] & bit))}\n")
    return "".join(lines)


def format_keys(generation: int, add_len: int, buf: bytes) -> str:
    text = f"  PR generation=0x{generation:x}, "
    num = int(add_len / 8)  # C division truncates toward zero
    if num <= 0:
        return text + "there are NO registered reservation keys\n"
    text += (
        "1 registered reservation key follows:\n"
        if num == 1
        else f"{num} registered reservation keys follow:\n"
    )
    keys = buf[8 : 8 + 8 * num].ljust(8 * num, b"\0")
    return text + "".join(
        f"    0x{int.from_bytes(keys[k : k + 8], 'big'):x}\n" for k in range(0, 8 * num, 8)
    )


def format_reservation(generation: int, add_len: int, buf: bytes) -> str:
    text = f"  PR generation=0x{generation:x}, "
    if int(add_len / 16) <= 0:
        return text + "there is NO reservation held\n"
    d = buf[8:24].ljust(16, b"\0")
    return (
        text + "Reservation follows:\n"
        f"    Key=0x{int.from_bytes(d[:8], 'big'):x}\n    {_scope_type(d[13])}"
    )


def format_full_status(generation: int, add_len: int, buf: bytes, verbose: int) -> str:
    out = [f"  PR generation=0x{generation:x}\n"]
    if add_len == 0:
        out.append("  No full status descriptors\n")
        if verbose:
            out.append("  So there are no registered IT nexuses\n")
    k, offset = 0, 8
    while k < add_len:
        d = buf[offset : offset + 24].ljust(24, b"\0")
        desc_len = _signed32(d[20:24])
        num = 24 + desc_len
        out.append(f"    Key=0x{int.from_bytes(d[:8], 'big'):x}\n")
        if d[12] & 0x02:
            out.append("      All target ports bit set\n")
        else:
            out.append("      All target ports bit clear\n")
            out.append(f"      Relative port address: 0x{int.from_bytes(d[18:20], 'big'):x}\n")
        if d[12] & 0x01:
            out.append("      << Reservation holder >>\n")
            out.append(f"      {_scope_type(d[13])}")
        else:
            out.append("      not reservation holder\n")
        if desc_len > 0:
            out.append(transport_id_text("      ", buf[offset + 24 : offset + num], desc_len))
        if num <= 0:  # a descriptor claiming a negative length would loop forever in C
            break
        k += num
        offset += num
    return "".join(out)


def prin_work(transport: Transport, op: Options, out: Outcome) -> int:
    action = op.prin_sa
    cdb = persistent_reserve_in(action, op.alloc_len)
    code, data = run_command(
        transport, "Persistent reservation in", cdb, b"", op.alloc_len, op.verbose, out
    )
    if code:
        what = PRIN_SA_TEXT[action]
        out.err(_failure_text("in", what, code, op.verbose))
        return code
    buf = data.ljust(max(op.alloc_len, 4096 if op.alloc_len == 0 else 0), b"\0")
    if action == PersistentReserveInAction.REPORT_CAPABILITIES:
        if buf[1] != 8:
            out.err("Unexpected response for PRIN Report Capabilities\n")
            if op.hex:
                out.out(hex_dump(buf[: buf[1]], 1))
            return Exit.MALFORMED
        out.out(hex_dump(buf[:8], 1) if op.hex else format_capabilities(buf))
        return Exit.OK
    generation = int.from_bytes(buf[0:4], "big")
    add_len = _signed32(buf[4:8])
    if op.hex:
        out.out(_hex_prin(generation, add_len, buf, op))
    elif action == PersistentReserveInAction.READ_KEYS:
        out.out(format_keys(generation, add_len, buf))
    elif action == PersistentReserveInAction.READ_RESERVATION:
        out.out(format_reservation(generation, add_len, buf))
    elif action == PersistentReserveInAction.READ_FULL_STATUS:
        out.out(format_full_status(generation, add_len, buf, op.verbose))
    return Exit.OK


def _hex_prin(generation: int, add_len: int, buf: bytes, op: Options) -> str:
    def window(start: int, length: int) -> bytes:
        return buf[start : start + max(length, 0)].ljust(max(length, 0), b"\0")

    if op.hex > 1:
        return hex_dump(window(0, add_len + 8), 1 if op.hex == 2 else -1)
    text = f"  PR generation=0x{generation:x}, "
    if add_len <= 0:
        text += f"Additional length={add_len}\n"
    if add_len & 0xFFFFFFFF > (op.alloc_len - 8) & 0xFFFFFFFF:
        text += f"Additional length too large={add_len}, truncate\n"
        return text + hex_dump(window(8, op.alloc_len - 8), 1)
    return text + f"Additional length={add_len}\n" + hex_dump(window(8, add_len), 1)


def prout_work(transport: Transport, op: Options, out: Outcome) -> int:
    action = op.prout_sa
    tids = compact_transport_ids(op.transport_ids)
    if action == PersistentReserveOutAction.REGISTER_AND_MOVE:
        params = register_and_move_parameters(
            op.param_rk,
            op.param_sark,
            op.param_rtp,
            tids,
            unreg=op.param_unreg,
            aptpl=op.param_aptpl,
        )
        if not tids:  # the TransportID PARAMETER DATA LENGTH stays 0
            params = params[:24]
        what = "register and move"
    else:
        params = pr_out_parameters(
            op.param_rk,
            op.param_sark,
            aptpl=op.param_aptpl,
            all_tg_pt=op.param_alltgpt,
            spec_i_pt=bool(tids),
            transport_ids=[tids] if tids else (),
        )
        what = PROUT_SA_TEXT[action]
    cdb = persistent_reserve_out(action, len(params), op.prout_type)
    code, _ = run_command(transport, "Persistent reservation out", cdb, params, 0, op.verbose, out)
    if code:
        out.err(_failure_text("out", what, code, op.verbose))
    elif op.verbose:
        if action == PersistentReserveOutAction.REGISTER_AND_MOVE:
            out.err("PR out: 'register and move' command successful\n")
        else:
            out.err(f"PR out: command ({what}) successful\n")
    return code


# -- the I/O edge ------------------------------------------------------------------------------
class HelperTransport:
    """PR commands through a qemu-pr-helper-compatible socket, on the fd of an opened device.

    Connection problems (no helper, refused, dropped) surface as OSError naming the socket, so
    they are reported like sg_persist reports a failing pass-through."""

    def __init__(self, socket_path: str, fd: int) -> None:
        self.socket_path = socket_path
        self._fd = fd
        self._client: Any = None

    def execute(self, cdb: bytes, data: bytes = b"") -> Response:
        from scsi_pr.helper.client import Client  # imported here: the core above needs no sockets

        allocation = (
            int.from_bytes(cdb[7:9], "big") if cdb[0] == Opcode.PERSISTENT_RESERVE_IN else None
        )
        try:
            if self._client is None:
                self._client = Client(self.socket_path, timeout=COMMAND_TIMEOUT)
            reply = self._client.execute(self._fd, cdb, data_out=data, allocation_length=allocation)
        except TimeoutError as e:
            raise OSError(
                errno.ETIMEDOUT,
                f"PR helper at {self.socket_path}: no answer within {COMMAND_TIMEOUT} s",
            ) from e
        except OSError as e:  # includes scsi_pr.helper.client.HelperConnectionError
            reason = e.strerror or str(e) or type(e).__name__
            raise OSError(e.errno or errno.EIO, f"PR helper at {self.socket_path}: {reason}") from e
        except ValueError as e:  # refused locally, as QEMU's -EINVAL
            raise OSError(errno.EINVAL, f"PR helper request refused: {e}") from e
        return Response(reply.status, reply.sense, reply.data)

    def close(self) -> None:
        close = getattr(self._client, "close", None)
        if close is not None:
            close()


TransportFactory = Callable[[Options, int], Transport]


def helper_transport(op: Options, fd: int) -> Transport:
    return HelperTransport(socket_path(op), fd)


def socket_path(op: Options, env: dict[str, str] | None = None) -> str:
    """``--socket``, else $SCSI_PR_HELPER_SOCKET, else qemu-pr-helper's default socket."""
    environ = os.environ if env is None else env
    return op.socket or environ.get(SOCKET_ENV) or DEFAULT_SOCKET


def execute(
    argv: Sequence[str],
    transport_factory: TransportFactory = helper_transport,
    env: dict[str, str] | None = None,
    read_stdin: Callable[[], list[str]] | None = None,
) -> Outcome:
    """Everything but writing the text: parse, open DEVICE, run the command, decode."""
    out = Outcome()
    environ = dict(os.environ) if env is None else env
    stdin_reader = read_stdin or (lambda: sys.stdin.readlines())
    try:
        op = parse_options(argv, out, environ, stdin_reader)
        out.code = _run(op, out, transport_factory)
    except Done as done:
        out.code = done.code
    return out


def _run(op: Options, out: Outcome, transport_factory: TransportFactory) -> int:
    assert op.device is not None
    # No INQUIRY even without -n: the helper forwards PERSISTENT RESERVE IN/OUT only.
    flags = (os.O_RDONLY if op.readonly else os.O_RDWR) | os.O_NONBLOCK
    if op.verbose > 1:
        out.err(f"open {op.device} with flags=0x{flags:x}\n")
    try:
        fd = os.open(op.device, flags)
    except OSError as e:
        if op.verbose > 1:
            out.err(f"scsi_pt_open_flags: open({op.device}, 0x{flags:x}) failed: {e.strerror}\n")
        out.err(
            f"{ME}: error opening file {op.device} (r{'o' if op.readonly else 'w'}): {e.strerror}\n"
        )
        return convert_errno(e.errno or errno.EIO)
    transport: Transport | None = None
    try:
        transport = transport_factory(op, fd)
        code = prin_work(transport, op, out) if op.pr_in else prout_work(transport, op, out)
    finally:
        close = getattr(transport, "close", None)
        if close is not None:
            close()
        os.close(fd)
    if code and op.verbose == 0:
        text = exit_text(code, False)
        out.err(f"{ME} failed: {text}\n" if text is not None else f"Some error occurred [{code}]\n")
    return code if code >= 0 else Exit.OTHER


def main(
    argv: list[str] | None = None,
    transport_factory: TransportFactory = helper_transport,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """``scsi-pr persist [sg_persist options] [--socket PATH] DEVICE``."""
    outcome = execute(sys.argv[1:] if argv is None else argv, transport_factory)
    out_stream = stdout or sys.stdout
    err_stream = stderr or sys.stderr
    if out_stream.isatty():  # line-buffered stdout: the two streams interleave as produced
        for is_err, text in outcome.events:
            stream = err_stream if is_err else out_stream
            stream.write(text)
            stream.flush()
        return outcome.code
    # stdout to a pipe or file is block-buffered in sg_persist: it comes out after stderr
    err_stream.write("".join(outcome.stderr))
    err_stream.flush()
    out_stream.write("".join(outcome.stdout))
    out_stream.flush()
    return outcome.code


if __name__ == "__main__":
    sys.exit(main())
