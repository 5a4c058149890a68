"""The live target over real TCP on 127.0.0.1: sessions are I_T nexuses of the model.

Login, READ/WRITE into the LUN image, PR between two sessions (two nexuses, iSCSI TransportIDs
format 01h), I_T nexus loss on a dropped connection, LUN RESET, session reinstatement, the
session limit, SendTargets, and one LU shared with the helper's ``--backend sim``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from initiator import Initiator, TargetGone, connect, until_good
from live import TARGET, LiveTarget, locked_elsewhere, until

from scsi_pr.helper.executors.sim import SimExecutor
from scsi_pr.rig.processes import free_port
from scsi_pr.sim import cdb
from scsi_pr.sim.constants import PersistentReserveInAction as In
from scsi_pr.sim.constants import PersistentReserveOutAction as Out
from scsi_pr.sim.constants import ProtocolIdentifier, ReservationType
from scsi_pr.sim.pr_in_data import parse_read_full_status, parse_read_keys
from scsi_pr.sim.transportid import TransportId
from scsi_pr.target.proto import (
    LoginStatus,
    LogoutRequest,
    LogoutResponse,
    ReadyToTransfer,
    Reject,
    ScsiCommand,
    ScsiDataOut,
    TaskManagementFunction,
)
from scsi_pr.target.server import MAX_LOGINS_PENDING

HOST_A, HOST_B = "iqn.2024-01.test:host-a", "iqn.2024-01.test:host-b"
LOOP, WORKER = "live-target", "scsi-pr-lu_0"  # the target's loop thread, its LU worker
GOOD, CHECK_CONDITION, RESERVATION_CONFLICT = 0x00, 0x02, 0x18
UNIT_ATTENTION = 0x06
I_T_NEXUS_LOSS = (UNIT_ATTENTION, 0x29, 0x07)
LUN_RESET_UA = (UNIT_ATTENTION, 0x29, 0x03)


@pytest.fixture
def target(tmp_path: Path) -> Iterator[LiveTarget]:
    with LiveTarget(tmp_path, luns=2) as live:
        yield live


def prout(ini: Initiator, action: int, key: int = 0, sa_key: int = 0, type_: int = 0) -> int:
    command, data = cdb.prout(action, key, sa_key, type_)
    return ini.command(command, data=data).status


def read_keys(ini: Initiator) -> tuple[int, ...]:
    reply = ini.command(cdb.persistent_reserve_in(In.READ_KEYS, 512), read=512)
    assert reply.status == GOOD
    return parse_read_keys(reply.data).keys


def test_write_then_read_through_the_lun_image(target: LiveTarget, tmp_path: Path) -> None:
    ini = connect(target.address, HOST_A, TARGET)
    block = bytes(range(256)) * 4  # two blocks
    assert ini.command(cdb.write_10(7, 2), data=block).status == GOOD
    reply = ini.command(cdb.read_10(7, 2), read=1024)
    assert (reply.status, reply.data) == (GOOD, block)
    with open(tmp_path / "lun0.img", "rb") as image:
        image.seek(7 * 512)
        assert image.read(1024) == block
    luns = ini.command(cdb.report_luns(64), read=64)
    assert luns.data[:4] == (16).to_bytes(4, "big") and luns.data[16:18] == b"\x00\x01"
    absent = ini.command(cdb.test_unit_ready(), lun=5)
    assert absent.key_asc_ascq == (0x05, 0x25, 0x00)  # LOGICAL UNIT NOT SUPPORTED
    assert ini.logout().response == 0


def test_two_sessions_are_two_nexuses_for_pr(target: LiveTarget) -> None:
    a = connect(target.address, HOST_A, TARGET, isid=0x23D000000001)
    b = connect(target.address, HOST_B, TARGET, isid=0x23D000000002)
    assert prout(a, Out.REGISTER, sa_key=0xA) == GOOD
    assert prout(b, Out.REGISTER, sa_key=0xB) == GOOD
    assert prout(a, Out.RESERVE, key=0xA, type_=ReservationType.WRITE_EXCLUSIVE) == GOOD
    assert b.command(cdb.write_10(0, 1), data=bytes(512)).status == RESERVATION_CONFLICT
    assert b.command(cdb.read_10(0, 1), read=512).status == GOOD
    assert sorted(read_keys(b)) == [0xA, 0xB]
    reply = b.command(cdb.persistent_reserve_in(In.READ_FULL_STATUS, 1024), read=1024)
    status = parse_read_full_status(reply.data)
    holders = {d.initiator().name: d for d in status.descriptors}
    assert holders[HOST_A].r_holder and not holders[HOST_B].r_holder
    tid = holders[HOST_A].initiator()
    assert (tid.protocol, tid.isid) == (ProtocolIdentifier.ISCSI, "23d000000001")
    assert holders[HOST_A].transport_id[0] == 0x45  # format 01b, iSCSI
    assert prout(b, Out.PREEMPT, key=0xB, sa_key=0xA, type_=ReservationType.WRITE_EXCLUSIVE) == 0
    assert until_good(a) == [(UNIT_ATTENTION, 0x2A, 0x05)]  # REGISTRATIONS PREEMPTED


def test_debug_log_traces_every_command_with_its_session_and_answer(
    target: LiveTarget, caplog: pytest.LogCaptureFixture
) -> None:
    """The trace that found who took a rig test's unit attention (docs/target.md)."""
    a = connect(target.address, HOST_A, TARGET, isid=0x23D000000001)
    assert a.task_management(TaskManagementFunction.LOGICAL_UNIT_RESET) == 0
    with caplog.at_level(logging.DEBUG, logger="scsi_pr.target"):
        assert until_good(a) == [LUN_RESET_UA]
        assert a.command(cdb.read_10(8, 1), read=512).status == GOOD
        assert prout(a, Out.REGISTER, sa_key=0x5) == GOOD
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("command: ")]
    session = f"{HOST_A},i,0x23d000000001"
    assert all(session in line and " lun 0 " in line for line in lines)
    assert len(lines) == 4
    assert lines[3].endswith("PR OUT REGISTER key=0x0 sa_key=0x5 -> GOOD")  # its parameters
    assert "TEST UNIT READY -> CHECK CONDITION (UNIT ATTENTION" in lines[0]
    assert lines[1].endswith("TEST UNIT READY -> GOOD")
    assert lines[2].endswith("READ(10) lba=8 blocks=1 -> GOOD")
    caplog.clear()
    assert a.command(cdb.test_unit_ready()).status == GOOD  # INFO: no trace
    assert not [r for r in caplog.records if r.getMessage().startswith("command: ")]
    with caplog.at_level(logging.DEBUG, logger="scsi_pr.target"):  # a LUN it cannot decode
        assert a.command(cdb.test_unit_ready(), lun=0xC000).status == CHECK_CONDITION
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("command: ")]
    assert " lun None TEST UNIT READY -> CHECK CONDITION (ILLEGAL REQUEST" in line


