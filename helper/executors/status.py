"""How an SG_IO outcome becomes the (status, sense) qemu-pr-helper sends back.

QEMU's helper (>= 6.0, ``do_sgio_worker``) decides in a fixed order: a failed ioctl (errno),
then a non-zero ``host_status``, then a driver timeout, else the device's own status byte. The
first two may *fabricate* fixed-format sense; everything else passes the sense buffer through
exactly as the kernel wrote it. Shared by the SG_IO executor (``scsi_pr.helper.executors.sg``), the
simulated executor (which refuses non-files the way a device rejecting SG_IO is answered) and the
multipath executor (its TEST UNIT READY probe). Reference: protocol note section 2.4.

Pure: no ioctl here, only tables and the sense layout, so every row is unit-testable.
"""

from __future__ import annotations

import errno as E
from dataclasses import dataclass

from scsi_pr.helper.executors.base import Reply
from scsi_pr.helper.proto import PR_HELPER_SENSE_SIZE
from scsi_pr.sim.constants import SenseKey, Status

# QEMU include/scsi/utils.h: SCSI_SENSE_LEN. scsi_build_sense() writes only these 18 bytes of
# fixed-format sense (70h, key, ADDITIONAL SENSE LENGTH 0Ah, ASC, ASCQ) over the buffer.
BUILT_SENSE_LENGTH = 18
# QEMU include/scsi/utils.h. The kernel's driver_status low nibble is an enumeration (SOFT 2,
# MEDIA 3, ERROR 4, INVALID 5, TIMEOUT 6, HARD 7), but QEMU tests it as a *mask* (& 0x06), so
# every one of those reads as a timeout and becomes BUSY. Reproduced on purpose.
SG_ERR_DRIVER_TIMEOUT = 0x06
SG_ERR_DRIVER_SENSE = 0x08


@dataclass(frozen=True)
class SenseCode:
    """A sense key + ASC/ASCQ that the helper builds itself (QEMU's ``SENSE_CODE(x)``)."""

    key: int
    asc: int
    ascq: int

    def build(self) -> bytes:
        """The 18 bytes QEMU's ``scsi_build_sense`` writes (fixed format, current error)."""
        sense = bytearray(BUILT_SENSE_LENGTH)
        sense[0] = 0x70
        sense[2] = self.key
        sense[7] = BUILT_SENSE_LENGTH - 8
        sense[12] = self.asc
        sense[13] = self.ascq
        return bytes(sense)

    def over(self, sense: bytes = b"") -> bytes:
        """96-byte sense buffer with this code written over the first 18 bytes of ``sense``.

        QEMU zeroes the buffer before SG_IO and builds sense in place, so whatever the kernel
        wrote beyond byte 17 survives: copied here for byte compatibility.
        """
        tail = sense[BUILT_SENSE_LENGTH:PR_HELPER_SENSE_SIZE]
        return (self.build() + tail).ljust(PR_HELPER_SENSE_SIZE, b"\0")


# QEMU scsi/utils.c sense codes, named as there (SENSE_CODE(name)).
NO_SENSE = SenseCode(SenseKey.NO_SENSE, 0x00, 0x00)
NOT_READY = SenseCode(SenseKey.NOT_READY, 0x04, 0x00)
READ_ERROR = SenseCode(SenseKey.MEDIUM_ERROR, 0x11, 0x00)
TARGET_FAILURE = SenseCode(SenseKey.HARDWARE_ERROR, 0x44, 0x00)
NO_MEDIUM = SenseCode(SenseKey.NOT_READY, 0x3A, 0x00)
INVALID_OPCODE = SenseCode(SenseKey.ILLEGAL_REQUEST, 0x20, 0x00)
INVALID_FIELD = SenseCode(SenseKey.ILLEGAL_REQUEST, 0x24, 0x00)
INVALID_PARAM = SenseCode(SenseKey.ILLEGAL_REQUEST, 0x26, 0x00)
INVALID_PARAM_LEN = SenseCode(SenseKey.ILLEGAL_REQUEST, 0x1A, 0x00)
SCSI_BUS_RESET = SenseCode(SenseKey.UNIT_ATTENTION, 0x29, 0x02)
RESET = SenseCode(SenseKey.UNIT_ATTENTION, 0x29, 0x00)
SPACE_ALLOC_FAILED = SenseCode(SenseKey.DATA_PROTECT, 0x27, 0x07)
IO_ERROR = SenseCode(SenseKey.ABORTED_COMMAND, 0x00, 0x06)
LUN_COMM_FAILURE = SenseCode(SenseKey.ABORTED_COMMAND, 0x08, 0x00)
LUN_NOT_RESPONDING = SenseCode(SenseKey.ABORTED_COMMAND, 0x05, 0x00)
COMMAND_TIMEOUT = SenseCode(SenseKey.ABORTED_COMMAND, 0x2E, 0x02)
COMMAND_ABORTED = SenseCode(SenseKey.ABORTED_COMMAND, 0x2F, 0x02)
I_T_NEXUS_LOSS = SenseCode(SenseKey.ABORTED_COMMAND, 0x29, 0x07)


@dataclass(frozen=True)
class Mapping:
    """One row of a status table: the status byte, and the sense to build (if any)."""

    status: Status
    sense: SenseCode | None = None


