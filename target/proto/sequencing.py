"""Sequence numbers of a session and a connection (RFC 7143 4.2.2 and 11.2.2.1).

CmdSN, StatSN, DataSN and R2TSN are 32-bit serial numbers compared with RFC 1982 arithmetic, so
they wrap. ``CommandWindow`` orders the initiator's commands: non-immediate commands must carry
a CmdSN within ExpCmdSN..MaxCmdSN (others are silently dropped, 4.2.2.1), arrive possibly out of
order and are delivered in CmdSN order; immediate commands skip the queue. The window is the
target's queue depth: MaxCmdSN = ExpCmdSN + depth - (commands not finished) - 1, which never
moves backwards. A rejected command leaves a gap at its CmdSN; an ABORT TASK may close one
(RFC 7143 11.6.1): ``reject``, ``plug``, ``withdraw``. ``StatusSequence`` numbers the
responses of one connection; ``TagPool`` hands out Target Transfer Tags.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

from scsi_pr.target.proto.constants import RESERVED_TAG, RejectReason
from scsi_pr.target.proto.errors import LocalProtocolError, RemoteProtocolError

SERIAL_BITS = 32
SERIAL_MASK = (1 << SERIAL_BITS) - 1
SERIAL_HALF = 1 << (SERIAL_BITS - 1)

T = TypeVar("T")


def sn_add(value: int, n: int) -> int:
    return (value + n) & SERIAL_MASK


def sn_lt(a: int, b: int) -> bool:
    """RFC 1982 3.2: ``a < b`` for 32-bit serial numbers."""
    return a != b and ((a < b and b - a < SERIAL_HALF) or (a > b and a - b > SERIAL_HALF))


def sn_le(a: int, b: int) -> bool:
    return a == b or sn_lt(a, b)


def sn_in_window(value: int, low: int, high: int) -> bool:
    """Whether ``low <= value <= high`` in serial arithmetic (an empty window holds nothing)."""
    return sn_le(low, value) and sn_le(value, high) and sn_le(low, high)


class ImmediateCommandRejected(RemoteProtocolError):
    """More immediate commands than the target takes at once (11.17.1 reason 0x06)."""

    reject_reason = RejectReason.IMMEDIATE_COMMAND_REJECT


class Verdict(Enum):
    DELIVER = "deliver"  # at ExpCmdSN, or immediate
    HOLD = "hold"  # within the window, ahead of a gap
    DROP = "drop"  # outside the window or a duplicate: ignored silently (4.2.2.1)


class _Plugged:
    """A CmdSN considered received with nothing to run (an aborted held command, or a lost
    one an ABORT TASK named): ExpCmdSN passes it without taking a slot."""


PLUGGED = _Plugged()


@dataclass
class CommandWindow(Generic[T]):
    """CmdSN ordering for one session; ``T`` is whatever the caller queues (usually a PDU).

    Non-immediate requests are handed out one at a time by ``take``, so a request the caller
    then rejects can give its CmdSN back (``reject``) before any later one has run.
    """

    exp_cmd_sn: int
    depth: int = 32
    max_immediate: int = 8

    def __post_init__(self) -> None:
        if not 1 <= self.depth < SERIAL_HALF or self.max_immediate < 1:
            raise LocalProtocolError("queue depth must be 1..2**31-1 and immediate limit >= 1")
        self._held: dict[int, T | _Plugged] = {}
        self.outstanding = 0  # taken non-immediate commands not finished yet
        self.immediate_outstanding = 0
        self.dropped = 0

    @property
    def max_cmd_sn(self) -> int:
        """The highest CmdSN the target accepts now (ExpCmdSN - 1 when the window is shut)."""
        return sn_add(self.exp_cmd_sn, self.depth - self.outstanding - 1)

    def in_window(self, cmd_sn: int) -> bool:
        """ExpCmdSN <= ``cmd_sn`` <= MaxCmdSN: "the valid CmdSN window"."""
        return sn_in_window(cmd_sn, self.exp_cmd_sn, self.max_cmd_sn)

    def classify(self, cmd_sn: int, immediate: bool) -> Verdict:
        if immediate:
            return Verdict.DELIVER
        if cmd_sn in self._held:  # a duplicate, or a CmdSN plugged or withdrawn
            return Verdict.DROP
        if cmd_sn == self.exp_cmd_sn:
            return Verdict.DELIVER
        if not self.in_window(cmd_sn):
            return Verdict.DROP
        return Verdict.HOLD

    def admit(self, cmd_sn: int, immediate: bool, item: T) -> T | None:
        """Take in a request. An immediate one comes back, to run at once (it does not advance
        ExpCmdSN, 4.2.2.1), unless ``max_immediate`` are outstanding:
        ``ImmediateCommandRejected``. A non-immediate one waits for ``take`` (None); outside
        the window, a duplicate, or at ExpCmdSN with every slot taken it is dropped and
        ``dropped`` counts it.
        """
        if immediate:
            if self.immediate_outstanding >= self.max_immediate:
                raise ImmediateCommandRejected(f"{self.max_immediate} immediate commands pending")
            self.immediate_outstanding += 1
            return item
        verdict = self.classify(cmd_sn, immediate)
        if verdict is Verdict.DROP or (
            verdict is Verdict.DELIVER and self.outstanding >= self.depth
        ):
            self.dropped += 1
            return None
        self._held[cmd_sn] = item
        return None

    def take(self) -> T | None:
        """The request at ExpCmdSN if it has come and a slot is free; ExpCmdSN moves past it
        (and past plugged CmdSNs before it)."""
        while (item := self._held.get(self.exp_cmd_sn)) is PLUGGED:
            del self._held[self.exp_cmd_sn]
            self.exp_cmd_sn = sn_add(self.exp_cmd_sn, 1)
        if item is None or self.outstanding >= self.depth:
            return None
        del self._held[self.exp_cmd_sn]
        self.exp_cmd_sn = sn_add(self.exp_cmd_sn, 1)
        self.outstanding += 1
        return item  # type: ignore[return-value]  # PLUGGED was skipped above

    def finished(self, immediate: bool = False) -> None:
        """A taken command is done (its response sent): the window opens by one."""
        if immediate:
            if self.immediate_outstanding == 0:
                raise LocalProtocolError("no immediate command is outstanding")
            self.immediate_outstanding -= 1
            return
        if self.outstanding == 0:
            raise LocalProtocolError("no command is outstanding")
        self.outstanding -= 1

    def reject(self, cmd_sn: int) -> None:
        """The request just taken at ``cmd_sn`` is answered with a Reject: its CmdSN "MUST NOT
        be considered received" (RFC 3720 6.3, kept in RFC 7143): ExpCmdSN goes back to it, a
        gap the initiator plugs by sending that CmdSN again or by aborting the task. If a later
        request was taken since (a reply sent while it was handled let the next one run), the
        CmdSN stays used: going back would deliver that later one twice."""
        self.finished()
        if sn_add(cmd_sn, 1) == self.exp_cmd_sn:
            self.exp_cmd_sn = cmd_sn

    def plug(self, cmd_sn: int) -> bool:
        """Consider a CmdSN in the window received (an ABORT TASK of a task that never
        arrived, RFC 7143 11.6.1 b); False, and nothing done, when it is outside."""
        if not self.in_window(cmd_sn):
            return False
        self._held.setdefault(cmd_sn, PLUGGED)
        return True

    def withdraw(self, match: Callable[[T], bool]) -> list[T]:
        """Remove the held requests ``match`` picks (aborted while waiting behind a gap: by an
        ABORT TASK naming one, or a function over their task set); their CmdSNs stay
        received, so the gap's end does not wait for them again."""
        taken: list[T] = []
        for cmd_sn, item in self._held.items():
            if item is not PLUGGED and match(item):  # type: ignore[arg-type]
                self._held[cmd_sn] = PLUGGED
                taken.append(item)  # type: ignore[arg-type]
        return taken

    @property
    def held(self) -> int:
        """Commands received ahead of a CmdSN gap."""
        return sum(item is not PLUGGED for item in self._held.values())


