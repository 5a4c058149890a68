"""Every command the model accepts besides PERSISTENT RESERVE IN/OUT (SPC-5, SBC-4).

``COMMANDS`` maps an operation code to its handler and its access class in the conflict table
(``sim.conflict``). Handlers return data-in bytes (already cut to ALLOCATION LENGTH) or raise
``CommandTerminated``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from scsi_pr.sim.conflict import Access
from scsi_pr.sim.constants import (
    INVALID_FIELD_IN_CDB,
    LBA_OUT_OF_RANGE,
    NO_ADDITIONAL_SENSE,
    AdditionalSense,
    Opcode,
    SenseKey,
    ServiceActionIn16,
    Status,
)
from scsi_pr.sim.deviations import (
    CRH_HOLDER_ONLY,
    MODE_SENSE_ALLOWED,
    NO_DATA_BY_DIRECTION,
    READ_CAPACITY_10_CONFLICT,
    READ_CAPACITY_16_CONFLICT,
    UA_CLEARS_ALL,
    Deviation,
)
from scsi_pr.sim.lu_state import LuState
from scsi_pr.sim.nexus import ITNexus
from scsi_pr.sim.profiles import Profile
from scsi_pr.sim.result import (
    CommandResult,
    CommandTerminated,
    fixed_sense,
    illegal_request,
    reservation_conflict,
)

Handler = Callable[[LuState, ITNexus, bytes, bytes], bytes]


_GROUP_CDB_LENGTH = {0: 6, 1: 10, 2: 10, 4: 16, 5: 12}


def cdb_length(opcode: int) -> int:
    """SPC-5 OPERATION CODE: the group code (top three bits) fixes the CDB length. Asked only
    of opcodes the model implements, all in these groups (``test_every_command_has_a_length``)."""
    return _GROUP_CDB_LENGTH[opcode >> 5]


# -- SPC-5 ----------------------------------------------------------------------------------
def test_unit_ready(lu: LuState, nexus: ITNexus, cdb: bytes, data: bytes) -> bytes:
    return b""


def inquiry(lu: LuState, nexus: ITNexus, cdb: bytes, data: bytes) -> bytes:
    """SPC-5 6.7: standard data, or VPD pages 00h, 80h, 83h."""
    evpd, page = cdb[1] & 0x01, cdb[2]
    allocation_length = int.from_bytes(cdb[3:5], "big")
    if cdb[1] & 0xFE:
        raise illegal_request(INVALID_FIELD_IN_CDB, cdb_byte=1, bit=1)
    if not evpd:
        if page:
            raise illegal_request(INVALID_FIELD_IN_CDB, cdb_byte=2)
        names = _field(lu.vendor, 8) + _field(lu.product, 16) + _field(lu.revision, 4)
        # disk, SPC-5, ADDITIONAL LENGTH (the bytes after byte 4), CMDQUE
        out = bytes([0x00, 0x00, 0x07, 0x02, 3 + len(names), 0x00, 0x00, 0x02]) + names
    else:
        builder = VPD_PAGES.get(page)
        if builder is None:
            raise illegal_request(INVALID_FIELD_IN_CDB, cdb_byte=2)
        payload = builder(lu, nexus)
        out = bytes([0x00, page]) + len(payload).to_bytes(2, "big") + payload
    return out[:allocation_length]


def _field(text: str, size: int) -> bytes:
    """An ASCII field of the standard INQUIRY data or a designator: cut, then space-padded."""
    return text.encode()[:size].ljust(size)


def _vpd_supported(lu: LuState, nexus: ITNexus) -> bytes:
    return bytes(sorted(VPD_PAGES))


def _vpd_serial(lu: LuState, nexus: ITNexus) -> bytes:
    return lu.serial.encode()


def _vpd_device_identification(lu: LuState, nexus: ITNexus) -> bytes:
    """SPC-5 Device Identification VPD page: NAA LU name, T10 vendor id, and the receiving
    relative target port."""
    naa = bytes([0x01, 0x03, 0x00, 0x08]) + lu.naa.to_bytes(8, "big")
    t10_id = _field(lu.vendor, 8) + lu.serial.encode()
    t10 = bytes([0x02, 0x01, 0x00, len(t10_id)]) + t10_id
    rtpi = bytes([0x61, RTPI_DESIGNATOR, 0x00, 0x04, 0, 0]) + nexus.target_port.to_bytes(2, "big")
    return naa + t10 + rtpi


#: Device Identification designator byte 1: PIV=1, ASSOCIATION 01b (target port), DESIGNATOR
#: TYPE 4h (relative target port identifier)
RTPI_DESIGNATOR = 0x94


def relative_target_port_of(page: bytes) -> int | None:
    """The RELATIVE TARGET PORT IDENTIFIER a Device Identification VPD page (INQUIRY EVPD 83h,
    header included) names for the port it was read through; None if it names none."""
    end = min(len(page), 4 + int.from_bytes(page[2:4], "big"))
    offset = 4
    while offset + 4 <= end:
        length = page[offset + 3]
        if offset + 4 + length > end:
            return None  # cut short: the page says more than was read
        if page[offset + 1] & 0x3F == RTPI_DESIGNATOR & 0x3F and length >= 4:
            return int.from_bytes(page[offset + 6 : offset + 8], "big")
        offset += 4 + length
    return None


VPD_PAGES: dict[int, Callable[[LuState, ITNexus], bytes]] = {
    0x00: _vpd_supported,
    0x80: _vpd_serial,
    0x83: _vpd_device_identification,
}


def request_sense(lu: LuState, nexus: ITNexus, cdb: bytes, data: bytes) -> bytes:
    """SPC-5 REQUEST SENSE: a pending unit attention is returned (and cleared) as parameter
    data."""
    if cdb[1] & 0x01:  # DESC: descriptor format is not supported (D_SENSE=0 device)
        raise illegal_request(INVALID_FIELD_IN_CDB, cdb_byte=1, bit=0)
    code = lu.ua.pop(nexus, clear_all=lu.profile.choose(UA_CLEARS_ALL, False, True))
    if code is None:
        sense = fixed_sense(SenseKey.NO_SENSE, NO_ADDITIONAL_SENSE)
    else:
        sense = fixed_sense(SenseKey.UNIT_ATTENTION, code)
    return sense[: cdb[4]]


def report_luns(lu: LuState, nexus: ITNexus, cdb: bytes, data: bytes) -> bytes:
    """SPC-5 REPORT LUNS: one LUN, 0. ALLOCATION LENGTH below 16 is invalid."""
    allocation_length = int.from_bytes(cdb[6:10], "big")
    if allocation_length < 16:
        raise illegal_request(INVALID_FIELD_IN_CDB, cdb_byte=6)
    return (struct.pack(">I4x", 8) + bytes(8))[:allocation_length]


def mode_sense(lu: LuState, nexus: ITNexus, cdb: bytes, data: bytes) -> bytes:
    """SPC-5 6.14/6.15 (MODE SENSE(6)/(10)): caching (08h) and control (0Ah) pages, current
    values."""
    ten = cdb[0] == Opcode.MODE_SENSE_10
    dbd, pc, page = cdb[1] & 0x08, cdb[2] >> 6, cdb[2] & 0x3F
    if pc == 0b11:  # saved values are not supported (SPC-5 6.14)
        raise illegal_request(INVALID_FIELD_IN_CDB, cdb_byte=2, bit=7)
    if page != 0x3F and page not in MODE_PAGES:
        raise illegal_request(INVALID_FIELD_IN_CDB, cdb_byte=2, bit=5)
    pages = b"".join(MODE_PAGES[p] for p in sorted(MODE_PAGES) if page in (0x3F, p))
    descriptor = b"" if dbd else struct.pack(">II", min(lu.blocks, 0xFFFFFFFF), lu.block_size)
    if ten:
        total = 8 + len(descriptor) + len(pages)
        header = struct.pack(">HBBxxH", total - 2, 0, 0, len(descriptor))
        allocation_length = int.from_bytes(cdb[7:9], "big")
    else:
        total = 4 + len(descriptor) + len(pages)
        header = bytes([total - 1, 0, 0, len(descriptor)])
        allocation_length = cdb[4]
    return (header + descriptor + pages)[:allocation_length]


MODE_PAGES: dict[int, bytes] = {
    0x08: bytes([0x08, 0x12]) + bytes(18),  # caching: WCE=0, RCD=0
    0x0A: bytes([0x0A, 0x0A, 0x00, 0x10]) + bytes(8),  # control: D_SENSE=0, QERR=00b
}


# -- SBC-4 ----------------------------------------------------------------------------------
def read_capacity_10(lu: LuState, nexus: ITNexus, cdb: bytes, data: bytes) -> bytes:
    return struct.pack(">II", min(lu.blocks - 1, 0xFFFFFFFF), lu.block_size)


def service_action_in_16(lu: LuState, nexus: ITNexus, cdb: bytes, data: bytes) -> bytes:
    if cdb[1] & 0x1F != ServiceActionIn16.READ_CAPACITY_16:
        raise illegal_request(INVALID_FIELD_IN_CDB, cdb_byte=1, bit=4)
    allocation_length = int.from_bytes(cdb[10:14], "big")
    return struct.pack(">QI20x", lu.blocks - 1, lu.block_size)[:allocation_length]


def _lba_range(cdb: bytes) -> tuple[int, int]:
    if cdb[0] in (Opcode.READ_16, Opcode.WRITE_16):
        return int.from_bytes(cdb[2:10], "big"), int.from_bytes(cdb[10:14], "big")
    if cdb[0] in (Opcode.READ_10, Opcode.WRITE_10, Opcode.VERIFY_10):
        return int.from_bytes(cdb[2:6], "big"), int.from_bytes(cdb[7:9], "big")
    return int.from_bytes(cdb[1:4], "big") & 0x1FFFFF, cdb[4] or 256  # READ/WRITE(6)


def _checked_range(lu: LuState, cdb: bytes) -> tuple[int, int]:
    # SBC-4: RDPROTECT/WRPROTECT/VRPROTECT (byte 1, bits 7-5) ask for protection information,
    # which this LU (PROTECT=0 in its INQUIRY data) does not have
    if cdb[0] not in (Opcode.READ_6, Opcode.WRITE_6) and cdb[1] & 0xE0:
        raise illegal_request(INVALID_FIELD_IN_CDB, cdb_byte=1, bit=7)
    # DPO and FUA (bits 4, 3): unsupported, as DPOFUA=0 in the MODE SENSE header says
    if cdb[0] not in (Opcode.READ_6, Opcode.WRITE_6) and cdb[1] & 0x18:
        raise illegal_request(INVALID_FIELD_IN_CDB, cdb_byte=1, bit=4 if cdb[1] & 0x10 else 3)
    lba, blocks = _lba_range(cdb)
    if lba + blocks > lu.blocks:
        raise illegal_request(LBA_OUT_OF_RANGE)
    return lba, blocks


def read(lu: LuState, nexus: ITNexus, cdb: bytes, data: bytes) -> bytes:
    lba, blocks = _checked_range(lu, cdb)
    return lu.medium.read(lba, blocks)


def write(lu: LuState, nexus: ITNexus, cdb: bytes, data: bytes) -> bytes:
    """The data-out buffer is what the CDB declares; a short buffer is zero-filled, as a
    target sees a short transfer."""
    lba, blocks = _checked_range(lu, cdb)
    size = blocks * lu.block_size
    lu.medium.write(lba, data[:size].ljust(size, b"\0"))
    return b""


#: SBC-4 VERIFY with BYTCHK 01b: the data-out differs from the medium
MISCOMPARE_DURING_VERIFY_OPERATION = AdditionalSense(
    0x1D, 0x00, "MISCOMPARE DURING VERIFY OPERATION"
)


def first_difference(a: bytes, b: bytes) -> int:
    """The offset of the first byte where ``a`` and ``b`` (unequal, of one length) differ.

    Found from the XOR of the two read as big-endian integers (its highest set bit is in the
    first differing byte): arithmetic in C, where a byte-by-byte loop was the target's largest
    cost in libiscsi's VERIFY suite (several MiB compared in Python)."""
    diff = int.from_bytes(a, "big") ^ int.from_bytes(b, "big")
    return len(a) - 1 - (diff.bit_length() - 1) // 8


