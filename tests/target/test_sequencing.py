"""CmdSN window, StatSN and TTTs (RFC 7143 4.2.2) with RFC 1982 serial arithmetic."""

from __future__ import annotations

from typing import TypeVar

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

T = TypeVar("T")


@pytest.mark.parametrize(
    ("a", "b", "less"),
    [(1, 2, True), (2, 1, False), (5, 5, False), (0xFFFFFFFF, 0, True), (0, 0xFFFFFFFF, False),
     (0xFFFFFFF0, 0x10, True), (0, 1 << 31, False), (1 << 31, 0, False),
     (0x7FFFFFF0, 0x80000010, True), (0x80000010, 0x7FFFFFF0, False)],
)  # fmt: skip
def test_serial_less_than(a: int, b: int, less: bool) -> None:
    assert sn_lt(a, b) is less


def test_window_membership_wraps() -> None:
    assert sn_in_window(0, 0xFFFFFFFE, 3)
    assert not sn_in_window(4, 0xFFFFFFFE, 3)
    assert not sn_in_window(5, 6, 5)  # shut window: ExpCmdSN - 1 == MaxCmdSN


def send(window: CommandWindow[T], cmd_sn: int, item: T) -> list[T]:
    """Admit a non-immediate request; what the window then hands out, in order."""
    assert window.admit(cmd_sn, False, item) is None
    return list(iter(window.take, None))


def test_in_order_commands_are_delivered_and_the_window_slides() -> None:
    window: CommandWindow[str] = CommandWindow(exp_cmd_sn=10, depth=4)
    assert window.max_cmd_sn == 13
    assert send(window, 10, "a") == ["a"]
    assert send(window, 11, "b") == ["b"]
    assert (window.exp_cmd_sn, window.max_cmd_sn) == (12, 13)  # MaxCmdSN stays put
    window.finished()
    assert window.max_cmd_sn == 14  # a finished command opens the window


def test_out_of_order_commands_wait_for_the_gap() -> None:
    window: CommandWindow[str] = CommandWindow(exp_cmd_sn=10, depth=8)
    assert send(window, 12, "c") == []
    assert send(window, 11, "b") == []
    assert window.held == 2
    assert send(window, 10, "a") == ["a", "b", "c"]
    assert window.exp_cmd_sn == 13


@pytest.mark.parametrize(("cmd_sn", "why"), [(9, "duplicate"), (14, "beyond MaxCmdSN")])
def test_commands_outside_the_window_are_dropped(cmd_sn: int, why: str) -> None:
    window: CommandWindow[str] = CommandWindow(exp_cmd_sn=10, depth=4)
    assert window.classify(cmd_sn, False) is Verdict.DROP, why
    assert send(window, cmd_sn, "x") == []
    assert window.dropped == 1 and window.exp_cmd_sn == 10


def test_a_held_duplicate_is_dropped() -> None:
    window: CommandWindow[str] = CommandWindow(exp_cmd_sn=10, depth=4)
    send(window, 12, "first")
    assert send(window, 12, "again") == []
    assert send(window, 10, "a") == ["a"]
    assert send(window, 11, "b") == ["b", "first"]


def test_full_window_drops_even_exp_cmd_sn() -> None:
    window: CommandWindow[int] = CommandWindow(exp_cmd_sn=0, depth=2)
    send(window, 0, 0)
    send(window, 1, 1)
    assert window.max_cmd_sn == 1  # == ExpCmdSN - 1: shut
    assert send(window, 2, 2) == [] and window.dropped == 1
    window.finished()
    assert send(window, 2, 2) == [2]
    assert send(window, 2, 2) == [] and window.dropped == 2  # now a duplicate


@pytest.mark.parametrize(("depth", "max_immediate"), [(0, 8), (1 << 31, 8), (4, 0)])
def test_window_bounds(depth: int, max_immediate: int) -> None:
    with pytest.raises(LocalProtocolError, match=r"^queue depth must be 1\.\.2\*\*31-1 and imm"):
        CommandWindow(exp_cmd_sn=0, depth=depth, max_immediate=max_immediate)


def test_window_bounds_are_inclusive() -> None:
    assert CommandWindow(exp_cmd_sn=0, depth=1, max_immediate=1).max_cmd_sn == 0
    assert CommandWindow(exp_cmd_sn=0, depth=(1 << 31) - 1).max_cmd_sn == (1 << 31) - 2


def test_immediate_commands_skip_the_queue_up_to_a_limit() -> None:
    window: CommandWindow[str] = CommandWindow(exp_cmd_sn=10, depth=4, max_immediate=2)
    assert window.admit(10, True, "i1") == "i1"
    assert window.admit(99, True, "i2") == "i2"  # any CmdSN: not checked
    assert window.exp_cmd_sn == 10
    with pytest.raises(ImmediateCommandRejected, match=r"^2 immediate commands pending$") as caught:
        window.admit(10, True, "i3")
    assert caught.value.reject_reason is RejectReason.IMMEDIATE_COMMAND_REJECT
    window.finished(immediate=True)
    assert window.immediate_outstanding == 1
    assert window.admit(10, True, "i3") == "i3"
    window.finished(immediate=True)
    window.finished(immediate=True)
    assert window.immediate_outstanding == 0


def test_window_wraps_around() -> None:
    window: CommandWindow[int] = CommandWindow(exp_cmd_sn=0xFFFFFFFE, depth=4)
    assert send(window, 0, 2) == []
    assert send(window, 0xFFFFFFFE, 0) == [0]
    assert send(window, 0xFFFFFFFF, 1) == [1, 2]
    assert window.exp_cmd_sn == 1


