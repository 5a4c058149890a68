"""What the helper writes about its own work: audit (trace) lines and error reports.

Audit events are named as QEMU trace events and selected the way QEMU's ``-T`` selects them.
Error reports are qemu-pr-helper's ``error_report``: ``<program>: <message>`` on stderr, only
when verbose.

Why a strict grammar: values such as the passed fd's path, a PR OUT parameter list or a refusal
reason are chosen by the client, and an audit log whose lines a client can forge is worthless.
Every event is exactly one line of printable ASCII::

    line   = time SP event *(SP key "=" value) LF
    time   = YYYY-MM-DDTHH:MM:SS (UTC)
    event  = key = [a-z_][a-z0-9_]*
    value  = bare / quoted
    bare   = 1*( ALPHA / DIGIT / "_" / "-" / "." / "/" / ":" / "+" / "," / "@" / "%" / "~" )
    quoted = DQUOTE *( %x20-21 / %x23-5B / %x5D-7E / escape ) DQUOTE
    escape = "\\" ( DQUOTE / "\\" / "n" / "r" / "t" / "x" 2HEXDIG )

A value is the UTF-8 encoding of the text (undecodable path bytes kept through
``surrogateescape``); every byte outside printable ASCII, and every quote or backslash, is
escaped, so no value can contain a line break, a quote that ends it early, or a terminal
control sequence. ``parse_audit_line`` reads a line back into exactly the fields written.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
import select
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

from scsi_pr.helper.errors import HelperError
from scsi_pr.helper.executors.base import Reply
from scsi_pr.sim.result import SenseData

# Trace events (the audit log). ``-T`` patterns select among them, as QEMU's -T does.
EVENTS = ("prh_command", "prh_refused", "prh_connect", "prh_disconnect", "prh_error")
DEFAULT_EVENTS = frozenset({"prh_command", "prh_refused", "prh_error"})
#: written before the next line once lines had to be dropped (whatever ``-T`` selects)
DROPPED_EVENT = "prh_dropped"

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
    #: lines not written since the last one that was: the stream's reader had stopped reading
    dropped: int = 0
    #: connections write from threads of their own: one line at a time
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    #: (the stream, a poll object registered for its descriptor)
    _polled: tuple[TextIO, Any] | None = field(default=None, repr=False, compare=False)

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
        line = format_audit_line(event, fields)
        with self._lock:
            if not self._takes_a_line(stream):
                self.dropped += 1
                return
            try:
                if self.dropped:
                    stream.write(format_audit_line(DROPPED_EVENT, {"lines": self.dropped}))
                    self.dropped = 0
                stream.write(line)
                stream.flush()
            except (OSError, ValueError):
                pass  # a closed log must never take the helper down

    def _takes_a_line(self, stream: TextIO) -> bool:
        """Whether a line written to ``stream`` now cannot block. Every connection writes here
        under one lock, so a full pipe nobody reads (stderr left open, unread) would stop them
        all: a pipe or socket is polled, the line dropped (and counted) when it has no room."""
        if self._polled is None or self._polled[0] is not stream:
            try:
                fd = stream.fileno()
            except (OSError, ValueError):  # no descriptor (a StringIO): it always takes one
                return True
            poller = select.poll()
            poller.register(fd, select.POLLOUT)
            self._polled = (stream, poller)
        return bool(self._polled[1].poll(0))


class AuditFormatError(HelperError):
    """A line that does not follow the audit grammar (it was not written by ``Audit``)."""


@dataclass(frozen=True)
class AuditRecord:
    """One audit line read back: every value is the text that was written, as a string."""

    time: str
    event: str
    fields: dict[str, str] = field(default_factory=dict)


_KEY = re.compile(r"[a-z_][a-z0-9_]*")
_BARE = re.compile(r"[A-Za-z0-9_\-./:+,@%~]+")
_HEAD = re.compile(r"(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d) (?P<event>[a-z_][a-z0-9_]*)")
# escape letter -> the byte it stands for; both directions come from this one table
_ESCAPES = {'"': ord('"'), "\\": ord("\\"), "n": ord("\n"), "r": ord("\r"), "t": ord("\t")}
_SHORT = {byte: "\\" + letter for letter, byte in _ESCAPES.items()}
# byte -> how it appears inside a quoted value: printable ASCII as itself, the rest escaped
_ESCAPED = [_SHORT.get(b) or (chr(b) if 0x20 <= b < 0x7F else f"\\x{b:02x}") for b in range(256)]
_TOKEN = re.compile(r' ([a-z_][a-z0-9_]*)=(?:"((?:[^"\\]|\\.)*)"|([^ "]+))')


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate no OS path produces: keep it visible
        return text.encode("utf-8", "backslashreplace")


def quote_value(value: object) -> str:
    """``value`` as the grammar's ``bare`` when it can be, else ``quoted`` with escapes."""
    text = str(value)
    if _BARE.fullmatch(text):
        return text
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'  # the common case (a command with spaces) needs no escape
    return '"' + "".join(_ESCAPED[b] for b in _utf8(text)) + '"'


_known_keys: set[str] = set()  # keys already checked: the check runs once per name


def format_audit_line(event: str, fields: dict[str, object], when: float | None = None) -> str:
    """One complete audit line (with its LF) for ``event``; keys are the caller's own names,
    so a key outside the grammar is a programming error (ValueError)."""
    for key in (event, *fields):
        if key not in _known_keys:
            if not _KEY.fullmatch(key):
                raise ValueError(f"audit key {key!r} is not [a-z_][a-z0-9_]*")
            _known_keys.add(key)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when))
    parts = "".join(f" {k}={quote_value(v)}" for k, v in fields.items())
    return f"{stamp} {event}{parts}\n"


def _unquote(body: str) -> str:
    out = bytearray()
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            if not 0x20 <= ord(ch) < 0x7F:
                raise AuditFormatError(f"unescaped character {ch!r} in a quoted value")
            out.append(ord(ch))
            i += 1
            continue
        code = body[i + 1 : i + 2]
        if code == "x" and re.fullmatch(r"[0-9a-f]{2}", body[i + 2 : i + 4]):
            out.append(int(body[i + 2 : i + 4], 16))
            i += 4
        elif code in _ESCAPES:
            out.append(_ESCAPES[code])
            i += 2
        else:
            raise AuditFormatError(f"bad escape {body[i : i + 4]!r}")
    return out.decode("utf-8", "surrogateescape")


def parse_audit_line(line: str) -> AuditRecord:
    """Read back one line written by ``Audit`` (with or without its LF); AuditFormatError if
    it is not one."""
    text = line[:-1] if line.endswith("\n") else line
    head = _HEAD.match(text)
    if head is None or "\n" in text:
        raise AuditFormatError(f"not an audit line: {text[:80]!r}")
    fields: dict[str, str] = {}
    pos = head.end()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise AuditFormatError(f"bad field at {pos}: {text[pos : pos + 40]!r}")
        key, quoted, bare = match.groups()
        if key in fields:
            raise AuditFormatError(f"field {key} repeated")
        if bare is not None and not _BARE.fullmatch(bare):
            raise AuditFormatError(f"value {bare!r} must be quoted")
        fields[key] = bare if bare is not None else _unquote(quoted)
        pos = match.end()
    return AuditRecord(head["time"], head["event"], fields)


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
        # as qemu-pr-helper's: a stderr nobody reads (libvirt closes its end) is no reason to
        # stop serving
        with contextlib.suppress(OSError, ValueError):
            print(f"{name}: {message}", file=sys.stderr)
