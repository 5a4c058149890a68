"""Code points of RFC 7143 (iSCSI), named as the RFC names them.

Every enum's ``repr`` is the Python expression that names the member (``Opcode.NOP_OUT``), so
the repr of a PDU that holds them is valid Python too. Section numbers are RFC 7143's.
"""

from __future__ import annotations

from enum import IntEnum


class CodeEnum(IntEnum):
    """An ``IntEnum`` whose repr is its qualified name, e.g. ``RejectReason.PROTOCOL_ERROR``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}.{self.name}"


BHS_SIZE = 48  # 11.2.1: the Basic Header Segment
DIGEST_SIZE = 4  # 11.2.4 / 13.1: CRC32C
#: 2**24 - 1: the 24-bit DataSegmentLength field (11.2.1.3), and so the ceiling of the length
#: keys MaxRecvDataSegmentLength, MaxBurstLength and FirstBurstLength (13.12-13.14)
MAX_24 = (1 << 24) - 1
MAX_DATA_SEGMENT_LENGTH = MAX_24
#: the largest write this target buffers and the largest READ it serves, unless configured
#: otherwise (``scsi-pr target serve --max-write``)
DEFAULT_MAX_TRANSFER = 16 << 20
RESERVED_TAG = 0xFFFFFFFF  # 11.2.1.8 / 11.18.4: "no task" / "no transfer" tag
ISCSI_VERSION = 0x00  # 11.12.3: the only version defined
DEFAULT_MAX_RECV_DATA_SEGMENT_LENGTH = 8192  # 13.12: also the limit during login


class Opcode(CodeEnum):
    """11.2.1.2: initiator opcodes 0x00-0x1f, target opcodes 0x20-0x3f."""

    NOP_OUT = 0x00
    SCSI_COMMAND = 0x01
    TASK_MANAGEMENT_REQUEST = 0x02
    LOGIN_REQUEST = 0x03
    TEXT_REQUEST = 0x04
    SCSI_DATA_OUT = 0x05
    LOGOUT_REQUEST = 0x06
    SNACK_REQUEST = 0x10
    NOP_IN = 0x20
    SCSI_RESPONSE = 0x21
    TASK_MANAGEMENT_RESPONSE = 0x22
    LOGIN_RESPONSE = 0x23
    TEXT_RESPONSE = 0x24
    SCSI_DATA_IN = 0x25
    LOGOUT_RESPONSE = 0x26
    READY_TO_TRANSFER = 0x31
    ASYNCHRONOUS_MESSAGE = 0x32
    REJECT = 0x3F

    @property
    def from_initiator(self) -> bool:
        return self < 0x20


# -- flag bits (byte 0 and byte 1 of the BHS) ------------------------------------------------
IMMEDIATE_BIT = 0x40  # 11.2.1.1: byte 0
OPCODE_MASK = 0x3F
FINAL_BIT = 0x80  # byte 1 of most PDUs (F)
READ_BIT = 0x40  # 11.3.1: SCSI Command R
WRITE_BIT = 0x20  # 11.3.1: SCSI Command W
ATTRIBUTES_MASK = 0x07  # 11.3.1: SCSI Command ATTR
TRANSIT_BIT = 0x80  # 11.12.1: Login T
CONTINUE_BIT = 0x40  # 11.12.2 / 11.10.2: Login and Text C
CSG_MASK = 0x0C  # 11.12.3: current stage
NSG_MASK = 0x03  # 11.12.3: next stage
ACKNOWLEDGE_BIT = 0x40  # 11.7.2: Data-In A
BIDI_OVERFLOW_BIT = 0x10  # 11.4.5: SCSI Response o
BIDI_UNDERFLOW_BIT = 0x08  # 11.4.5: SCSI Response u
RESIDUAL_OVERFLOW_BIT = 0x04  # 11.4.5 / 11.7.5: O
RESIDUAL_UNDERFLOW_BIT = 0x02  # 11.4.5 / 11.7.5: U
STATUS_BIT = 0x01  # 11.7.3: Data-In S
FUNCTION_MASK = 0x7F  # 11.5.1: TMF function / 11.14.1 logout reason


class TaskAttribute(CodeEnum):
    """11.3.1: the ATTR field (SAM task attributes)."""

    UNTAGGED = 0
    SIMPLE = 1
    ORDERED = 2
    HEAD_OF_QUEUE = 3
    ACA = 4


class AhsType(CodeEnum):
    """11.2.2.2: Additional Header Segment types."""

    EXTENDED_CDB = 1
    BIDIRECTIONAL_READ_EXPECTED_DATA_TRANSFER_LENGTH = 2


class ScsiResponseCode(CodeEnum):
    """11.4.3: the Response field of a SCSI Response."""

    COMMAND_COMPLETED_AT_TARGET = 0x00
    TARGET_FAILURE = 0x01


class TaskManagementFunction(CodeEnum):
    """11.5.1: Task Management function codes."""

    ABORT_TASK = 1
    ABORT_TASK_SET = 2
    CLEAR_ACA = 3
    CLEAR_TASK_SET = 4
    LOGICAL_UNIT_RESET = 5
    TARGET_WARM_RESET = 6
    TARGET_COLD_RESET = 7
    TASK_REASSIGN = 8


class TaskManagementResponseCode(CodeEnum):
    """11.6.1: Task Management Function Response codes."""

    FUNCTION_COMPLETE = 0
    TASK_DOES_NOT_EXIST = 1
    LUN_DOES_NOT_EXIST = 2
    TASK_STILL_ALLEGIANT = 3
    TASK_ALLEGIANCE_REASSIGNMENT_NOT_SUPPORTED = 4
    TASK_MANAGEMENT_FUNCTION_NOT_SUPPORTED = 5
    FUNCTION_AUTHORIZATION_FAILED = 6
    FUNCTION_REJECTED = 255


class Stage(CodeEnum):
    """11.12.3: login stages (CSG/NSG); 2 is reserved."""

    SECURITY_NEGOTIATION = 0
    LOGIN_OPERATIONAL_NEGOTIATION = 1
    FULL_FEATURE_PHASE = 3


class LoginStatus(CodeEnum):
    """11.13.5: Status-Class (high byte) and Status-Detail (low byte) of a Login Response."""

    SUCCESS = 0x0000
    TARGET_MOVED_TEMPORARILY = 0x0101
    TARGET_MOVED_PERMANENTLY = 0x0102
    INITIATOR_ERROR = 0x0200
    AUTHENTICATION_FAILURE = 0x0201
    AUTHORIZATION_FAILURE = 0x0202
    NOT_FOUND = 0x0203
    TARGET_REMOVED = 0x0204
    UNSUPPORTED_VERSION = 0x0205
    TOO_MANY_CONNECTIONS = 0x0206
    MISSING_PARAMETER = 0x0207
    CANT_INCLUDE_IN_SESSION = 0x0208
    SESSION_TYPE_NOT_SUPPORTED = 0x0209
    SESSION_DOES_NOT_EXIST = 0x020A
    INVALID_DURING_LOGIN = 0x020B
    TARGET_ERROR = 0x0300
    SERVICE_UNAVAILABLE = 0x0301
    OUT_OF_RESOURCES = 0x0302

    @property
    def status_class(self) -> int:
        return self >> 8

    @property
    def status_detail(self) -> int:
        return self & 0xFF


class LogoutReason(CodeEnum):
    """11.14.1: Logout Request reason codes."""

    CLOSE_THE_SESSION = 0
    CLOSE_THE_CONNECTION = 1
    REMOVE_THE_CONNECTION_FOR_RECOVERY = 2


class LogoutResponseCode(CodeEnum):
    """11.15.1: Logout Response codes."""

    CONNECTION_OR_SESSION_CLOSED_SUCCESSFULLY = 0
    CID_NOT_FOUND = 1
    CONNECTION_RECOVERY_IS_NOT_SUPPORTED = 2
    CLEANUP_FAILED = 3


class AsyncEvent(CodeEnum):
    """11.9.1: Asynchronous Message event codes."""

    SCSI_ASYNC_EVENT = 0
    LOGOUT_REQUESTED = 1
    CONNECTION_WILL_BE_DROPPED = 2
    ALL_CONNECTIONS_WILL_BE_DROPPED = 3
    PARAMETER_NEGOTIATION_REQUESTED = 4
    VENDOR_SPECIFIC = 255


class RejectReason(CodeEnum):
    """11.17.1: Reject reason codes (0x01 and 0x0b are reserved/deprecated)."""

    DATA_DIGEST_ERROR = 0x02
    SNACK_REJECT = 0x03
    PROTOCOL_ERROR = 0x04
    COMMAND_NOT_SUPPORTED = 0x05
    IMMEDIATE_COMMAND_REJECT = 0x06
    TASK_IN_PROGRESS = 0x07
    INVALID_DATA_ACK = 0x08
    INVALID_PDU_FIELD = 0x09
    LONG_OPERATION_REJECT = 0x0A
    WAITING_FOR_LOGOUT = 0x0C


class SnackType(CodeEnum):
    """11.16.1: SNACK types (only answered with a Reject at ErrorRecoveryLevel 0)."""

    DATA_R2T = 0
    STATUS = 1
    DATA_ACK = 2
    R_DATA = 3
