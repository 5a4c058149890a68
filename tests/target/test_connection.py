"""TargetConnection end to end: an initiator built from the codec talks to it in bytes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import pdus
from wire import INITIATOR, READ_10, TARGET, WRITE_10, Initiator

from scsi_pr.sim.constants import PROTOCOL_SERVICE_CRC_ERROR, SenseKey
from scsi_pr.sim.result import fixed_sense
from scsi_pr.target.proto import (
    LoginRequest,
    LoginResponse,
    LoginStatus,
    LogoutRequest,
    LogoutResponse,
    NopIn,
    NopOut,
    Pdu,
    ReadyToTransfer,
    Reject,
    RejectReason,
    ScsiDataIn,
    ScsiDataOut,
    ScsiResponse,
    TextRequest,
    TextResponse,
    encode_pdu,
)
from scsi_pr.target.proto.connection import ConnectionState
from scsi_pr.target.proto.events import (
    CommandReceived,
    ConnectionClosed,
    LoginCompleted,
    LogoutReceived,
    Rejected,
    TaskManagementReceived,
)
from scsi_pr.target.proto.text import build_text, parse_text


def test_login_then_read_with_digests() -> None:
    ini = Initiator(digests=True)
    response = ini.login()
    assert response.tsih == 5 and response.exp_cmd_sn == 100 and response.max_cmd_sn == 107
    assert isinstance(ini.events[0], LoginCompleted) and ini.events[0].parameters.header_digest
    assert ini.command(1, READ_10, 4096, read=True) == []  # the LU answers later
    event = ini.last(CommandReceived)
    assert (event.initiator_task_tag, event.lun, event.cdb, event.read) == (1, 0, READ_10, True)
    ini.conn.complete_command(1, 0, data=bytes(range(256)) * 16)
    (pdu,) = ini.pull()
    assert isinstance(pdu, ScsiDataIn) and pdu.status_present and len(pdu.data) == 4096
    assert (pdu.stat_sn, pdu.exp_cmd_sn, pdu.max_cmd_sn) == (1, 101, 108)


def test_max_recv_data_segment_length_declared_again_in_full_feature_phase() -> None:
    """13.12: the key is declarative and usable in every phase: later Data-In segments follow
    the new value; a value out of range is answered Reject and changes nothing."""
    ini = Initiator()
    ini.login()
    for itt, value, answer in ((2, "100", [("MaxRecvDataSegmentLength", "Reject")]),
                               (3, "512", [])):  # fmt: skip
        text = f"MaxRecvDataSegmentLength={value}\0".encode()
        (response,) = ini.send(TextRequest(initiator_task_tag=itt, cmd_sn=ini.cmd_sn, data=text))
        ini.cmd_sn += 1
        assert isinstance(response, TextResponse) and list(parse_text(response.data)) == answer
    ini.command(4, READ_10, 4096, read=True)
    ini.conn.complete_command(4, 0, data=bytes(4096))
    pdus = ini.pull()
    assert [len(p.data) for p in pdus] == [512] * 8 and pdus[-1].status_present


def test_write_solicited_with_r2t() -> None:
    ini = Initiator(InitialR2T="Yes", MaxBurstLength="4096", FirstBurstLength="4096")
    ini.login()
    (r2t,) = ini.command(2, WRITE_10, 6000, write=True, data=b"a" * 1000)
    assert isinstance(r2t, ReadyToTransfer)
    assert (r2t.buffer_offset, r2t.desired_data_transfer_length, r2t.r2t_sn) == (1000, 4096, 0)
    (r2t2,) = ini.send(ScsiDataOut(final=True, initiator_task_tag=2,
                                   target_transfer_tag=r2t.target_transfer_tag,
                                   buffer_offset=1000, data=b"b" * 4096))  # fmt: skip
    assert isinstance(r2t2, ReadyToTransfer) and r2t2.desired_data_transfer_length == 904
    assert r2t2.r2t_sn == 1
    ini.send(ScsiDataOut(final=True, initiator_task_tag=2,
                         target_transfer_tag=r2t2.target_transfer_tag, buffer_offset=5096,
                         data=b"c" * 904))  # fmt: skip
    assert ini.last(CommandReceived).data == b"a" * 1000 + b"b" * 4096 + b"c" * 904
    ini.conn.complete_command(2, 0)
    (response,) = ini.pull()
    assert isinstance(response, ScsiResponse) and response.status == 0


def test_nop_out_is_answered_and_idle_initiators_are_pinged() -> None:
    ini = Initiator()
    ini.login()
    (nop_in,) = ini.send(NopOut(initiator_task_tag=9, cmd_sn=100, data=b"hello"))
    assert isinstance(nop_in, NopIn) and (nop_in.initiator_task_tag, nop_in.data) == (9, b"hello")
    ini.conn.tick(1.0)
    ini.conn.tick(12.0)  # 11 s without a byte: ping
    (ping,) = ini.pull()
    assert isinstance(ping, NopIn) and ping.initiator_task_tag == 0xFFFFFFFF
    ini.send(NopOut(immediate=True, target_transfer_tag=ping.target_transfer_tag, cmd_sn=101))
    ini.conn.tick(20.0)
    assert not ini.conn.should_close
    ini.conn.tick(31.0)  # idle again: a second ping, never answered
    ini.conn.tick(37.0)
    assert ini.conn.should_close and isinstance(ini.conn.next_event(), ConnectionClosed)


def test_slow_login_times_out() -> None:
    ini = Initiator()
    ini.conn.tick(29.0)
    assert not ini.conn.should_close
    ini.conn.tick(30.0)
    assert ini.conn.should_close and isinstance(ini.conn.next_event(), ConnectionClosed)


def test_send_targets_in_a_discovery_session() -> None:
    ini = Initiator()
    ini.login("Discovery")
    (text,) = ini.send(TextRequest(initiator_task_tag=3, cmd_sn=100, data=b"SendTargets=All\0"))
    assert isinstance(text, TextResponse) and text.final
    assert parse_text(text.data) == (("TargetName", TARGET), ("TargetAddress", "192.0.2.1:3260,1"))
    (reject,) = ini.command(4, READ_10, 512, read=True)
    assert isinstance(reject, Reject) and reject.reason == RejectReason.PROTOCOL_ERROR


def test_logout_closes_cleanly() -> None:
    ini = Initiator()
    ini.login()
    (response,) = ini.send(LogoutRequest(immediate=True, initiator_task_tag=7, cmd_sn=100))
    assert isinstance(response, LogoutResponse) and response.response == 0
    assert isinstance(ini.events[-2], LogoutReceived)
    assert ini.events[-1] == ConnectionClosed("logout", clean=True)
    assert ini.conn.should_close


def test_data_digest_error_on_write_data_fails_the_command() -> None:
    """A 64 KiB Data-Out (its DataSegmentLength uses the field's top byte) lost to a data
    digest error: one Reject carrying the 48-byte BHS (not the header digest), then the
    write's CHECK CONDITION, 47h/05h."""
    ini = Initiator(digests=True, InitialR2T="Yes")
    ini.login()
    (r2t,) = ini.command(2, WRITE_10, 65536, write=True)
    wire = bytearray(encode_pdu(ScsiDataOut(final=True, initiator_task_tag=2, data=b"x" * 65536,
                                            target_transfer_tag=r2t.target_transfer_tag),  # type: ignore[attr-defined]
                                header_digest=True, data_digest=True))  # fmt: skip
    wire[60] ^= 1
    reject, response = ini.send_bytes(bytes(wire))
    assert isinstance(reject, Reject) and reject.reason == RejectReason.DATA_DIGEST_ERROR
    assert reject.data == bytes(wire[:48])
    assert isinstance(response, ScsiResponse) and response.status == 0x02
    assert response.sense == fixed_sense(SenseKey.ABORTED_COMMAND, PROTOCOL_SERVICE_CRC_ERROR)
    assert not any(isinstance(e, CommandReceived) for e in ini.events)


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (encode_pdu(NopIn()), RejectReason.PROTOCOL_ERROR),
        (b"\x1c" + encode_pdu(NopOut())[1:], RejectReason.COMMAND_NOT_SUPPORTED),
        (encode_pdu(ScsiDataOut(initiator_task_tag=77, data=b"x")), RejectReason.INVALID_PDU_FIELD),
        (encode_pdu(LoginRequest(isid=1)), RejectReason.PROTOCOL_ERROR),
    ],
)  # fmt: skip
def test_bad_pdus_are_rejected_and_the_session_goes_on(wire: bytes, reason: RejectReason) -> None:
    ini = Initiator()
    ini.login()
    (reject,) = ini.send_bytes(wire)
    assert isinstance(reject, Reject) and reject.reason == reason
    assert reject.data == wire[:48] and reject.stat_sn == 1
    assert (reject.exp_cmd_sn, reject.max_cmd_sn) == (100, 107)
    assert isinstance(ini.events[-1], Rejected) and not ini.conn.should_close
    (nop_in,) = ini.send(NopOut(initiator_task_tag=9, cmd_sn=100))
    assert isinstance(nop_in, NopIn) and nop_in.stat_sn == 2