def verify(lu: LuState, nexus: ITNexus, cdb: bytes, data: bytes) -> bytes:
    """SBC-4 VERIFY(10): BYTCHK 00b checks the range only, 01b compares the data-out with the
    medium (MISCOMPARE, INFORMATION = offset of the first differing byte); 10b/11b are refused."""
    lba, blocks = _checked_range(lu, cdb)
    bytchk = (cdb[1] >> 1) & 0x03
    if bytchk == 0b01:
        size = blocks * lu.block_size
        stored, sent = lu.medium.read(lba, blocks), data[:size].ljust(size, b"\0")
        if stored != sent:
            offset = first_difference(stored, sent)
            sense = bytearray(fixed_sense(SenseKey.MISCOMPARE, MISCOMPARE_DURING_VERIFY_OPERATION))
            sense[0] |= 0x80  # VALID: the INFORMATION field holds the offset
            sense[3:7] = offset.to_bytes(4, "big")
            raise CommandTerminated(CommandResult(Status.CHECK_CONDITION, bytes(sense)))
    elif bytchk:
        raise illegal_request(INVALID_FIELD_IN_CDB, cdb_byte=1, bit=2)
    return b""


def no_data(lu: LuState, nexus: ITNexus, cdb: bytes, data: bytes) -> bytes:
    """SYNCHRONIZE CACHE, START STOP UNIT: nothing to do for an in-memory medium."""
    return b""


