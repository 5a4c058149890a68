"""Bytes to PDUs and back: the BHS, AHS, digests and padding of RFC 7143 11.2.

``Framer.receive_data`` buffers what TCP delivered; ``next_pdu`` returns the next whole PDU,
``NEED_DATA``, ``CLOSED`` (end of stream at a PDU boundary), or raises a ``RemoteProtocolError``
subclass that says what the target must do (see ``errors``):

================================  =====================  ========================================
error                             Reject reason          then
================================  =====================  ========================================
``HeaderDigestError``             none                   close: lengths cannot be trusted (7.8)
``DataSegmentTooLong``            PROTOCOL_ERROR         close: over MaxRecvDataSegmentLength
``TruncatedPdu``                  none                   close: the stream ended inside a PDU
``DataDigestError``               DATA_DIGEST_ERROR      go on: the PDU was discarded (7.8)
``UnsupportedOpcode``             COMMAND_NOT_SUPPORTED  go on: the PDU was skipped
``WrongDirection``                PROTOCOL_ERROR         go on: a target PDU sent to the target
``InvalidPduField``               INVALID_PDU_FIELD      go on: the PDU was skipped
================================  =====================  ========================================

Digests (13.1) are CRC32C from the ``crc32c`` package, sent least significant byte first (the
byte order of the RFC 3720 B.4 examples). The header digest covers BHS and AHS; the data digest
covers the padded data segment and is absent when the segment is empty. Digests and the data
segment limit start as negotiated only after login: the caller switches them with
``set_digests`` and ``max_recv_data_segment_length``.
"""

from __future__ import annotations

from enum import Enum
from typing import Final

import crc32c

from scsi_pr.target.proto.constants import (
    BHS_SIZE,
    DEFAULT_MAX_RECV_DATA_SEGMENT_LENGTH,
    DIGEST_SIZE,
    OPCODE_MASK,
    Opcode,
    RejectReason,
)
from scsi_pr.target.proto.errors import LocalProtocolError, RemoteProtocolError
from scsi_pr.target.proto.layout import PDU_CLASSES, Pdu

# Defining the PDU classes registers them with the decoder (``PDU_CLASSES``).
from scsi_pr.target.proto import pdus, scsi_pdus  # noqa: F401  isort: skip


class _Sentinel:
    def __init__(self, name: str) -> None:
        self._name = name  # pragma: no mutate  (made at import only: NEED_DATA, CLOSED)

    def __repr__(self) -> str:
        return self._name


NEED_DATA: Final = _Sentinel("NEED_DATA")
"""``next_pdu`` result: feed more bytes with ``receive_data``."""
CLOSED: Final = _Sentinel("CLOSED")
"""``next_pdu`` result: the peer closed the stream between two PDUs."""


class Role(Enum):
    """Which side this framer is: a target reads initiator PDUs, an initiator target PDUs."""

    TARGET = "target"
    INITIATOR = "initiator"


class HeaderDigestError(RemoteProtocolError):
    reject_reason = None
    close_connection = True


class DataSegmentTooLong(RemoteProtocolError):
    close_connection = True


class TruncatedPdu(RemoteProtocolError):
    reject_reason = None
    close_connection = True


class DataDigestError(RemoteProtocolError):
    """The data segment failed its digest; ``pdu`` is the PDU with its data left out."""

    reject_reason = RejectReason.DATA_DIGEST_ERROR
    pdu: Pdu | None = None


class UnsupportedOpcode(RemoteProtocolError):
    reject_reason = RejectReason.COMMAND_NOT_SUPPORTED


class WrongDirection(RemoteProtocolError):
    """An opcode the peer's role never sends (e.g. a Data-In sent to a target)."""


def crc32c_digest(data: bytes | bytearray | memoryview) -> bytes:
    """The 4-byte iSCSI digest of ``data`` as it travels on the wire."""
    return crc32c.crc32c(data).to_bytes(DIGEST_SIZE, "little")


def padding(length: int) -> int:
    """Bytes of padding after a data segment of ``length`` bytes (11.2.3)."""
    return -length % 4


def encode_pdu(pdu: Pdu, *, header_digest: bool = False, data_digest: bool = False) -> bytes:
    """The wire bytes of ``pdu`` with the given digests."""
    ahs = pdu.additional_header()
    if len(ahs) > 255 * 4:
        raise LocalProtocolError(f"AHS of {len(ahs)} bytes exceeds TotalAHSLength")
    out = bytearray(pdu.bhs(len(ahs)))
    out += ahs
    if header_digest:
        out += crc32c_digest(out)
    data = pdu.data_segment
    if data:
        segment = data + bytes(padding(len(data)))
        out += segment
        if data_digest:
            out += crc32c_digest(segment)
    return bytes(out)


