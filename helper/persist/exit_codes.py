"""sg3_utils' exit statuses and their words (sg_lib.h ``SG_LIB_*``, ``sg_exit2str``,
``sg_convert_errno``): what a script calling sg_persist branches on, so every value is kept."""

from __future__ import annotations

import os
from enum import IntEnum


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
    # statuses sg_persist never exits with, worded so that exit_text is sg_exit2str throughout
    100: ("Parameter list length error", None),
    101: ("Invalid field in parameter", None),
    102: ("Too many segments in parameters", None),
    103: ("Target underrun", None),
    104: ("Target overrun", None),
    105: ("Operation in progress", None),
    106: ("Insufficient resources to create ROD", None),
    107: ("Insufficient resources to create ROD token", None),
    108: ("Commands cleared by device server", None),
    109: ("See leave_reason for error", None),
    110: ("Invalid token operation, cause not reportable", None),
    111: ("Invalid token operation, unsupported token type", None),
    112: ("Invalid token operation, remote token usage not supported", None),
    113: ("Invalid token operation, remote token creation not supported", None),
    114: ("Invalid token operation, token unknown", None),
    115: ("Invalid token operation, token corrupt", None),
    116: ("Invalid token operation, token revoked", None),
    117: ("Invalid token operation, token expired", None),
    118: ("Invalid token operation, token cancelled", None),
    119: ("Invalid token operation, token deleted", None),
    120: ("Invalid token operation, invalid token length", None),
    126: ("Utility found but did not have execute permissions", None),
    127: ("Utility to be executed was not found", None),
    128: ("Utility stopped/aborted by signal number: 0", "signal # 0 ??"),
    255: ("Utility returned 255 or higher", "Windows error number?"),
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
    """sg_get_category_sense_str into sg_persist's 80-byte buffer (no text fills it: the
    tests compare every status with the C library's)."""
    text = exit_text(code, verbose > 0)
    if text is None:
        text = f"Sense category: {code}"
        if verbose == 0:
            text += ", try '-v' option for more information"
    return text
