"""PERSISTENT RESERVE IN (SPC-5 6.16): the four service actions, byte for byte.

Each builder returns the *whole* parameter data; the caller truncates it to ALLOCATION LENGTH
(SPC-5 ALLOCATION LENGTH field), so ADDITIONAL LENGTH always describes the full list (SPC-5 6.16.2).

The layouts (``HEADER``, ``RESERVATION_DESCRIPTOR``, ``FULL_STATUS_DESCRIPTOR``) and the bits of
REPORT CAPABILITIES are defined once here and shared with the readers in
``scsi_pr.sim.pr_in_data``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from scsi_pr.sim.constants import (
    INVALID_FIELD_IN_CDB,
    REPORT_CAPABILITIES_LENGTH,
    PersistentReserveInAction,
    ReservationType,
)
from scsi_pr.sim.deviations import (
    ALLOCATION_LENGTH_MINIMUM,
    FULL_STATUS_TRUNCATION,
    READ_RESERVATION_CUT,
)
from scsi_pr.sim.profiles import SPC5, Profile
from scsi_pr.sim.result import illegal_request
from scsi_pr.sim.state import PersistentReservations

#: PRGENERATION, ADDITIONAL LENGTH: the 8 bytes before every list (SPC-5 6.16.2, 6.16.3, 6.16.5)
HEADER = struct.Struct(">II")
#: READ RESERVATION descriptor: RESERVATION KEY, obsolete, reserved, SCOPE|TYPE, obsolete
RESERVATION_DESCRIPTOR = struct.Struct(">Q4xxB2x")
#: READ FULL STATUS descriptor before its TransportID: RESERVATION KEY, reserved, ALL_TG_PT|
#: R_HOLDER, SCOPE|TYPE, reserved, RELATIVE TARGET PORT IDENTIFIER, ADDITIONAL DESCRIPTOR LENGTH
FULL_STATUS_DESCRIPTOR = struct.Struct(">Q4xBB4xHI")
#: one entry of the READ KEYS reservation key list
KEY = struct.Struct(">Q")
#: READ FULL STATUS descriptor byte 12
R_HOLDER, ALL_TG_PT = 0x01, 0x02

# REPORT CAPABILITIES (SPC-5 6.16.4): byte 2 ...
RLR_C, CRH, SIP_C, ATP_C, PTPL_C = 0x80, 0x10, 0x08, 0x04, 0x01
# ... and byte 3 (ALLOW COMMANDS is bits 6-4)
TMV, PTPL_A = 0x80, 0x01
ALLOW_COMMANDS_SHIFT, ALLOW_COMMANDS_MASK = 4, 0x07
#: PERSISTENT RESERVATION TYPE MASK: (byte, bit mask) of each type, bytes 4 and 5
TYPE_MASK_BITS: dict[ReservationType, tuple[int, int]] = {
    ReservationType.WRITE_EXCLUSIVE_ALL_REGISTRANTS: (4, 0x80),
    ReservationType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY: (4, 0x40),
    ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY: (4, 0x20),
    ReservationType.EXCLUSIVE_ACCESS: (4, 0x08),
    ReservationType.WRITE_EXCLUSIVE: (4, 0x02),
    ReservationType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS: (5, 0x01),
}


def scope_type(scope: int, type_: int) -> int:
    """The SCOPE (bits 7-4) and TYPE (bits 3-0) byte."""
    return (scope << 4) | type_


def read_keys(pr: PersistentReservations, caps: Capabilities) -> bytes:
    """SPC-5 6.16.2: PRGENERATION and every registered I_T nexus's key, in registration order."""
    return keys_data(pr.generation, [r.key for r in pr.registrations.entries()])


def keys_data(generation: int, keys: list[int], count: int | None = None) -> bytes:
    """The READ KEYS layout (also what the helper's ioctl path builds from the kernel's list);
    ``count``: how many keys the device holds when ``keys`` is only the first of them."""
    body = b"".join(KEY.pack(k) for k in keys)
    return HEADER.pack(generation, KEY.size * (len(keys) if count is None else count)) + body


def read_reservation(pr: PersistentReservations, caps: Capabilities) -> bytes:
    """SPC-5 6.16.3: PRGENERATION and the reservation, if there is one."""
    res = pr.reservation
    held = None if res is None else (pr.holder_key(), scope_type(res.scope, res.type))
    return reservation_data(pr.generation, held)


def reservation_data(generation: int, held: tuple[int, int] | None) -> bytes:
    """The READ RESERVATION layout; ``held``: (RESERVATION KEY, SCOPE|TYPE byte) or None."""
    if held is None:
        return HEADER.pack(generation, 0)
    descriptor = RESERVATION_DESCRIPTOR.pack(*held)
    return HEADER.pack(generation, len(descriptor)) + descriptor


class Capabilities:
    """What REPORT CAPABILITIES advertises (SPC-5 6.16.4)."""

    #: ALLOW COMMANDS 001b: TEST UNIT READY is allowed through WE and EA reservations
    allow_commands = 0b001

    def __init__(
        self, replace_lost_reservation: bool, *, all_tg_pt_port_zero: bool = False
    ) -> None:
        self.rlr_c = replace_lost_reservation
        #: READ FULL STATUS gives an ALL_TG_PT registration RELATIVE TARGET PORT IDENTIFIER 0
        #: (SPC-5 6.16.5 leaves the field undefined there; LIO writes 0)
        self.all_tg_pt_port_zero = all_tg_pt_port_zero


def _type_mask() -> bytes:
    mask = bytearray(2)
    for byte, bit in TYPE_MASK_BITS.values():
        mask[byte - 4] |= bit
    return bytes(mask)


