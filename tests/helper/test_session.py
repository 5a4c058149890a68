"""One helper connection in process: ``ClientHandler`` over a socketpair with a recording
executor, and the fd-carrying reads of ``unix_io`` it relies on. The process-level behaviour
(the real daemon, its CLI and signals) is in ``test_daemon.py``."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import io
import os
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_process import send_cdb
from session_driver import open_fds

from scsi_pr.helper.audit import Audit
from scsi_pr.helper.executors.base import Executor, Reply
from scsi_pr.helper.executors.sim import CommandNeverCompletes
from scsi_pr.helper.session import ClientHandler
from scsi_pr.helper.unix_io import recv_with_fds
from scsi_pr.sim.cdb import persistent_reserve_in, persistent_reserve_out

READ_KEYS = persistent_reserve_in(0, 8).ljust(16, b"\0")
HANDSHAKE = b"\0\0\0\0"


class Recorder(Executor):
    """Answers every command GOOD with ``allocation_length`` bytes of 0xAB; remembers which
    thread ran it. ``error`` makes ``execute`` raise instead (an executor bug)."""

    name = "recorder"

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.threads: list[str] = []

    def execute(self, fd: int, cdb: bytes, data_out: bytes, allocation_length: int) -> Reply:
        self.threads.append(threading.current_thread().name)
        if self.error is not None:
            raise self.error
        return Reply(0, b"", b"\xab" * allocation_length)


@pytest.fixture
def device(tmp_path: Path) -> Iterator[int]:
    fd = os.open(tmp_path / "lu.img", os.O_RDWR | os.O_CREAT)
    yield fd
    os.close(fd)


def exchange(executor: Executor, chunks: list[tuple[bytes, list[int]]], audit: Audit) -> bytes:
    """Serve one connection: send ``chunks`` (bytes, fds) as the client, then EOF; return every
    byte the handler answered before it closed."""

    async def main() -> None:
        handler = ClientHandler(executor, audit, verbose=1)
        task = asyncio.create_task(handler.handle(served))
        for data, fds in chunks:
            send_cdb(client, data, fds)
            await asyncio.sleep(0.01)  # one recvmsg per chunk: fds stay on their chunk
        client.shutdown(socket.SHUT_WR)
        await asyncio.wait_for(task, 10)

    client, served = socket.socketpair()
    with client:
        asyncio.run(main())
        answer = b""
        while part := client.recv(65536):
            answer += part
    return answer


def test_a_request_is_answered_in_the_connections_thread_and_audited(device: int) -> None:
    recorder, log = Recorder(), io.StringIO()
    answer = exchange(recorder, [(HANDSHAKE, []), (READ_KEYS, [device])], Audit(log))
    assert answer == HANDSHAKE + struct.pack(">ii", 0, 8) + bytes(96) + b"\xab" * 8
    assert recorder.threads and recorder.threads[0].startswith("prh-conn-")
    assert 'command="PR IN READ KEYS alloc=8" status=GOOD' in log.getvalue()


class Overlong(Executor):
    """Answers ``status`` with 300 bytes of data-in whatever was asked: more than the CDB's
    ALLOCATION LENGTH, and data on a status that may carry none."""

    name = "overlong"

    def __init__(self, status: int) -> None:
        self.status = status

    def execute(self, fd: int, cdb: bytes, data_out: bytes, allocation_length: int) -> Reply:
        return Reply(self.status, b"\x70", b"\xcd" * 300)


@pytest.mark.parametrize(("status", "data"), [(0, b"\xcd" * 8), (2, b"")])
def test_the_session_cuts_data_in_to_what_the_request_may_carry(
    device: int, status: int, data: bytes
) -> None:
    """GOOD: cut to the ALLOCATION LENGTH (8); anything else: no data (QEMU asserts both)."""
    answer = exchange(Overlong(status), [(HANDSHAKE, []), (READ_KEYS, [device])], Audit(None))
    sense = b"\x70" + bytes(95)
    assert answer == HANDSHAKE + struct.pack(">ii", status, len(data)) + sense + data


def test_an_executor_exception_is_answered_by_errno_and_logged(device: int) -> None:
    log = io.StringIO()
    recorder = Recorder(OSError(errno.ENODEV, "gone"))
    answer = exchange(recorder, [(HANDSHAKE, []), (READ_KEYS, [device])], Audit(log))
    status, sz = struct.unpack(">ii", answer[4:12])
    sense = answer[12:108]
    assert (status, sz, sense[2], sense[12]) == (0x02, 0, 0x04, 0x44)  # TARGET FAILURE
    assert "prh_error" in log.getvalue() and "OSError: [Errno 19] gone" in log.getvalue()


@pytest.mark.parametrize(
    ("case", "reported"),
    [
        ("no-fd", "No file descriptor in request."),
        ("not-pr-opcode", "Invalid CDB, closing socket."),
        ("two-fds", None),
        ("too-long", None),
    ],
)
def test_only_the_refusals_qemu_reports_reach_stderr(
    device: int, case: str, reported: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    chunks = {
        "no-fd": (READ_KEYS, []),
        "not-pr-opcode": (b"\x12" + bytes(15), [device]),
        "two-fds": (READ_KEYS, [device, device]),
        "too-long": (b"\x5e" + bytes(6) + b"\x20\x01" + bytes(7), [device]),
    }
    log = io.StringIO()
    recorder = Recorder()
    answer = exchange(recorder, [(HANDSHAKE, []), chunks[case]], Audit(log))
    assert answer == HANDSHAKE and recorder.threads == []  # closed without an answer
    assert "prh_refused" in log.getvalue()
    stderr = capsys.readouterr().err
    if reported is None:
        assert stderr == ""
    else:
        assert stderr.endswith(f": {reported}\n") and stderr.count("\n") == 1


def test_recv_with_fds_reads_no_more_than_asked(device: int) -> None:
    a, b = socket.socketpair()
    with b:
        a.sendmsg([b"xy"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, device.to_bytes(4, "little"))])
        one, fds = recv_with_fds(b, 1)
        second = recv_with_fds(b, 5)
        a.close()
        eof = recv_with_fds(b, 5)
    try:
        assert one == b"x" and len(fds) == 1
        assert os.path.sameopenfile(fds[0], device)
        assert second == (b"y", []) and eof == (b"", [])
    finally:
        for fd in fds:
            os.close(fd)


def test_recv_with_fds_takes_every_fd_of_a_message_in_order(device: int) -> None:
    a, b = socket.socketpair()
    r, w = os.pipe()
    sent = [device, r, w]
    try:
        with a, b:
            rights = b"".join(fd.to_bytes(4, sys.byteorder) for fd in sent)
            a.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)])
            data, fds = recv_with_fds(b, 16)
        try:
            assert data == b"x" and len(fds) == 3
            same = [os.path.sameopenfile(got, fd) for got, fd in zip(fds, sent, strict=True)]
            assert same == [True] * 3
            modes = [fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE for fd in fds[1:]]
            assert modes == [os.O_RDONLY, os.O_WRONLY]  # the pipe's two ends, in that order
        finally:
            for fd in fds:
                os.close(fd)
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize(
    "chunks",
    [
        [(HANDSHAKE + READ_KEYS[:9], []), (READ_KEYS[9:12], ["dev"])],
        [(HANDSHAKE, []), (persistent_reserve_out(6, 24).ljust(16, b"\0"), ["dev"])],
        [(HANDSHAKE[:2], ["dev"])],
    ],
)
def test_a_reset_mid_frame_closes_the_fds_received(
    device: int, chunks: list[tuple[bytes, list[str]]]
) -> None:
    """The client closes with the features word unread (a reset for the helper) after sending
    part of a frame with an fd: the fd the helper received must not outlive the connection."""

    async def main() -> None:
        handler = ClientHandler(Recorder(), audit, verbose=0)
        task = asyncio.create_task(handler.handle(served))
        await asyncio.sleep(0.05)  # the handler sends the word, which stays unread
        assert client.recv(4, socket.MSG_PEEK) == HANDSHAKE
        for data, fds in chunks:
            send_cdb(client, data, [device for _ in fds])
            await asyncio.sleep(0.02)  # let the handler read it
        client.close()
        await asyncio.wait_for(task, 10)

    audit = Audit(io.StringIO(), frozenset({"prh_disconnect"}))
    before = open_fds()
    client, served = socket.socketpair()
    client.setblocking(False)
    asyncio.run(main())
    assert open_fds() - before == set()
    assert "Connection reset by peer" in audit.stream.getvalue()  # type: ignore[union-attr]


def test_idle_timeout_closes_a_silent_connection_and_its_fds(device: int) -> None:
    async def main() -> float:
        handler = ClientHandler(Recorder(), audit, verbose=0, idle_timeout=0.3)
        task = asyncio.create_task(handler.handle(served))
        send_cdb(client, HANDSHAKE + READ_KEYS[:5], [device])
        start = time.monotonic()
        await asyncio.wait_for(task, 10)
        return time.monotonic() - start

    audit = Audit(io.StringIO(), frozenset({"prh_disconnect"}))
    before = open_fds()
    client, served = socket.socketpair()
    with client:
        took = asyncio.run(main())
        assert client.recv(100) == HANDSHAKE and client.recv(100) == b""  # closed, no answer
    assert 0.25 < took < 5
    assert open_fds() - before == set()
    assert 'reason="idle timeout (0.3 s)"' in audit.stream.getvalue()  # type: ignore[union-attr]


class NeverCompletes(Executor):
    """A device that never answers (a profile's PREEMPT AND ABORT on LIO)."""

    name = "never"

    def execute(self, fd: int, cdb: bytes, data_out: bytes, allocation_length: int) -> Reply:
        raise CommandNeverCompletes("never")


def test_a_command_that_never_completes_is_withheld_until_the_client_hangs_up(
    device: int,
) -> None:
    async def main() -> tuple[bytes, float]:
        handler = ClientHandler(NeverCompletes(), audit, verbose=0)
        task = asyncio.create_task(handler.handle(served))
        client.sendall(HANDSHAKE)
        await asyncio.sleep(0.05)  # the fd must ride on the CDB's first byte
        send_cdb(client, READ_KEYS, [device])
        await asyncio.sleep(0.5)
        client.settimeout(0.1)
        got = client.recv(200)
        try:
            more = client.recv(200)
        except TimeoutError:
            more = None  # no answer while the client waits
        assert more is None, f"answered: {more!r}"
        assert not task.done()
        start = time.monotonic()
        client.close()
        await asyncio.wait_for(task, 10)
        return got, time.monotonic() - start

    audit = Audit(io.StringIO(), frozenset({"prh_disconnect"}))
    before = open_fds()
    client, served = socket.socketpair()
    got, took = asyncio.run(main())
    assert got == HANDSHAKE and took < 5
    assert open_fds() - before == set()
    assert "reason=closed" in audit.stream.getvalue()  # type: ignore[union-attr]
