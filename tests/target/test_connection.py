"""TargetConnection end to end: an initiator built from the codec talks to it in bytes."""

from __future__ import annotations

from dataclasses import replace
from itertools import count
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import pdus

from scsi_pr.target.proto import (
    CLOSED,
    NEED_DATA,
    Framer,
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
    Role,
    ScsiCommand,
    ScsiDataIn,
    ScsiDataOut,
    ScsiResponse,
    TaskManagementFunction,
    TaskManagementFunctionRequest,
    TaskManagementFunctionResponse,
    TaskManagementResponseCode,
    TextRequest,
    TextResponse,
    encode_pdu,
)
from scsi_pr.target.proto.connection import ConnectionSettings, ConnectionState, TargetConnection
from scsi_pr.target.proto.discovery import Portal
from scsi_pr.target.proto.events import (
    CommandReceived,
    ConnectionClosed,
    LoginCompleted,
    LogoutReceived,
    Rejected,
    TaskManagementReceived,
)
from scsi_pr.target.proto.login import LoginSettings, TargetNode
from scsi_pr.target.proto.text import build_text, parse_text

TARGET, INITIATOR = "iqn.2024-01.test:disk", "iqn.2024-01.test:host"
SETTINGS = ConnectionSettings(
    login=LoginSettings(targets=(TargetNode(TARGET),), command_window=8),
    portals=(Portal("192.0.2.1"),),
    nop_interval=10,
    nop_timeout=5,
)
READ_10 = bytes.fromhex("28000000000000000800") + bytes(6)
WRITE_10 = bytes.fromhex("2a000000000000000800") + bytes(6)


def abort_task(ini: Initiator, rtt: int, ref_cmd_sn: int, *, answered: bool = True) -> Any:
    """An immediate ABORT TASK (ITT 90 + ``rtt``), as initiators send one; the target's
    answer when it gives one at once."""
    out = ini.send(TaskManagementFunctionRequest(
        immediate=True, function=TaskManagementFunction.ABORT_TASK, initiator_task_tag=90 + rtt,
        referenced_task_tag=rtt, ref_cmd_sn=ref_cmd_sn, cmd_sn=ini.cmd_sn))  # fmt: skip
    if not answered:
        assert out == []
        return None
    (response,) = out
    assert isinstance(response, TaskManagementFunctionResponse)
    return response


class Initiator:
    """The initiator's side: encodes requests, decodes whatever the target sends back."""

    def __init__(self, digests: bool = False, **keys: str) -> None:
        counter = count()
        source = lambda n: bytes(next(counter) for _ in range(n))  # noqa: E731
        self.conn = TargetConnection(SETTINGS, tsih=5, random_bytes=source)
        self.framer = Framer(Role.INITIATOR)
        self.digests = digests
        self.cmd_sn = 100
        self.events: list[Any] = []
        self.keys = keys

    def send_bytes(self, data: bytes) -> list[Pdu]:
        self.conn.receive_data(data)
        return self.drain()

    def tick(self, now: float) -> list[Pdu]:
        self.conn.tick(now)
        return self.drain()

    def drain(self) -> list[Pdu]:
        """Collect the target's events, and return the PDUs it queued."""
        while (event := self.conn.next_event()) not in (NEED_DATA, CLOSED):
            self.events.append(event)
        return self.pull()

    def pull(self) -> list[Pdu]:
        """The PDUs the target has queued."""
        out = self.conn.data_to_send()
        if out:
            self.framer.receive_data(out)
        pdus = []
        while isinstance(pdu := self.framer.next_pdu(), Pdu):
            pdus.append(pdu)
        return pdus

    def send(self, pdu: Pdu) -> list[Pdu]:
        on = self.digests and self.conn.state is ConnectionState.FULL_FEATURE_PHASE
        return self.send_bytes(encode_pdu(pdu, header_digest=on, data_digest=on))

    def login(self, session_type: str = "Normal") -> LoginResponse:
        keys = {"InitiatorName": INITIATOR, "SessionType": session_type, **self.keys}
        if session_type == "Normal":
            keys["TargetName"] = TARGET
        if self.digests:
            keys |= {"HeaderDigest": "CRC32C", "DataDigest": "CRC32C"}
        (response,) = self.send(LoginRequest(transit=True, csg=1, nsg=3, isid=0x400001, cmd_sn=100,
                                             data=build_text(keys.items())))  # fmt: skip
        assert isinstance(response, LoginResponse) and response.status == 0
        if self.digests:
            self.framer.set_digests(True, True)
        return response

    def command(
        self, itt: int, cdb: bytes, length: int, *, read: bool = False, write: bool = False,
        data: bytes = b"", final: bool = True, immediate: bool = False,
    ) -> list[Pdu]:  # fmt: skip
        pdu = ScsiCommand(immediate=immediate, final=final, read=read, write=write,
                          initiator_task_tag=itt, expected_data_transfer_length=length,
                          cmd_sn=self.cmd_sn, cdb=cdb, data=data)  # fmt: skip
        if not immediate:
            self.cmd_sn += 1
        return self.send(pdu)

    def last(self, kind: type) -> Any:
        return next(e for e in reversed(self.events) if isinstance(e, kind))


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


