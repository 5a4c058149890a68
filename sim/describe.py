"""One line per command for humans: audit logs, timelines, test failure messages.

``describe(cdb, data)`` never raises: whatever bytes it gets, it says what it can.
"""

from __future__ import annotations

import re

from scsi_pr.sim.constants import (
    Opcode,
    PersistentReserveInAction,
    PersistentReserveOutAction,
    ReservationType,
    ServiceActionIn16,
)


def _name(enum: type, value: int) -> str:
    try:
        return enum(value).name.replace("_", " ")
    except ValueError:
        return f"SA {value:#04x}"


def _type(code: int) -> str:
    try:
        return ReservationType(code).abbreviation
    except ValueError:
        return f"{code:#x}"


def _pr_out(cdb: bytes, data: bytes) -> str:
    action = cdb[1] & 0x1F
    parts = ["PR OUT", _name(PersistentReserveOutAction, action)]
    if action in (1, 2, 4, 5, 8) or (action == 7 and cdb[2] & 0x0F):
        parts.append(f"type={_type(cdb[2] & 0x0F)}")
    if cdb[2] >> 4:
        parts.append(f"scope={cdb[2] >> 4:#x}")
    if len(data) >= 16:
        key = int.from_bytes(data[0:8], "big")
        sa_key = int.from_bytes(data[8:16], "big")
        if action != PersistentReserveOutAction.REGISTER_AND_IGNORE_EXISTING_KEY:
            parts.append(f"key={key:#x}")
        if action not in (1, 2, 3):
            parts.append(f"sa_key={sa_key:#x}")
    if action == PersistentReserveOutAction.REGISTER_AND_MOVE and len(data) >= 24:
        parts.append(f"rtpi={int.from_bytes(data[18:20], 'big')}")
        if data[17] & 0x02:
            parts.append("unreg")
        if data[17] & 0x01:
            parts.append("aptpl")
    elif len(data) >= 21:
        flags = data[20]
        parts += [
            n
            for bit, n in ((0x08, "spec_i_pt"), (0x04, "all_tg_pt"), (0x01, "aptpl"))
            if flags & bit
        ]
    length = int.from_bytes(cdb[5:9], "big")
    if length != 24:
        parts.append(f"len={length}")
    return " ".join(parts)


def _pr_in(cdb: bytes, data: bytes) -> str:
    action = cdb[1] & 0x1F
    allocation_length = int.from_bytes(cdb[7:9], "big")
    return f"PR IN {_name(PersistentReserveInAction, action)} alloc={allocation_length}"


def _command_name(opcode: int) -> str:
    """READ_10 -> READ(10), PERSISTENT_RESERVE_OUT -> PERSISTENT RESERVE OUT (ValueError for
    an opcode the model does not know)."""
    return re.sub(r" (\d+)$", r"(\1)", Opcode(opcode).name.replace("_", " "))


def _rw(cdb: bytes, data: bytes) -> str:
    name = _command_name(cdb[0])
    if cdb[0] in (Opcode.READ_16, Opcode.WRITE_16):
        lba, blocks = int.from_bytes(cdb[2:10], "big"), int.from_bytes(cdb[10:14], "big")
    else:
        lba, blocks = int.from_bytes(cdb[2:6], "big"), int.from_bytes(cdb[7:9], "big")
    return f"{name} lba={lba} blocks={blocks}"


def _inquiry(cdb: bytes, data: bytes) -> str:
    if cdb[1] & 1:
        return f"INQUIRY VPD page={cdb[2]:#04x}"
    return "INQUIRY"


def _sai16(cdb: bytes, data: bytes) -> str:
    if cdb[1] & 0x1F == ServiceActionIn16.READ_CAPACITY_16:
        return "READ CAPACITY(16)"
    return "SERVICE ACTION IN(16)"


#: opcode: (the CDB bytes a describer reads, the describer); a shorter CDB gets its name only
DESCRIBERS = {
    Opcode.PERSISTENT_RESERVE_OUT: (9, _pr_out),
    Opcode.PERSISTENT_RESERVE_IN: (9, _pr_in),
    Opcode.READ_10: (9, _rw),
    Opcode.READ_16: (14, _rw),
    Opcode.WRITE_10: (9, _rw),
    Opcode.WRITE_16: (14, _rw),
    Opcode.INQUIRY: (3, _inquiry),
    Opcode.SERVICE_ACTION_IN_16: (2, _sai16),
}


def describe(cdb: bytes, data: bytes = b"") -> str:
    """E.g. ``PR OUT PREEMPT type=WE-RO key=0x1 sa_key=0x2``."""
    if not cdb:
        return "(empty CDB)"
    needs, describer = DESCRIBERS.get(cdb[0], (0, None))
    try:
        if describer is not None and len(cdb) >= needs:
            return describer(bytes(cdb), bytes(data))
        return _command_name(cdb[0])
    except ValueError:
        return f"OPCODE {cdb[0]:#04x} ({len(cdb)}-byte CDB)"
