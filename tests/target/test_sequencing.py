"""CmdSN window, StatSN and TTTs (RFC 7143 4.2.2) with RFC 1982 serial arithmetic."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scsi_pr.target.proto import RejectReason
from scsi_pr.target.proto.errors import LocalProtocolError
from scsi_pr.target.proto.sequencing import (
    CommandWindow,
    ImmediateCommandRejected,
    StatusSequence,
    TagPool,
    Verdict,
    sn_add,
    sn_in_window,
    sn_lt,
)


@pytest.mark.parametrize(
    ("a", "b", "less"),
    [(1, 2, True), (2, 1, False), (5, 5, False), (0xFFFFFFFF, 0, True), (0, 0xFFFFFFFF, False),
     (0xFFFFFFF0, 0x10, True), (0, 1 << 31, False), (1 << 31, 0, False)],
)  # fmt: skip
def test_serial_less_than(a: int, b: int, less: bool) -> None:
    assert sn_lt(a, b) is less


def test_window_membership_wraps() -> None:
    assert sn_in_window(0, 0xFFFFFFFE, 3)
    assert not sn_in_window(4, 0xFFFFFFFE, 3)
    assert not sn_in_window(5, 6, 5)  # shut window: ExpCmdSN - 1 == MaxCmdSN


def test_in_order_commands_are_delivered_and_the_window_slides() -> None:
    window: CommandWindow[str] = CommandWindow(exp_cmd_sn=10, depth=4)
    assert window.max_cmd_sn == 13
    assert window.admit(10, False, "a") == ["a"]
    assert window.admit(11, False, "b") == ["b"]
    assert (window.exp_cmd_sn, window.max_cmd_sn) == (12, 13)  # MaxCmdSN stays put
    window.finished()
    assert window.max_cmd_sn == 14  # a finished command opens the window


def test_out_of_order_commands_wait_for_the_gap() -> None:
    window: CommandWindow[str] = CommandWindow(exp_cmd_sn=10, depth=8)
    assert window.admit(12, False, "c") == []
    assert window.admit(11, False, "b") == []
    assert window.held == 2
    assert window.admit(10, False, "a") == ["a", "b", "c"]
    assert window.exp_cmd_sn == 13


@pytest.mark.parametrize(("cmd_sn", "why"), [(9, "duplicate"), (14, "beyond MaxCmdSN")])
def test_commands_outside_the_window_are_dropped(cmd_sn: int, why: str) -> None:
    window: CommandWindow[str] = CommandWindow(exp_cmd_sn=10, depth=4)
    assert window.classify(cmd_sn, False) is Verdict.DROP, why
    assert window.admit(cmd_sn, False, "x") == []
    assert window.dropped == 1 and window.exp_cmd_sn == 10


def test_a_held_duplicate_is_dropped() -> None:
    window: CommandWindow[str] = CommandWindow(exp_cmd_sn=10, depth=4)
    window.admit(12, False, "first")
    assert window.admit(12, False, "again") == []
    assert window.admit(10, False, "a") == ["a"]
    assert window.admit(11, False, "b") == ["b", "first"]


def test_full_window_drops_even_exp_cmd_sn() -> None:
    window: CommandWindow[int] = CommandWindow(exp_cmd_sn=0, depth=2)
    window.admit(0, False, 0)
    window.admit(1, False, 1)
    assert window.max_cmd_sn == 1  # == ExpCmdSN - 1: shut
    assert window.admit(2, False, 2) == []
    window.finished()
    assert window.admit(2, False, 2) == [2]


def test_immediate_commands_skip_the_queue_up_to_a_limit() -> None:
    window: CommandWindow[str] = CommandWindow(exp_cmd_sn=10, depth=4, max_immediate=2)
    assert window.admit(10, True, "i1") == ["i1"]
    assert window.admit(99, True, "i2") == ["i2"]  # any CmdSN: not checked
    assert window.exp_cmd_sn == 10
    with pytest.raises(ImmediateCommandRejected) as caught:
        window.admit(10, True, "i3")
    assert caught.value.reject_reason is RejectReason.IMMEDIATE_COMMAND_REJECT
    window.finished(immediate=True)
    assert window.admit(10, True, "i3") == ["i3"]


def test_window_wraps_around() -> None:
    window: CommandWindow[int] = CommandWindow(exp_cmd_sn=0xFFFFFFFE, depth=4)
    assert window.admit(0, False, 2) == []
    assert window.admit(0xFFFFFFFE, False, 0) == [0]
    assert window.admit(0xFFFFFFFF, False, 1) == [1, 2]
    assert window.exp_cmd_sn == 1


@given(st.lists(st.tuples(st.sampled_from(["cmd", "done"]), st.integers(0, 6)), max_size=60),
       st.integers(0, 0xFFFFFFFF))  # fmt: skip
def test_max_cmd_sn_never_moves_backwards(ops: list[tuple[str, int]], start: int) -> None:
    window: CommandWindow[int] = CommandWindow(exp_cmd_sn=start, depth=4)
    previous = window.max_cmd_sn
    for op, offset in ops:
        if op == "cmd":
            window.admit(sn_add(window.exp_cmd_sn, offset), False, offset)
        elif window.outstanding:
            window.finished()
        assert not sn_lt(window.max_cmd_sn, previous)
        assert window.outstanding <= window.depth
        previous = window.max_cmd_sn


def test_finishing_nothing_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        CommandWindow(exp_cmd_sn=0).finished()
    with pytest.raises(LocalProtocolError):
        CommandWindow(exp_cmd_sn=0).finished(immediate=True)


def test_status_sequence() -> None:
    seq = StatusSequence(0xFFFFFFFF)
    assert seq.peek() == 0xFFFFFFFF
    assert seq.take() == 0xFFFFFFFF
    assert seq.take() == 0
    assert seq.unacknowledged == 2
    assert seq.acknowledge(0)
    assert seq.unacknowledged == 1
    assert not seq.acknowledge(5)  # beyond what was sent: ignored
    assert seq.exp_stat_sn == 0


def test_tag_pool_skips_the_reserved_tag_and_tags_in_use() -> None:
    pool = TagPool(first=0xFFFFFFFE)
    assert pool.allocate() == 0xFFFFFFFE
    assert pool.allocate() == 0  # 0xffffffff is never a TTT
    assert 0 in pool
    pool.release(0xFFFFFFFE)
    assert 0xFFFFFFFE not in pool
