"""``scsi-pr explain``: pasted bytes in words (``scsi_pr.sim.explain``, ``rig.explain_cli``)."""

from __future__ import annotations

import io

import pytest

from scsi_pr.rig import explain as explain_cli
from scsi_pr.rig.explain import ExplainError, explain, explain_trace, hex_runs, parse_hex
from scsi_pr.sim import cdb as C
from scsi_pr.sim.constants import (
    INVALID_FIELD_IN_CDB,
    INVALID_FIELD_IN_PARAMETER_LIST,
    REGISTRATIONS_PREEMPTED,
    UNRECOVERED_READ_ERROR,
    SenseKey,
)
from scsi_pr.sim.constants import PersistentReserveOutAction as SA
from scsi_pr.sim.constants import ReservationType as T
from scsi_pr.sim.pr_in import (
    FULL_STATUS_DESCRIPTOR,
    HEADER,
    capabilities_data,
    keys_data,
    reservation_data,
    scope_type,
)
from scsi_pr.sim.result import FieldPointer, fixed_sense
from scsi_pr.sim.transportid import TransportId

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


# -- PR IN parameter data, read as the service action --as names ----------------------------
def _full_status_descriptor(key: int, flags: int, scope_type: int, port: int, tid: bytes) -> bytes:
    return FULL_STATUS_DESCRIPTOR.pack(key, flags, scope_type, port, len(tid)) + tid


def test_read_keys_with_no_key_and_cut_short() -> None:
    """An empty list says "none" rather than nothing; a reply cut by ALLOCATION LENGTH still
    reads (the keys that arrived whole), as sg_persist with a small buffer gives it."""
    assert explain(keys_data(7, []), as_="keys") == [
        "READ KEYS: PRGENERATION 7, 0 registered: none"
    ]
    # ADDITIONAL LENGTH counts both keys: the count is the device's, what arrived is said
    assert explain(keys_data(7, [0xA, 0xB])[:20], as_="keys") == [
        "READ KEYS: PRGENERATION 7, 2 registered: 0xa (1 of 2 arrived, the rest cut off by "
        "ALLOCATION LENGTH)"
    ]
    assert explain(keys_data(7, [0xA, 0xB])[:8], as_="keys") == [
        "READ KEYS: PRGENERATION 7, 2 registered: none (0 of 2 arrived, the rest cut off by "
        "ALLOCATION LENGTH)"
    ]


def test_read_reservation_every_kind() -> None:
    """An all-registrants reservation has no one holder (its key reads 0): saying "key 0x0"
    would send a person looking for a registrant with key 0."""
    all_registrants = reservation_data(4, (0, scope_type(0, T.EXCLUSIVE_ACCESS_ALL_REGISTRANTS)))
    assert explain(all_registrants, as_="reservation") == [
        "READ RESERVATION: PRGENERATION 4, EA-AR, every registrant holds it (key 0)"
    ]
    assert explain(reservation_data(4, None), as_="reservation") == [
        "READ RESERVATION: PRGENERATION 4, no reservation"
    ]
    # cut short inside the descriptor: it still reads, without a descriptor to show
    # (the device holds one: "no reservation" would be wrong)
    cut = explain(
        reservation_data(4, (5, scope_type(0, T.EXCLUSIVE_ACCESS)))[:12], as_="reservation"
    )
    assert cut == [
        "READ RESERVATION: PRGENERATION 4, reserved (its descriptor cut off by ALLOCATION LENGTH)"
    ]


