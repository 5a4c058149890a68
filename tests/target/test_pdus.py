"""PDU layouts: hand-assembled RFC 7143 byte images both ways, round trips of every type.

The hex images are written word by word from the RFC's PDU drawings (chapter 11), not produced
by the encoder, so an offset or bit mistake in a layout table shows up here.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from strategies import PDU_TYPES, pdus

import scsi_pr.target.proto as proto
from scsi_pr.target.proto import (
    AsyncEvent,
    AsynchronousMessage,
    InvalidPduField,
    LocalProtocolError,
    LoginRequest,
    LoginResponse,
    LoginStatus,
    LogoutResponse,
    NopIn,
    NopOut,
    ReadyToTransfer,
    Reject,
    RejectReason,
    ScsiCommand,
    ScsiDataIn,
    ScsiDataOut,
    ScsiResponse,
    Stage,
    TaskAttribute,
    TaskManagementFunction,
    TaskManagementFunctionRequest,
    TextRequest,
    decode_lun,
    encode_lun,
    encode_pdu,
    sense_segment,
)
from scsi_pr.target.proto.layout import Pdu


def words(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


SENSE = words("70000500 00000000 00000000 24000000 0000")  # 18 bytes: ILLEGAL REQUEST, 24h
NOP_HEADER = words(
    "40800000 00000004 00000000 00000000 00000001 ffffffff 00000005 00000009"
    " 00000000 00000000 00000000 00000000"
)

TABLE: list[tuple[Pdu, bytes]] = [
    (  # RFC 3720 B.4 "iSCSI Read" example (READ(10) of 2 blocks, ITT 14000000h)
        ScsiCommand(final=True, read=True, attributes=TaskAttribute.UNTAGGED,
                    initiator_task_tag=0x14000000, expected_data_transfer_length=0x400,
                    cmd_sn=0x14, exp_stat_sn=0x18,
                    cdb=words("28000000 00000000 02000000 00000000")),
        words("01c00000 00000000 00000000 00000000 14000000 00000400 00000014 00000018"
              " 28000000 00000000 02000000 00000000"),
    ),
    (
        NopOut(immediate=True, initiator_task_tag=1, cmd_sn=5, exp_stat_sn=9, data=b"ping"),
        NOP_HEADER + b"ping",
    ),
    (
        NopIn(initiator_task_tag=1, stat_sn=7, exp_cmd_sn=6, max_cmd_sn=0x25, data=b"abcde"),
        words("20800000 00000005 00000000 00000000 00000001 ffffffff 00000007 00000006"
              " 00000025 00000000 00000000 00000000 61626364 65000000"),
    ),
    (
        LoginRequest(transit=True, csg=Stage.LOGIN_OPERATIONAL_NEGOTIATION,
                     nsg=Stage.FULL_FEATURE_PHASE, isid=0x23D000000001, cmd_sn=1, data=b"A=B\0"),
        words("43870000 00000004 23d00000 00010000 00000000 00000000 00000001 00000000"
              " 00000000 00000000 00000000 00000000 413d4200"),
    ),
    (
        LoginResponse(transit=True, csg=1, nsg=3, isid=0x23D000000001, tsih=7, stat_sn=1,
                      exp_cmd_sn=1, max_cmd_sn=0x20, status_class=2, status_detail=1),
        words("23870000 00000000 23d00000 00010007 00000000 00000000 00000001 00000001"
              " 00000020 02010000 00000000 00000000"),
    ),
    (
        ReadyToTransfer(lun=encode_lun(1), initiator_task_tag=0x10, target_transfer_tag=0x77,
                        stat_sn=3, exp_cmd_sn=4, max_cmd_sn=5, buffer_offset=0x2000,
                        desired_data_transfer_length=0x10000),
        words("31800000 00000000 00010000 00000000 00000010 00000077 00000003 00000004"
              " 00000005 00000000 00002000 00010000"),
    ),
    (
        ScsiDataIn(final=True, status_present=True, residual_underflow=True,
                   initiator_task_tag=0x10, stat_sn=3, exp_cmd_sn=4, max_cmd_sn=5, data_sn=2,
                   buffer_offset=0x400, residual_count=0x200, data=b"\1\2\3\4"),
        words("25830000 00000004 00000000 00000000 00000010 ffffffff 00000003 00000004"
              " 00000005 00000002 00000400 00000200 01020304"),
    ),
    (
        ScsiDataOut(final=True, initiator_task_tag=0x10, target_transfer_tag=0x77,
                    exp_stat_sn=4, buffer_offset=0x2000, data=b"\xab\xcd"),
        words("05800000 00000002 00000000 00000000 00000010 00000077 00000000 00000004"
              " 00000000 00000000 00002000 00000000 abcd0000"),
    ),
    (
        Reject(reason=RejectReason.PROTOCOL_ERROR, stat_sn=9, exp_cmd_sn=10, max_cmd_sn=11,
               data=NOP_HEADER),
        words("3f800400 00000030 00000000 00000000 ffffffff 00000000 00000009 0000000a"
              " 0000000b 00000000 00000000 00000000") + NOP_HEADER,
    ),
    (
        TaskManagementFunctionRequest(function=TaskManagementFunction.ABORT_TASK,
                                      initiator_task_tag=0x20, referenced_task_tag=0x10,
                                      cmd_sn=0x30, exp_stat_sn=0x31, ref_cmd_sn=0x2F),
        words("42810000 00000000 00000000 00000000 00000020 00000010 00000030 00000031"
              " 0000002f 00000000 00000000 00000000"),
    ),
    (
        LogoutResponse(initiator_task_tag=0x40, stat_sn=1, exp_cmd_sn=2, max_cmd_sn=3,
                       time2wait=2, time2retain=20),
        words("26800000 00000000 00000000 00000000 00000040 00000000 00000001 00000002"
              " 00000003 00000000 00020014 00000000"),
    ),
    (
        ScsiResponse(residual_underflow=True, status=0x02, initiator_task_tag=5, stat_sn=6,
                     exp_cmd_sn=7, max_cmd_sn=8, residual_count=0x100,
                     data=sense_segment(SENSE)),
        words("21820002 00000014 00000000 00000000 00000005 00000000 00000006 00000007"
              " 00000008 00000000 00000000 00000100 0012") + SENSE,
    ),
    (
        AsynchronousMessage(async_event=AsyncEvent.LOGOUT_REQUESTED, stat_sn=1, exp_cmd_sn=2,
                            max_cmd_sn=3, parameter3=5),
        words("32800000 00000000 00000000 00000000 ffffffff 00000000 00000001 00000002"
              " 00000003 01000000 00000005 00000000"),
    ),
    (
        TextRequest(initiator_task_tag=3, cmd_sn=4, exp_stat_sn=5, data=b"SendTargets=All\0"),
        words("04800000 00000010 00000000 00000000 00000003 ffffffff 00000004 00000005"
              " 00000000 00000000 00000000 00000000") + b"SendTargets=All\0",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("pdu", "wire"), TABLE, ids=lambda v: type(v).__name__)
def test_pdu_to_bytes(pdu: Pdu, wire: bytes) -> None:
    assert encode_pdu(pdu) == wire


@pytest.mark.parametrize(("pdu", "wire"), TABLE, ids=lambda v: type(v).__name__)
def test_bytes_to_pdu(pdu: Pdu, wire: bytes) -> None:
    role = proto.Role.TARGET if pdu.opcode.from_initiator else proto.Role.INITIATOR
    framer = proto.Framer(role)
    framer.receive_data(wire)
    assert framer.next_pdu() == pdu
    assert framer.next_pdu() is proto.NEED_DATA


def test_reserved_bits_are_ignored_on_receipt() -> None:
    wire = bytearray(encode_pdu(NopOut(initiator_task_tag=1)))
    wire[2] = wire[44] = 0xFF  # reserved bytes of a NOP-Out
    framer = proto.Framer()
    framer.receive_data(bytes(wire))
    assert framer.next_pdu() == NopOut(initiator_task_tag=1)


def test_extended_cdb_and_bidirectional_length_travel_in_ahs() -> None:
    cdb = bytes(range(32))
    pdu = ScsiCommand(cdb=cdb, bidirectional_read_expected_data_transfer_length=0x1234)
    wire = encode_pdu(pdu)
    assert wire[4] == 7  # 20 bytes of extended CDB AHS + 8 of bidi AHS, in words
    assert wire[32:48] == cdb[:16]
    assert wire[48:68] == words("0011 01 00") + cdb[16:] + bytes(0)  # length 17: reserved + 16
    assert wire[68:76] == words("0005 02 00 00001234")
    framer = proto.Framer()
    framer.receive_data(wire)
    assert framer.next_pdu() == pdu


def test_login_status_joins_class_and_detail() -> None:
    assert TABLE[4][0].status is LoginStatus.AUTHENTICATION_FAILURE  # type: ignore[attr-defined]
    assert LoginStatus.SESSION_TYPE_NOT_SUPPORTED.status_detail == 0x09
    assert LoginStatus.INVALID_DURING_LOGIN == 0x020B


def test_scsi_response_exposes_its_sense() -> None:
    assert TABLE[11][0].sense == SENSE  # type: ignore[attr-defined]
    assert ScsiResponse().sense == b""


@pytest.mark.parametrize(
    ("lun", "field"),
    [(0, 0), (1, 0x0001 << 48), (255, 0x00FF << 48), (256, 0x4100 << 48), (16383, 0x7FFF << 48)],
)
def test_lun_field(lun: int, field: int) -> None:
    assert encode_lun(lun) == field
    assert decode_lun(field) == lun


@pytest.mark.parametrize("field", [0x0001_0001 << 32, 0xC000 << 48, 0x0100 << 48])
def test_lun_field_of_other_addressing_is_none(field: int) -> None:
    assert decode_lun(field) is None


@pytest.mark.parametrize(
    "build",
    [
        lambda: NopOut(cmd_sn=1 << 32),
        lambda: NopOut(lun=-1),
        lambda: NopOut(immediate=1),  # type: ignore[arg-type]
        lambda: ScsiCommand(cdb=bytes(15)),
        lambda: ScsiCommand(cdb=bytes(261)),
        lambda: ScsiCommand(bidirectional_read_expected_data_transfer_length=-1),
        lambda: ScsiDataIn(status_present=True, final=False),
        lambda: ScsiResponse(residual_overflow=True, residual_underflow=True),
        lambda: LoginRequest(csg=4),
        lambda: TaskManagementFunctionRequest(function=0x80),
        lambda: NopIn(data="text"),  # type: ignore[arg-type]
        lambda: encode_lun(1 << 14),
    ],
)
def test_invalid_fields_are_refused_at_construction(build) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(LocalProtocolError):
        build()


def test_data_segment_limit() -> None:
    with pytest.raises(LocalProtocolError):
        NopIn(data=bytes(1 << 24))


@settings(max_examples=400, deadline=None)
@given(pdus())
def test_every_pdu_round_trips_with_any_digests(pdu: Pdu) -> None:
    for header_digest, data_digest in ((False, False), (True, True), (True, False)):
        role = proto.Role.TARGET if pdu.opcode.from_initiator else proto.Role.INITIATOR
        framer = proto.Framer(role, header_digest=header_digest, data_digest=data_digest)
        wire = encode_pdu(pdu, header_digest=header_digest, data_digest=data_digest)
        assert len(wire) % 4 == 0
        for i in range(0, len(wire), 37):  # dribble it in: framing must not depend on chunks
            assert framer.next_pdu() is proto.NEED_DATA
            framer.receive_data(wire[i : i + 37])
        assert framer.next_pdu() == pdu


@settings(max_examples=200, deadline=None)
@given(pdus())
def test_every_repr_is_python(pdu: Pdu) -> None:
    assert eval(repr(pdu), vars(proto)) == pdu


def test_every_pdu_type_is_generated() -> None:
    assert {t.__name__ for t in PDU_TYPES} >= {
        "NopOut", "NopIn", "ScsiCommand", "ScsiResponse", "TaskManagementFunctionRequest",
        "TaskManagementFunctionResponse", "LoginRequest", "LoginResponse", "TextRequest",
        "TextResponse", "ScsiDataOut", "ScsiDataIn", "LogoutRequest", "LogoutResponse",
        "ReadyToTransfer", "AsynchronousMessage", "Reject", "SnackRequest",
    }  # fmt: skip


def _command_with_ahs(ahs: bytes) -> Pdu:
    """A SCSI Command's BHS (TotalAHSLength set to fit) and the given AHS bytes."""
    bhs = bytearray(encode_pdu(ScsiCommand(initiator_task_tag=2))[:48])
    bhs[4] = (len(ahs) + 3) // 4
    return Pdu.from_segments(bytes(bhs), ahs)


