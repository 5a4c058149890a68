"""PERSISTENT RESERVE IN/OUT as the Linux block layer's PR ioctls (``<linux/pr.h>``), sans-IO.

Why a second path to the device: the ioctls work on any block device with PR operations (sd,
NVMe, dm-multipath), and since 6.5 a writable whole-disk fd is enough, no CAP_SYS_RAWIO. They
express less than SCSI, so this module decides, per CDB, either the ioctl and its argument or
the answer a device gives for a field it does not support. Facts (``include/uapi/linux/pr.h``,
``Documentation/block/pr.rst``, ``drivers/scsi/sd.c``):

- IOC_PR_REGISTER 200, RESERVE 201, RELEASE 202, PREEMPT 203, PREEMPT_ABORT 204, CLEAR 205
  (4.4); IOC_PR_READ_KEYS 206 and IOC_PR_READ_RESERVATION 207 only from 6.19.
- ``enum pr_type`` is numbered like NVMe (1 WE, 2 EA, 3 WE-RO, 4 EA-RO, 5 WE-AR, 6 EA-AR), not
  like SCSI's TYPE codes (1, 3, 5, 6, 7, 8).
- One flag, PR_FL_IGNORE_KEY (REGISTER AND IGNORE EXISTING KEY). sd sends every REGISTER with
  APTPL=1 whatever was asked; SPEC_I_PT, ALL_TG_PT, REGISTER AND MOVE, REPLACE LOST
  RESERVATION, READ FULL STATUS and REPORT CAPABILITIES have no ioctl.
- The return value: 0, or (sd, 6.1) the SCSI result with the status byte in bits 0-7 and the
  host byte in bits 16-23; from 6.5 ``enum pr_status``, whose values coincide where they
  overlap (RESERVATION CONFLICT 0x18, I/O error 0x02 = CHECK CONDITION) and name path failures
  in the host byte. The sense data never reaches the caller.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from scsi_pr.helper.executors import limits
from scsi_pr.helper.executors.status import (
    INVALID_FIELD,
    INVALID_OPCODE,
    INVALID_PARAM_LEN,
    SenseCode,
)
from scsi_pr.sim import pr_in
from scsi_pr.sim.constants import (
    LU_SCOPE,
    PR_OUT_BASIC_PARAMETER_LIST_LENGTH,
    Opcode,
    PersistentReserveInAction,
    PersistentReserveOutAction,
    ReservationType,
)

SA = PersistentReserveOutAction


def _ioc(direction: int, number: int, size: int) -> int:
    """``_IOC(dir, 'p', nr, size)`` of asm-generic/ioctl.h (x86, arm64: 2 direction bits)."""
    return (direction << 30) | (size << 16) | (ord("p") << 8) | number


_WRITE, _READ = 1, 2
#: struct pr_registration {u64 old_key; u64 new_key; u32 flags; u32 __pad;}
REGISTRATION = struct.Struct("=QQII")
#: struct pr_reservation {u64 key; u32 type; u32 flags;}
RESERVATION = struct.Struct("=QII")
#: struct pr_preempt {u64 old_key; u64 new_key; u32 type; u32 flags;}
PREEMPT = struct.Struct("=QQII")
#: struct pr_clear {u64 key; u32 flags; u32 __pad;}
CLEAR = struct.Struct("=QII")
#: struct pr_read_keys {u32 generation; u32 num_keys; u64 keys_ptr;} (6.19)
READ_KEYS = struct.Struct("=IIQ")
#: struct pr_read_reservation {u64 key; u32 generation; u32 type;} (6.19)
READ_RESERVATION = struct.Struct("=QII")

IOC_PR_REGISTER = _ioc(_WRITE, 200, REGISTRATION.size)
IOC_PR_RESERVE = _ioc(_WRITE, 201, RESERVATION.size)
IOC_PR_RELEASE = _ioc(_WRITE, 202, RESERVATION.size)
IOC_PR_PREEMPT = _ioc(_WRITE, 203, PREEMPT.size)
IOC_PR_PREEMPT_ABORT = _ioc(_WRITE, 204, PREEMPT.size)
IOC_PR_CLEAR = _ioc(_WRITE, 205, CLEAR.size)
IOC_PR_READ_KEYS = _ioc(_WRITE | _READ, 206, READ_KEYS.size)
IOC_PR_READ_RESERVATION = _ioc(_READ, 207, READ_RESERVATION.size)
PR_FL_IGNORE_KEY = 1


class PrType(IntEnum):
    """``enum pr_type``: NVMe's numbering."""

    WRITE_EXCLUSIVE = 1
    EXCLUSIVE_ACCESS = 2
    WRITE_EXCLUSIVE_REG_ONLY = 3
    EXCLUSIVE_ACCESS_REG_ONLY = 4
    WRITE_EXCLUSIVE_ALL_REGS = 5
    EXCLUSIVE_ACCESS_ALL_REGS = 6


