"""PERSISTENT RESERVE IN (SPC-5 6.16): the four service actions, byte for byte.

Each builder returns the *whole* parameter data; the caller truncates it to ALLOCATION LENGTH
(SPC-5 4.2.5.6), so ADDITIONAL LENGTH always describes the full list (SPC-5 6.16.2).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from scsi_pr.sim.constants import INVALID_FIELD_IN_CDB, PersistentReserveInAction
from scsi_pr.sim.result import illegal_request
from scsi_pr.sim.state import PersistentReservations


def read_keys(pr: PersistentReservations, caps: Capabilities) -> bytes:
    """SPC-5 6.16.2, table 166."""
    keys = b"".join(struct.pack(">Q", r.key) for r in pr.registrations.values())
    return struct.pack(">II", pr.generation, len(keys)) + keys


def read_reservation(pr: PersistentReservations, caps: Capabilities) -> bytes:
    """SPC-5 6.16.3, tables 167/168."""
    res = pr.reservation
    if res is None:
        return struct.pack(">II", pr.generation, 0)
    return struct.pack(
        ">IIQ4xxB2x", pr.generation, 16, pr.holder_key(), (res.scope << 4) | res.type
    )


class Capabilities:
    """What REPORT CAPABILITIES advertises (SPC-5 6.16.4, table 169)."""

    #: ALLOW COMMANDS 001b: TEST UNIT READY is allowed through WE and EA reservations
    allow_commands = 0b001

    def __init__(self, replace_lost_reservation: bool = True) -> None:
        self.rlr_c = replace_lost_reservation


# PERSISTENT RESERVATION TYPE MASK bits (SPC-5 table 170): byte 4 then byte 5
TYPE_MASK = bytes([0b1110_1010, 0b0000_0001])


def report_capabilities(pr: PersistentReservations, caps: Capabilities) -> bytes:
    flags = (0x80 if caps.rlr_c else 0) | 0x10 | 0x08 | 0x04 | 0x01  # RLR_C CRH SIP_C ATP_C PTPL_C
    tmv = 0x80 | (caps.allow_commands << 4) | (0x01 if pr.aptpl else 0)  # TMV, ALLOW, PTPL_A
    return struct.pack(">HBB", 8, flags, tmv) + TYPE_MASK + bytes(2)


def read_full_status(pr: PersistentReservations, caps: Capabilities) -> bytes:
    """SPC-5 6.16.5, tables 171/172: one descriptor per registered I_T nexus."""
    res = pr.reservation
    out = []
    for reg in pr.registrations.values():
        holder = pr.is_holder(reg.nexus)
        tid = reg.nexus.initiator.encode()
        scope_type = (res.scope << 4) | res.type if holder and res is not None else 0
        flags = (0x02 if reg.all_tg_pt else 0) | (0x01 if holder else 0)
        out.append(
            struct.pack(">Q4xBB4xHI", reg.key, flags, scope_type, reg.nexus.target_port, len(tid))
            + tid
        )
    body = b"".join(out)
    return struct.pack(">II", pr.generation, len(body)) + body


SERVICE_ACTIONS: dict[
    PersistentReserveInAction, Callable[[PersistentReservations, Capabilities], bytes]
] = {
    PersistentReserveInAction.READ_KEYS: read_keys,
    PersistentReserveInAction.READ_RESERVATION: read_reservation,
    PersistentReserveInAction.REPORT_CAPABILITIES: report_capabilities,
    PersistentReserveInAction.READ_FULL_STATUS: read_full_status,
}


def persistent_reserve_in(cdb: bytes, pr: PersistentReservations, caps: Capabilities) -> bytes:
    action = cdb[1] & 0x1F
    try:
        builder = SERVICE_ACTIONS[PersistentReserveInAction(action)]
    except ValueError:
        raise illegal_request(INVALID_FIELD_IN_CDB, cdb_byte=1, bit=4) from None
    allocation_length = int.from_bytes(cdb[7:9], "big")
    return builder(pr, caps)[:allocation_length]