def test_additional_header_segments_decoded_field_by_field() -> None:
    """A 1-byte extended-CDB AHS (only its reserved byte) is well formed; the bidirectional
    length is the whole 32-bit word after the reserved byte."""
    plain = _command_with_ahs(words("0001 01 00"))
    assert isinstance(plain, ScsiCommand) and len(plain.cdb) == 16
    bidi = _command_with_ahs(words("0005 02 00 12345678"))
    assert bidi.bidirectional_read_expected_data_transfer_length == 0x12345678  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("ahs", "why"),
    [
        (words("0001 01 00") + words("000001"), "^truncated AHS header$"),  # a second, cut short
        (words("0000 01 00"), "^AHS type 1 malformed or repeated$"),  # no body at all
        (words("0005 03 00 00000001"), "^AHS type 3 is not understood$"),
        (words("0004 02 00 000001 00"), "^AHS type 2 is not understood$"),  # 3-byte bidi
    ],
)
def test_malformed_additional_header_segments(ahs: bytes, why: str) -> None:
    with pytest.raises(InvalidPduField, match=why):
        _command_with_ahs(ahs)


@pytest.mark.parametrize("length", [0, 0xFFFFFFFF])
def test_bidirectional_length_bounds_are_inclusive(length: int) -> None:
    command = ScsiCommand(bidirectional_read_expected_data_transfer_length=length)
    assert command.bidirectional_read_expected_data_transfer_length == length