#: SCSI TYPE code -> the block layer's type, and back
PR_TYPE: dict[ReservationType, PrType] = {
    ReservationType.WRITE_EXCLUSIVE: PrType.WRITE_EXCLUSIVE,
    ReservationType.EXCLUSIVE_ACCESS: PrType.EXCLUSIVE_ACCESS,
    ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY: PrType.WRITE_EXCLUSIVE_REG_ONLY,
    ReservationType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY: PrType.EXCLUSIVE_ACCESS_REG_ONLY,
    ReservationType.WRITE_EXCLUSIVE_ALL_REGISTRANTS: PrType.WRITE_EXCLUSIVE_ALL_REGS,
    ReservationType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS: PrType.EXCLUSIVE_ACCESS_ALL_REGS,
}
SCSI_TYPE: dict[PrType, ReservationType] = {v: k for k, v in PR_TYPE.items()}

#: PR OUT parameter list byte 20 (SPC-5 6.17.3)
SPEC_I_PT, ALL_TG_PT = 0x08, 0x04
#: PR IN service actions with an ioctl (from 6.19); the rest are answered without the device
READ_IOCTLS = {
    PersistentReserveInAction.READ_KEYS: IOC_PR_READ_KEYS,
    PersistentReserveInAction.READ_RESERVATION: IOC_PR_READ_RESERVATION,
}


@dataclass(frozen=True)
class Ioctl:
    """One PR ioctl to issue: request number and the packed argument."""

    request: int
    argument: bytes
    what: str


@dataclass(frozen=True)
class Refusal:
    """What a device answers for a field this path cannot carry (CHECK CONDITION)."""

    code: SenseCode
    why: str


