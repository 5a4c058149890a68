"""``scsi-pr explain``: pasted bytes in words (``scsi_pr.sim.explain``, ``rig.explain_cli``)."""

from __future__ import annotations

import io

import pytest

from scsi_pr.rig import explain as explain_cli
from scsi_pr.rig.explain import ExplainError, explain, explain_trace, hex_runs, parse_hex
from scsi_pr.sim import cdb as C
from scsi_pr.sim.constants import (
    INVALID_FIELD_IN_CDB,
    REGISTRATIONS_PREEMPTED,
    SenseKey,
)
from scsi_pr.sim.constants import PersistentReserveOutAction as SA
from scsi_pr.sim.constants import ReservationType as T
from scsi_pr.sim.result import FieldPointer, fixed_sense

PREEMPTED = fixed_sense(SenseKey.UNIT_ATTENTION, REGISTRATIONS_PREEMPTED)


@pytest.mark.parametrize("text", ["5f 00 0a", "5f000a", "0x5f,0x00,0x0a", "5f:00:0a"])
def test_hex_in_the_forms_people_paste(text: str) -> None:
    assert parse_hex(text) == bytes([0x5F, 0x00, 0x0A])


@pytest.mark.parametrize("text", ["", "5f0", "zz", "5f 0g"])
def test_what_is_not_hex_is_refused(text: str) -> None:
    with pytest.raises(ExplainError):
        parse_hex(text)


def test_sense_in_words_with_its_likely_cause() -> None:
    lines = explain(PREEMPTED)
    assert lines[0] == (
        "sense (fixed format, current): UNIT ATTENTION: REGISTRATIONS PREEMPTED (6h/2Ah/05h)"
    )
    assert lines[1].startswith("  likely: another I_T nexus preempted this nexus's key")


def test_the_field_pointer_says_where() -> None:
    sense = fixed_sense(SenseKey.ILLEGAL_REQUEST, INVALID_FIELD_IN_CDB, FieldPointer(True, 2, 3))
    assert "  the field at CDB byte 2, bit 3" in explain(sense)
    in_list = fixed_sense(SenseKey.ILLEGAL_REQUEST, INVALID_FIELD_IN_CDB, FieldPointer(False, 20))
    assert "  the field at parameter list byte 20" in explain(in_list)


def test_a_pr_out_cdb_with_its_parameter_list() -> None:
    cdb, data = C.prout(SA.PREEMPT, 0xA, 0xB, T.WRITE_EXCLUSIVE)
    assert explain(cdb, data=data) == ["PR OUT PREEMPT type=WE key=0xa sa_key=0xb"]
    alone = explain(cdb)
    assert alone[0] == "PR OUT PREEMPT type=WE" and "parameter list" in alone[1]
    assert explain(cdb.ljust(16, b"\0"))[0] == alone[0], "padded to 16 as QEMU sends it"
    assert "--as" in explain(cdb + b"\1")[0], "a CDB is its length, no more"


def test_a_status_byte_and_an_unknown_one() -> None:
    assert explain(bytes([0x18]))[0].startswith("status 0x18 RESERVATION CONFLICT: ")
    assert explain(bytes([0x7F])) == ["status 0x7f: not a SAM-5 status code"]


def test_pr_in_data_needs_to_be_named() -> None:
    keys = bytes.fromhex("0000000500000010000000000000000a000000000000000b")
    assert "--as" in explain(keys)[0]
    assert explain(keys, as_="keys") == ["READ KEYS: PRGENERATION 5, 2 registered: 0xa, 0xb"]
    reservation = bytes.fromhex("0000000300000010000000000000000a0000000000050000")
    assert explain(reservation, as_="reservation") == [
        "READ RESERVATION: PRGENERATION 3, WE-RO, key 0xa"
    ]
    with pytest.raises(ExplainError, match="choose from"):
        explain(keys, as_="status")
    with pytest.raises(ExplainError, match="not capabilities"):
        explain(keys, as_="capabilities")


def test_a_trace_pairs_a_pr_out_cdb_with_its_parameter_list() -> None:
    cdb, data = C.prout(SA.REGISTER, 0, 0x1234)
    trace = (
        f"  Persistent reservation out cdb: {cdb.hex(' ')}\n"
        f"  parameter list: {data.hex(' ')}\n"
        f"  sense: {PREEMPTED.hex(' ')}\n  status: 02\n"
    )
    assert len(hex_runs(trace)) == 3  # "02" alone is no run
    lines = explain_trace(trace)
    assert lines[0] == "PR OUT REGISTER key=0x0 sa_key=0x1234"
    assert "REGISTRATIONS PREEMPTED" in lines[1]
    assert explain_trace("nothing here") == ["no run of six or more hex bytes found"]


def test_the_command_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cdb, data = C.prout(SA.RESERVE, 0xAB, 0, T.EXCLUSIVE_ACCESS)
    assert explain_cli.main(cdb.hex(" ").split()) == 0  # byte tokens form one blob
    assert capsys.readouterr().out == "PR OUT RESERVE type=EA\n" + (
        "  (give the parameter list as the next argument to see the keys)\n"
    )
    assert explain_cli.main([cdb.hex(), data.hex()]) == 0  # two blobs: a CDB and its list
    assert capsys.readouterr().out == "PR OUT RESERVE type=EA key=0xab\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(f"sense: {PREEMPTED.hex(' ')}\n"))
    assert explain_cli.main(["-"]) == 0
    assert "REGISTRATIONS PREEMPTED" in capsys.readouterr().out
    assert explain_cli.main(["xyz"]) == 2
    assert "not hex" in capsys.readouterr().err