def test_commands_outside_the_window_are_dropped() -> None:
    ini = Initiator()
    ini.login()
    ini.cmd_sn = 200
    assert ini.command(1, READ_10, 512, read=True) == []
    assert not any(isinstance(e, CommandReceived) for e in ini.events)


def test_login_failures_close_without_reject() -> None:
    ini = Initiator()
    (response,) = ini.send(NopOut())
    assert isinstance(response, LoginResponse)
    assert response.status == LoginStatus.INVALID_DURING_LOGIN and ini.conn.should_close
    ini = Initiator()
    (response,) = ini.send(LoginRequest(transit=True, csg=1, nsg=3, data=b"TargetName=x\0"))
    assert response.status == LoginStatus.MISSING_PARAMETER  # type: ignore[attr-defined]
    assert isinstance(ini.events[-1], ConnectionClosed)


def test_header_digest_error_closes_without_reject() -> None:
    ini = Initiator(digests=True)
    ini.login()
    wire = bytearray(encode_pdu(NopOut(initiator_task_tag=1), header_digest=True))
    wire[50] ^= 1
    assert ini.send_bytes(bytes(wire)) == []
    assert ini.conn.should_close and isinstance(ini.events[-1], ConnectionClosed)


def test_peer_close_is_nexus_loss() -> None:
    ini = Initiator()
    ini.login()
    ini.send_bytes(b"")
    assert ini.events[-1] == ConnectionClosed("the initiator closed the connection")
    assert ini.conn.state is ConnectionState.CLOSED


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=1, max_size=600), st.booleans())
def test_garbage_never_raises(garbage: bytes, logged_in: bool) -> None:
    ini = Initiator()
    if logged_in:
        ini.login()
    ini.send_bytes(garbage)
    ini.send_bytes(b"")
    assert ini.conn.should_close


