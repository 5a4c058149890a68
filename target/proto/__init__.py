"""Sans-IO iSCSI (RFC 7143) for the target side: no sockets, no clocks, no threads.

The I/O edge needs ``TargetConnection`` (bytes in, events out, bytes to send; see
``connection``), its settings and events. Underneath: ``pdus``/``scsi_pdus`` (frozen PDU
dataclasses), ``framer`` (bytes <-> PDUs with digests), ``text`` (key=value segments),
``negotiation`` (operational keys), ``chap`` and ``login`` (the login phase), ``sequencing``
(CmdSN/StatSN), ``transfer`` (write data and R2Ts), ``datain`` (read replies), ``discovery``
(SendTargets, Text exchanges) and ``session`` (the full feature phase).
"""

from scsi_pr.target.proto.chap import ChapCredentials, ChapPolicy
from scsi_pr.target.proto.connection import ConnectionSettings, ConnectionState, TargetConnection
from scsi_pr.target.proto.constants import (
    AsyncEvent,
    LoginStatus,
    LogoutReason,
    LogoutResponseCode,
    Opcode,
    RejectReason,
    ScsiResponseCode,
    SnackType,
    Stage,
    TaskAttribute,
    TaskManagementFunction,
    TaskManagementResponseCode,
)
from scsi_pr.target.proto.discovery import Portal
from scsi_pr.target.proto.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from scsi_pr.target.proto.events import (
    CommandReceived,
    ConnectionClosed,
    Event,
    LoginCompleted,
    LogoutReceived,
    Rejected,
    TaskManagementReceived,
)
from scsi_pr.target.proto.framer import (
    CLOSED,
    NEED_DATA,
    DataDigestError,
    DataSegmentTooLong,
    Framer,
    HeaderDigestError,
    Role,
    TruncatedPdu,
    UnsupportedOpcode,
    WrongDirection,
    crc32c_digest,
    encode_pdu,
)
from scsi_pr.target.proto.layout import InvalidPduField, Pdu, decode_lun, encode_lun
from scsi_pr.target.proto.login import LoginSettings, TargetNode
from scsi_pr.target.proto.negotiation import OperationalSettings, SessionParameters
from scsi_pr.target.proto.pdus import (
    AsynchronousMessage,
    LoginRequest,
    LoginResponse,
    LogoutRequest,
    LogoutResponse,
    NopIn,
    NopOut,
    Reject,
    SnackRequest,
    TextRequest,
    TextResponse,
)
from scsi_pr.target.proto.scsi_pdus import (
    ReadyToTransfer,
    ScsiCommand,
    ScsiDataIn,
    ScsiDataOut,
    ScsiResponse,
    TaskManagementFunctionRequest,
    TaskManagementFunctionResponse,
    sense_segment,
)

__all__ = [
    "CLOSED",
    "NEED_DATA",
    "AsyncEvent",
    "AsynchronousMessage",
    "ChapCredentials",
    "ChapPolicy",
    "CommandReceived",
    "ConnectionClosed",
    "ConnectionSettings",
    "ConnectionState",
    "DataDigestError",
    "DataSegmentTooLong",
    "Event",
    "Framer",
    "HeaderDigestError",
    "InvalidPduField",
    "LocalProtocolError",
    "LoginCompleted",
    "LoginRequest",
    "LoginResponse",
    "LoginSettings",
    "LoginStatus",
    "LogoutReason",
    "LogoutReceived",
    "LogoutRequest",
    "LogoutResponse",
    "LogoutResponseCode",
    "NopIn",
    "NopOut",
    "Opcode",
    "OperationalSettings",
    "Pdu",
    "Portal",
    "ProtocolError",
    "ReadyToTransfer",
    "Reject",
    "RejectReason",
    "Rejected",
    "RemoteProtocolError",
    "Role",
    "ScsiCommand",
    "ScsiDataIn",
    "ScsiDataOut",
    "ScsiResponse",
    "ScsiResponseCode",
    "SessionParameters",
    "SnackRequest",
    "SnackType",
    "Stage",
    "TargetConnection",
    "TargetNode",
    "TaskAttribute",
    "TaskManagementFunction",
    "TaskManagementFunctionRequest",
    "TaskManagementFunctionResponse",
    "TaskManagementReceived",
    "TaskManagementResponseCode",
    "TextRequest",
    "TextResponse",
    "TruncatedPdu",
    "UnsupportedOpcode",
    "WrongDirection",
    "crc32c_digest",
    "decode_lun",
    "encode_lun",
    "encode_pdu",
    "sense_segment",
]
