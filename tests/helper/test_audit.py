"""The audit log: QEMU ``-T`` pattern semantics and the one-line-per-event format."""

from __future__ import annotations

import io
import re

import pytest

from scsi_pr.helper.audit import DEFAULT_EVENTS, EVENTS, Audit, sense_text
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