def start_stop_access(cdb: bytes) -> Access:
    """SBC-4 4.18 (the reservations table): START STOP UNIT with START=1 and POWER CONDITION
    0h is allowed under every reservation; a stop or a power condition changes device state."""
    return Access.ALWAYS if cdb[4] & 0xF1 == 0x01 else Access.WRITE


# -- RESERVE/RELEASE(6/10) with Compatible Reservation Handling (SPC-5 5.14.3) ---------------
#: CDB byte 1 bits asking for extent or third-party reservations, which the model refuses
SPC2_RESERVE_UNSUPPORTED_BITS = {Opcode.RESERVE_6: 0x1F, Opcode.RESERVE_10: 0x13}


def reserve_spc2(lu: LuState, nexus: ITNexus, cdb: bytes, data: bytes) -> bytes:
    if cdb[1] & SPC2_RESERVE_UNSUPPORTED_BITS[cdb[0]]:
        raise illegal_request(INVALID_FIELD_IN_CDB, cdb_byte=1)
    if _crh_exempt(lu, nexus):
        return b""
    if lu.pr.registrations or (lu.spc2_holder not in (None, nexus)):
        raise reservation_conflict()
    lu.spc2_holder = nexus
    return b""


def release_spc2(lu: LuState, nexus: ITNexus, cdb: bytes, data: bytes) -> bytes:
    if _crh_exempt(lu, nexus):
        return b""
    if lu.pr.registrations:
        raise reservation_conflict()
    if lu.spc2_holder == nexus:
        lu.spc2_holder = None
    return b""  # releasing someone else's (or no) reservation is a no-op (SPC-2 7.17)


