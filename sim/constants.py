"""Code points from SAM-5, SPC-5 and SBC-4 that the model and its callers share.

Names follow the standard so that a reader can grep the T10 text for them.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

#: QEMU's PR_HELPER_DATA_SIZE (scsi/pr-helper.h): the most data a PR command carries either way
#: over the helper socket, and the PR IN allocation length qemu-pr-helper gives the device. The
#: one definition of this limit: the codec, the executors, sg_persist's default and the CDB
#: builders all use it.
PR_HELPER_DATA_SIZE = 8192


class Status(IntEnum):
    """SAM-5 status byte values."""

    GOOD = 0x00
    CHECK_CONDITION = 0x02
    CONDITION_MET = 0x04
    BUSY = 0x08
    RESERVATION_CONFLICT = 0x18
    TASK_SET_FULL = 0x28
    ACA_ACTIVE = 0x30
    TASK_ABORTED = 0x40


class SenseKey(IntEnum):
    """SENSE KEY values (SPC-5, sense data)."""

    NO_SENSE = 0x0
    RECOVERED_ERROR = 0x1
    NOT_READY = 0x2
    MEDIUM_ERROR = 0x3
    HARDWARE_ERROR = 0x4
    ILLEGAL_REQUEST = 0x5
    UNIT_ATTENTION = 0x6
    DATA_PROTECT = 0x7
    BLANK_CHECK = 0x8
    VENDOR_SPECIFIC = 0x9
    COPY_ABORTED = 0xA
    ABORTED_COMMAND = 0xB
    VOLUME_OVERFLOW = 0xD
    MISCOMPARE = 0xE


class AdditionalSense(NamedTuple):
    """An ASC/ASCQ pair with the name SPC-5 gives it."""

    asc: int
    ascq: int
    name: str


# The additional sense codes this project produces or recognises (SPC-5 ASC and ASCQ assignments).
NO_ADDITIONAL_SENSE = AdditionalSense(0x00, 0x00, "NO ADDITIONAL SENSE INFORMATION")
I_O_PROCESS_TERMINATED = AdditionalSense(0x00, 0x06, "I/O PROCESS TERMINATED")
LUN_NOT_READY_CAUSE_NOT_REPORTABLE = AdditionalSense(
    0x04, 0x00, "LOGICAL UNIT NOT READY, CAUSE NOT REPORTABLE"
)
LUN_COMMUNICATION_FAILURE = AdditionalSense(0x08, 0x00, "LOGICAL UNIT COMMUNICATION FAILURE")
UNRECOVERED_READ_ERROR = AdditionalSense(0x11, 0x00, "UNRECOVERED READ ERROR")
PARAMETER_LIST_LENGTH_ERROR = AdditionalSense(0x1A, 0x00, "PARAMETER LIST LENGTH ERROR")
INVALID_COMMAND_OPERATION_CODE = AdditionalSense(0x20, 0x00, "INVALID COMMAND OPERATION CODE")
LBA_OUT_OF_RANGE = AdditionalSense(0x21, 0x00, "LOGICAL BLOCK ADDRESS OUT OF RANGE")
INVALID_FIELD_IN_CDB = AdditionalSense(0x24, 0x00, "INVALID FIELD IN CDB")
LOGICAL_UNIT_NOT_SUPPORTED = AdditionalSense(0x25, 0x00, "LOGICAL UNIT NOT SUPPORTED")
INVALID_FIELD_IN_PARAMETER_LIST = AdditionalSense(0x26, 0x00, "INVALID FIELD IN PARAMETER LIST")
INVALID_RELEASE_OF_PERSISTENT_RESERVATION = AdditionalSense(
    0x26, 0x04, "INVALID RELEASE OF PERSISTENT RESERVATION"
)
WRITE_PROTECTED = AdditionalSense(0x27, 0x00, "WRITE PROTECTED")
SPACE_ALLOCATION_FAILED_WRITE_PROTECT = AdditionalSense(
    0x27, 0x07, "SPACE ALLOCATION FAILED WRITE PROTECT"
)
POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED = AdditionalSense(
    0x29, 0x00, "POWER ON, RESET, OR BUS DEVICE RESET OCCURRED"
)
POWER_ON_OCCURRED = AdditionalSense(0x29, 0x01, "POWER ON OCCURRED")
BUS_DEVICE_RESET_FUNCTION_OCCURRED = AdditionalSense(
    0x29, 0x03, "BUS DEVICE RESET FUNCTION OCCURRED"
)
I_T_NEXUS_LOSS_OCCURRED = AdditionalSense(0x29, 0x07, "I_T NEXUS LOSS OCCURRED")
RESERVATIONS_PREEMPTED = AdditionalSense(0x2A, 0x03, "RESERVATIONS PREEMPTED")
RESERVATIONS_RELEASED = AdditionalSense(0x2A, 0x04, "RESERVATIONS RELEASED")
REGISTRATIONS_PREEMPTED = AdditionalSense(0x2A, 0x05, "REGISTRATIONS PREEMPTED")
COMMANDS_CLEARED_BY_ANOTHER_INITIATOR = AdditionalSense(
    0x2F, 0x00, "COMMANDS CLEARED BY ANOTHER INITIATOR"
)
PERSISTENT_RESERVATION_INFORMATION_LOST = AdditionalSense(
    0x44, 0x01, "PERSISTENT RESERVATION INFORMATION LOST"
)
INTERNAL_TARGET_FAILURE = AdditionalSense(0x44, 0x00, "INTERNAL TARGET FAILURE")
INSUFFICIENT_REGISTRATION_RESOURCES = AdditionalSense(
    0x55, 0x04, "INSUFFICIENT REGISTRATION RESOURCES"
)
MEDIUM_NOT_PRESENT = AdditionalSense(0x3A, 0x00, "MEDIUM NOT PRESENT")
PROTOCOL_SERVICE_CRC_ERROR = AdditionalSense(0x47, 0x05, "PROTOCOL SERVICE CRC ERROR")
INSUFFICIENT_RESOURCES = AdditionalSense(0x55, 0x03, "INSUFFICIENT RESOURCES")
REPORTED_LUNS_DATA_HAS_CHANGED = AdditionalSense(0x3F, 0x0E, "REPORTED LUNS DATA HAS CHANGED")

ADDITIONAL_SENSE_BY_CODE: dict[tuple[int, int], AdditionalSense] = {
    (v.asc, v.ascq): v for v in list(globals().values()) if isinstance(v, AdditionalSense)
}


class Opcode(IntEnum):
    """Operation codes the model implements (SPC-5 / SBC-4)."""

    TEST_UNIT_READY = 0x00
    REQUEST_SENSE = 0x03
    READ_6 = 0x08
    WRITE_6 = 0x0A
    INQUIRY = 0x12
    MODE_SELECT_6 = 0x15
    RESERVE_6 = 0x16
    RELEASE_6 = 0x17
    MODE_SENSE_6 = 0x1A
    START_STOP_UNIT = 0x1B
    READ_CAPACITY_10 = 0x25
    READ_10 = 0x28
    WRITE_10 = 0x2A
    VERIFY_10 = 0x2F
    SYNCHRONIZE_CACHE_10 = 0x35
    LOG_SENSE = 0x4D
    MODE_SELECT_10 = 0x55
    RESERVE_10 = 0x56
    RELEASE_10 = 0x57
    MODE_SENSE_10 = 0x5A
    PERSISTENT_RESERVE_IN = 0x5E
    PERSISTENT_RESERVE_OUT = 0x5F
    READ_16 = 0x88
    WRITE_16 = 0x8A
    SYNCHRONIZE_CACHE_16 = 0x91
    SERVICE_ACTION_IN_16 = 0x9E
    REPORT_LUNS = 0xA0
    MAINTENANCE_IN = 0xA3


class ServiceActionIn16(IntEnum):
    READ_CAPACITY_16 = 0x10


class PersistentReserveInAction(IntEnum):
    """SERVICE ACTION codes of PERSISTENT RESERVE IN (SPC-5 6.16.1)."""

    READ_KEYS = 0x00
    READ_RESERVATION = 0x01
    REPORT_CAPABILITIES = 0x02
    READ_FULL_STATUS = 0x03


class PersistentReserveOutAction(IntEnum):
    """SERVICE ACTION codes of PERSISTENT RESERVE OUT (SPC-5 6.17.2)."""

    REGISTER = 0x00
    RESERVE = 0x01
    RELEASE = 0x02
    CLEAR = 0x03
    PREEMPT = 0x04
    PREEMPT_AND_ABORT = 0x05
    REGISTER_AND_IGNORE_EXISTING_KEY = 0x06
    REGISTER_AND_MOVE = 0x07
    REPLACE_LOST_RESERVATION = 0x08


class ReservationType(IntEnum):
    """The persistent reservation TYPE field (SPC-5 6.16.3)."""

    WRITE_EXCLUSIVE = 0x1
    EXCLUSIVE_ACCESS = 0x3
    WRITE_EXCLUSIVE_REGISTRANTS_ONLY = 0x5
    EXCLUSIVE_ACCESS_REGISTRANTS_ONLY = 0x6
    WRITE_EXCLUSIVE_ALL_REGISTRANTS = 0x7
    EXCLUSIVE_ACCESS_ALL_REGISTRANTS = 0x8

    @property
    def abbreviation(self) -> str:
        return _TYPE_ABBREVIATIONS[self]

    # The two below are asked at nearly every PR decision: they compare with the codes as
    # plain ints (``_ALL_REGISTRANTS``, ``_REGISTRANTS_ONLY``), since reading a member off
    # the class costs several times that comparison.
    @property
    def all_registrants(self) -> bool:
        """Every registered I_T nexus is a reservation holder (SPC-5 5.14.10)."""
        return self in _ALL_REGISTRANTS

    @property
    def registrants_only(self) -> bool:
        return self in _REGISTRANTS_ONLY


_ALL_REGISTRANTS = (
    int(ReservationType.WRITE_EXCLUSIVE_ALL_REGISTRANTS),
    int(ReservationType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS),
)
_REGISTRANTS_ONLY = (
    int(ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY),
    int(ReservationType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY),
)
#: each TYPE code's member: a dict lookup, where calling the enum costs a microsecond
RESERVATION_TYPE_BY_CODE: dict[int, ReservationType] = {int(t): t for t in ReservationType}


_TYPE_ABBREVIATIONS = {
    ReservationType.WRITE_EXCLUSIVE: "WE",
    ReservationType.EXCLUSIVE_ACCESS: "EA",
    ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY: "WE-RO",
    ReservationType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY: "EA-RO",
    ReservationType.WRITE_EXCLUSIVE_ALL_REGISTRANTS: "WE-AR",
    ReservationType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS: "EA-AR",
}

LU_SCOPE = 0x0

# Sizes fixed by SPC-5.
PR_OUT_BASIC_PARAMETER_LIST_LENGTH = 24  # 6.17.3
REPORT_CAPABILITIES_LENGTH = 8  # 6.16.4: LENGTH, and the whole parameter data
FIXED_SENSE_LENGTH = 18  # fixed format sense data, with ADDITIONAL SENSE LENGTH = 0Ah


class ProtocolIdentifier(IntEnum):
    """PROTOCOL IDENTIFIER values (SPC-5 7.6.1)."""

    FIBRE_CHANNEL = 0x0
    PARALLEL_SCSI = 0x1
    SSA = 0x2
    IEEE_1394 = 0x3
    SCSI_RDMA = 0x4
    ISCSI = 0x5
    SAS = 0x6
    ADT = 0x7
    ATA = 0x8
    UAS = 0x9
    SOP = 0xA
    PCIE = 0xB
    NONE = 0xF
