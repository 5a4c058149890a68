"""A command's reply as PDUs: Data-In bursts and the status (RFC 7143 11.4 and 11.7).

Read data go out in Data-In PDUs of at most the initiator's MaxRecvDataSegmentLength, grouped
in sequences of at most MaxBurstLength (the F bit ends each), numbered by DataSN from 0. The
status rides in the last Data-In (S bit, 11.7.3) when it is a good status without sense;
otherwise a separate SCSI Response follows, its sense data in the data segment (11.4.7). Both
report the residual (11.4.5): more data than the Expected Data Transfer Length is cut to it
and flagged as overflow, less is underflow.

Exactly one PDU of a reply carries status, so a reply takes one StatSN: the caller passes it in
(``stat_sn``) with the session's ExpCmdSN/MaxCmdSN at the time of sending.
"""

from __future__ import annotations

from dataclasses import dataclass

from scsi_pr.target.proto.constants import RESERVED_TAG, ScsiResponseCode
from scsi_pr.target.proto.errors import LocalProtocolError
from scsi_pr.target.proto.layout import Pdu
from scsi_pr.target.proto.scsi_pdus import ScsiDataIn, ScsiResponse, sense_segment

#: SAM-5 status codes that may ride in a Data-In (11.7.3: "not an exception")
GOOD_STATUSES = frozenset({0x00, 0x04, 0x10, 0x14})  # GOOD, CONDITION MET, the INTERMEDIATEs


@dataclass(frozen=True)
class Residual:
    """11.4.5: how the data actually moved compares with the Expected Data Transfer Length."""

    overflow: bool = False
    underflow: bool = False
    count: int = 0

    @classmethod
    def of(cls, expected: int, actual: int) -> Residual:
        if actual > expected:
            return cls(overflow=True, count=actual - expected)
        if actual < expected:
            return cls(underflow=True, count=expected - actual)
        return cls()


@dataclass(frozen=True)
class SequenceNumbers:
    """What the status-bearing PDU of a reply carries: its StatSN and the command window."""

    stat_sn: int
    exp_cmd_sn: int
    max_cmd_sn: int


def scsi_response(
    initiator_task_tag: int,
    status: int,
    numbers: SequenceNumbers,
    *,
    sense: bytes = b"",
    residual: Residual | None = None,
    exp_data_sn: int = 0,
    response: ScsiResponseCode = ScsiResponseCode.COMMAND_COMPLETED_AT_TARGET,
) -> ScsiResponse:
    """The SCSI Response of a command that moved no data-in, or ended with sense."""
    residual = residual or Residual()
    return ScsiResponse(
        residual_overflow=residual.overflow,
        residual_underflow=residual.underflow,
        response=response,
        status=status,
        initiator_task_tag=initiator_task_tag,
        stat_sn=numbers.stat_sn,
        exp_cmd_sn=numbers.exp_cmd_sn,
        max_cmd_sn=numbers.max_cmd_sn,
        exp_data_sn=exp_data_sn,
        residual_count=residual.count,
        data=sense_segment(sense),
    )


def read_reply(
    *,
    initiator_task_tag: int,
    lun: int,
    expected_length: int,
    data: bytes,
    status: int,
    sense: bytes = b"",
    numbers: SequenceNumbers,
    max_segment: int,
    max_burst: int,
) -> list[Pdu]:
    """Data-In PDUs for ``data`` and the status, ready to send in order.

    ``max_segment`` is the initiator's MaxRecvDataSegmentLength, ``max_burst`` MaxBurstLength.
    """
    if max_segment < 1 or max_burst < 1 or not 0 <= status <= 0xFF:
        raise LocalProtocolError("segment and burst sizes must be positive, status a byte")
    residual = Residual.of(expected_length, len(data))
    data = data[:expected_length]
    collapse = status in GOOD_STATUSES and not sense  # status in the last Data-In
    if not data:
        return [scsi_response(initiator_task_tag, status, numbers, sense=sense, residual=residual)]
    pdus: list[Pdu] = []
    offset = data_sn = 0
    while offset < len(data):
        burst_end = min(offset + max_burst, len(data))
        while offset < burst_end:
            size = min(max_segment, burst_end - offset)
            last = offset + size == len(data)
            with_status = last and collapse
            pdus.append(
                ScsiDataIn(
                    final=offset + size == burst_end,
                    residual_overflow=with_status and residual.overflow,
                    residual_underflow=with_status and residual.underflow,
                    status_present=with_status,
                    status=status if with_status else 0,
                    lun=lun,
                    initiator_task_tag=initiator_task_tag,
                    target_transfer_tag=RESERVED_TAG,
                    stat_sn=numbers.stat_sn if with_status else 0,
                    exp_cmd_sn=numbers.exp_cmd_sn,
                    max_cmd_sn=numbers.max_cmd_sn,
                    data_sn=data_sn,
                    buffer_offset=offset,
                    residual_count=residual.count if with_status else 0,
                    data=data[offset : offset + size],
                )
            )
            offset += size
            data_sn += 1
    if not collapse:
        pdus.append(
            scsi_response(
                initiator_task_tag,
                status,
                numbers,
                sense=sense,
                residual=residual,
                exp_data_sn=data_sn,
            )
        )
    return pdus