def _wait_sessions(target: LiveTarget, count: int) -> None:
    def dropped() -> bool:
        return target.call(lambda: len(target.server.sessions)) <= count  # type: ignore[union-attr]

    until(dropped, 10, "the target did not notice the dropped connection")


def test_dropped_connection_is_nexus_loss(target: LiveTarget) -> None:
    reserve_6, release_6 = bytes([0x16, 0, 0, 0, 0, 0]), bytes([0x17, 0, 0, 0, 0, 0])
    a = connect(target.address, HOST_A, TARGET, isid=7)
    b = connect(target.address, HOST_B, TARGET)
    assert a.command(reserve_6).status == GOOD
    assert b.command(reserve_6).status == RESERVATION_CONFLICT
    a.close()  # no logout: the host died
    _wait_sessions(target, 1)
    # SAM-5 6.3.4: an SPC-2 reservation does not survive its I_T nexus...
    assert b.command(reserve_6).status == GOOD
    assert b.command(release_6).status == GOOD
    again = connect(target.address, HOST_A, TARGET, isid=7)  # the same I_T nexus
    assert until_good(again) == [I_T_NEXUS_LOSS]
    assert prout(again, Out.REGISTER, sa_key=0xA) == GOOD
    again.close()
    _wait_sessions(target, 1)
    assert read_keys(b) == (0xA,)  # ...a registration does