def test_report_capabilities_names_every_flag_and_type() -> None:
    """Each flag by its SPC-5 name, ALLOW COMMANDS as the three bits it is, the types by
    abbreviation; nothing set reads "no flags" and "types none", not an empty gap."""
    everything = capabilities_data(0x9D, 0x81 | (0b011 << 4))
    assert explain(everything, as_="capabilities") == [
        "REPORT CAPABILITIES: RLR_C CRH SIP_C ATP_C PTPL_C TMV PTPL_A; ALLOW COMMANDS 011b; "
        "types WE EA WE-RO EA-RO WE-AR EA-AR"
    ]
    nothing = bytes([0, 8, 0, 0, 0, 0, 0, 0])
    assert explain(nothing, as_="capabilities") == [
        "REPORT CAPABILITIES: no flags; ALLOW COMMANDS 000b; types none"
    ]
    # one flag at a time: each bit is read as its own flag, no other
    for byte, bit, name in [
        (2, 0x80, "RLR_C"), (2, 0x10, "CRH"), (2, 0x08, "SIP_C"), (2, 0x04, "ATP_C"),
        (2, 0x01, "PTPL_C"), (3, 0x80, "TMV"), (3, 0x01, "PTPL_A"),
    ]:  # fmt: skip
        one = bytearray(nothing)
        one[byte] = bit
        assert explain(bytes(one), as_="capabilities") == [
            f"REPORT CAPABILITIES: {name}; ALLOW COMMANDS 000b; types none"
        ]
    only_ea_ar = bytes([0, 8, 0, 0x70, 0, 0x01, 0, 0])
    assert explain(only_ea_ar, as_="capabilities") == [
        "REPORT CAPABILITIES: no flags; ALLOW COMMANDS 111b; types EA-AR"
    ]


def test_read_full_status_one_line_per_registration() -> None:
    """Who (the TransportID in its human form, or its bytes when it does not decode), through
    which port, ALL_TG_PT, and which registration holds the reservation of what TYPE."""
    sas = TransportId.sas(0x5001).encode()
    iscsi = TransportId.iscsi("iqn.2024-01.example:host", 0x23D000001).encode()
    body = (
        _full_status_descriptor(0xA, 0x03, scope_type(0, T.WRITE_EXCLUSIVE), 2, sas)
        + _full_status_descriptor(0xB, 0x00, 0, 1, bytes([0x05, 0, 0, 0]))
        + _full_status_descriptor(0xC, 0x02, 0, 0, iscsi)
    )
    data = HEADER.pack(9, len(body)) + body
    assert explain(data, as_="full-status") == [
        "READ FULL STATUS: PRGENERATION 9, 3 registered I_T nexuses",
        "  key 0xa: naa.0000000000005001 via target port 2, ALL_TG_PT, holds WE",
        "  key 0xb: TransportID 05000000 via target port 1",
        "  key 0xc: iqn.2024-01.example:host,i,0x00023d000001 via target port 0, ALL_TG_PT",
    ]
    empty = HEADER.pack(3, 0)
    assert explain(empty, as_="full-status") == [
        "READ FULL STATUS: PRGENERATION 3, 0 registered I_T nexuses"
    ]
    first = body[: 24 + len(sas)]  # the first descriptor alone: "nexus"
    one = HEADER.pack(3, len(first)) + first
    assert explain(one, as_="full-status")[0] == (
        "READ FULL STATUS: PRGENERATION 3, 1 registered I_T nexus"
    )
    # cut inside the last descriptor: the whole ones still read
    cut = explain(data[:-4], as_="full-status")
    assert cut == [
        f"READ FULL STATUS: PRGENERATION 9, 2 registered I_T nexuses arrived of ADDITIONAL "
        f"LENGTH {len(body)} bytes (the rest cut off by ALLOCATION LENGTH)",
        "  key 0xa: naa.0000000000005001 via target port 2, ALL_TG_PT, holds WE",
        "  key 0xb: TransportID 05000000 via target port 1",
    ]


def test_pr_in_data_errors_say_what_and_why() -> None:
    """A wrong --as is named with the choices; data that is not that action's is named with
    the reader's reason, so the person can see which byte disagrees."""
    with pytest.raises(ExplainError) as wrong:
        explain(b"\0" * 8, as_="status")
    assert str(wrong.value) == (
        "--as 'status': choose from keys, reservation, capabilities, full-status"
    )
    with pytest.raises(ExplainError) as bad:
        explain(bytes(7), as_="keys")
    assert str(bad.value) == "not keys parameter data: READ KEYS: 7 bytes, shorter than the " + (
        "8-byte header"
    )
    with pytest.raises(ExplainError) as nothing:
        explain(b"")
    assert str(nothing.value) == "nothing to explain"


