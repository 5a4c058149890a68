"""Collecting a write command's data (RFC 7143 4.2.5 / 11.7 / 11.8 / 13.10-13.17).

Write data arrive in up to three ways: immediate data inside the SCSI Command (ImmediateData=Yes,
at most FirstBurstLength), one unsolicited burst of Data-Out PDUs with TTT 0xffffffff
(InitialR2T=No, the command's F bit clear, up to FirstBurstLength in all), then bursts the
target solicits with R2Ts of at most MaxBurstLength each, at most MaxOutstandingR2T at a time.
``WriteCollector`` is the pure bookkeeping for one command: it checks each Data-Out against what
was allowed or asked for, says which R2Ts to send next, and when the data are complete. Data
arrive in order (DataPDUInOrder=Yes and DataSequenceInOrder=Yes are the only values this
target accepts).

Errors are ``DataOutError`` with the Reject reason to send: PROTOCOL_ERROR for data the rules
forbid, INVALID_PDU_FIELD for a Data-Out naming an unknown transfer (11.17.1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from scsi_pr.target.proto.constants import RESERVED_TAG, RejectReason
from scsi_pr.target.proto.errors import LocalProtocolError, RemoteProtocolError
from scsi_pr.target.proto.negotiation import SessionParameters
from scsi_pr.target.proto.scsi_pdus import ScsiCommand, ScsiDataOut


class DataOutError(RemoteProtocolError):
    """A SCSI Command's immediate data or a Data-Out breaks the negotiated transfer rules."""


class UnknownTransfer(DataOutError):
    reject_reason = RejectReason.INVALID_PDU_FIELD


@dataclass(frozen=True)
class R2TRequest:
    """What one R2T asks for (the connection adds LUN, ITT and sequence numbers)."""

    target_transfer_tag: int
    r2t_sn: int
    buffer_offset: int
    desired_data_transfer_length: int


@dataclass
class _Burst:
    """One data sequence being received: unsolicited (TTT 0xffffffff) or for one R2T."""

    offset: int
    length: int
    received: int = 0
    next_data_sn: int = 0

    @property
    def done(self) -> bool:
        return self.received == self.length


class WriteCollector:
    """The data of one write command, from immediate data to the last solicited burst."""

    def __init__(self, command: ScsiCommand, params: SessionParameters) -> None:
        if not command.write:
            raise LocalProtocolError("a WriteCollector is for commands with the W bit")
        self.command = command
        self.params = params
        self.length = command.expected_data_transfer_length
        # Grown as data arrive, not EXPECTED DATA TRANSFER LENGTH up front: a command that
        # never sends its data must not hold its whole buffer (every queued write would)
        self.buffer = bytearray()
        self.corrupted = False  # a Data-Out failed its data digest (7.8: fail the command)
        immediate = command.data
        if immediate and not params.immediate_data:
            raise DataOutError("immediate data with ImmediateData=No (13.11)")
        first_burst = min(params.first_burst_length, self.length)
        unsolicited = 0 if params.initial_r2t else first_burst
        if len(immediate) > first_burst:
            raise DataOutError(f"{len(immediate)} bytes of immediate data exceed the first burst")
        self.buffer += immediate
        self.received = len(immediate)
        self._unsolicited: _Burst | None = None
        if not command.final:  # 11.3.4: unsolicited Data-Out PDUs follow
            if params.initial_r2t or len(immediate) >= unsolicited:
                raise DataOutError("unsolicited Data-Out announced but not allowed (13.10)")
            self._unsolicited = _Burst(len(immediate), unsolicited - len(immediate))
        self._solicited_to = self.received  # the next offset to ask for with an R2T
        self._bursts: dict[int, _Burst] = {}
        self._r2t_sn = 0

    @property
    def complete(self) -> bool:
        """All the data the initiator said it would send have arrived."""
        return self.received == self.length and self._unsolicited is None and not self._bursts

    @property
    def data(self) -> bytes:
        if not self.complete:
            raise LocalProtocolError("write data are not complete")
        return bytes(self.buffer)

    @property
    def outstanding_tags(self) -> list[int]:
        """TTTs of R2Ts whose data have not all arrived (to release on abort)."""
        return list(self._bursts)

    def next_r2ts(self, allocate_tag: Callable[[], int]) -> list[R2TRequest]:
        """The R2Ts to send now: none while the unsolicited burst is still coming."""
        out: list[R2TRequest] = []
        if self._unsolicited is not None:
            return out
        limit = self.params.max_outstanding_r2t
        while self._solicited_to < self.length and len(self._bursts) < limit:
            length = min(self.params.max_burst_length, self.length - self._solicited_to)
            tag = allocate_tag()
            if tag == RESERVED_TAG or tag in self._bursts:
                raise LocalProtocolError(f"tag {tag:#x} cannot name a transfer")
            self._bursts[tag] = _Burst(self._solicited_to, length)
            out.append(R2TRequest(tag, self._r2t_sn, self._solicited_to, length))
            self._r2t_sn += 1
            self._solicited_to += length
        return out

    def receive(self, pdu: ScsiDataOut, *, lost: int | None = None) -> None:
        """Take one Data-Out. ``lost``: its data failed the digest, this many bytes were lost.

        A corrupted PDU still advances the bookkeeping so the command can end with CHECK
        CONDITION once every burst is over (7.8, option b).
        """
        size = len(pdu.data) if lost is None else lost
        burst = self._burst_of(pdu)
        if pdu.data_sn != burst.next_data_sn:
            raise DataOutError(f"DataSN {pdu.data_sn}, expected {burst.next_data_sn}")
        if pdu.buffer_offset != burst.offset + burst.received:
            raise DataOutError(f"offset {pdu.buffer_offset} out of order (13.18)")
        if burst.received + size > burst.length:
            raise DataOutError(f"{size} bytes overrun the burst at {pdu.buffer_offset}")
        ends = burst.received + size == burst.length
        if pdu.final != ends and not (pdu.final and burst is self._unsolicited):
            raise DataOutError("the F bit does not mark the end of the burst (11.7.1)")
        end = pdu.buffer_offset + size
        if end > len(self.buffer):
            self.buffer += bytes(end - len(self.buffer))
        if lost is not None:
            self.corrupted = True
        else:
            self.buffer[pdu.buffer_offset : end] = pdu.data
        burst.received += size
        burst.next_data_sn += 1
        self.received += size
        if pdu.final:
            self._end(pdu.target_transfer_tag, burst)

    def _burst_of(self, pdu: ScsiDataOut) -> _Burst:
        if pdu.lun != self.command.lun:
            raise UnknownTransfer("Data-Out LUN differs from the command's")
        if pdu.target_transfer_tag == RESERVED_TAG:
            if self._unsolicited is None:
                raise DataOutError("unsolicited Data-Out not expected now")
            return self._unsolicited
        burst = self._bursts.get(pdu.target_transfer_tag)
        if burst is None:
            raise UnknownTransfer(f"no R2T with TTT {pdu.target_transfer_tag:#x}")
        return burst

    def _end(self, tag: int, burst: _Burst) -> None:
        if burst is self._unsolicited:
            self._unsolicited = None
            # A short unsolicited burst (F before FirstBurstLength): solicit from its end.
            self._solicited_to = burst.offset + burst.received
        else:
            del self._bursts[tag]
