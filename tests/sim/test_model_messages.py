"""What the model's typed errors say, and the edges of a few readers: PR IN parameter data
readers name the service action they were reading, TransportID parsing names what it could not
read and which forms it takes, a LogicalUnit refuses impossible ports in SCSI's words. Decisions
are never made on these texts (house rule); people read them in logs and test failures, so the
mutation run counts a wrong one as a defect. Also READ(10)'s four LBA bytes and describing a
14-byte READ(16)."""

from __future__ import annotations

import struct

import pytest

from scsi_pr.sim import cdb as C
from scsi_pr.sim.constants import Status
from scsi_pr.sim.describe import describe
from scsi_pr.sim.device import LogicalUnit, LogicalUnitConfigError
from scsi_pr.sim.nexus import ITNexus
from scsi_pr.sim.pr_in_data import (
    PrInDataError,
    parse_full_status_descriptors,
    parse_key_list,
    parse_read_full_status,
    parse_read_keys,
    parse_read_reservation,
)
from scsi_pr.sim.transportid import TransportId, TransportIdError, decode_transport_id

I1 = ITNexus.named("naa.5001405000000001", 1)


@pytest.mark.parametrize(
    ("parse", "data", "message"),
    [
        (parse_read_keys, bytes(7), r"^READ KEYS: 7 bytes, shorter than the 8-byte header$"),
        (
            parse_read_reservation,
            struct.pack(">II", 0, 0) + bytes(1),
            r"^READ RESERVATION: 1 bytes after the header, ADDITIONAL LENGTH says 0$",
        ),
        (
            parse_read_full_status,
            struct.pack(">II", 0, 32),
            r"^READ FULL STATUS: ADDITIONAL LENGTH 32 runs past the 8 bytes$",
        ),
        (
            parse_read_full_status,
            struct.pack(">II", 0, 24) + struct.pack(">Q4xBB4xHI", 1, 0x01, 0x25, 1, 0),
            r"^READ FULL STATUS: SCOPE 0x2 is reserved \(only LU_SCOPE is defined\)$",
        ),
        (parse_key_list, bytes(9), r"^READ KEYS: key list of 9 bytes is not a multiple of 8$"),
    ],
)
def test_pr_in_readers_name_what_they_read(parse: object, data: bytes, message: str) -> None:
    with pytest.raises(PrInDataError, match=message):
        parse(data)  # type: ignore[operator]


def test_transport_id_names_in_every_form() -> None:
    assert TransportId.from_name("fc.2100002400000004") == TransportId.fibre_channel(
        0x2100002400000004
    )
    assert TransportId.from_name("eui.0123456789abcdef") == TransportId.iscsi(
        "eui.0123456789abcdef"
    )
    with pytest.raises(
        TransportIdError,
        match=r"^cannot tell the protocol of initiator 'x': use naa\.<16 hex> \(SAS\), "
        r"fc\.<16 hex> \(FC\) or iqn\.… \(iSCSI\)$",
    ):
        TransportId.from_name("x")


def test_bad_iscsi_transport_id_length_is_named() -> None:
    raw = bytes([0x05, 0, 0, 6]) + b"iqn.x\0"
    with pytest.raises(TransportIdError, match=r"^bad iSCSI TransportID ADDITIONAL LENGTH$"):
        decode_transport_id(raw)


def test_impossible_target_ports_are_named_in_scsi_words() -> None:
    with pytest.raises(
        LogicalUnitConfigError,
        match=r"^target ports are RELATIVE TARGET PORT IDENTIFIERs 1\.\.65535$",
    ):
        LogicalUnit(target_ports=(0x10000,))


def test_read_10_uses_all_four_lba_bytes() -> None:
    lu = LogicalUnit(blocks=0x0100_0010)
    block = bytes(range(256)) * 2
    assert lu.execute(I1, C.write_10(0x0100_0001, 1), block).status == Status.GOOD
    assert lu.execute(I1, C.read_10(0x0100_0001, 1)).data == block
    assert lu.execute(I1, C.read_10(1, 1)).data == bytes(512)


def test_describe_a_fourteen_byte_read_16() -> None:
    assert describe(C.read_16(1, 2)[:14]) == "READ(16) lba=1 blocks=2"


def test_transport_id_of_four_bytes_is_read_not_called_truncated() -> None:
    with pytest.raises(TransportIdError, match=r"^TransportID truncated$"):
        decode_transport_id(bytes([0x05, 0, 0]))
    with pytest.raises(TransportIdError, match=r"^bad iSCSI TransportID ADDITIONAL LENGTH$"):
        decode_transport_id(bytes([0x05, 0, 0, 0]))


def test_full_status_descriptors_must_arrive_whole_unless_asked() -> None:
    body = struct.pack(">Q4xBB4xHI", 1, 0, 0, 1, 0)[:20]
    with pytest.raises(PrInDataError, match=r"^READ FULL STATUS: truncated descriptor at byte 0"):
        parse_full_status_descriptors(body)
    assert parse_full_status_descriptors(body, allow_truncated=True) == ()


def test_full_status_scope_type_is_zero_for_a_non_holder() -> None:
    lu = LogicalUnit(target_ports=(1, 2))
    i2 = ITNexus.named("naa.5001405000000002", 2)
    for nexus, key in ((I1, 0xA), (i2, 0xB)):
        assert lu.execute(nexus, *C.prout(0, 0, key)).status == Status.GOOD
    assert lu.execute(I1, *C.prout(1, 0xA, 0, 5)).status == Status.GOOD
    data = lu.execute(I1, C.persistent_reserve_in(3)).data
    first = 8 + 24 + len(I1.initiator.encode())
    assert data[8 + 12 : 8 + 14] == bytes([0x01, 0x05])  # holder: R_HOLDER, WE-RO
    assert data[first + 12 : first + 14] == bytes([0x00, 0x00])  # non-holder: both zero


def test_a_terminated_command_says_its_answer() -> None:
    """CommandTerminated builds its message when printed (not at every conflict): the same
    words as the result it carries."""
    from scsi_pr.sim.constants import INVALID_FIELD_IN_CDB
    from scsi_pr.sim.result import CommandResult, CommandTerminated, illegal_request

    conflict = CommandTerminated(CommandResult.reservation_conflict())
    assert str(conflict) == "RESERVATION CONFLICT"
    check = illegal_request(INVALID_FIELD_IN_CDB, cdb_byte=2)
    assert str(check) == str(check.result) and "INVALID FIELD IN CDB" in str(check)