def pr_out(cdb: bytes, data: bytes) -> Ioctl | Refusal:
    """The ioctl for a PERSISTENT RESERVE OUT, or the refusal of what no ioctl can say."""
    if len(cdb) < 10 or cdb[0] != Opcode.PERSISTENT_RESERVE_OUT:
        return Refusal(INVALID_OPCODE, "not a PERSISTENT RESERVE OUT CDB")
    try:
        action = SA(cdb[1] & 0x1F)
    except ValueError:
        return Refusal(INVALID_FIELD, f"service action {cdb[1] & 0x1F:#x} does not exist")
    if action == SA.REGISTER_AND_MOVE:
        return Refusal(limits.IOCTL_NO_REGISTER_AND_MOVE.refusal, "no block-layer ioctl for it")
    if action == SA.REPLACE_LOST_RESERVATION:  # LIO has none either: answered as LIO does
        return Refusal(INVALID_FIELD, f"{action.name} has no block-layer ioctl")
    # without SPEC_I_PT the list is exactly 24 bytes (SPC-5 6.17.3); with it, refused below
    basic = PR_OUT_BASIC_PARAMETER_LIST_LENGTH
    if len(data) < basic or (len(data) != basic and not data[20] & SPEC_I_PT):
        return Refusal(INVALID_PARAM_LEN, f"parameter list of {len(data)} bytes, not 24")
    key, sa_key = struct.unpack_from(">QQ", data)
    flags = data[20]
    if flags & (SPEC_I_PT | ALL_TG_PT):
        return Refusal(limits.IOCTL_NO_SPEC_I_PT_ALL_TG_PT.refusal, "no ioctl field for them")
    if action in (SA.REGISTER, SA.REGISTER_AND_IGNORE_EXISTING_KEY):
        ignore = PR_FL_IGNORE_KEY if action == SA.REGISTER_AND_IGNORE_EXISTING_KEY else 0
        return Ioctl(IOC_PR_REGISTER, REGISTRATION.pack(key, sa_key, ignore, 0), action.name)
    if action == SA.CLEAR:
        return Ioctl(IOC_PR_CLEAR, CLEAR.pack(key, 0, 0), action.name)
    scope, code = cdb[2] >> 4, cdb[2] & 0x0F
    checked_here = limits.IOCTL_FIELDS_CHECKED_FIRST.refusal
    try:
        type_ = PR_TYPE[ReservationType(code)]
    except ValueError:
        return Refusal(checked_here, f"TYPE {code:#x} does not exist")
    if scope != LU_SCOPE:
        return Refusal(checked_here, f"SCOPE {scope:#x}: only LU_SCOPE exists")
    if action in (SA.RESERVE, SA.RELEASE):
        request = IOC_PR_RESERVE if action == SA.RESERVE else IOC_PR_RELEASE
        return Ioctl(request, RESERVATION.pack(key, type_, 0), action.name)
    request = IOC_PR_PREEMPT if action == SA.PREEMPT else IOC_PR_PREEMPT_ABORT
    return Ioctl(request, PREEMPT.pack(key, sa_key, type_, 0), action.name)


def read_keys_data(generation: int, count: int, keys: list[int]) -> bytes:
    """READ KEYS parameter data (SPC-5 6.16.2) from what IOC_PR_READ_KEYS returned: ``count``
    is its ``num_keys``, the device's whole count (sd reads it from the ADDITIONAL LENGTH),
    and ``keys`` the ones it copied, at most as many as asked. The ADDITIONAL LENGTH is the
    device's, so a guest is told the list goes on past the helper's buffer, as SG_IO tells it."""
    return pr_in.keys_data(generation, keys, count)


def read_reservation_data(key: int, generation: int, pr_type: int) -> bytes:
    """READ RESERVATION parameter data (SPC-5 6.16.3) from IOC_PR_READ_RESERVATION; type 0 is
    "no reservation"."""
    if pr_type == 0:
        return pr_in.reservation_data(generation, None)
    scsi = SCSI_TYPE[PrType(pr_type)]
    return pr_in.reservation_data(generation, (key, pr_in.scope_type(LU_SCOPE, scsi)))


def capabilities_of_path(device: bytes) -> bytes:
    """The device's REPORT CAPABILITIES data with the capabilities this path cannot carry
    cleared: SIP_C and ATP_C (IOC_PR_REGISTER has no field for them) and RLR_C (no ioctl for
    REPLACE LOST RESERVATION). The rest, PTPL_A included, is the device's."""
    if len(device) < 3:
        return device
    cleared = device[2] & ~(pr_in.SIP_C | pr_in.ATP_C | pr_in.RLR_C)
    return device[:2] + bytes([cleared]) + device[3:]


@dataclass(frozen=True)
class Outcome:
    """An ioctl's return value as SCSI: a status byte, or a host-level failure."""

    status: int
    host: int


def outcome(returned: int) -> Outcome:
    """Split a PR ioctl's non-negative return value (sd's SCSI result; ``pr_status`` from 6.5)."""
    return Outcome(returned & 0xFF, (returned >> 16) & 0xFF)
