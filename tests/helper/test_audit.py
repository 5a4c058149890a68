"""The audit log: QEMU ``-T`` pattern semantics, the one-line-per-event grammar and its parser."""

from __future__ import annotations

import contextlib
import io
import os
import re
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scsi_pr.helper.audit import (
    DEFAULT_EVENTS,
    EVENTS,
    Audit,
    AuditFormatError,
    error_report,
    format_audit_line,
    parse_audit_line,
    quote_value,
    sense_text,
)
from scsi_pr.helper.executors.base import Reply


@pytest.mark.parametrize(
    ("patterns", "enabled"),
    [
        ([], DEFAULT_EVENTS),
        (["prh_conn*"], {"prh_connect"}),
        (["prh_*", "-prh_command"], set(EVENTS) - {"prh_command"}),
        (["-prh_command"], set()),  # a pattern given: the defaults are off
        (["no_such_event"], set()),
    ],
)
def test_patterns_select_events_as_qemu_trace_does(patterns: list[str], enabled: set[str]) -> None:
    assert Audit.from_patterns(patterns).enabled == enabled


def test_one_line_per_enabled_event() -> None:
    log = io.StringIO()
    audit = Audit(log, frozenset({"prh_refused"}))
    audit("prh_refused", pid=7, reason="No file descriptor in request.", empty="")
    audit("prh_command", pid=7)
    assert audit.wants("prh_refused") and not audit.wants("prh_command")
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d prh_refused pid=7 "
        r'reason="No file descriptor in request." empty=""\n',
        log.getvalue(),
    )


def test_a_closed_log_is_ignored() -> None:
    log = io.StringIO()
    log.close()
    Audit(log)("prh_error", error="x")  # must not raise
    assert not Audit(None).wants("prh_error")


def test_sense_text() -> None:
    unit_attention = bytes([0x70, 0, 0x06, 0, 0, 0, 0, 0x0A]) + bytes(4) + b"\x2a\x05"
    assert sense_text(Reply(0x02, unit_attention)) == "6/2A/05"
    assert sense_text(Reply(0x02)) == "none"  # CHECK CONDITION without sense data
    assert sense_text(Reply(0x18, unit_attention)) == "-"  # only CHECK CONDITION has sense


# -- the line grammar: client-controlled text can never forge a line ---------------------------
FORGED = 'x\n2026-11-25T14:35:45 prh_command pid=1 uid=0 device=/dev/sdb command="PR OUT CLEAR'
HOSTILE_TEXTS = [
    FORGED,
    'quote " inside',
    'back\\slash\\" and quote',
    "tab\tcr\rlf\nnul\0esc\x1b[31m",
    "",
    "plain",
    "non-ascii é ü \u2028 \u202e",
    "undecodable \udcff\udc80 bytes",
    "x=y z=w",
]


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_hostile_values_parse_back_exactly_on_one_line(text: str) -> None:
    log = io.StringIO()
    Audit(log, frozenset({"prh_command"}))("prh_command", pid=7, device=text, reason=text)
    line = log.getvalue()
    assert line.endswith("\n") and line.count("\n") == 1 and line.isascii()
    assert all(0x20 <= ord(c) < 0x7F for c in line[:-1])  # no control character at all
    record = parse_audit_line(line)
    assert record.event == "prh_command"
    assert record.fields == {"pid": "7", "device": text, "reason": text}


@settings(max_examples=300)
@given(st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True), st.text()))
def test_any_text_round_trips(fields: dict[str, str]) -> None:
    line = format_audit_line("prh_error", fields)
    assert line.count("\n") == 1
    assert parse_audit_line(line).fields == fields


def test_bare_and_quoted_values() -> None:
    assert quote_value(42) == "42" and quote_value("/dev/sdb") == "/dev/sdb"
    assert quote_value("6/2A/05") == "6/2A/05" and quote_value("-") == "-"
    assert quote_value("") == '""' and quote_value("a b") == '"a b"'
    assert quote_value('a"b') == '"a\\"b"' and quote_value("a\nb") == '"a\\nb"'
    assert quote_value("\x7f") == '"\\x7f"' and quote_value("é") == '"\\xc3\\xa9"'


@pytest.mark.parametrize(
    "line",
    [
        "",
        "not an audit line",
        "2026-11-25T14:35:45 prh_command pid",
        "2026-11-25T14:35:45 prh_command pid=1 ",
        '2026-11-25T14:35:45 prh_command device="unterminated',
        '2026-11-25T14:35:45 prh_command device="bad \\q escape"',
        '2026-11-25T14:35:45 prh_command device="bad \\x4 escape"',
        '2026-11-25T14:35:45 prh_command device="raw \x1b escape"',
        "2026-11-25T14:35:45 prh_command device=needs'quoting",
        "2026-11-25T14:35:45 prh_command pid=1 pid=2",
        "2026-11-25T14:35:45 prh_command pid=1\nsecond line",
        "2026-11-25T14:35:45 Prh_command pid=1",
    ],
)
def test_parser_refuses_what_audit_never_writes(line: str) -> None:
    with pytest.raises(AuditFormatError):
        parse_audit_line(line)


def test_keys_outside_the_grammar_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="audit key"):
        Audit(io.StringIO(), frozenset({"prh_error"}))("prh_error", **{"bad key": 1})


class _NobodyReads(io.StringIO):
    def write(self, s: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_an_error_report_to_a_stderr_nobody_reads_is_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """libvirt closes its end of the helper's stderr once the socket is up: the accept loop's
    report of EMFILE must not take the daemon down (it stopped with BrokenPipeError)."""
    monkeypatch.setattr("sys.stderr", _NobodyReads())
    error_report("accept failed: Too many open files", 1)
    error_report("not verbose: not even tried", 0)


def test_a_pipe_nobody_reads_drops_lines_instead_of_stopping_the_helper() -> None:
    """Every connection writes its audit lines under one lock: a full stderr pipe that stays
    open and unread must not block them (it stopped every connection after ~400 commands).
    Lines that find no room are counted, and reported once the reader catches up."""
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    stream = os.fdopen(write_end, "w", buffering=1)
    audit = Audit(stream)
    try:
        done, sent = threading.Event(), [0]

        def flood() -> None:
            for i in range(5000):
                audit("prh_error", pid=i, device="/dev/sdz", error="x" * 100)
                sent[0] = i
            done.set()

        threading.Thread(target=flood, daemon=True).start()
        last = -1
        while not done.wait(10):  # a hang is ten seconds without one more line
            assert sent[0] != last, f"the audit blocked on a pipe nobody reads ({sent[0]} lines)"
            last = sent[0]
        dropped = audit.dropped
        assert dropped > 0
        while True:  # the reader catches up
            try:
                if not os.read(read_end, 1 << 16):
                    break
            except BlockingIOError:
                break
        audit("prh_error", pid=1, device="/dev/sdz", error="after")
        lines = os.read(read_end, 1 << 16).decode().splitlines()
        first = parse_audit_line(lines[0])
        assert (first.event, first.fields) == ("prh_dropped", {"lines": str(dropped)})
        assert parse_audit_line(lines[1]).fields["error"] == "after" and audit.dropped == 0
    finally:
        os.close(read_end)  # first: a write still blocked on the pipe fails instead
        with contextlib.suppress(OSError):
            stream.close()
