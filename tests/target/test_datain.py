"""A command's reply: Data-In splitting, status in the last Data-In, residuals, sense."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scsi_pr.target.proto import ScsiDataIn, ScsiResponse
from scsi_pr.target.proto.constants import ScsiResponseCode
from scsi_pr.target.proto.datain import Residual, SequenceNumbers, read_reply, scsi_response
from scsi_pr.target.proto.errors import LocalProtocolError
from scsi_pr.target.proto.layout import Pdu

NUMBERS = SequenceNumbers(stat_sn=40, exp_cmd_sn=41, max_cmd_sn=72)
SENSE = bytes.fromhex("700006000000000a00000000290000000000")  # UNIT ATTENTION 29h
GOOD, CHECK_CONDITION, RESERVATION_CONFLICT = 0x00, 0x02, 0x18


def reply(data: bytes, expected: int, status: int = GOOD, sense: bytes = b"",
          segment: int = 4096, burst: int = 8192) -> list[Pdu]:  # fmt: skip
    return read_reply(initiator_task_tag=5, lun=0, expected_length=expected, data=data,
                      status=status, sense=sense, numbers=NUMBERS, max_segment=segment,
                      max_burst=burst)  # fmt: skip


def test_read_split_by_segment_and_burst_with_status_in_the_last() -> None:
    data = bytes(range(256)) * 40  # 10240
    pdus = reply(data, 10240)
    assert all(isinstance(p, ScsiDataIn) for p in pdus)
    shape = [(p.buffer_offset, len(p.data), p.final, p.status_present, p.data_sn, p.stat_sn)
             for p in pdus if isinstance(p, ScsiDataIn)]  # fmt: skip
    assert shape == [
        (0, 4096, False, False, 0, 0),
        (4096, 4096, True, False, 1, 0),  # F ends the 8192-byte burst
        (8192, 2048, True, True, 2, 40),  # status and StatSN only here
    ]
    assert b"".join(p.data for p in pdus) == data  # type: ignore[attr-defined]
    assert all(p.exp_cmd_sn == 41 and p.max_cmd_sn == 72 for p in pdus)  # type: ignore[attr-defined]


def test_underflow_is_reported_with_the_status() -> None:
    (pdu,) = reply(b"x" * 100, 512)
    assert isinstance(pdu, ScsiDataIn)
    assert (pdu.status_present, pdu.residual_underflow, pdu.residual_count) == (True, True, 412)


def test_overflow_cuts_the_data() -> None:
    (pdu,) = reply(b"x" * 600, 512)
    assert isinstance(pdu, ScsiDataIn) and len(pdu.data) == 512
    assert (pdu.residual_overflow, pdu.residual_count) == (True, 88)


def test_sense_needs_a_separate_scsi_response() -> None:
    *data_ins, response = reply(b"x" * 5000, 5000, CHECK_CONDITION, SENSE)
    assert [p.status_present for p in data_ins] == [False, False]  # type: ignore[attr-defined]
    assert isinstance(response, ScsiResponse)
    assert (response.status, response.sense, response.exp_data_sn) == (CHECK_CONDITION, SENSE, 2)
    assert response.stat_sn == 40


def test_exception_status_without_sense_is_not_collapsed() -> None:
    *data_ins, response = reply(b"x" * 10, 10, RESERVATION_CONFLICT)
    assert isinstance(response, ScsiResponse) and response.status == RESERVATION_CONFLICT
    assert len(data_ins) == 1


@pytest.mark.parametrize(("data", "expected", "underflow"), [(b"", 0, False), (b"", 512, True)])
def test_no_data_is_a_scsi_response_alone(data: bytes, expected: int, underflow: bool) -> None:
    (response,) = reply(data, expected)
    assert isinstance(response, ScsiResponse)
    assert response.residual_underflow is underflow and response.data == b""


def test_scsi_response_for_a_write() -> None:
    response = scsi_response(9, GOOD, NUMBERS, residual=Residual.of(4096, 1024))
    assert (response.residual_underflow, response.residual_count) == (True, 3072)
    assert Residual.of(10, 10) == Residual()


@given(
    length=st.integers(0, 30000),
    expected=st.integers(0, 30000),
    segment=st.integers(512, 9000),
    burst=st.integers(512, 20000),
    sense=st.booleans(),
)
def test_any_read_reply(length: int, expected: int, segment: int, burst: int, sense: bool) -> None:
    data = bytes(i & 0xFF for i in range(length))
    status = CHECK_CONDITION if sense else GOOD
    pdus = reply(data, expected, status, SENSE if sense else b"", segment, burst)
    data_ins = [p for p in pdus if isinstance(p, ScsiDataIn)]
    assert b"".join(p.data for p in data_ins) == data[:expected]
    assert all(len(p.data) <= segment for p in data_ins)
    assert [p.data_sn for p in data_ins] == list(range(len(data_ins)))
    sequence = 0
    for p in data_ins:  # every sequence (ended by F) stays within MaxBurstLength
        sequence += len(p.data)
        assert sequence <= burst
        if p.final:
            sequence = 0
    with_status = [p for p in pdus if isinstance(p, ScsiResponse) or p.status_present]  # type: ignore[attr-defined]
    assert len(with_status) == 1 and with_status[0] is pdus[-1]


def test_every_field_of_a_data_in() -> None:
    """Status, StatSN and the residual only where the status rides; the LUN, the task tag and
    the reserved TTT in each."""
    first, last = read_reply(initiator_task_tag=5, lun=3 << 48, expected_length=8192,
                             data=b"d" * 6000, status=0x04, numbers=NUMBERS, max_segment=4096,
                             max_burst=8192)  # fmt: skip
    assert isinstance(first, ScsiDataIn) and isinstance(last, ScsiDataIn)
    fields = ("lun", "initiator_task_tag", "target_transfer_tag", "status", "stat_sn",
              "residual_underflow", "residual_count")  # fmt: skip
    assert [getattr(first, f) for f in fields] == [3 << 48, 5, 0xFFFFFFFF, 0, 0, False, 0]
    assert [getattr(last, f) for f in fields] == [3 << 48, 5, 0xFFFFFFFF, 0x04, 40, True, 2192]


def test_every_field_of_a_scsi_response() -> None:
    response = scsi_response(9, CHECK_CONDITION, NUMBERS, sense=SENSE,
                             residual=Residual.of(512, 1024), exp_data_sn=3,
                             response=ScsiResponseCode.TARGET_FAILURE)  # fmt: skip
    assert (response.residual_overflow, response.residual_underflow) == (True, False)
    assert (response.residual_count, response.response, response.status) == (512, 1, 2)
    assert (response.stat_sn, response.exp_cmd_sn, response.max_cmd_sn) == (40, 41, 72)
    assert (response.exp_data_sn, response.sense, response.initiator_task_tag) == (3, SENSE, 9)
    plain = scsi_response(9, GOOD, NUMBERS)
    assert (plain.exp_data_sn, plain.data, plain.response) == (0, b"", 0)


def test_sense_without_data_rides_in_the_response() -> None:
    (response,) = reply(b"", 512, CHECK_CONDITION, SENSE)
    assert isinstance(response, ScsiResponse) and response.sense == SENSE


@pytest.mark.parametrize(("segment", "burst", "status"), [(0, 1, 0), (1, 0, 0), (1, 1, 256),
                                                          (1, 1, -1)])  # fmt: skip
def test_read_reply_arguments_are_checked(segment: int, burst: int, status: int) -> None:
    with pytest.raises(LocalProtocolError, match=r"^segment and burst sizes must be positive"):
        reply(b"x", 1, status, segment=segment, burst=burst)


def test_smallest_segment_and_burst_and_the_largest_status() -> None:
    pdus = reply(b"xy", 2, 0xFF, segment=1, burst=1)
    assert [len(p.data) for p in pdus if isinstance(p, ScsiDataIn)] == [1, 1]
    assert isinstance(pdus[-1], ScsiResponse) and pdus[-1].status == 0xFF