def _crh_exempt(lu: LuState, nexus: ITNexus) -> bool:
    """SPC-5 5.14.3 a): RESERVE/RELEASE from a PR holder, or from a registrant while an RO/AR
    reservation exists, completes with GOOD and changes nothing. LIO exempts only the holder it
    files (for all-registrants types, the registrant that reserved)."""
    res = lu.pr.reservation
    if res is None:
        return False
    # (all-registrants registrants are holders, so is_holder answers for them)
    standard = lu.pr.is_holder(nexus) or (
        nexus in lu.pr.registrations and res.type.registrants_only
    )
    return lu.profile.choose(CRH_HOLDER_ONLY, standard, res.holder == nexus)


@dataclass(frozen=True)
class CommandSpec:
    handler: Handler
    access: Access
    data_out: bool = False
    #: where the standard's class depends on the CDB: its class for this CDB (the lio
    #: profiles, which file by data direction, replace ``access`` and skip this)
    access_of: Callable[[bytes], Access] | None = None


COMMANDS: dict[int, CommandSpec] = {
    Opcode.TEST_UNIT_READY: CommandSpec(test_unit_ready, Access.ALWAYS),
    Opcode.REQUEST_SENSE: CommandSpec(request_sense, Access.ALWAYS),
    Opcode.INQUIRY: CommandSpec(inquiry, Access.ALWAYS),
    Opcode.REPORT_LUNS: CommandSpec(report_luns, Access.ALWAYS),
    Opcode.READ_CAPACITY_10: CommandSpec(read_capacity_10, Access.ALWAYS),
    Opcode.SERVICE_ACTION_IN_16: CommandSpec(service_action_in_16, Access.ALWAYS),
    Opcode.MODE_SENSE_6: CommandSpec(mode_sense, Access.READ),
    Opcode.MODE_SENSE_10: CommandSpec(mode_sense, Access.READ),
    Opcode.READ_6: CommandSpec(read, Access.READ),
    Opcode.READ_10: CommandSpec(read, Access.READ),
    Opcode.READ_16: CommandSpec(read, Access.READ),
    Opcode.VERIFY_10: CommandSpec(verify, Access.READ),
    Opcode.WRITE_6: CommandSpec(write, Access.WRITE, data_out=True),
    Opcode.WRITE_10: CommandSpec(write, Access.WRITE, data_out=True),
    Opcode.WRITE_16: CommandSpec(write, Access.WRITE, data_out=True),
    Opcode.SYNCHRONIZE_CACHE_10: CommandSpec(no_data, Access.WRITE),
    Opcode.SYNCHRONIZE_CACHE_16: CommandSpec(no_data, Access.WRITE),
    Opcode.START_STOP_UNIT: CommandSpec(no_data, Access.WRITE, access_of=start_stop_access),
    Opcode.RESERVE_6: CommandSpec(reserve_spc2, Access.OWN_RULES),
    Opcode.RESERVE_10: CommandSpec(reserve_spc2, Access.OWN_RULES),
    Opcode.RELEASE_6: CommandSpec(release_spc2, Access.OWN_RULES),
    Opcode.RELEASE_10: CommandSpec(release_spc2, Access.OWN_RULES),
}