def test_abort_task_of_a_write_still_collecting() -> None:
    ini = Initiator(InitialR2T="Yes")
    ini.login()
    ini.command(2, WRITE_10, 8192, write=True)
    ini.send(TaskManagementFunctionRequest(function=TaskManagementFunction.ABORT_TASK,
                                           initiator_task_tag=3, referenced_task_tag=2,
                                           cmd_sn=101))  # fmt: skip
    event = ini.last(TaskManagementReceived)
    assert event.aborted == (2,) and event.function == TaskManagementFunction.ABORT_TASK
    ini.conn.complete_task_management(3, TaskManagementResponseCode.FUNCTION_COMPLETE)
    (response,) = ini.pull()
    assert isinstance(response, TaskManagementFunctionResponse) and response.response == 0
    assert ini.conn.session is not None and ini.conn.session.tasks == []


def test_abort_task_of_a_write_handed_out_is_left_to_the_lu() -> None:
    """A write whose data all came is no longer collecting: the LU's side aborts it (its
    flight), and the session keeps it until then."""
    ini = Initiator()
    ini.login()
    ini.command(2, WRITE_10, 512, write=True, data=b"x" * 512)
    assert ini.last(CommandReceived).initiator_task_tag == 2
    abort_task(ini, 2, 100, answered=False)
    assert ini.last(TaskManagementReceived).aborted == ()
    assert ini.conn.session is not None and sorted(ini.conn.session.tasks) == [2, 92]
    ini.conn.abort_command(2)
    assert ini.conn.session.tasks == [92]


def stalling_initiator(timeout: float) -> tuple[Initiator, int]:
    """Logged in, with a write waiting for 1024 bytes after its R2T; and the R2T's TTT."""
    ini, counter = Initiator(InitialR2T="Yes"), count()
    settings = replace(SETTINGS, data_out_timeout=timeout)
    source = lambda n: bytes(next(counter) for _ in range(n))  # noqa: E731
    ini.conn = TargetConnection(settings, tsih=5, random_bytes=source)
    ini.login()
    (r2t,) = ini.command(2, WRITE_10, 1024, write=True)
    assert isinstance(r2t, ReadyToTransfer)
    return ini, r2t.target_transfer_tag


def test_a_write_whose_data_stop_coming_ends_the_connection() -> None:
    """ErrorRecoveryLevel 0 cannot recover a lost Data-Out: after ``data_out_timeout`` with
    none, the connection ends (as LIO's dataout_timeout does); each Data-Out restarts it."""
    ini, ttt = stalling_initiator(3.0)
    ini.tick(1.0)
    ini.tick(3.9)
    assert not ini.conn.should_close
    ini.send(ScsiDataOut(initiator_task_tag=2, target_transfer_tag=ttt, data=b"x" * 512))
    ini.tick(4.5)
    (reject,) = ini.send(ScsiDataOut(initiator_task_tag=77, target_transfer_tag=ttt, data=b"y"))
    assert isinstance(reject, Reject)  # a Data-Out for no write is no progress
    ini.tick(7.4)
    assert not ini.conn.should_close
    ini.tick(7.5)
    assert ini.conn.should_close
    closed = ini.last(ConnectionClosed)
    assert "Data-Out" in closed.reason and not closed.clean


def test_a_write_handed_to_the_lu_is_not_waiting_for_data() -> None:
    ini, ttt = stalling_initiator(3.0)
    ini.send(ScsiDataOut(final=True, initiator_task_tag=2, target_transfer_tag=ttt,
                         data=b"x" * 1024))  # fmt: skip
    assert ini.last(CommandReceived).initiator_task_tag == 2
    ini.tick(1.0)
    ini.tick(9.0)  # the LU takes its time; the initiator has nothing more to send
    assert not ini.conn.should_close


def test_data_digest_error_on_write_data_fails_the_command() -> None:
    ini = Initiator(digests=True, InitialR2T="Yes")
    ini.login()
    (r2t,) = ini.command(2, WRITE_10, 1024, write=True)
    wire = bytearray(encode_pdu(ScsiDataOut(final=True, initiator_task_tag=2, data=b"x" * 1024,
                                            target_transfer_tag=r2t.target_transfer_tag),  # type: ignore[attr-defined]
                                header_digest=True, data_digest=True))  # fmt: skip
    wire[60] ^= 1
    reject, response = ini.send_bytes(bytes(wire))
    assert isinstance(reject, Reject) and reject.reason == RejectReason.DATA_DIGEST_ERROR
    assert isinstance(response, ScsiResponse) and response.status == 0x02
    assert response.sense[2] == 0x0B and response.sense[12:14] == b"\x47\x05"
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
    assert isinstance(ini.events[-1], Rejected) and not ini.conn.should_close
    (nop_in,) = ini.send(NopOut(initiator_task_tag=9, cmd_sn=100))
    assert isinstance(nop_in, NopIn) and nop_in.stat_sn == 2