def test_lun_reset_reaches_every_nexus_of_that_lun(target: LiveTarget) -> None:
    a = connect(target.address, HOST_A, TARGET)
    b = connect(target.address, HOST_B, TARGET)
    until_good(a), until_good(b), until_good(b, lun=1)
    function = TaskManagementFunction.LOGICAL_UNIT_RESET
    assert a.task_management(function) == 0  # FUNCTION COMPLETE
    assert a.task_management(function, lun=9) == 2  # LUN DOES NOT EXIST
    assert until_good(b) == [LUN_RESET_UA] and until_good(a) == [LUN_RESET_UA]
    assert until_good(b, lun=1) == []  # another LU
    assert a.task_management(TaskManagementFunction.ABORT_TASK, referenced=999) == 1


@pytest.mark.parametrize(
    ("function", "told"),
    [(TaskManagementFunction.CLEAR_TASK_SET, (UNIT_ATTENTION, 0x2F, 0x00)),
     (TaskManagementFunction.LOGICAL_UNIT_RESET, LUN_RESET_UA)],
    ids=["clear-task-set", "lun-reset"],
)  # fmt: skip
def test_another_sessions_write_awaiting_its_data_is_cleared(
    target: LiveTarget, function: int, told: tuple[int, int, int]
) -> None:
    """SAM-5: CLEAR TASK SET and LOGICAL UNIT RESET end every I_T nexus's tasks on the LU,
    a write still waiting for its data included: its data, sent after, write nothing."""
    a = connect(target.address, HOST_A, TARGET)
    b = connect(target.address, HOST_B, TARGET)
    until_good(a), until_good(b)
    itt = b.next_itt()
    write = cdb.write_10(100, 1).ljust(16, b"\0")
    b.send(ScsiCommand(final=True, write=True, initiator_task_tag=itt, cdb=write,
                       expected_data_transfer_length=512, cmd_sn=b.cmd_sn,
                       exp_stat_sn=b.exp_stat_sn))  # fmt: skip
    b.cmd_sn += 1
    r2t = b.receive()
    assert isinstance(r2t, ReadyToTransfer)
    assert a.task_management(function) == 0  # FUNCTION COMPLETE
    b.send(ScsiDataOut(final=True, initiator_task_tag=itt, exp_stat_sn=b.exp_stat_sn,
                       target_transfer_tag=r2t.target_transfer_tag, data=b"Z" * 512))  # fmt: skip
    assert isinstance(b.receive(), Reject)  # no such transfer any more
    assert until_good(b) == [told]
    until_good(a)  # its own LUN reset's unit attention
    assert a.command(cdb.read_10(100, 1), read=512).data == bytes(512)


def test_reinstatement_ends_the_old_session(target: LiveTarget) -> None:
    old = connect(target.address, HOST_A, TARGET, isid=9)
    until_good(old)
    new = connect(target.address, HOST_A, TARGET, isid=9)
    assert until_good(new) == [I_T_NEXUS_LOSS]
    with pytest.raises((TargetGone, OSError)):
        old.command(cdb.test_unit_ready())


def test_session_limit_fails_logins_with_out_of_resources(tmp_path: Path) -> None:
    with LiveTarget(tmp_path, max_sessions=1) as target:
        first = connect(target.address, HOST_A, TARGET)
        second = Initiator(target.address, HOST_B)
        assert second.login(TARGET).status == LoginStatus.OUT_OF_RESOURCES
        assert first.command(cdb.test_unit_ready()).status in (GOOD, CHECK_CONDITION)


def test_connections_that_never_log_in_neither_count_nor_pile_up(tmp_path: Path) -> None:
    """Only sessions count against --max-sessions; past MAX_LOGINS_PENDING silent
    connections the oldest is closed."""
    with LiveTarget(tmp_path, max_sessions=1) as target:
        silent = [socket.create_connection(target.address) for _ in range(MAX_LOGINS_PENDING)]
        until(lambda: target.connections() == MAX_LOGINS_PENDING, 10,
              "the target did not see them all")  # fmt: skip
        first = connect(target.address, HOST_A, TARGET)  # the 17th: the oldest silent one goes
        silent[0].settimeout(10)
        assert silent[0].recv(1) == b""
        assert first.command(cdb.test_unit_ready()).status in (GOOD, CHECK_CONDITION)
        second = Initiator(target.address, HOST_B)
        assert second.login(TARGET).status == LoginStatus.OUT_OF_RESOURCES  # one session: full
        for s in silent:
            s.close()


