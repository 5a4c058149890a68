"""The audit log: QEMU ``-T`` pattern semantics, the one-line-per-event grammar and its parser."""

from __future__ import annotations

import contextlib
import io
import os
import re
import socket
import threading
from typing import TextIO

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
    status_name,
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
        (["Xprh_command"], set()),  # only a leading "-" is taken off a pattern
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


def test_from_patterns_writes_to_the_stream_it_is_given() -> None:
    log = io.StringIO()
    Audit.from_patterns(["prh_error"], log)("prh_error", error="x")
    assert parse_audit_line(log.getvalue()).fields == {"error": "x"}


def test_a_line_is_stamped_with_the_given_time_in_utc() -> None:
    assert format_audit_line("prh_error", {}, when=0) == "1970-01-01T00:00:00 prh_error\n"
    record = parse_audit_line(format_audit_line("prh_error", {"pid": 1}, when=86_399))
    assert (record.time, record.event) == ("1970-01-01T23:59:59", "prh_error")


@pytest.mark.parametrize(
    ("status", "name"),
    [(0x00, "GOOD"), (0x02, "CHECK_CONDITION"), (0x08, "BUSY"),
     (0x18, "RESERVATION_CONFLICT"), (0x28, "TASK_SET_FULL"), (0x04, "0x04"), (0x22, "0x22")],
)  # fmt: skip
def test_status_names_and_the_hex_of_any_other(status: int, name: str) -> None:
    assert status_name(status) == name


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
    assert quote_value("a\\b") == '"a\\\\b"'  # printable ASCII, but a backslash is escaped


def test_a_lone_surrogate_stays_visible_as_its_escape() -> None:
    """No OS path holds a high surrogate (surrogateescape makes only U+DC80-DCFF), but a value
    may: it is written as the text ``\\ud800``, not lost and not an encoding error."""
    assert quote_value("\ud800") == '"\\\\ud800"'
    assert parse_audit_line(format_audit_line("prh_error", {"d": "a\ud800"})).fields == {
        "d": "a\\ud800"
    }


LONG = "x" * 100


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("", "not an audit line: ''"),
        ("not an audit line", "not an audit line: 'not an audit line'"),
        (LONG, f"not an audit line: '{LONG[:80]}'"),  # the line's first 80 characters
        ("2026-11-25T14:35:45 prh_command pid", "bad field at 31: ' pid'"),
        ("2026-11-25T14:35:45 prh_command pid=1 ", "bad field at 37: ' '"),
        (f'2026-11-25T14:35:45 prh_command p="{LONG}', f"bad field at 31: ' p=\"{LONG[:36]}'"),
        ('2026-11-25T14:35:45 prh_command device="unterminated',
         "bad field at 31: ' device=\"unterminated'"),
        ('2026-11-25T14:35:45 prh_command device="bad \\q escape"', "bad escape '\\\\q e'"),
        ('2026-11-25T14:35:45 prh_command device="bad \\x4 escape"', "bad escape '\\\\x4 '"),
        ('2026-11-25T14:35:45 prh_command device="raw \x1b escape"',
         "unescaped character '\\x1b' in a quoted value"),
        ('2026-11-25T14:35:45 prh_command device="raw \x7f delete"',
         "unescaped character '\\x7f' in a quoted value"),
        ("2026-11-25T14:35:45 prh_command device=needs'quoting",
         "value \"needs'quoting\" must be quoted"),
        ("2026-11-25T14:35:45 prh_command pid=1 pid=2", "field pid repeated"),
        ("2026-11-25T14:35:45 prh_command pid=1\nsecond line",
         "not an audit line: '2026-11-25T14:35:45 prh_command pid=1\\nsecond line'"),
        ("2026-11-25T14:35:45 Prh_command pid=1",
         "not an audit line: '2026-11-25T14:35:45 Prh_command pid=1'"),
    ],
)  # fmt: skip
def test_parser_refuses_what_audit_never_writes(line: str, error: str) -> None:
    with pytest.raises(AuditFormatError) as caught:
        parse_audit_line(line)
    assert str(caught.value) == error


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


def _full_pipe() -> tuple[int, TextIO]:
    """A pipe whose buffer is full, its write end as a text stream, and its read end."""
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    os.set_blocking(write_end, False)
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(write_end, bytes(1 << 16))
    return read_end, os.fdopen(write_end, "w", buffering=1)


def _drain(read_end: int) -> bytes:
    data = b""
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(read_end, 1 << 16):
            data += chunk
    return data


def test_every_line_with_no_room_is_counted_and_reported_once_there_is() -> None:
    read_end, stream = _full_pipe()
    try:
        audit = Audit(stream, frozenset({"prh_error"}))
        for n in range(3):
            audit("prh_error", n=n)
        assert audit.dropped == 3
        _drain(read_end)
        audit("prh_error", n=9)
        lines = [parse_audit_line(line) for line in _drain(read_end).decode().splitlines()]
        assert [(r.event, r.fields) for r in lines] == [
            ("prh_dropped", {"lines": "3"}),
            ("prh_error", {"n": "9"}),
        ]
        assert audit.dropped == 0
    finally:
        os.close(read_end)
        with contextlib.suppress(OSError):
            stream.close()


def test_a_new_stream_is_judged_by_its_own_room() -> None:
    """The poll object is kept per stream: after the stream changes, a full pipe that was the
    old stream must not make the new one drop lines."""
    read_end, full = _full_pipe()
    try:
        audit = Audit(full, frozenset({"prh_error"}))
        audit("prh_error", n=1)
        assert audit.dropped == 1
        audit.stream = log = io.StringIO()
        audit("prh_error", n=2)
        lines = [parse_audit_line(line) for line in log.getvalue().splitlines()]
        assert [(r.event, r.fields) for r in lines] == [
            ("prh_dropped", {"lines": "1"}),
            ("prh_error", {"n": "2"}),
        ]
    finally:
        os.close(read_end)
        with contextlib.suppress(OSError):
            full.close()


@pytest.mark.parametrize(
    ("argv0", "name"),
    [("/usr/libexec/qemu-pr-helper", "qemu-pr-helper"), ("", "scsi-pr-helper")],
)
def test_an_error_report_is_the_program_name_and_the_message(
    argv0: str, name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.argv", [argv0, "-k", "/run/sock"])
    error_report("accept: Too many open files", 1)
    assert capsys.readouterr().err == f"{name}: accept: Too many open files\n"


def test_an_error_report_to_a_closed_stderr_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    closed = io.StringIO()
    closed.close()  # print() to it raises ValueError, not OSError
    monkeypatch.setattr("sys.stderr", closed)
    error_report("accept: Too many open files", 1)


def test_a_socket_with_data_to_read_but_no_room_drops_the_line() -> None:
    """Room to write is what is asked (POLLOUT alone): a stream socket whose peer has sent
    something is readable, which says nothing about room for a line."""
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        while True:
            ours.send(bytes(1 << 16))
    peer.send(b"?")  # readable now
    stream = ours.makefile("w", buffering=1)
    try:
        audit = Audit(stream, frozenset({"prh_error"}))
        audit("prh_error", n=1)
        assert audit.dropped == 1
    finally:
        with contextlib.suppress(OSError):
            stream.close()
        ours.close()
        peer.close()
