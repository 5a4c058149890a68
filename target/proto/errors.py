"""Typed protocol errors (one root, Local vs Remote, as in h11).

``LocalProtocolError``: this side tried to build or send something RFC 7143 forbids (a field out
of range, a PDU in the wrong state): a bug in the caller, never the initiator's fault.

``RemoteProtocolError``: the initiator broke the protocol. Each one says what the target does
about it, so the I/O edge needs no knowledge of the RFC: ``reject_reason`` is the Reject PDU
reason code to send (None: send no Reject), ``header`` the offending PDU's BHS (the Reject's data
segment, RFC 7143 11.17), and ``close_connection`` whether the connection must then be closed
(framing can no longer be trusted, or the session cannot continue at ErrorRecoveryLevel 0).
"""

from __future__ import annotations

from typing import Final

from scsi_pr.target.errors import TargetError
from scsi_pr.target.proto.constants import RejectReason

_CLASS_DEFAULT: Final = object()


class ProtocolError(TargetError):
    """Root of every error raised by ``scsi_pr.target.proto``."""


class LocalProtocolError(ProtocolError, ValueError):
    """This side asked for something the protocol forbids (e.g. a field out of range)."""


class RemoteProtocolError(ProtocolError):
    """The initiator sent something the target must refuse; the attributes say how."""

    #: the reaction of this error class; an instance may override either
    reject_reason: RejectReason | None = RejectReason.PROTOCOL_ERROR
    close_connection: bool = False

    def __init__(
        self,
        message: str,
        *,
        reject_reason: RejectReason | object | None = _CLASS_DEFAULT,
        close_connection: bool | None = None,
        header: bytes = b"",
    ) -> None:
        super().__init__(message)
        if reject_reason is not _CLASS_DEFAULT:
            assert reject_reason is None or isinstance(reject_reason, RejectReason)
            self.reject_reason = reject_reason
        if close_connection is not None:
            self.close_connection = close_connection
        self.header = header

    def with_header(self, header: bytes) -> RemoteProtocolError:
        """Attach the offending BHS (the Reject PDU's data segment) and return self."""
        self.header = header
        return self