def test_send_targets_names_the_portal_used(target: LiveTarget) -> None:
    ini = Initiator(target.address, HOST_A)
    assert ini.login(None).status == 0
    host, port = target.address
    assert ini.send_targets() == [("TargetName", TARGET), ("TargetAddress", f"{host}:{port},1")]


def test_helper_client_and_iscsi_session_share_one_lu(target: LiveTarget, tmp_path: Path) -> None:
    """The helper's --backend sim on the same state dir and image is a third initiator."""
    helper = SimExecutor("naa.5001405000000009", state_dir=tmp_path)
    a = connect(target.address, HOST_A, TARGET)
    assert prout(a, Out.REGISTER, sa_key=0xA) == GOOD
    fd = os.open(tmp_path / "lun0.img", os.O_RDWR)
    try:
        command, data = cdb.prout(Out.REGISTER, 0, 0x5)
        assert helper.run(fd, command, data).status == GOOD
        command, data = cdb.prout(Out.RESERVE, 0x5, 0, ReservationType.EXCLUSIVE_ACCESS)
        assert helper.run(fd, command, data).status == GOOD
    finally:
        os.close(fd)
    assert sorted(read_keys(a)) == [0x5, 0xA]
    assert a.command(cdb.read_10(0, 1), read=512).status == RESERVATION_CONFLICT


def test_a_peer_that_stops_reading_is_dropped(tmp_path: Path) -> None:
    """Reads pile up in a socket nobody drains: the unanswered ping ends the session and the
    closing socket is cut, instead of a handler waiting forever."""
    with LiveTarget(tmp_path, nop_interval=0.5, nop_timeout=1.0) as target:
        ini = Initiator(target.address, HOST_A)
        ini.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        assert ini.login(TARGET).status == 0
        for _ in range(32):  # 32 x 256 KiB of read data, never read
            ini.send(ScsiCommand(final=True, read=True, initiator_task_tag=ini.next_itt(),
                                 expected_data_transfer_length=256 << 10, cmd_sn=ini.cmd_sn,
                                 cdb=cdb.read_10(0, 512).ljust(16, b"\0")))  # fmt: skip
            ini.cmd_sn += 1
        deadline = time.monotonic() + 30
        while target.connections() > 0:
            assert time.monotonic() < deadline, "the target kept a peer that does not read"
            time.sleep(0.2)
        ini.close()


def test_a_write_whose_data_never_come_ends_its_connection(tmp_path: Path) -> None:
    """The server passes ``data_out_timeout`` on: an R2T left unanswered closes the
    connection (no ping comes first: only the missing Data-Out can end it)."""
    with LiveTarget(tmp_path, nop_interval=600, data_out_timeout=1.0) as target:
        ini = Initiator(target.address, HOST_A)
        assert ini.login(TARGET).status == 0
        ini.send(ScsiCommand(final=True, write=True, initiator_task_tag=ini.next_itt(),
                             expected_data_transfer_length=512, cmd_sn=ini.cmd_sn,
                             cdb=cdb.write_10(0, 1).ljust(16, b"\0")))  # fmt: skip
        assert isinstance(ini.receive(), ReadyToTransfer)
        with pytest.raises(TargetGone):
            ini.receive()