#: every type the model implements
TYPE_MASK = _type_mask()


def report_capabilities(pr: PersistentReservations, caps: Capabilities) -> bytes:
    """SPC-5 6.16.4: always 8 bytes."""
    flags = (RLR_C if caps.rlr_c else 0) | CRH | SIP_C | ATP_C | PTPL_C
    tmv = TMV | (caps.allow_commands << ALLOW_COMMANDS_SHIFT) | (PTPL_A if pr.aptpl else 0)
    return capabilities_data(flags, tmv)


def capabilities_data(flags: int, byte3: int) -> bytes:
    """The REPORT CAPABILITIES layout: LENGTH, the flags of byte 2 and 3, the six types' mask."""
    return struct.pack(">HBB", REPORT_CAPABILITIES_LENGTH, flags, byte3) + TYPE_MASK + bytes(2)


def read_full_status(pr: PersistentReservations, caps: Capabilities) -> bytes:
    """SPC-5 6.16.5: one descriptor per registered I_T nexus, with its TransportID."""
    res = pr.reservation
    out = []
    regs = pr.registrations
    for reg in regs.entries():
        # LIO's second registration of an I_T nexus holds nothing but under all-registrants
        holder = pr.is_holder(reg.nexus) and (
            regs[reg.nexus] is reg or (res is not None and res.type.all_registrants)
        )
        tid = reg.nexus.initiator.encode()
        flags = (ALL_TG_PT if reg.all_tg_pt else 0) | (R_HOLDER if holder else 0)
        st = scope_type(res.scope, res.type) if holder and res is not None else 0
        port = 0 if reg.all_tg_pt and caps.all_tg_pt_port_zero else reg.nexus.target_port
        out.append(FULL_STATUS_DESCRIPTOR.pack(reg.key, flags, st, port, len(tid)) + tid)
    body = b"".join(out)
    return HEADER.pack(pr.generation, len(body)) + body


SERVICE_ACTIONS: dict[
    PersistentReserveInAction, Callable[[PersistentReservations, Capabilities], bytes]
] = {
    PersistentReserveInAction.READ_KEYS: read_keys,
    PersistentReserveInAction.READ_RESERVATION: read_reservation,
    PersistentReserveInAction.REPORT_CAPABILITIES: report_capabilities,
    PersistentReserveInAction.READ_FULL_STATUS: read_full_status,
}


#: LIO (``ALLOCATION_LENGTH_MINIMUM``): the smallest ALLOCATION LENGTH it accepts per action
LIO_MINIMUM_ALLOCATION_LENGTH: dict[PersistentReserveInAction, int] = {
    PersistentReserveInAction.READ_KEYS: HEADER.size,
    PersistentReserveInAction.READ_RESERVATION: HEADER.size,
    PersistentReserveInAction.REPORT_CAPABILITIES: 6,
    PersistentReserveInAction.READ_FULL_STATUS: HEADER.size,
}


#: LIO (``READ_RESERVATION_CUT``): the ALLOCATION LENGTH below which it leaves the READ
#: RESERVATION descriptor unwritten (zeros)
LIO_READ_RESERVATION_WHOLE = 22


def lio_full_status_cut(data: bytes, allocation_length: int) -> bytes:
    """READ FULL STATUS as LIO answers a short ALLOCATION LENGTH (``FULL_STATUS_TRUNCATION``):
    a descriptor goes in while the ADDITIONAL LENGTH so far plus its TransportID length fits in
    ALLOCATION LENGTH; ADDITIONAL LENGTH counts those, and the data ends after them."""
    generation, _ = HEADER.unpack_from(data)
    offset, kept = HEADER.size, 0
    while offset < len(data):
        tid_length = int.from_bytes(data[offset + 20 : offset + 24], "big")
        if kept + tid_length > allocation_length:
            break
        size = FULL_STATUS_DESCRIPTOR.size + tid_length
        offset, kept = offset + size, kept + size
    return HEADER.pack(generation, kept) + data[HEADER.size : HEADER.size + kept]


_READ_FULL_STATUS = PersistentReserveInAction.READ_FULL_STATUS
_READ_RESERVATION = PersistentReserveInAction.READ_RESERVATION


def persistent_reserve_in(
    cdb: bytes, pr: PersistentReservations, caps: Capabilities, profile: Profile = SPC5
) -> bytes:
    # The tables are keyed by the enum, whose members hash and compare as their codes: looked
    # up by the code itself (calling the enum costs a microsecond, a quarter of a READ KEYS).
    service_action = cdb[1] & 0x1F
    builder = SERVICE_ACTIONS.get(service_action)  # type: ignore[call-overload]
    if builder is None:
        raise illegal_request(INVALID_FIELD_IN_CDB, cdb_byte=1, bit=4)
    allocation_length = int.from_bytes(cdb[7:9], "big")
    minimum = LIO_MINIMUM_ALLOCATION_LENGTH[service_action]  # type: ignore[index]
    if allocation_length < profile.choose(ALLOCATION_LENGTH_MINIMUM, 0, minimum):
        raise illegal_request(INVALID_FIELD_IN_CDB, cdb_byte=7)
    data = builder(pr, caps)
    if service_action == _READ_FULL_STATUS and FULL_STATUS_TRUNCATION in profile:
        data = lio_full_status_cut(data, allocation_length)
    if service_action == _READ_RESERVATION and profile.choose(
        READ_RESERVATION_CUT, False, allocation_length < LIO_READ_RESERVATION_WHOLE
    ):
        data = data[: HEADER.size] + bytes(len(data) - HEADER.size)
    return data[:allocation_length]