class Framer:
    """One direction of one connection: reassembles PDUs from a byte stream."""

    def __init__(
        self,
        role: Role = Role.TARGET,
        *,
        header_digest: bool = False,
        data_digest: bool = False,
        max_recv_data_segment_length: int = DEFAULT_MAX_RECV_DATA_SEGMENT_LENGTH,
    ) -> None:
        self.role = role
        self.header_digest = header_digest
        self.data_digest = data_digest
        #: the longest data segment this side accepts (what it declared; 8192 during login)
        self.max_recv_data_segment_length = max_recv_data_segment_length
        self._buf = bytearray()
        self._eof = False
        self._fatal: RemoteProtocolError | None = None
        from_initiator = role is Role.TARGET
        self._accepts = {op for op in PDU_CLASSES if Opcode(op).from_initiator == from_initiator}

    def set_digests(self, header_digest: bool, data_digest: bool) -> None:
        """Switch digests on or off (at the start of full feature phase, 13.1)."""
        self.header_digest, self.data_digest = header_digest, data_digest

    def send(self, pdu: Pdu) -> bytes:
        """The bytes of ``pdu`` with this connection's digests."""
        return encode_pdu(pdu, header_digest=self.header_digest, data_digest=self.data_digest)

    # -- input -----------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Buffer ``data``; ``b""`` means the peer closed the stream."""
        if self._eof and data:
            raise LocalProtocolError("data received after the end of the stream")
        if not data:
            self._eof = True
        self._buf += data

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as PDUs."""
        return len(self._buf)

    def next_pdu(self) -> Pdu | _Sentinel:
        """The next PDU, ``NEED_DATA`` or ``CLOSED``; raises for a bad PDU (see module doc)."""
        if self._fatal is not None:
            raise self._fatal
        try:
            return self._next()
        except RemoteProtocolError as e:
            if e.close_connection:
                self._fatal = e
            raise

    def _next(self) -> Pdu | _Sentinel:
        buf = self._buf
        if len(buf) < BHS_SIZE:
            return self._short(len(buf))
        ahs_length = buf[4] * 4
        header_end = BHS_SIZE + ahs_length
        data_start = header_end + (DIGEST_SIZE if self.header_digest else 0)
        if len(buf) < data_start:
            return self._short(len(buf))
        bhs = bytes(buf[:BHS_SIZE])
        if self.header_digest and crc32c_digest(buf[:header_end]) != buf[header_end:data_start]:
            raise HeaderDigestError("header digest mismatch", header=bhs)
        length = int.from_bytes(buf[5:8], "big")
        if length > self.max_recv_data_segment_length:
            raise DataSegmentTooLong(
                f"data segment of {length} bytes exceeds MaxRecvDataSegmentLength "
                f"{self.max_recv_data_segment_length}",
                header=bhs,
            )
        segment = length + padding(length)
        end = data_start + segment + (DIGEST_SIZE if self.data_digest and length else 0)
        if len(buf) < end:
            return self._short(len(buf))
        ahs = bytes(buf[BHS_SIZE:header_end])
        data = bytes(buf[data_start : data_start + length])
        digest_ok = (
            not (self.data_digest and length)
            or crc32c_digest(buf[data_start : data_start + segment])
            == buf[data_start + segment : end]
        )
        del buf[:end]
        opcode = bhs[0] & OPCODE_MASK
        if opcode not in Opcode._value2member_map_:
            raise UnsupportedOpcode(f"opcode {opcode:#04x} is not defined", header=bhs)
        if opcode not in self._accepts:
            raise WrongDirection(f"{Opcode(opcode)!r} is not sent by the peer", header=bhs)
        if not digest_ok:
            error = DataDigestError("data digest mismatch", header=bhs)
            try:
                error.pdu = Pdu.from_segments(bhs, ahs)
            except RemoteProtocolError:
                error.pdu = None
            raise error
        return Pdu.from_segments(bhs, ahs, data)

    def _short(self, have: int) -> _Sentinel:
        if not self._eof:
            return NEED_DATA
        if have == 0:
            return CLOSED
        raise TruncatedPdu(f"the stream ended {have} bytes into a PDU")