class StatusSequence:
    """StatSN of one connection (4.2.2.2): status-bearing responses take a number each.

    R2T and a target's unsolicited NOP-In carry the next StatSN without taking it (``peek``).
    The initiator's ExpStatSN acknowledges responses; ``unacknowledged`` is what it has not.
    """

    def __init__(self, stat_sn: int) -> None:
        self.stat_sn = stat_sn & SERIAL_MASK
        self.exp_stat_sn = self.stat_sn

    def take(self) -> int:
        value = self.stat_sn
        self.stat_sn = sn_add(value, 1)
        return value

    def peek(self) -> int:
        return self.stat_sn

    def acknowledge(self, exp_stat_sn: int) -> bool:
        """Record the initiator's ExpStatSN; False (and ignored) when it is not plausible."""
        if not sn_in_window(exp_stat_sn, self.exp_stat_sn, self.stat_sn):
            return False
        self.exp_stat_sn = exp_stat_sn
        return True

    @property
    def unacknowledged(self) -> int:
        return (self.stat_sn - self.exp_stat_sn) & SERIAL_MASK


class TagPool:
    """Target Transfer Tags: unique among those in use, never the reserved 0xffffffff."""

    def __init__(self, first: int = 1) -> None:
        self._next = first & SERIAL_MASK
        self._used: set[int] = set()

    def allocate(self) -> int:
        if len(self._used) >= SERIAL_MASK:
            raise LocalProtocolError("every Target Transfer Tag is in use")
        while self._next == RESERVED_TAG or self._next in self._used:
            self._next = sn_add(self._next, 1)
        tag, self._next = self._next, sn_add(self._next, 1)
        self._used.add(tag)
        return tag

    def release(self, tag: int) -> None:
        self._used.discard(tag)

    def __contains__(self, tag: object) -> bool:
        return tag in self._used