# -- sense ----------------------------------------------------------------------------------
def test_sense_formats_current_and_deferred() -> None:
    """Fixed (70h/71h) and descriptor (72h/73h) sense, current or deferred, with or without the
    VALID bit (F0h is 70h with VALID): each says which it is, and reads its key/ASC/ASCQ from
    where that format puts them."""
    code = INVALID_FIELD_IN_PARAMETER_LIST
    fixed = fixed_sense(SenseKey.ILLEGAL_REQUEST, code)
    first = "ILLEGAL REQUEST: INVALID FIELD IN PARAMETER LIST (5h/26h/00h)"
    for response, words in [
        (0x70, "fixed format, current"), (0x71, "fixed format, deferred"),
        (0xF0, "fixed format, current"), (0xF1, "fixed format, deferred"),
    ]:  # fmt: skip
        assert explain(bytes([response]) + fixed[1:])[0] == f"sense ({words}): {first}"
    released = "UNIT ATTENTION: RESERVATIONS RELEASED (6h/2Ah/04h)"
    for response, words in [
        (0x72, "descriptor format, current"), (0x73, "descriptor format, deferred"),
        (0xF3, "descriptor format, deferred"),
    ]:  # fmt: skip
        eight = bytes([response, 0x06, 0x2A, 0x04, 0, 0, 0, 0])  # the shortest there is
        assert explain(eight) == [
            f"sense ({words}): {released}",
            "  likely: the reservation went away or changed type (the holder released it or "
            "unregistered, or a PREEMPT changed TYPE): read it again",
        ]


def test_sense_too_short_and_not_sense_at_all() -> None:
    """Eight bytes with a sense response code are sense, if too short to read; seven are not."""
    assert explain(bytes([0x70, 0, 6, 0, 0, 0, 0, 0, 0, 0])) == [
        "sense: too short to read (10 bytes)"
    ]
    assert explain(bytes([0x71, 0, 6, 0, 0, 0, 0, 0])) == ["sense: too short to read (8 bytes)"]
    assert explain(bytes([0x72, 0x06, 0x2A, 0x04, 0, 0, 0])) == [
        "7 bytes: not sense data, a known CDB or a status; PR IN parameter data needs "
        "--as keys|reservation|capabilities|full-status"
    ]


def test_field_pointer_only_for_illegal_request_and_only_its_bits() -> None:
    """The field pointer's byte is 16 bits, big-endian; the bit is said only when BPV says the
    BIT POINTER is valid; and only ILLEGAL REQUEST's sense-key specific bytes are a field
    pointer (a UNIT ATTENTION's are something else), nor is an unknown ASC/ASCQ given a cause."""
    cdb_bit = fixed_sense(
        SenseKey.ILLEGAL_REQUEST, INVALID_FIELD_IN_CDB, FieldPointer(True, 258, 5)
    )
    assert explain(cdb_bit)[:2] == [
        "sense (fixed format, current): ILLEGAL REQUEST: INVALID FIELD IN CDB (5h/24h/00h)",
        "  the field at CDB byte 258, bit 5",
    ]
    list_bit = fixed_sense(
        SenseKey.ILLEGAL_REQUEST, INVALID_FIELD_IN_PARAMETER_LIST, FieldPointer(False, 20, 1)
    )
    assert explain(list_bit)[1] == "  the field at parameter list byte 20, bit 1"
    no_bpv = bytearray(fixed_sense(SenseKey.ILLEGAL_REQUEST, INVALID_FIELD_IN_CDB))
    no_bpv[15:18] = bytes([0xC1, 0, 4])  # SKSV, C/D, BPV clear (the BIT POINTER 1 means nothing)
    assert explain(bytes(no_bpv))[1] == "  the field at CDB byte 4"
    ua = fixed_sense(SenseKey.UNIT_ATTENTION, REGISTRATIONS_PREEMPTED, FieldPointer(True, 2, 3))
    assert explain(ua) == [
        "sense (fixed format, current): UNIT ATTENTION: REGISTRATIONS PREEMPTED (6h/2Ah/05h)",
        "  likely: another I_T nexus preempted this nexus's key: it is fenced, and its writes "
        "conflict under a registrants-only reservation",
    ]
    assert explain(fixed_sense(SenseKey.MEDIUM_ERROR, UNRECOVERED_READ_ERROR)) == [
        "sense (fixed format, current): MEDIUM ERROR: UNRECOVERED READ ERROR (3h/11h/00h)"
    ]


