"""Write data collection: immediate, unsolicited and solicited data; the R2T plan of a write."""

from __future__ import annotations

from itertools import count
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scsi_pr.target.proto import RejectReason, ScsiCommand, ScsiDataOut
from scsi_pr.target.proto.constants import RESERVED_TAG
from scsi_pr.target.proto.errors import LocalProtocolError
from scsi_pr.target.proto.negotiation import SessionParameters
from scsi_pr.target.proto.transfer import (
    DataOutError,
    R2TRequest,
    UnknownTransfer,
    WriteCollector,
)


def params(**kwargs: Any) -> SessionParameters:
    defaults: dict[str, Any] = {"initial_r2t": True, "immediate_data": True,
                                "first_burst_length": 4096, "max_burst_length": 4096}  # fmt: skip
    return SessionParameters(initiator_name="iqn.i", isid=1, **{**defaults, **kwargs})


def write(length: int, immediate: bytes = b"", final: bool = True) -> ScsiCommand:
    return ScsiCommand(write=True, final=final, initiator_task_tag=7, data=immediate,
                       expected_data_transfer_length=length)  # fmt: skip


def tags() -> Any:
    counter = count(100)
    return lambda: next(counter)


def data_out(
    tag: int, offset: int, data: bytes, data_sn: int = 0, final: bool = True
) -> ScsiDataOut:
    return ScsiDataOut(final=final, initiator_task_tag=7, target_transfer_tag=tag,
                       data_sn=data_sn, buffer_offset=offset, data=data)  # fmt: skip


def test_r2t_plan_after_immediate_data() -> None:
    payload = bytes(range(256)) * 40  # 10240 bytes
    collector = WriteCollector(write(10240, payload[:1000]), params())
    allocate = tags()
    assert collector.next_r2ts(allocate) == [R2TRequest(100, 0, 1000, 4096)]
    assert collector.next_r2ts(allocate) == []  # MaxOutstandingR2T=1
    collector.receive(data_out(100, 1000, payload[1000:3048], final=False))
    collector.receive(data_out(100, 3048, payload[3048:5096], data_sn=1))
    assert collector.next_r2ts(allocate) == [R2TRequest(101, 1, 5096, 4096)]
    collector.receive(data_out(101, 5096, payload[5096:9192]))
    assert collector.next_r2ts(allocate) == [R2TRequest(102, 2, 9192, 1048)]
    assert not collector.complete
    collector.receive(data_out(102, 9192, payload[9192:]))
    assert collector.complete and collector.data == payload
    assert collector.next_r2ts(allocate) == []


def test_several_r2ts_outstanding() -> None:
    collector = WriteCollector(write(10000), params(max_outstanding_r2t=2))
    plan = collector.next_r2ts(tags())
    assert [(r.buffer_offset, r.desired_data_transfer_length) for r in plan] == [
        (0, 4096),
        (4096, 4096),
    ]
    assert [r.r2t_sn for r in plan] == [0, 1] and collector.outstanding_tags == [100, 101]


def test_unsolicited_burst_before_r2ts() -> None:
    p = params(initial_r2t=False, first_burst_length=4096, max_burst_length=8192)
    collector = WriteCollector(write(10000, bytes(512), final=False), p)
    allocate = tags()
    assert collector.next_r2ts(allocate) == []  # the unsolicited burst is still coming
    collector.receive(data_out(RESERVED_TAG, 512, bytes(2048), final=False))
    collector.receive(data_out(RESERVED_TAG, 2560, bytes(1536), data_sn=1))
    assert collector.next_r2ts(allocate) == [R2TRequest(100, 0, 4096, 5904)]


def test_short_unsolicited_burst_is_solicited_from_its_end() -> None:
    p = params(initial_r2t=False)
    collector = WriteCollector(write(8192, final=False), p)
    collector.receive(data_out(RESERVED_TAG, 0, bytes(1024)))
    assert collector.next_r2ts(tags()) == [R2TRequest(100, 0, 1024, 4096)]


def test_no_unsolicited_data_means_immediate_r2ts() -> None:
    collector = WriteCollector(write(4096), params(initial_r2t=False))
    assert collector.next_r2ts(tags()) == [R2TRequest(100, 0, 0, 4096)]


def test_everything_in_immediate_data_needs_no_r2t() -> None:
    collector = WriteCollector(write(100, b"x" * 100), params())
    assert collector.complete and collector.next_r2ts(tags()) == []


F_BIT = r"^the F bit does not mark the end of the burst \(11\.7\.1\)$"
NOT_ALLOWED = r"^unsolicited Data-Out announced but not allowed \(13\.10\)$"


@pytest.mark.parametrize(
    ("command", "p", "why"),
    [
        (write(1000, b"x"), params(immediate_data=False),
         r"^immediate data with ImmediateData=No \(13\.11\)$"),
        (write(8192, bytes(4097)), params(), "^4097 bytes of immediate data exceed the first"),
        (write(10, bytes(11)), params(), "^11 bytes of immediate data exceed"),  # beyond the EDTL
        (write(8192, final=False), params(), NOT_ALLOWED),  # with InitialR2T=Yes
        (write(4096, bytes(4096), final=False), params(initial_r2t=False), NOT_ALLOWED),
    ],
)  # fmt: skip
def test_command_breaking_the_rules(command: ScsiCommand, p: SessionParameters, why: str) -> None:
    with pytest.raises(DataOutError, match=why) as caught:
        WriteCollector(command, p)
    assert caught.value.reject_reason is RejectReason.PROTOCOL_ERROR


