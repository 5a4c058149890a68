"""What the model's typed errors say, and the edges of a few readers: PR IN parameter data
readers name the service action they were reading, TransportID parsing names what it could not
read and which forms it takes, a LogicalUnit refuses impossible ports in SCSI's words. Decisions
are never made on these texts (house rule); people read them in logs and test failures, so the
mutation run counts a wrong one as a defect. Also READ(10)'s four LBA bytes and describing a
14-byte READ(16)."""

from __future__ import annotations

import struct
from collections.abc import Callable

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
    parse_reservation_descriptor,
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


def iscsi_tid(text: bytes, fmt: int = 0, pad_to: int = 0) -> bytes:
    body = text + b"\0"
    body += bytes(max(pad_to, -(-len(body) // 4) * 4) - len(body))
    return bytes([fmt << 6 | 0x05, 0]) + len(body).to_bytes(2, "big") + body


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (bytes([0x46]) + bytes(23), r"^bad fixed-length TransportID$"),  # SAS, format 01b
        (bytes([0x05, 0, 0, 4]) + b"abcd", r"^iSCSI name is not NUL-terminated$"),
        (iscsi_tid("iqn.é".encode()), r"^iSCSI name is not ASCII$"),
        (iscsi_tid(b"iqn.x", 1), r"^format 01b iSCSI TransportID without ',i,0x<ISID>'$"),
        (iscsi_tid(b"iqn.x,i,0x123", 1), r"^format 01b iSCSI TransportID without ',i,0x<ISID>'$"),
        (iscsi_tid(b"iqn.x,i,0x,i,0x1234567", 1), r"^bad ISID: ',i,0x1234567'$"),
        (iscsi_tid(b"iqn.x,i,0xzzzzzzzzzzzz", 1), r"^bad ISID: 'zzzzzzzzzzzz'$"),
    ],
    ids=["fixed-format-1", "no-nul", "not-ascii", "no-isid", "short-isid", "two-separators",
         "isid-not-hex"],
)  # fmt: skip
def test_what_a_bad_transport_id_is_told(data: bytes, message: str) -> None:
    with pytest.raises(TransportIdError, match=message):
        decode_transport_id(data)


def test_transport_id_lengths_at_their_edges() -> None:
    """ADDITIONAL LENGTH 4 (the least) and one above 255 (two bytes) are both read."""
    assert decode_transport_id(iscsi_tid(b"x")) == (TransportId.iscsi("x"), 8)
    long_name = b"iqn.2024-01.test:" + b"n" * 180
    assert decode_transport_id(iscsi_tid(long_name, pad_to=260)) == (
        TransportId.iscsi(long_name.decode()),
        264,
    )


def test_a_sas_address_has_64_bits() -> None:
    assert TransportId.sas((1 << 64) - 1).name == "naa." + "f" * 16
    with pytest.raises(TransportIdError, match=r"^SAS address out of range: 18446744073709551616$"):
        TransportId.sas(1 << 64)


@pytest.mark.parametrize(
    ("parse", "data", "message"),
    [
        (parse_read_keys, struct.pack(">II", 0, 12) + bytes(12),
         r"^READ KEYS: ADDITIONAL LENGTH 12 is not a multiple of 8$"),
        (parse_read_reservation, struct.pack(">II", 0, 8) + bytes(8),
         r"^READ RESERVATION: descriptor of 8 bytes, need 16$"),
        (parse_read_reservation, struct.pack(">II", 0, 16) + bytes(13) + b"\x0f" + bytes(2),
         r"^READ RESERVATION: unknown TYPE 0xf$"),
        (parse_full_status_descriptors, bytes(30),
         r"^READ FULL STATUS: truncated descriptor at byte 24: 6 bytes, need at least 24$"),
        (parse_full_status_descriptors, bytes(20) + b"\0\0\0\x08" + bytes(4),
         r"^READ FULL STATUS: TransportID of the descriptor at byte 0 \(8 bytes\) runs past the "
         r"data$"),
    ],
    ids=["keys-not-multiple", "reservation-8", "unknown-type", "full-status-cut",
         "full-status-tid-past"],
)  # fmt: skip
def test_what_bad_pr_in_data_is_told(
    parse: Callable[[bytes], object], data: bytes, message: str
) -> None:
    with pytest.raises(PrInDataError, match=message):
        parse(data)


def test_no_reservation_reads_as_additional_length_zero() -> None:
    got = parse_read_reservation(struct.pack(">II", 7, 0))
    assert (got.generation, got.additional_length, got.reservation) == (7, 0, None)


def test_a_reservation_descriptor_cut_short_is_read_as_none_or_refused() -> None:
    header = struct.pack(">II", 7, 16)
    got = parse_read_reservation(header + bytes(8), allow_truncated=True)
    assert (got.generation, got.additional_length, got.reservation) == (7, 16, None)
    with pytest.raises(PrInDataError, match=r"^READ RESERVATION: descriptor of 8 bytes, need 16$"):
        parse_reservation_descriptor(bytes(8))