# -- CDBs and status ------------------------------------------------------------------------
def test_cdbs_of_every_length_group() -> None:
    """The CDB's length comes from its opcode's group (bits 7-5): 6, 10, 12 and 16 bytes, each
    exactly or zero-padded to 16, and the describer sees the CDB's own bytes."""
    assert explain(C.test_unit_ready()) == ["TEST UNIT READY"]
    assert explain(C.read_10(7, 3)) == ["READ(10) lba=7 blocks=3"]
    assert explain(C.read_10(7, 3).ljust(16, b"\0")) == ["READ(10) lba=7 blocks=3"]
    assert explain(C.report_luns()) == ["REPORT LUNS"]
    assert explain(C.report_luns().ljust(16, b"\0")) == ["REPORT LUNS"]
    assert explain(C.read_16(5, 2)) == ["READ(16) lba=5 blocks=2"]


def test_what_is_not_a_cdb() -> None:
    """An unknown opcode of a CDB's length, a known one padded with something other than zeros,
    or padded to any length but 16, is not a CDB: it falls to the one line saying so."""

    def not_known(n: int) -> list[str]:
        return [
            f"{n} bytes: not sense data, a known CDB or a status; PR IN parameter data needs "
            "--as keys|reservation|capabilities|full-status"
        ]

    assert explain(bytes([0x01, 0, 0, 0, 0, 0])) == not_known(6)  # group 0, no such opcode
    assert explain(bytes([0x7F]) + bytes(9)) == not_known(10)  # group 3: no CDB length
    cdb, _ = C.prout(SA.REGISTER, 0, 1)
    padded = bytearray(cdb.ljust(16, b"\0"))
    padded[10] = 1  # the first byte after the CDB
    assert explain(bytes(padded)) == not_known(16)
    assert explain(cdb.ljust(15, b"\0")) == not_known(15)


def test_status_bytes_with_and_without_a_meaning() -> None:
    """Every status the PR user meets is explained; one without a PR meaning is just named,
    with no dangling colon."""
    assert explain(bytes([0x00])) == ["status 0x00 GOOD: the command completed"]
    assert explain(bytes([0x02])) == ["status 0x02 CHECK CONDITION: look at the sense data for why"]
    assert explain(bytes([0x28])) == ["status 0x28 TASK SET FULL: the device queue is full: retry"]
    assert explain(bytes([0x04])) == ["status 0x04 CONDITION MET"]
    assert explain(bytes([0x40])) == ["status 0x40 TASK ABORTED"]


# -- traces ---------------------------------------------------------------------------------
def test_a_trace_pairs_only_a_pr_out_cdb_with_a_whole_parameter_list() -> None:
    """The run after a PR OUT CDB is its list only when it is at least 24 bytes (else both are
    explained apart); the run after any other CDB is never its list; the list may be the last
    run; and a lone hex run of six bytes, colon-separated, counts."""
    cdb, data = C.prout(SA.REGISTER, 0, 0x1234)
    assert explain_trace(f"cdb: {cdb.hex(' ')}\nlist: {data.hex(' ')}\n") == [
        "PR OUT REGISTER key=0x0 sa_key=0x1234"
    ]
    assert explain_trace(f"cdb: {cdb.hex(' ')}\nlist: {data[:23].hex(' ')}\n") == [
        "PR OUT REGISTER",
        "  (give the parameter list as the next argument to see the keys)",
        "23 bytes: not sense data, a known CDB or a status; PR IN parameter data needs "
        "--as keys|reservation|capabilities|full-status",
    ]
    assert explain_trace(f"{C.test_unit_ready().hex(' ')}\n{data.hex(' ')}") == [
        "TEST UNIT READY",
        "24 bytes: not sense data, a known CDB or a status; PR IN parameter data needs "
        "--as keys|reservation|capabilities|full-status",
    ]
    assert hex_runs("mac aa:bb:cc:dd:ee:ff, 11 22 33 44 55 and a1b2 c3 d4 e5 f6 a7") == [
        bytes.fromhex("aabbccddeeff")
    ]