def _check(code: SenseCode) -> Mapping:
    return Mapping(Status.CHECK_CONDITION, code)


# QEMU scsi/utils.c scsi_sense_from_errno (Linux build). Anything absent -> IO_ERROR.
ERRNO_TABLE: dict[int, Mapping] = {
    E.EDOM: Mapping(Status.TASK_SET_FULL),
    E.EBADE: Mapping(Status.RESERVATION_CONFLICT),
    E.ENODEV: _check(TARGET_FAILURE),
    E.EREMOTEIO: _check(TARGET_FAILURE),
    E.ENOMEM: _check(TARGET_FAILURE),
    E.ENODATA: _check(READ_ERROR),
    E.ENOMEDIUM: _check(NO_MEDIUM),
    E.EINVAL: _check(INVALID_FIELD),
    E.ENOSPC: _check(SPACE_ALLOC_FAILED),
}
ERRNO_DEFAULT = _check(IO_ERROR)

# QEMU include/scsi/utils.h enum SCSIHostStatus (= the kernel's DID_* values).
SCSI_HOST_OK = 0x00
# QEMU scsi/utils.c scsi_sense_from_host_status. Absent non-zero values (e.g. 0x07 DID_ERROR)
# map to GOOD: a QEMU quirk we reproduce because QEMU's own client relies on nothing else.
HOST_STATUS_TABLE: dict[int, Mapping] = {
    0x01: _check(LUN_NOT_RESPONDING),  # NO_LUN
    0x02: Mapping(Status.BUSY),  # BUSY
    0x03: _check(COMMAND_TIMEOUT),  # TIME_OUT
    0x04: _check(LUN_COMM_FAILURE),  # BAD_RESPONSE
    0x05: _check(COMMAND_ABORTED),  # ABORTED
    0x08: _check(RESET),  # RESET
    0x0E: _check(I_T_NEXUS_LOSS),  # TRANSPORT_DISRUPTED
    0x10: _check(TARGET_FAILURE),  # TARGET_FAILURE
    0x11: Mapping(Status.RESERVATION_CONFLICT),  # RESERVATION_ERROR
    0x12: _check(SPACE_ALLOC_FAILED),  # ALLOCATION_FAILURE
    0x13: _check(READ_ERROR),  # MEDIUM_ERROR
}
HOST_STATUS_DEFAULT = Mapping(Status.GOOD)
_GOOD = int(Status.GOOD)  # a plain int: compared once per request
DRIVER_TIMEOUT = Mapping(Status.BUSY)  # the driver's timeout bit on a host-side success


def _sense_buffer(sense: bytes) -> bytes:
    """QEMU's zeroed 96-byte sense buffer with what the device wrote into it."""
    return sense[:PR_HELPER_SENSE_SIZE].ljust(PR_HELPER_SENSE_SIZE, b"\0")


def _apply(mapping: Mapping, sense: bytes) -> tuple[int, bytes]:
    buf = _sense_buffer(sense)
    if mapping.sense is not None:
        buf = mapping.sense.over(buf)
    return int(mapping.status), buf


def from_errno(err: int) -> tuple[int, bytes]:
    """(status, 96-byte sense) for an SG_IO ioctl that failed with ``err``."""
    return _apply(ERRNO_TABLE.get(err, ERRNO_DEFAULT), b"")


def map_sg_io(
    *,
    err: int = 0,
    host_status: int = 0,
    driver_status: int = 0,
    status: int = 0,
    sense: bytes = b"",
) -> tuple[int, bytes]:
    """(status, 96-byte sense) QEMU's helper answers for one SG_IO outcome.

    ``err`` is the ioctl's errno (0 = the ioctl returned >= 0); the other fields come from the
    returned sg_io_hdr; ``sense`` is the sense buffer as the kernel left it.
    """
    if err:
        return from_errno(err)
    if host_status != SCSI_HOST_OK:
        return _apply(HOST_STATUS_TABLE.get(host_status, HOST_STATUS_DEFAULT), sense)
    if driver_status & SG_ERR_DRIVER_TIMEOUT:
        return _apply(DRIVER_TIMEOUT, sense)
    return status & 0xFF, _sense_buffer(sense)


def reply_from_sg_io(
    mapped: tuple[int, bytes], data_in: bytes, resid: int, allocation_length: int
) -> Reply:
    """The full Reply for a PR IN/OUT that went through SG_IO; ``mapped`` is ``map_sg_io``'s
    (status, sense) for the outcome.

    PR IN data: QEMU always asks for 8192 bytes, keeps ``8192 - resid`` of them when the
    mapped status is GOOD, then clamps to the CDB's ALLOCATION LENGTH; anything else sends no
    data. For PR OUT pass ``allocation_length=0`` (QEMU asserts ``sz == 0``).
    """
    result, buf = mapped
    if result != _GOOD:
        return Reply(result, buf)
    size = max(0, min(len(data_in) - resid, allocation_length))
    return Reply(result, buf, data_in[:size])


def check_condition(code: SenseCode, sense: bytes = b"") -> Reply:
    """A helper-fabricated CHECK CONDITION (e.g. PR OUT on a read-only fd -> INVALID_OPCODE)."""
    return Reply(Status.CHECK_CONDITION, code.over(sense))