@settings(max_examples=150, deadline=None)
@given(st.lists(pdus(), min_size=1, max_size=6))
def test_random_pdus_never_raise(sequence: list[Pdu]) -> None:
    ini = Initiator()
    ini.login()
    for pdu in sequence:
        wire = encode_pdu(pdu)
        ini.send_bytes(wire)
        for event in list(ini.events):  # a helpful LU: answer whatever was asked
            if isinstance(event, CommandReceived):
                ini.conn.complete_command(event.initiator_task_tag, 0, data=b"r" * 100)
            elif isinstance(event, TaskManagementReceived):
                ini.conn.complete_task_management(event.initiator_task_tag, 0)  # type: ignore[arg-type]
        ini.events.clear()
        ini.pull()


def test_refused_connection_fails_its_login_with_the_given_status() -> None:
    ini = Initiator(target={"refusal": LoginStatus.OUT_OF_RESOURCES})
    keys = {"InitiatorName": INITIATOR, "TargetName": TARGET}
    (response,) = ini.send(LoginRequest(transit=True, csg=1, nsg=3, initiator_task_tag=4,
                                        data=build_text(keys.items())))  # fmt: skip
    assert isinstance(response, LoginResponse) and response.initiator_task_tag == 4
    assert response.status == LoginStatus.OUT_OF_RESOURCES and ini.conn.should_close
    assert isinstance(ini.events[0], Rejected) and isinstance(ini.events[-1], ConnectionClosed)
    why = "OUT_OF_RESOURCES: refused by the target"
    assert str(ini.last(Rejected).error) == why
    assert ini.last(ConnectionClosed).reason == f"login failed: {why}"
