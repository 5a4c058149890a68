"""Framing: CRC32C digests against RFC 3720 B.4, and each malformed input's typed reaction."""

from __future__ import annotations

import pytest

from scsi_pr.target.proto import (
    CLOSED,
    NEED_DATA,
    DataDigestError,
    DataSegmentTooLong,
    Framer,
    HeaderDigestError,
    InvalidPduField,
    NopIn,
    NopOut,
    RejectReason,
    Role,
    ScsiCommand,
    ScsiDataOut,
    TaskManagementFunctionRequest,
    TruncatedPdu,
    UnsupportedOpcode,
    WrongDirection,
    crc32c_digest,
    encode_pdu,
)
from scsi_pr.target.proto.errors import LocalProtocolError, RemoteProtocolError


def words(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


READ_COMMAND = words(  # RFC 3720 B.4 "iSCSI Read" header
    "01c00000 00000000 00000000 00000000 14000000 00000400 00000014 00000018"
    " 28000000 00000000 02000000 00000000"
)


@pytest.mark.parametrize(
    ("data", "wire"),
    [  # RFC 3720 B.4 (kept by RFC 7143): the CRC bytes as they appear on the wire
        (bytes(32), "aa36918a"),
        (b"\xff" * 32, "43aba862"),
        (bytes(range(32)), "4e79dd46"),
        (bytes(range(31, -1, -1)), "5cdb3f11"),
        (READ_COMMAND, "563a96d9"),
    ],
)
def test_crc32c_vectors(data: bytes, wire: str) -> None:
    assert crc32c_digest(data).hex() == wire


def test_header_digest_follows_bhs_and_data_digest_covers_padding() -> None:
    pdu = NopOut(initiator_task_tag=1, data=b"abcde")
    wire = encode_pdu(pdu, header_digest=True, data_digest=True)
    assert wire[48:52] == crc32c_digest(wire[:48])
    assert wire[52:60] == b"abcde\0\0\0"
    assert wire[60:64] == crc32c_digest(b"abcde\0\0\0")
    assert len(wire) == 64


def test_no_data_digest_without_data() -> None:
    wire = encode_pdu(NopOut(), header_digest=True, data_digest=True)
    assert len(wire) == 52


def framer_with(*chunks: bytes, **kwargs: object) -> Framer:
    framer = Framer(**kwargs)  # type: ignore[arg-type]
    for chunk in chunks:
        framer.receive_data(chunk)
    return framer


def reaction(error: RemoteProtocolError) -> tuple[RejectReason | None, bool]:
    return error.reject_reason, error.close_connection


def test_header_digest_error_closes_and_stays_fatal() -> None:
    wire = bytearray(encode_pdu(NopOut(), header_digest=True))
    wire[49] ^= 1
    framer = framer_with(bytes(wire), header_digest=True)
    with pytest.raises(HeaderDigestError, match=r"^header digest mismatch$") as caught:
        framer.next_pdu()
    assert reaction(caught.value) == (None, True) and caught.value.header == bytes(wire[:48])
    with pytest.raises(HeaderDigestError) as again:
        framer.next_pdu()
    assert again.value is caught.value  # remembered, not found again


def test_data_digest_error_rejects_and_goes_on() -> None:
    bad = bytearray(encode_pdu(ScsiDataOut(initiator_task_tag=9, data=b"1234"), data_digest=True))
    bad[50] ^= 0x40
    good = encode_pdu(NopOut(initiator_task_tag=2), data_digest=True)
    framer = framer_with(bytes(bad) + good, data_digest=True)
    with pytest.raises(DataDigestError, match=r"^data digest mismatch$") as caught:
        framer.next_pdu()
    assert reaction(caught.value) == (RejectReason.DATA_DIGEST_ERROR, False)
    assert caught.value.header == bytes(bad[:48])
    assert caught.value.pdu == ScsiDataOut(initiator_task_tag=9)  # who to fail: ITT, TTT
    assert framer.next_pdu() == NopOut(initiator_task_tag=2)


def test_overlong_data_segment_is_a_protocol_error_that_closes() -> None:
    wire = encode_pdu(NopOut(data=bytes(8193)))
    framer = framer_with(wire[:48])  # decided on the header alone: no need to buffer the data
    with pytest.raises(DataSegmentTooLong) as caught:
        framer.next_pdu()
    assert reaction(caught.value) == (RejectReason.PROTOCOL_ERROR, True)
    assert caught.value.header == wire[:48]


def test_limit_follows_the_declared_length() -> None:
    framer = framer_with(encode_pdu(NopOut(data=bytes(8193))), max_recv_data_segment_length=8193)
    assert framer.next_pdu() == NopOut(data=bytes(8193))


def test_unknown_opcode_is_skipped_with_command_not_supported() -> None:
    unknown = bytearray(encode_pdu(NopOut(data=b"xy")))
    unknown[0] = 0x1C
    framer = framer_with(bytes(unknown) + encode_pdu(NopOut(initiator_task_tag=3)))
    with pytest.raises(UnsupportedOpcode) as caught:
        framer.next_pdu()
    assert reaction(caught.value) == (RejectReason.COMMAND_NOT_SUPPORTED, False)
    assert framer.next_pdu() == NopOut(initiator_task_tag=3)


def test_target_pdu_sent_to_the_target_is_a_protocol_error() -> None:
    framer = framer_with(encode_pdu(NopIn()) + encode_pdu(NopOut()))
    with pytest.raises(WrongDirection) as caught:
        framer.next_pdu()
    assert reaction(caught.value) == (RejectReason.PROTOCOL_ERROR, False)
    assert framer.next_pdu() == NopOut()


def test_an_initiator_framer_reads_target_pdus() -> None:
    framer = framer_with(encode_pdu(NopIn()), role=Role.INITIATOR)
    assert framer.next_pdu() == NopIn()


@pytest.mark.parametrize(
    "mangle",
    [
        # a data segment on a PDU that has none (TMF request, DataSegmentLength 4)
        lambda w: w[:5] + b"\0\0\x04" + w[8:] + b"abcd",
        # an AHS on a NOP-Out
        lambda w: w[:4] + b"\x01" + w[5:] + words("0001 01 00"),
    ],
)
def test_inconsistent_segments_are_invalid_pdu_fields(mangle) -> None:  # type: ignore[no-untyped-def]
    wire = mangle(encode_pdu(TaskManagementFunctionRequest()))
    framer = framer_with(wire + encode_pdu(NopOut()))
    with pytest.raises(InvalidPduField) as caught:
        framer.next_pdu()
    assert reaction(caught.value) == (RejectReason.INVALID_PDU_FIELD, False)
    assert len(caught.value.header) == 48
    assert framer.next_pdu() == NopOut()


@pytest.mark.parametrize(
    "ahs",
    [
        words("0011 01 00") + bytes(12),  # extended CDB AHS shorter than its length
        words("0002 07 00"),  # unknown AHS type
        words("0005 02 00 00000001") + words("0005 02 00 00000001"),  # repeated
    ],
)
def test_malformed_ahs_is_an_invalid_pdu_field(ahs: bytes) -> None:
    wire = bytearray(encode_pdu(ScsiCommand()))
    wire[4] = len(ahs) // 4
    framer = framer_with(bytes(wire) + ahs)
    with pytest.raises(InvalidPduField):
        framer.next_pdu()


def test_eof_between_pdus_is_closed_and_inside_one_is_truncated() -> None:
    framer = framer_with(encode_pdu(NopOut()), b"")
    assert framer.next_pdu() == NopOut()
    assert framer.next_pdu() is CLOSED
    framer = framer_with(encode_pdu(NopOut(data=b"abcd"))[:50], b"")
    with pytest.raises(TruncatedPdu, match=r"^the stream ended 50 bytes into a PDU$") as caught:
        framer.next_pdu()
    assert reaction(caught.value) == (None, True)
    for chunk, digest in ((encode_pdu(NopOut())[:10], False), (encode_pdu(NopOut())[:50], True)):
        framer = framer_with(chunk, b"", header_digest=digest)  # in the BHS; in its digest
        with pytest.raises(TruncatedPdu, match=f"^the stream ended {len(chunk)} bytes into"):
            framer.next_pdu()


def test_need_data_until_the_pdu_is_whole() -> None:
    wire = encode_pdu(NopOut(data=b"abcdefg"), header_digest=True, data_digest=True)
    framer = Framer(header_digest=True, data_digest=True)
    for byte in wire[:-1]:
        framer.receive_data(bytes([byte]))
        assert framer.next_pdu() is NEED_DATA
    framer.receive_data(wire[-1:])
    assert framer.next_pdu() == NopOut(data=b"abcdefg")
    assert framer.buffered == 0


def test_digests_switch_on_between_pdus() -> None:
    framer = framer_with(encode_pdu(NopOut()) + encode_pdu(NopOut(), header_digest=True))
    assert framer.next_pdu() == NopOut()
    framer.set_digests(True, False)
    assert framer.next_pdu() == NopOut()
    assert framer.send(NopIn()) == encode_pdu(NopIn(), header_digest=True)


def test_an_extended_cdb_travels_in_the_additional_header() -> None:
    """A 32-byte CDB: 16 bytes in the BHS, the rest in an AHS that TotalAHSLength counts; a
    data digest error still names the whole command (it is decoded with its AHS)."""
    cdb = bytes(range(32))
    command = ScsiCommand(write=True, initiator_task_tag=3, cdb=cdb, data=b"abcd",
                          expected_data_transfer_length=4)  # fmt: skip
    wire = encode_pdu(command)
    assert wire[4] == 5  # 20 bytes: length, type, reserved byte and 16 CDB bytes
    assert framer_with(wire).next_pdu() == command
    longest = ScsiCommand(initiator_task_tag=4, cdb=bytes(260))  # SPC-5's longest CDB
    assert framer_with(encode_pdu(longest)).next_pdu() == longest
    bad = bytearray(encode_pdu(command, data_digest=True))
    bad[-5] ^= 1
    with pytest.raises(DataDigestError) as caught:
        framer_with(bytes(bad), data_digest=True).next_pdu()
    assert isinstance(caught.value.pdu, ScsiCommand) and caught.value.pdu.cdb == cdb


def test_sentinels_and_roles_say_what_they_are() -> None:
    assert (repr(NEED_DATA), repr(CLOSED)) == ("NEED_DATA", "CLOSED")
    assert Framer(Role.INITIATOR).role is Role.INITIATOR and Framer().role is Role.TARGET


def test_nothing_after_the_end_of_the_stream() -> None:
    framer = framer_with(b"")
    with pytest.raises(LocalProtocolError, match=r"^data received after the end of the stream$"):
        framer.receive_data(b"x")