def test_reused_task_tag_is_task_in_progress() -> None:
    ini = Initiator(InitialR2T="Yes")
    ini.login()
    ini.command(2, WRITE_10, 512, write=True)
    (reject,) = ini.command(2, READ_10, 512, read=True)
    assert isinstance(reject, Reject) and reject.reason == RejectReason.TASK_IN_PROGRESS
    # RFC 3720 6.3: the rejected command's CmdSN (101) is not received; the next waits for it
    assert reject.exp_cmd_sn == 101
    assert ini.command(4, READ_10, 512, read=True) == []
    ini.cmd_sn = 101
    ini.command(3, READ_10, 512, read=True)  # the gap plugged by sending CmdSN 101 again
    received = [e.initiator_task_tag for e in ini.events if isinstance(e, CommandReceived)]
    assert received == [3, 4]


def test_abort_task_of_a_lost_command_closes_its_cmd_sn_gap() -> None:
    """RFC 7143 11.6.1 b: RefCmdSN in the window, before the function's own CmdSN."""
    ini = Initiator()
    ini.login()
    ini.cmd_sn = 101  # CmdSN 100 (ITT 1) never reached the target
    ini.command(2, READ_10, 512, read=True)
    assert not any(isinstance(e, CommandReceived) for e in ini.events)
    response = abort_task(ini, 1, 100)
    assert response.response == TaskManagementResponseCode.FUNCTION_COMPLETE
    assert ini.last(CommandReceived).initiator_task_tag == 2
    assert not any(isinstance(e, TaskManagementReceived) for e in ini.events)


@pytest.mark.parametrize(
    ("ref_cmd_sn", "why"),
    [(99, "before ExpCmdSN"), (108, "past MaxCmdSN"), (102, "not before the function's CmdSN")],
)
def test_abort_task_of_an_unknown_task_outside_the_window(ref_cmd_sn: int, why: str) -> None:
    """RFC 7143 11.6.1 c: "Task does not exist", and the gap stays."""
    ini = Initiator()
    ini.login()
    ini.cmd_sn = 101
    ini.command(2, READ_10, 512, read=True)
    response = abort_task(ini, 1, ref_cmd_sn)
    assert response.response == TaskManagementResponseCode.TASK_DOES_NOT_EXIST, why
    assert response.exp_cmd_sn == 100
    assert not any(isinstance(e, CommandReceived) for e in ini.events)


def test_abort_task_of_a_command_waiting_behind_a_gap() -> None:
    """RFC 7143 11.6.1 a: it exists, so it is aborted (never run, no response) and its CmdSN
    counts as received when the gap before it closes."""
    ini = Initiator()
    ini.login()
    ini.cmd_sn = 101
    ini.command(2, READ_10, 512, read=True)
    response = abort_task(ini, 2, 101)
    assert response.response == TaskManagementResponseCode.FUNCTION_COMPLETE
    ini.cmd_sn = 100
    ini.command(1, READ_10, 512, read=True)
    assert [e.initiator_task_tag for e in ini.events if isinstance(e, CommandReceived)] == [1]
    ini.conn.complete_command(1, 0, data=bytes(512))
    (data_in,) = ini.pull()
    assert isinstance(data_in, ScsiDataIn) and data_in.exp_cmd_sn == 102


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


def test_aborted_command_gets_no_reply_and_frees_its_slot() -> None:
    ini = Initiator()
    ini.login()
    ini.command(1, READ_10, 512, read=True)
    ini.conn.abort_command(1)  # a task management function aborted it while it ran
    assert ini.pull() == [] and ini.conn.session is not None and ini.conn.session.tasks == []
    ini.command(1, READ_10, 512, read=True)  # the ITT is free again
    ini.conn.complete_command(1, 0, data=bytes(512))
    (pdu,) = ini.pull()
    assert isinstance(pdu, ScsiDataIn) and pdu.max_cmd_sn == 109  # two slots opened


def test_refused_connection_fails_its_login_with_the_given_status() -> None:
    ini = Initiator()
    ini.conn = TargetConnection(SETTINGS, tsih=5, random_bytes=bytes,
                                refusal=LoginStatus.OUT_OF_RESOURCES)  # fmt: skip
    keys = {"InitiatorName": INITIATOR, "TargetName": TARGET}
    (response,) = ini.send(LoginRequest(transit=True, csg=1, nsg=3, initiator_task_tag=4,
                                        data=build_text(keys.items())))  # fmt: skip
    assert isinstance(response, LoginResponse) and response.initiator_task_tag == 4
    assert response.status == LoginStatus.OUT_OF_RESOURCES and ini.conn.should_close
    assert isinstance(ini.events[0], Rejected) and isinstance(ini.events[-1], ConnectionClosed)
