"""Every way a helper connection ends, in process: ``ClientHandler`` over a socketpair, its
audit lines read back field by field, every fd it received closed on every path. Why here and
not only in the daemon tests: those run the helper as a subprocess, which mutation testing of
``scsi_pr.helper.session`` cannot see."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import os
import socket
import struct
import threading
import time
import types
from pathlib import Path
from typing import Any

import pytest
from session_driver import (
    ALL_EVENTS,
    DEADLINE,
    HANDSHAKE,
    INVALID_COMMAND_OPERATION_CODE,
    PEER_IDS,
    READ_KEYS,
    REGISTER,
    Gate,
    NeverCompletes,
    Raises,
    Recorder,
    Served,
    answer,
    disconnect_reason,
    drained,
    open_fds,
    records,
    recv_answer,
    recv_exactly,
    recv_rest,
    send,
    serving,
)

from scsi_pr.helper import session
from scsi_pr.helper.audit import Audit
from scsi_pr.helper.executors.base import Executor, Reply
from scsi_pr.helper.executors.sim import SimExecutor
from scsi_pr.helper.executors.status import from_errno
from scsi_pr.helper.proto import Connection, ConnectionClosed, ProtocolError
from scsi_pr.helper.session import ClientHandler, wake
from scsi_pr.sim.cdb import persistent_reserve_in, pr_out_parameters


def test_a_session_is_audited_field_by_field(image: Path) -> None:
    """Connect, three requests on one connection (the read-only fd's PR OUT fabricated as the
    C helper does, its PR IN run), EOF: every answer and every audit field exact."""
    log = io.StringIO()
    handler = ClientHandler(SimExecutor(state_dir=image.parent / "state"), Audit(log, ALL_EVENTS))
    rw, ro = os.open(image, os.O_RDWR), os.open(image, os.O_RDONLY)
    before = open_fds()
    started = time.perf_counter()
    try:
        with serving(handler) as (client, srv):
            send(client, REGISTER, (rw,))
            send(client, pr_out_parameters(0, 0x1234))
            assert recv_answer(client) == answer(0)
            send(client, REGISTER, (ro,))  # refused before the device: the key stays 0x1234
            send(client, pr_out_parameters(0, 0x5678))
            assert recv_answer(client) == answer(2, INVALID_COMMAND_OPERATION_CODE)
            send(client, READ_KEYS, (ro,))
            keys = struct.pack(">II", 1, 8) + (0x1234).to_bytes(8, "big")
            assert recv_answer(client) == answer(0, data=keys)
            client.shutdown(socket.SHUT_WR)
            assert recv_rest(client) == b"" and srv.join() is None
        elapsed_us = (time.perf_counter() - started) * 1e6
        assert open_fds() - before == set()
    finally:
        os.close(rw)
        os.close(ro)
    pid, (uid, gid) = str(os.getpid()), map(str, PEER_IDS)
    got = records(log)
    assert [event for event, _ in got] == ["prh_connect"] + ["prh_command"] * 3 + ["prh_disconnect"]
    assert got[0][1] == {"pid": pid, "uid": uid, "gid": gid}
    assert got[-1][1] == {"pid": pid, "reason": "closed"}
    durations = [int(fields.pop("duration_us")) for _, fields in got[1:4]]
    assert all(0 < d <= elapsed_us for d in durations)
    common = {"pid": pid, "uid": uid, "device": str(image)}
    register = "PR OUT REGISTER AND IGNORE EXISTING KEY sa_key="
    assert [fields for _, fields in got[1:4]] == [
        {**common, "command": register + "0x1234", "status": "GOOD", "sense": "-", "bytes_in": "0"},
        {**common, "command": register + "0x5678", "status": "CHECK_CONDITION", "sense": "5/20/00",
         "bytes_in": "0"},
        {**common, "command": "PR IN READ KEYS alloc=16", "status": "GOOD", "sense": "-",
         "bytes_in": "16"},
    ]  # fmt: skip


def test_a_refusal_is_audited_with_the_peer_and_its_reason() -> None:
    log = io.StringIO()
    recorder = Recorder()
    before = open_fds()
    with serving(ClientHandler(recorder, Audit(log, ALL_EVENTS), verbose=0)) as (client, srv):
        send(client, READ_KEYS)  # no fd
        assert recv_rest(client) == b"" and srv.join() is None
    assert open_fds() - before == set() and recorder.calls == 0
    pid, uid = str(os.getpid()), str(PEER_IDS[0])
    reason = "No file descriptor in request."
    assert [r for r in records(log) if r[0] != "prh_connect"] == [
        ("prh_refused", {"pid": pid, "uid": uid, "reason": reason}),
        ("prh_disconnect", {"pid": pid, "reason": reason}),
    ]


@pytest.mark.parametrize("logged", [True, False], ids=["prh_command", "no-prh_command"])
@pytest.mark.parametrize(
    ("error", "err"),
    [(RuntimeError("boom"), errno.EIO), (OSError(errno.ENODEV, "gone"), errno.ENODEV)],
    ids=["bug", "oserror"],
)
def test_an_executor_exception_is_answered_logged_and_the_fd_closed(
    image: Path, device: int, logged: bool, error: Exception, err: int
) -> None:
    """Any exception: the errno's answer (EIO when it has none), a ``prh_error`` line naming the
    device whether or not ``prh_command`` is written, and the connection goes on."""
    log = io.StringIO()
    events = ALL_EVENTS if logged else ALL_EVENTS - {"prh_command"}
    before = open_fds()
    with serving(ClientHandler(Raises(error), Audit(log, events))) as (client, srv):
        for _ in range(2):
            send(client, READ_KEYS, (device,))
            status, sense = from_errno(err)
            assert recv_answer(client) == answer(status, sense)
        client.shutdown(socket.SHUT_WR)
        assert recv_rest(client) == b"" and srv.join() is None
    assert open_fds() - before == set()
    message = f"{type(error).__name__}: {error}"
    errors = [fields for event, fields in records(log) if event == "prh_error"]
    assert errors == [{"pid": str(os.getpid()), "device": str(image), "error": message}] * 2
    assert disconnect_reason(log) == "closed"


def test_fds_sent_outside_a_cdb_are_never_held(device: int) -> None:
    """Fds riding on the features word or a PR OUT parameter list are dropped by the kernel
    (read without a control buffer): the helper holds none of them while it idles."""
    r, w = os.pipe()
    pipe = os.readlink(f"/proc/self/fd/{r}")

    def pipe_fds() -> int:
        """Fds open on the pipe (either end: one inode)."""
        links = []
        for fd in open_fds():
            with contextlib.suppress(OSError):  # the listing's own fd, closed since
                links.append(os.readlink(f"/proc/self/fd/{fd}"))
        return links.count(pipe)

    try:
        client, served = socket.socketpair()
        client.settimeout(DEADLINE)
        with client:
            srv = Served(ClientHandler(Recorder(), Audit(None)), served)
            assert recv_exactly(client, 4) == HANDSHAKE
            send(client, HANDSHAKE, (r,))
            send(client, REGISTER, (device,))
            drained(client)
            send(client, pr_out_parameters(0, 1), (r,))
            assert recv_answer(client) == answer(0)
            assert pipe_fds() == 2  # our two ends only, while the connection stays open
            client.shutdown(socket.SHUT_WR)
            assert recv_rest(client) == b"" and srv.join() is None
    finally:
        os.close(r)
        os.close(w)


def test_the_connection_thread_is_a_daemon_and_outlives_its_loop() -> None:
    """``start`` alone: the thread must not keep a stopping helper alive, and when the loop that
    waited for it is gone, finishing is no error (nobody waits any more)."""
    failures: list[threading.ExceptHookArgs] = []
    log = io.StringIO()
    handler = ClientHandler(Recorder(), Audit(log, ALL_EVENTS))
    client, served = socket.socketpair()
    before = set(threading.enumerate())
    loop = asyncio.new_event_loop()

    async def begin() -> None:
        me = asyncio.current_task()
        assert me is not None
        handler.start(served, me, loop.create_future())

    hook, threading.excepthook = threading.excepthook, failures.append
    try:
        with client:
            loop.run_until_complete(begin())
            loop.close()
            (thread,) = set(threading.enumerate()) - before
            assert thread.daemon
            assert recv_exactly(client, 4) == HANDSHAKE
            send(client, HANDSHAKE)
        thread.join(DEADLINE)
        assert not thread.is_alive()
    finally:
        threading.excepthook = hook
    assert failures == [] and disconnect_reason(log) == "closed"


@pytest.mark.parametrize("stopping", [False, True])
def test_a_cancelled_idle_connection_is_woken_and_closes(device: int, stopping: bool) -> None:
    """The server cancels a connection waiting for a request: ``handle`` re-raises the
    cancellation, the thread sees EOF and closes; the reason says whether the server stops."""
    log = io.StringIO()
    handler = ClientHandler(Recorder(), Audit(log, ALL_EVENTS))
    before = open_fds()
    with serving(handler) as (client, srv):
        send(client, READ_KEYS, (device,))
        assert recv_answer(client) == answer(0, data=b"\xab" * 16)
        handler.stopping = stopping
        srv.cancel()
        assert isinstance(srv.join(), asyncio.CancelledError)
        assert disconnect_reason(log) == ("shutdown" if stopping else "closed")
        assert recv_rest(client) == b""
    assert open_fds() - before == set()


@pytest.mark.parametrize("stopping", [False, True])
def test_a_connection_woken_mid_request_cannot_answer(device: int, stopping: bool) -> None:
    """Cancelled while its device call runs (``busy`` holds its task meanwhile): the answer's
    send fails; an I/O error unless the server stops, then a shutdown."""
    log = io.StringIO()
    gate = Gate()
    handler = ClientHandler(gate, Audit(log, ALL_EVENTS))
    before = open_fds()
    with serving(handler) as (client, srv):
        send(client, READ_KEYS, (device,))
        assert gate.entered.wait(DEADLINE)
        assert handler.busy == {srv.task}
        handler.stopping = stopping
        srv.cancel()
        assert isinstance(srv.join(), asyncio.CancelledError)
        gate.release.set()
        expected = "shutdown" if stopping else "I/O error: [Errno 32] Broken pipe"
        assert disconnect_reason(log) == expected
        assert recv_rest(client) == b"" and handler.busy == set()
    assert open_fds() - before == set()


def test_a_stop_ends_a_withheld_answer_without_a_wake(device: int) -> None:
    """A connection whose device never answers notices the server's stop by itself, even if
    nobody wakes its socket and the client never hangs up."""
    log = io.StringIO()
    never = NeverCompletes()
    handler = ClientHandler(never, Audit(log, ALL_EVENTS))
    before = open_fds()
    with serving(handler) as (client, srv):
        send(client, READ_KEYS, (device,))
        assert never.entered.wait(DEADLINE)
        client.settimeout(0.2)
        with pytest.raises(TimeoutError):
            client.recv(1)  # withheld: no answer, the connection open
        handler.stopping = True
        assert disconnect_reason(log) == "shutdown"
        assert srv.join() is None
        client.settimeout(DEADLINE)
        assert recv_rest(client) == b""
    assert open_fds() - before == set()


def test_an_answer_not_taken_ends_at_the_idle_timeout(device: int) -> None:
    """The client stops reading: the helper's send waits no longer than the idle timeout."""

    class Long(Executor):
        name = "long"

        def execute(self, fd: int, cdb: bytes, data_out: bytes, allocation_length: int) -> Reply:
            return Reply(0, b"", b"\xcd" * 8192)  # cut to 8000

    log = io.StringIO()
    before = open_fds()
    client, served = socket.socketpair()
    served.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)  # the kernel's least: 4.5 KiB
    with client:
        srv = Served(ClientHandler(Long(), Audit(log, ALL_EVENTS), idle_timeout=0.2), served)
        send(client, HANDSHAKE)
        send(client, persistent_reserve_in(0, 8000).ljust(16, b"\0"), (device,))
        assert disconnect_reason(log) == "idle timeout (0.2 s): answer not taken"
        assert srv.join() is None
        command = [f for event, f in records(log) if event == "prh_command"]
        assert [f["bytes_in"] for f in command] == ["8000"]
    assert open_fds() - before == set()