#: LIO files some commands under other access classes than SPC-5 (it decides by data direction,
#: spc-persistent-reservations.md §5): each override is the deviation of the profile that has it
LIO_ACCESS: dict[Deviation, dict[int, Access]] = {
    READ_CAPACITY_10_CONFLICT: {Opcode.READ_CAPACITY_10: Access.READ},
    READ_CAPACITY_16_CONFLICT: {Opcode.SERVICE_ACTION_IN_16: Access.READ},
    MODE_SENSE_ALLOWED: {
        Opcode.MODE_SENSE_6: Access.READ_IF_REGISTERED,
        Opcode.MODE_SENSE_10: Access.READ_IF_REGISTERED,
    },
    NO_DATA_BY_DIRECTION: {
        Opcode.SYNCHRONIZE_CACHE_10: Access.NO_DATA,
        Opcode.SYNCHRONIZE_CACHE_16: Access.NO_DATA,
        Opcode.START_STOP_UNIT: Access.NO_DATA,
        Opcode.VERIFY_10: Access.NO_DATA,
    },
}


def access_table(profile: Profile) -> dict[int, Access]:
    """Each accepted opcode's access class under ``profile`` (the LU builds it once)."""
    table = {opcode: spec.access for opcode, spec in COMMANDS.items()}
    for deviation, overrides in LIO_ACCESS.items():
        if deviation in profile:
            table.update(overrides)
    return table