@pytest.mark.parametrize(
    ("pdu", "error", "why"),
    [
        (data_out(RESERVED_TAG, 0, bytes(16)), DataOutError, "^unsolicited Data-Out not expected"),
        (data_out(999, 0, bytes(16)), UnknownTransfer, "^no R2T with TTT 0x3e7$"),
        (data_out(100, 0, bytes(16), data_sn=1), DataOutError, "^DataSN 1, expected 0$"),
        (data_out(100, 16, bytes(16)), DataOutError, r"^offset 16 out of order \(13\.18\)$"),
        (data_out(100, 0, bytes(4097), final=False), DataOutError,
         "^4097 bytes overrun the burst at 0$"),
        (data_out(100, 0, bytes(16), final=True), DataOutError, F_BIT),  # before the end
        (data_out(100, 0, bytes(4096), final=False), DataOutError, F_BIT),  # none at the end
        (ScsiDataOut(final=True, lun=1 << 48, target_transfer_tag=100, data=bytes(4096)),
         UnknownTransfer, "^Data-Out LUN differs from the command's$"),
    ],
)  # fmt: skip
def test_bad_data_out(pdu: ScsiDataOut, error: type[DataOutError], why: str) -> None:
    collector = WriteCollector(write(8192), params())
    collector.next_r2ts(tags())
    with pytest.raises(error, match=why) as caught:
        collector.receive(pdu)
    assert type(caught.value) is error
    expected = (
        RejectReason.INVALID_PDU_FIELD if error is UnknownTransfer else RejectReason.PROTOCOL_ERROR
    )
    assert caught.value.reject_reason is expected


def test_corrupted_data_out_still_completes_the_burst() -> None:
    collector = WriteCollector(write(4096), params())
    collector.next_r2ts(tags())
    collector.receive(data_out(100, 0, b"", final=False), lost=2048)
    collector.receive(data_out(100, 2048, b"y" * 2048, data_sn=1))
    assert collector.complete and collector.corrupted


@settings(max_examples=150, deadline=None)
@given(
    length=st.integers(1, 40000),
    immediate=st.integers(0, 5000),
    segment=st.integers(1, 3000),
    initial_r2t=st.booleans(),
    first_burst=st.integers(512, 8192),
    extra_burst=st.integers(0, 8192),
    outstanding=st.integers(1, 4),
)
def test_any_write_is_collected_whole(
    length: int, immediate: int, segment: int, initial_r2t: bool, first_burst: int,
    extra_burst: int, outstanding: int,
) -> None:  # fmt: skip
    p = params(
        initial_r2t=initial_r2t,
        first_burst_length=first_burst,
        max_burst_length=first_burst + extra_burst,
        max_outstanding_r2t=outstanding,
    )
    payload = bytes(i * 7 & 0xFF for i in range(length))
    immediate = min(immediate, first_burst, length)
    unsolicited = 0 if initial_r2t else min(first_burst, length)
    final = initial_r2t or immediate >= unsolicited
    collector = WriteCollector(write(length, payload[:immediate], final=final), p)
    sends: list[ScsiDataOut] = []

    def burst(tag: int, offset: int, size: int) -> None:
        for n, start in enumerate(range(offset, offset + size, segment)):
            end = min(start + segment, offset + size)
            sends.append(data_out(tag, start, payload[start:end], n, final=end == offset + size))

    if not final:
        burst(RESERVED_TAG, immediate, unsolicited - immediate)
    allocate = tags()
    while not collector.complete:
        for pdu in sends:
            collector.receive(pdu)
        sends.clear()
        plan = collector.next_r2ts(allocate)
        assert len(collector.outstanding_tags) <= outstanding
        assert plan or collector.complete
        for r2t in plan:
            assert r2t.desired_data_transfer_length <= p.max_burst_length
            burst(r2t.target_transfer_tag, r2t.buffer_offset, r2t.desired_data_transfer_length)
    assert collector.data == payload


def test_the_buffer_grows_with_the_data_not_with_the_announced_length() -> None:
    """A write that never sends its data holds none of its EXPECTED DATA TRANSFER LENGTH; a
    later burst's data arriving first still lands at its offset."""
    collector = WriteCollector(write(16 << 20), params(max_outstanding_r2t=2))
    assert len(collector.buffer) == 0
    collector.next_r2ts(tags())
    collector.receive(data_out(101, 4096, b"b" * 4096))
    assert collector.buffer == bytes(4096) + b"b" * 4096
    collector.receive(data_out(100, 0, b"a" * 4096))
    assert collector.buffer == b"a" * 4096 + b"b" * 4096


def test_immediate_data_shorten_the_unsolicited_burst() -> None:
    """FirstBurstLength covers immediate and unsolicited data together (13.14)."""
    collector = WriteCollector(write(8192, bytes(1000), final=False), params(initial_r2t=False))
    with pytest.raises(DataOutError, match=r"^3097 bytes overrun the burst at 1000$"):
        collector.receive(data_out(RESERVED_TAG, 1000, bytes(3097), final=False))
    collector.receive(data_out(RESERVED_TAG, 1000, bytes(3096)))
    assert collector.received == 4096


@pytest.mark.parametrize("bad", [RESERVED_TAG, 100])
def test_a_tag_that_cannot_name_a_transfer_is_a_local_error(bad: int) -> None:
    collector = WriteCollector(write(16384), params(max_outstanding_r2t=2))
    handed = iter([100, bad])
    with pytest.raises(LocalProtocolError, match=f"^tag {bad:#x} cannot name a transfer$"):
        collector.next_r2ts(lambda: next(handed))


def test_a_collector_is_for_writes() -> None:
    with pytest.raises(LocalProtocolError, match=r"^a WriteCollector is for commands with the W"):
        WriteCollector(ScsiCommand(read=True), params())