def test_upper_case_hex_and_the_refusal_message() -> None:
    """People paste upper-case hex as often as lower; what is refused is quoted back."""
    assert parse_hex("5F 0A FF") == bytes([0x5F, 0x0A, 0xFF])
    with pytest.raises(ExplainError) as refused:
        parse_hex("5f 0g")
    assert str(refused.value) == "not hex bytes: '5f 0g'"


# -- the command line -----------------------------------------------------------------------
def test_command_line_as_and_several_blobs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--as applies to every blob; two blobs of which the first is no PR OUT CDB are explained
    one after the other, as are three blobs even when the first is one; no argument reads a
    trace from stdin; what is not hex is one line on stderr and exit status 2."""
    keys = [keys_data(2, [1]).hex(), keys_data(3, []).hex()]
    assert explain_cli.main(["--as", "keys", *keys]) == 0
    assert capsys.readouterr().out == (
        "READ KEYS: PRGENERATION 2, 1 registered: 0x1\n"
        "READ KEYS: PRGENERATION 3, 0 registered: none\n"
    )
    sense = fixed_sense(SenseKey.ILLEGAL_REQUEST, INVALID_FIELD_IN_CDB).hex()
    assert explain_cli.main([sense, "02"]) == 0
    assert capsys.readouterr().out == (
        "sense (fixed format, current): ILLEGAL REQUEST: INVALID FIELD IN CDB (5h/24h/00h)\n"
        "  likely: a reserved TYPE or SCOPE, or a service action the device does not support "
        "(REGISTER AND MOVE without a reservation on LIO)\n"
        "status 0x02 CHECK CONDITION: look at the sense data for why\n"
    )
    cdb, data = C.prout(SA.RESERVE, 0xAB, 0, T.EXCLUSIVE_ACCESS)
    assert explain_cli.main([cdb.hex(), data.hex(), "18"]) == 0
    assert capsys.readouterr().out == (
        "PR OUT RESERVE type=EA\n"
        "  (give the parameter list as the next argument to see the keys)\n"
        "24 bytes: not sense data, a known CDB or a status; PR IN parameter data needs "
        "--as keys|reservation|capabilities|full-status\n"
        "status 0x18 RESERVATION CONFLICT: the command conflicts with the reservation (this I_T "
        "nexus is not the holder and the TYPE does not let it in), or a PR OUT's RESERVATION KEY "
        "is not this nexus's, or it is not registered\n"
    )
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{cdb.hex(' ')}\n{data.hex(' ')}\n"))
    assert explain_cli.main([]) == 0
    assert capsys.readouterr().out == "PR OUT RESERVE type=EA key=0xab\n"
    assert explain_cli.main(["0x5f", "xyz"]) == 2
    assert capsys.readouterr() == ("", "scsi-pr explain: not hex bytes: 'xyz'\n")


def test_command_line_refuses_an_unknown_as_and_shows_its_usage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--as takes only the four readers (argparse refuses the rest, exit 2, naming the command);
    --help shows the usage part of the module docstring, examples laid out as written."""
    with pytest.raises(SystemExit) as refused:
        explain_cli.main(["--as", "status", "00"])
    assert refused.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: scsi-pr explain ")
    assert "scsi-pr explain: error: argument --as: invalid choice: 'status'" in err
    with pytest.raises(SystemExit) as helped:
        explain_cli.main(["--help"])
    assert helped.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: scsi-pr explain ")
    for line in [
        "``scsi-pr explain``: bytes a person pasted, in words: a CDB, a sense buffer, a status\n",
        "\n    scsi-pr explain 5f 01 05 00 00 00 00 00 18 00 [PARAMETER-LIST]\n",
        "\n    sg_persist -vv ... 2>&1 | scsi-pr explain -\n",
        "more hex bytes. Exit status 2 for input that is not hex.\n",
    ]:
        assert line in out
    assert "The decoding" not in out


def test_help_without_a_docstring(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under ``python -OO`` the module has no docstring: --help then has no description, not
    a made-up one, and goes straight from the usage to the arguments."""
    monkeypatch.setattr(explain_cli, "__doc__", None)
    with pytest.raises(SystemExit) as helped:
        explain_cli.main(["--help"])
    assert helped.value.code == 0
    blocks = capsys.readouterr().out.split("\n\n")
    assert blocks[0].startswith("usage: scsi-pr explain ")
    assert blocks[1].startswith("positional arguments:\n")