def test_a_zero_idle_timeout_waits_for_nothing() -> None:
    """``ClientHandler`` takes any timeout (``HelperServer`` refuses one <= 0): at 0 not even
    the features word may wait to be taken."""
    log = io.StringIO()
    client, served = socket.socketpair()
    with client:
        srv = Served(ClientHandler(Recorder(), Audit(log, ALL_EVENTS), idle_timeout=0), served)
        assert disconnect_reason(log) == "idle timeout (0 s): answer not taken"
        assert srv.join() is None
        assert recv_rest(client) == b""


@pytest.mark.parametrize("late", [5.0, 6.0], ids=["at-the-deadline", "past-it"])
@pytest.mark.parametrize("answered", [0, 1], ids=["first-request", "after-an-answer"])
def test_the_idle_timeout_bounds_the_whole_request_not_each_read(
    device: int, monkeypatch: pytest.MonkeyPatch, late: float, answered: int
) -> None:
    """A client trickling a request must complete it within the idle timeout from the
    handshake or the last answer, however often it sends a byte. The session's clock is a fake
    one the test moves (the real socket timeouts stay seconds long, never reached)."""
    clock = types.SimpleNamespace(now=100.0)
    fake = types.SimpleNamespace(monotonic=lambda: clock.now, perf_counter=time.perf_counter)
    monkeypatch.setattr(session, "time", fake)
    log = io.StringIO()
    recorder = Recorder()
    before = open_fds()
    with serving(ClientHandler(recorder, Audit(log, ALL_EVENTS), idle_timeout=5)) as (client, srv):
        for _ in range(answered):
            send(client, READ_KEYS, (device,))
            assert recv_answer(client) == answer(0, data=b"\xab" * 16)
        send(client, READ_KEYS[:1], (device,))
        drained(client)  # the deadline is set: it was, before this read
        clock.now = 100.0 + late  # the deadline: 105
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            send(client, READ_KEYS[1:2])
            drained(client)  # one more read: the wait for the rest is past the deadline
            send(client, READ_KEYS[2:])
        assert recv_rest(client) == b""  # no answer
        assert disconnect_reason(log) == "idle timeout (5 s)" and srv.join() is None
    assert recorder.calls == answered
    assert open_fds() - before == set()


