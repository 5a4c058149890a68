"""CDB and parameter-list builders, plus the data-in length a CDB asks for.

Every caller that talks to a device (tests, scenarios, the sg_persist-compatible CLI, the rig's
SG_IO backend) builds its bytes here, so there is one place where the layouts of SPC-5 6.16/6.17
and SBC-4 are written down for the sending side. The model parses them in ``scsi_pr.sim.pr_out``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from scsi_pr.sim.constants import (
    LU_SCOPE,
    PR_HELPER_DATA_SIZE,
    Opcode,
    PersistentReserveInAction,
    PersistentReserveOutAction,
    ReservationType,
    ServiceActionIn16,
)
from scsi_pr.sim.transportid import TransportId


def persistent_reserve_in(
    action: PersistentReserveInAction | int, allocation_length: int = PR_HELPER_DATA_SIZE
) -> bytes:
    """SPC-5 6.16.1: the PERSISTENT RESERVE IN CDB."""
    return struct.pack(">BB5xHB", Opcode.PERSISTENT_RESERVE_IN, action & 0x1F, allocation_length, 0)


def persistent_reserve_out(
    action: PersistentReserveOutAction | int,
    parameter_list_length: int,
    type_: ReservationType | int = 0,
    scope: int = LU_SCOPE,
) -> bytes:
    """SPC-5 6.17.1: the PERSISTENT RESERVE OUT CDB (32-bit PARAMETER LIST LENGTH, bytes 5-8)."""
    return struct.pack(
        ">BBB2xIB",
        Opcode.PERSISTENT_RESERVE_OUT,
        action & 0x1F,
        ((scope & 0x0F) << 4) | (type_ & 0x0F),
        parameter_list_length,
        0,
    )


def pr_out_parameters(
    key: int = 0,
    sa_key: int = 0,
    *,
    aptpl: bool = False,
    all_tg_pt: bool = False,
    spec_i_pt: bool = False,
    transport_ids: Iterable[TransportId | bytes] = (),
) -> bytes:
    """SPC-5 6.17.3: the basic parameter list, with TransportIDs when SPEC_I_PT."""
    flags = (0x08 if spec_i_pt else 0) | (0x04 if all_tg_pt else 0) | (0x01 if aptpl else 0)
    data = struct.pack(">QQ4xBx2x", key, sa_key, flags)
    if spec_i_pt:
        tids = b"".join(t if isinstance(t, bytes) else t.encode() for t in transport_ids)
        data += struct.pack(">I", len(tids)) + tids
    return data


def register_and_move_parameters(
    key: int,
    sa_key: int,
    relative_target_port: int,
    transport_id: TransportId | bytes,
    *,
    unreg: bool = False,
    aptpl: bool = False,
) -> bytes:
    """SPC-5 6.17.4: the REGISTER AND MOVE parameter list."""
    tid = transport_id if isinstance(transport_id, bytes) else transport_id.encode()
    flags = (0x02 if unreg else 0) | (0x01 if aptpl else 0)
    return struct.pack(">QQxBHI", key, sa_key, flags, relative_target_port, len(tid)) + tid


def prout(
    action: PersistentReserveOutAction | int,
    key: int = 0,
    sa_key: int = 0,
    type_: ReservationType | int = 0,
    *,
    scope: int = LU_SCOPE,
    aptpl: bool = False,
    all_tg_pt: bool = False,
    spec_i_pt: bool = False,
    transport_ids: Iterable[TransportId | bytes] = (),
) -> tuple[bytes, bytes]:
    """(CDB, parameter list) for any PR OUT service action but REGISTER AND MOVE."""
    data = pr_out_parameters(
        key,
        sa_key,
        aptpl=aptpl,
        all_tg_pt=all_tg_pt,
        spec_i_pt=spec_i_pt,
        transport_ids=transport_ids,
    )
    return persistent_reserve_out(action, len(data), type_, scope), data


def register_and_move(
    key: int,
    sa_key: int,
    relative_target_port: int,
    transport_id: TransportId | bytes,
    type_: ReservationType | int = 0,
    *,
    unreg: bool = False,
    aptpl: bool = False,
) -> tuple[bytes, bytes]:
    data = register_and_move_parameters(
        key, sa_key, relative_target_port, transport_id, unreg=unreg, aptpl=aptpl
    )
    return (
        persistent_reserve_out(PersistentReserveOutAction.REGISTER_AND_MOVE, len(data), type_),
        data,
    )


# -- non-PR commands ------------------------------------------------------------------------
def test_unit_ready() -> bytes:
    return bytes(6)


def request_sense(allocation_length: int = 18) -> bytes:
    return bytes([Opcode.REQUEST_SENSE, 0, 0, 0, allocation_length & 0xFF, 0])


def inquiry(evpd: bool = False, page: int = 0, allocation_length: int = 96) -> bytes:
    return struct.pack(">BBBHB", Opcode.INQUIRY, int(evpd), page, allocation_length, 0)


def report_luns(allocation_length: int = 16) -> bytes:
    return struct.pack(">BxB3xIxB", Opcode.REPORT_LUNS, 0, allocation_length, 0)


def read_capacity_10() -> bytes:
    return bytes([Opcode.READ_CAPACITY_10]) + bytes(9)


def read_capacity_16(allocation_length: int = 32) -> bytes:
    return struct.pack(
        ">BB8xIxB",
        Opcode.SERVICE_ACTION_IN_16,
        ServiceActionIn16.READ_CAPACITY_16,
        allocation_length,
        0,
    )


def read_10(lba: int, blocks: int) -> bytes:
    return struct.pack(">BxIxHB", Opcode.READ_10, lba, blocks, 0)


def write_10(lba: int, blocks: int) -> bytes:
    return struct.pack(">BxIxHB", Opcode.WRITE_10, lba, blocks, 0)


def read_16(lba: int, blocks: int) -> bytes:
    return struct.pack(">BxQIxB", Opcode.READ_16, lba, blocks, 0)


def write_16(lba: int, blocks: int) -> bytes:
    return struct.pack(">BxQIxB", Opcode.WRITE_16, lba, blocks, 0)


def synchronize_cache_10() -> bytes:
    return bytes([Opcode.SYNCHRONIZE_CACHE_10]) + bytes(9)


def mode_sense_6(page: int = 0x3F, allocation_length: int = 255) -> bytes:
    return bytes([Opcode.MODE_SENSE_6, 0x08, page & 0x3F, 0, allocation_length & 0xFF, 0])


def mode_sense_10(page: int = 0x3F, allocation_length: int = 512) -> bytes:
    return struct.pack(">BBB4xHB", Opcode.MODE_SENSE_10, 0x08, page & 0x3F, allocation_length, 0)


def reserve_6() -> bytes:
    return bytes([Opcode.RESERVE_6]) + bytes(5)


def release_6() -> bytes:
    return bytes([Opcode.RELEASE_6]) + bytes(5)


# -- what a CDB expects back ----------------------------------------------------------------
def _allocation_length(cdb: bytes) -> int:
    op = cdb[0]
    if op in (Opcode.REQUEST_SENSE, Opcode.MODE_SENSE_6):
        return cdb[4]
    if op == Opcode.INQUIRY:
        return int.from_bytes(cdb[3:5], "big")
    if op in (Opcode.PERSISTENT_RESERVE_IN, Opcode.MODE_SENSE_10, Opcode.LOG_SENSE):
        return int.from_bytes(cdb[7:9], "big")
    if op == Opcode.REPORT_LUNS:
        return int.from_bytes(cdb[6:10], "big")
    if op == Opcode.READ_CAPACITY_10:
        return 8
    if op in (Opcode.SERVICE_ACTION_IN_16, Opcode.MAINTENANCE_IN):
        return int.from_bytes(cdb[10:14], "big") if op == 0x9E else int.from_bytes(cdb[6:10], "big")
    return 0


def data_in_length(cdb: bytes, block_size: int = 512) -> int:
    """Bytes of data-in the initiator must provide a buffer for (0 for data-out/no-data)."""
    if not cdb:
        return 0
    op = cdb[0]
    if op == Opcode.READ_10 and len(cdb) >= 10:
        return int.from_bytes(cdb[7:9], "big") * block_size
    if op == Opcode.READ_16 and len(cdb) >= 16:
        return int.from_bytes(cdb[10:14], "big") * block_size
    if op == Opcode.READ_6 and len(cdb) >= 6:
        return (cdb[4] or 256) * block_size
    return _allocation_length(cdb) if len(cdb) >= 6 else 0