def test_commands_run_on_the_loop_unless_the_lu_islocked_elsewhere(
    target: LiveTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An idle worker and a free LU: a command runs on the loop's own thread (no hand-over).
    LUN 0's lock held by another process (here another open file description): its command
    gives way at once and waits on the worker thread, the loop still answers (a SendTargets),
    a later command waits behind it in arrival order, and both complete once the lock is free;
    then commands run on the loop again."""
    server = target.server
    assert server is not None
    lus = server.lus
    threads: list[tuple[int | None, str]] = []
    execute = lus.execute

    def spy(lun: int | None, *args: Any, **kwargs: Any) -> Any:
        threads.append((lun, threading.current_thread().name))
        return execute(lun, *args, **kwargs)

    monkeypatch.setattr(lus, "execute", spy)
    a, b = connect(target.address, HOST_A, TARGET), connect(target.address, HOST_B, TARGET)
    for ini, lun in ((a, 0), (b, 1)):
        until_good(ini, lun)
    threads.clear()
    assert a.command(cdb.test_unit_ready()).status == GOOD
    assert threads == [(0, LOOP)]
    replies: dict[int, int] = {}

    def tur(ini: Initiator, lun: int) -> threading.Thread:
        def run() -> None:
            replies[lun] = ini.command(cdb.test_unit_ready(), lun=lun).status

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    with locked_elsewhere(lus, tmp_path / "lun0.img"):
        threads.clear()
        first = tur(a, 0)
        until(lambda: threads == [(0, LOOP), (0, WORKER)])  # gave way, then waits for the lock
        # answered at all shows the loop free (in a normal session SendTargets=All is refused)
        assert b.send_targets() == [("SendTargets", "Reject")]
        second = tur(b, 1)
        until(lambda: target.call(lambda: server.queued) == 2)  # behind LUN 0's, not tried here
        assert threads == [(0, LOOP), (0, WORKER)] and first.is_alive()
    first.join(30)
    second.join(30)
    assert replies == {0: GOOD, 1: GOOD}
    assert threads == [(0, LOOP), (0, WORKER), (1, WORKER)]
    threads.clear()
    assert b.command(cdb.test_unit_ready(), lun=1).status == GOOD
    assert threads == [(1, LOOP)]


def test_a_reset_of_every_lu_runs_on_the_worker_once_per_lu(
    target: LiveTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TARGET WARM RESET acts on every LU: it never tries the loop's thread, where a busy lock
    on LUN 1 would stop it after LUN 0 and the worker would then reset LUN 0 again."""
    server = target.server
    assert server is not None
    lus = server.lus
    calls: list[tuple[int, str]] = []
    run = lus.run

    def spy(lun: int, fn: Any) -> Any:
        calls.append((lun, threading.current_thread().name))
        return run(lun, fn)

    monkeypatch.setattr(lus, "run", spy)
    a = connect(target.address, HOST_A, TARGET)
    until_good(a)
    answers: list[int] = []
    with locked_elsewhere(lus, tmp_path / "lun1.img"):
        calls.clear()
        reset = threading.Thread(target=lambda: answers.append(
            a.task_management(TaskManagementFunction.TARGET_WARM_RESET)))  # fmt: skip
        reset.start()
        until(lambda: calls == [(0, WORKER), (1, WORKER)])  # LUN 0 done, LUN 1 waits
    reset.join(30)
    assert answers == [0]  # FUNCTION COMPLETE
    assert calls == [(0, WORKER), (1, WORKER)]


@pytest.mark.parametrize("profile", ["lio-6.1", "spc5"])
def test_a_login_is_an_i_t_nexus_before_its_first_command(tmp_path: Path, profile: str) -> None:
    """SPEC_I_PT naming a session that has sent nothing yet: under a LIO profile the model
    registers a TransportID only where its I_T nexus exists (LIO: where the initiator has an
    ACL), and a logged-in session's does from its login, as on LIO."""
    with LiveTarget(tmp_path, profile=profile) as live:
        a = connect(live.address, HOST_A, TARGET, isid=0x23D000000001)
        connect(live.address, HOST_B, TARGET, isid=0x23D000000002)  # logs in, sends nothing
        b_port = TransportId.iscsi(HOST_B, "23d000000002")
        command, data = cdb.prout(Out.REGISTER, sa_key=0xA, spec_i_pt=True,
                                  transport_ids=[b_port])  # fmt: skip
        assert a.command(command, data=data).status == GOOD
        assert sorted(read_keys(a)) == [0xA, 0xA]  # the issuer's and B's


def test_each_portal_is_listened_on_and_a_restart_takes_its_port_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The configured port, not any; every portal; and after sessions the target closed
    (their TIME_WAIT on the target's side), a new target binds the same port at once
    (SO_REUSEADDR), as a restarted service must."""
    port = free_port()
    with (
        caplog.at_level(logging.INFO, logger="scsi_pr.target"),
        LiveTarget(tmp_path, portals=(("127.0.0.1", port), ("127.0.0.1", 0))) as target,
    ):
        assert target.server is not None
        first, second = target.server.addresses
        assert first == ("127.0.0.1", port) and second[1] not in (0, port)
        for address in (first, second):
            ini = connect(address, HOST_A, TARGET)
            ini.send(LogoutRequest(immediate=True, initiator_task_tag=ini.next_itt(),
                                   cmd_sn=ini.cmd_sn, exp_stat_sn=ini.exp_stat_sn))  # fmt: skip
            assert isinstance(ini.receive(), LogoutResponse)
            assert ini.sock.recv(1) == b""  # the target closed first: TIME_WAIT is its
            ini.close()
    listening = [r.getMessage() for r in caplog.records if " listening on " in r.getMessage()]
    assert (
        listening[0]
        .split(" listening on ")[1]
        .startswith(f"127.0.0.1:{port},1, 127.0.0.1:{second[1]},1; LUNs ")
    )
    with LiveTarget(tmp_path, portals=(("127.0.0.1", port),)) as again:
        assert again.address == ("127.0.0.1", port)
        until_good(connect(again.address, HOST_A, TARGET))


def test_a_closing_connection_gets_its_time_to_flush_what_it_wrote(tmp_path: Path) -> None:
    """A session ended (here by the target, once every read was answered) while its peer
    was slow to read: what the target wrote still reaches a peer that reads within the close
    timeout, then the stream ends cleanly (FIN, not RST). Only a peer that never reads is cut
    (test_a_peer_that_stops_reading_is_dropped)."""
    reads, size = 32, 1 << 20  # the whole command window; far more than the kernel buffers
    with LiveTarget(tmp_path, nop_interval=3600.0) as target:
        server = target.server
        assert server is not None
        ini = Initiator(target.address, HOST_A)
        assert ini.login(TARGET).status == 0
        send_reads_at_once(ini, reads, size)
        (handler,) = target.call(lambda: list(server.handlers))
        session = handler.conn.session
        assert session is not None
        answered = lambda: (session.window.exp_cmd_sn, session.window.outstanding)  # noqa: E731
        until(lambda: target.call(answered) == (ini.cmd_sn, 0), what="reads left unanswered")
        target.call(lambda: handler.end("ended by the test"))
        assert target.call(handler.writer.is_closing)
        time.sleep(1.5)  # a tick or more of the target's clock passes while the peer is away
        received = 0
        while chunk := ini.sock.recv(1 << 20):  # raises ConnectionResetError if cut
            received += len(chunk)
        assert received > reads * size  # every Data-In with its headers, not what fit the kernel
        ini.close()


def send_reads_at_once(ini: Initiator, reads: int, size: int) -> None:
    """``reads`` READ(10)s of ``size`` bytes in one write: the target reads them all before its
    first answer fills the socket (sent one by one, a busy machine let the target read a few,
    answer them into a peer that does not read, and stop reading the rest behind its drain)."""
    pdus = []
    for _ in range(reads):
        command = ScsiCommand(final=True, read=True, initiator_task_tag=ini.next_itt(),
                              expected_data_transfer_length=size, cmd_sn=ini.cmd_sn,
                              cdb=cdb.read_10(0, size // 512).ljust(16, b"\0"))  # fmt: skip
        pdus.append(ini.framer.send(command))
        ini.cmd_sn += 1
    ini.sock.sendall(b"".join(pdus))


def test_a_target_stopping_cuts_a_peer_that_does_not_read(tmp_path: Path) -> None:
    """The target stops while its writes to a peer that never reads fill the socket: the
    stop still ends that connection (its closing socket is cut after its flush time) instead
    of leaving its handler waiting on the loop (LiveTarget fails on a task left behind)."""
    with LiveTarget(tmp_path, nop_interval=3600.0) as target:
        ini = Initiator(target.address, HOST_A)
        ini.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        assert ini.login(TARGET).status == 0
        send_reads_at_once(ini, 8, 1 << 20)
        server = target.server
        assert server is not None
        (handler,) = target.call(lambda: list(server.handlers))
        until(lambda: target.call(handler.writer.transport.get_write_buffer_size) > 1 << 20,
              what="the target never had more to write than the peer took")  # fmt: skip
    assert not server.handlers  # the loop has stopped: nothing reads it now
    ini.close()