def test_wake_ends_reads_and_sends_and_ignores_a_closed_socket() -> None:
    a, b = socket.socketpair()
    with a, b:
        wake(a)
        assert a.recv(1) == b""
        with pytest.raises(BrokenPipeError):
            a.send(b"x")
    wake(a)  # closed already (the connection ended first): nothing to do, no error


@pytest.mark.parametrize("ending", ["eof", "no-fd"])
def test_a_stop_that_lands_while_the_last_bytes_are_parsed_is_a_shutdown(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ending: str
) -> None:
    """The server may set ``stopping`` after the loop checked it, while the client's EOF or a
    violation is parsed: the connection ends as a shutdown, with no refusal reported. The
    race, made deterministic: a ``Connection`` whose parse sets ``stopping``."""
    log = io.StringIO()
    handler = ClientHandler(Recorder(), Audit(log, ALL_EVENTS), verbose=1)

    class StopsWhileParsing(Connection):
        def next_event(self) -> Any:  # the parent's, with private NEED_DATA/PAUSED types
            try:
                event = super().next_event()
            except ProtocolError:
                handler.stopping = True
                raise
            handler.stopping = isinstance(event, ConnectionClosed)
            return event

    monkeypatch.setattr(session, "Connection", StopsWhileParsing)
    with serving(handler) as (client, srv):
        if ending == "eof":
            client.shutdown(socket.SHUT_WR)
        else:
            send(client, READ_KEYS)
        assert recv_rest(client) == b"" and srv.join() is None
    assert disconnect_reason(log) == "shutdown"
    assert [event for event, _ in records(log)] == ["prh_connect", "prh_disconnect"]
    assert capsys.readouterr().err == ""


def test_fds_the_codec_lets_go_are_closed_at_the_next_read(
    monkeypatch: pytest.MonkeyPatch, device: int
) -> None:
    """Defence in depth: the kernel keeps fds off every part but a CDB (read without a control
    buffer), so the codec never discards one here. Should that gating ever fail, what the
    codec lets go is closed at the next read, not kept until the connection ends. The failure,
    made deterministic: a codec that takes fds with every part (one rides on a parameter list)."""

    class TakesFdsEverywhere(Connection):
        @property
        def accepts_fds(self) -> bool:
            return True

    monkeypatch.setattr(session, "Connection", TakesFdsEverywhere)
    with serving(ClientHandler(Recorder(), Audit(None))) as (client, srv):
        before = open_fds()
        send(client, REGISTER, (device,))
        drained(client)
        send(client, pr_out_parameters(0, 1), (device,))  # an fd the codec discards
        assert recv_answer(client) == answer(0)
        send(client, READ_KEYS, (device,))
        assert recv_answer(client)[:8] == answer(0, data=bytes(16))[:8]
        assert open_fds() == before
        client.shutdown(socket.SHUT_WR)
        assert recv_rest(client) == b"" and srv.join() is None
