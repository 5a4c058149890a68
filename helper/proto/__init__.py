"""Sans-IO codec of the qemu-pr-helper protocol (h11-style): events, states, readers, writers
and the ``Connection`` that ties them together. No sockets or ``os`` here."""

from scsi_pr.helper.proto.connection import NEED_DATA, PAUSED, Connection
from scsi_pr.helper.proto.errors import (
    LocalProtocolError,
    MissingFileDescriptor,
    ProtocolError,
    RemoteProtocolError,
    ResponseTooLong,
    ShortRead,
    TooManyFileDescriptors,
    TransferTooLong,
    UnsolicitedData,
    UnsupportedFeatures,
    UnsupportedOpcode,
)
from scsi_pr.helper.proto.events import (
    PR_HELPER_CDB_SIZE,
    PR_HELPER_DATA_SIZE,
    PR_HELPER_SENSE_SIZE,
    ConnectionClosed,
    Features,
    Request,
    Response,
    transfer_length,
)
from scsi_pr.helper.proto.state import Role, State

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "PR_HELPER_CDB_SIZE",
    "PR_HELPER_DATA_SIZE",
    "PR_HELPER_SENSE_SIZE",
    "Connection",
    "ConnectionClosed",
    "Features",
    "LocalProtocolError",
    "MissingFileDescriptor",
    "ProtocolError",
    "RemoteProtocolError",
    "Request",
    "Response",
    "ResponseTooLong",
    "Role",
    "ShortRead",
    "State",
    "TooManyFileDescriptors",
    "TransferTooLong",
    "UnsolicitedData",
    "UnsupportedFeatures",
    "UnsupportedOpcode",
    "transfer_length",
]