@given(st.lists(st.tuples(st.sampled_from(["cmd", "done", "plug", "reject", "withdraw"]),
                          st.integers(0, 6)), max_size=60),
       st.integers(0, 0xFFFFFFFF))  # fmt: skip
def test_max_cmd_sn_never_moves_backwards(ops: list[tuple[str, int]], start: int) -> None:
    """Whatever the mix, MaxCmdSN never goes back (4.2.2.1) and no CmdSN is handed out twice."""
    window: CommandWindow[int] = CommandWindow(exp_cmd_sn=start, depth=4)
    previous, taken = window.max_cmd_sn, []
    for op, offset in ops:
        cmd_sn = sn_add(window.exp_cmd_sn, offset)
        if op == "cmd":
            for item in send(window, cmd_sn, cmd_sn):
                taken.append(item)
                if offset == 6:  # this one is rejected: a gap at its CmdSN
                    window.reject(item)
                    taken.pop()
        elif op == "plug":
            window.plug(cmd_sn)
        elif op == "withdraw":
            window.withdraw(lambda item, cmd_sn=cmd_sn: item == cmd_sn)  # type: ignore[misc]
        elif window.outstanding:
            window.finished()
        assert not sn_lt(window.max_cmd_sn, previous)
        assert window.outstanding <= window.depth
        previous = window.max_cmd_sn
    assert len(set(taken)) == len(taken)


def test_a_rejected_command_leaves_a_gap_at_its_cmd_sn() -> None:
    """RFC 3720 6.3: a rejected command's CmdSN is not received; later ones wait for it."""
    window: CommandWindow[str] = CommandWindow(exp_cmd_sn=10, depth=8)
    assert send(window, 10, "a") == ["a"]
    before = window.max_cmd_sn
    window.reject(10)
    assert (window.exp_cmd_sn, window.outstanding, window.max_cmd_sn) == (10, 0, before)
    assert send(window, 11, "b") == []
    assert send(window, 10, "a again") == ["a again", "b"]


def test_a_rejected_command_keeps_its_cmd_sn_once_a_later_one_ran() -> None:
    window: CommandWindow[str] = CommandWindow(exp_cmd_sn=10, depth=8)
    send(window, 10, "a")
    send(window, 11, "b")
    window.reject(10)
    assert (window.exp_cmd_sn, window.outstanding) == (12, 1)


def test_a_plugged_cmd_sn_is_received_without_a_slot() -> None:
    """RFC 7143 11.6.1 b: an ABORT TASK names a CmdSN that never arrived."""
    window: CommandWindow[str] = CommandWindow(exp_cmd_sn=10, depth=4)
    assert send(window, 11, "b") == [] and window.held == 1
    assert not window.plug(9) and not window.plug(14)  # outside ExpCmdSN..MaxCmdSN
    assert window.plug(10) and window.held == 1
    assert list(iter(window.take, None)) == ["b"]
    assert (window.exp_cmd_sn, window.outstanding, window.max_cmd_sn) == (12, 1, 14)
    assert window.plug(12) and send(window, 12, "late") == [] and window.dropped == 1


def test_plugging_a_held_cmd_sn_keeps_its_command() -> None:
    window: CommandWindow[str] = CommandWindow(exp_cmd_sn=10, depth=4)
    send(window, 11, "b")
    assert window.plug(11)
    assert send(window, 10, "a") == ["a", "b"]


def test_a_withdrawn_command_never_runs_and_its_cmd_sn_is_received() -> None:
    window: CommandWindow[str] = CommandWindow(exp_cmd_sn=10, depth=4)
    send(window, 11, "b")
    send(window, 12, "c")
    assert window.withdraw(lambda item: item == "x") == []
    assert window.withdraw(lambda item: item == "b") == ["b"] and window.held == 1
    assert window.withdraw(lambda item: item == "b") == []
    assert send(window, 10, "a") == ["a", "c"]
    assert window.exp_cmd_sn == 13 and window.outstanding == 2


def test_every_held_command_a_function_covers_is_withdrawn() -> None:
    window: CommandWindow[str] = CommandWindow(exp_cmd_sn=10, depth=8)
    for cmd_sn, item in ((11, "b1"), (12, "c"), (13, "b2")):
        send(window, cmd_sn, item)
    assert window.withdraw(lambda item: item.startswith("b")) == ["b1", "b2"]
    assert window.held == 1
    assert send(window, 10, "a") == ["a", "c"] and window.exp_cmd_sn == 14


def test_finishing_nothing_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError, match=r"^no command is outstanding$"):
        CommandWindow(exp_cmd_sn=0).finished()
    with pytest.raises(LocalProtocolError, match=r"^no immediate command is outstanding$"):
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


def test_tag_pool_counts_up_from_one() -> None:
    pool = TagPool()
    assert [pool.allocate(), pool.allocate()] == [1, 2]


class _Full:
    """Stands in for a pool's tags in use: every one of them (2**32 - 1 tags would not fit)."""

    def __len__(self) -> int:
        return 0xFFFFFFFF

    def __contains__(self, tag: object) -> bool:
        return True


def test_tag_pool_refuses_when_every_tag_is_in_use() -> None:
    pool = TagPool()
    pool._used = _Full()  # type: ignore[assignment]
    with pytest.raises(LocalProtocolError, match=r"^every Target Transfer Tag is in use$"):
        pool.allocate()


def test_tag_pool_skips_the_reserved_tag_and_tags_in_use() -> None:
    pool = TagPool(first=0xFFFFFFFE)
    assert pool.allocate() == 0xFFFFFFFE
    assert pool.allocate() == 0  # 0xffffffff is never a TTT
    assert 0 in pool
    pool.release(0xFFFFFFFE)
    assert 0xFFFFFFFE not in pool
