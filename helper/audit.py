"""What the helper writes about its own work: audit (trace) lines and error reports.

Audit events are named as QEMU trace events and selected the way QEMU's ``-T`` selects them;
each is one ``<time> <event> key=value ...`` line. Error reports are qemu-pr-helper's
``error_report``: ``<program>: <message>`` on stderr, only when verbose.
"""

from __future__ import annotations

import fnmatch
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TextIO

from scsi_pr.helper.executors.base import Reply
from scsi_pr.sim.result import SenseData

# Trace events (the audit log). ``-T`` patterns select among them, as QEMU's -T does.
EVENTS = ("prh_command", "prh_refused", "prh_connect", "prh_disconnect", "prh_error")
DEFAULT_EVENTS = frozenset({"prh_command", "prh_refused", "prh_error"})

STATUS_NAMES = {
    0x00: "GOOD",
    0x02: "CHECK_CONDITION",
    0x08: "BUSY",
    0x18: "RESERVATION_CONFLICT",
    0x28: "TASK_SET_FULL",
}


@dataclass
class Audit:
    """One line per event to ``stream``; ``enabled`` is the set of event names written."""

    stream: TextIO | None = sys.stderr
    enabled: frozenset[str] = DEFAULT_EVENTS

    @classmethod
    def from_patterns(cls, patterns: Iterable[str], stream: TextIO | None = sys.stderr) -> Audit:
        """QEMU -T semantics: each pattern (glob) enables events; ``-pattern`` disables them.
        With no pattern at all the default audit events are on."""
        patterns = list(patterns)
        enabled = set() if patterns else set(DEFAULT_EVENTS)
        for pattern in patterns:
            negate = pattern.startswith("-")
            names = fnmatch.filter(EVENTS, pattern.lstrip("-"))
            enabled = enabled - set(names) if negate else enabled | set(names)
        return cls(stream, frozenset(enabled))

    def wants(self, event: str) -> bool:
        """Whether ``event`` would be written (lets callers skip work for a disabled event)."""
        return self.stream is not None and event in self.enabled

    def __call__(self, event: str, **fields: object) -> None:
        stream = self.stream
        if stream is None or event not in self.enabled:
            return
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        parts = " ".join(f"{k}={_quote(v)}" for k, v in fields.items())
        try:
            stream.write(f"{stamp} {event} {parts}\n")
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed log must never take the helper down


def _quote(value: object) -> str:
    text = str(value)
    return f'"{text}"' if (" " in text or not text) else text


def status_name(status: int) -> str:
    return STATUS_NAMES.get(status, f"{status:#04x}")


def sense_text(reply: Reply) -> str:
    """``KEY/ASC/ASCQ`` of a CHECK CONDITION, ``-`` for any other status."""
    if reply.status != 0x02:
        return "-"
    sense = SenseData.parse(reply.sense)
    return "none" if sense is None else f"{sense.key:X}/{sense.asc:02X}/{sense.ascq:02X}"


def error_report(message: str, verbose: int) -> None:
    """Connection errors go to stderr only when verbose, as in qemu-pr-helper."""
    if verbose:
        name = os.path.basename(sys.argv[0] or "scsi-pr-helper")
        print(f"{name}: {message}", file=sys.stderr)