@pytest.mark.parametrize("length", [-1, 1 << 32])
def test_bidirectional_length_out_of_range(length: int) -> None:
    with pytest.raises(LocalProtocolError):
        ScsiCommand(bidirectional_read_expected_data_transfer_length=length)


ITT = "NopOut.initiator_task_tag"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: NopOut(initiator_task_tag=True), f"{ITT} must be an int, not True"),
        (lambda: NopOut(initiator_task_tag=-1), f"{ITT}=-1 is outside 0..0xffffffff"),
        (lambda: NopOut(immediate=1), "NopOut.immediate must be a bool, not 1"),
        (lambda: ScsiCommand(cdb="x"), "ScsiCommand.cdb must be bytes, not str"),
        (lambda: ScsiCommand(cdb=bytes(15)), "ScsiCommand.cdb must be 16 bytes, not 15"),
        (lambda: ScsiCommand(cdb=bytes(261)), "a CDB of 261 bytes exceeds 260"),
        (lambda: ScsiCommand(bidirectional_read_expected_data_transfer_length=-1),
         "bidirectional read length -1 is not a u32"),
        (lambda: ScsiResponse(residual_overflow=True, residual_underflow=True),
         "residual overflow and underflow are exclusive (11.4.5)"),
        (lambda: ScsiResponse(bidi_read_residual_overflow=True, bidi_read_residual_underflow=True),
         "bidi overflow and underflow are exclusive (11.4.5)"),
        (lambda: ScsiDataIn(status_present=True), "the S bit needs the F bit (11.7.3)"),
        (lambda: ScsiDataIn(final=True, residual_overflow=True, residual_underflow=True),
         "residual overflow and underflow are exclusive (11.7.5)"),
        (lambda: encode_lun(16384), "LUN 16384 is outside 0..16383"),
        (lambda: NopIn(data="x"), "NopIn.data must be bytes"),
        (lambda: NopIn(data=bytes(1 << 24)),
         "NopIn data segment of 16777216 bytes exceeds 2**24-1"),
    ],
)  # fmt: skip
def test_construction_errors_name_the_field(build, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(LocalProtocolError) as caught:
        build()
    assert str(caught.value) == message


def test_the_largest_data_segment_is_allowed() -> None:
    assert len(NopIn(data=bytes((1 << 24) - 1)).data) == (1 << 24) - 1


def test_from_segments_defaults_to_no_additional_header() -> None:
    assert Pdu.from_segments(encode_pdu(NopOut(initiator_task_tag=3))[:48]) == NopOut(
        initiator_task_tag=3
    )


def test_undecodable_headers_are_invalid_pdu_fields_that_carry_the_header() -> None:
    unknown = b"\x1c" + bytes(47)
    with pytest.raises(InvalidPduField, match=r"^opcode 0x1c is not defined$") as caught:
        Pdu.from_segments(unknown)
    assert caught.value.header == unknown
    data_in = bytearray(encode_pdu(ScsiDataIn(final=True, status_present=True))[:48])
    data_in[1] &= 0x7F  # S without F
    with pytest.raises(
        InvalidPduField, match=r"^the S bit needs the F bit \(11\.7\.3\)$"
    ) as caught:
        Pdu.from_segments(bytes(data_in))
    assert caught.value.header == bytes(data_in)


def test_a_lun_field_with_anything_below_the_first_level_is_not_ours() -> None:
    assert decode_lun(3 << 48) == 3
    assert decode_lun((3 << 48) | 1) is None


def test_data_for_a_pdu_that_carries_none_is_an_invalid_field() -> None:
    bhs = encode_pdu(ReadyToTransfer(target_transfer_tag=1))[:48]
    with pytest.raises(InvalidPduField, match=r"^ReadyToTransfer carries no data segment$"):
        Pdu.from_segments(bhs, b"", b"x")
