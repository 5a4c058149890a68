"""Driving one helper connection in process for the session tests: ``ClientHandler.handle``
on one end of a socketpair served by a loop in a thread of its own, a blocking client on the
other end, the audit read back, and executors that record, raise, block or never answer."""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import io
import os
import socket
import struct
import termios
import threading
import time
from collections.abc import Callable, Iterator

from daemon_process import send_cdb as send

from scsi_pr.helper.audit import EVENTS, parse_audit_line
from scsi_pr.helper.executors.base import CommandNeverCompletes, Executor, Reply
from scsi_pr.helper.session import ClientHandler
from scsi_pr.helper.unix_io import recv_exactly
from scsi_pr.sim.cdb import persistent_reserve_in, persistent_reserve_out

HANDSHAKE = b"\0\0\0\0"
READ_KEYS = persistent_reserve_in(0, 16).ljust(16, b"\0")
REGISTER = persistent_reserve_out(6, 24).ljust(16, b"\0")  # REGISTER AND IGNORE EXISTING KEY
ALL_EVENTS = frozenset(EVENTS)
#: fixed-format sense 05/20/00, as qemu-pr-helper builds it for PR OUT on a read-only fd
INVALID_COMMAND_OPERATION_CODE = bytes([0x70, 0, 0x05, 0, 0, 0, 0, 0x0A, 0, 0, 0, 0, 0x20, 0])
DEADLINE = 10.0  # only against hangs: no wait here is meant to take more than a second
#: (uid, gid) the test's sockets are created with: distinct, so a swapped field shows
PEER_IDS = (1234, 4321) if os.geteuid() == 0 else (os.geteuid(), os.getegid())


def answer(status: int, sense: bytes = b"", data: bytes = b"") -> bytes:
    """One response frame as the helper sends it."""
    return struct.pack(">ii", status, len(data)) + sense.ljust(96, b"\0") + data


def recv_answer(sock: socket.socket) -> bytes:
    """One whole response frame: its header says how much data-in follows."""
    header = recv_exactly(sock, 104)
    return header + recv_exactly(sock, max(struct.unpack(">ii", header[:8])[1], 0))


def recv_rest(sock: socket.socket) -> bytes:
    """Everything until the helper closes (a reset counts as a close)."""
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while part := sock.recv(65536):
            data += part
    return data


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.002)


def drained(client: socket.socket) -> None:
    """Until the helper has read every byte the client sent (the client's send queue is
    empty), so the next step happens after that read."""
    queued = array.array("i", [0])

    def empty() -> bool:
        fcntl.ioctl(client, termios.TIOCOUTQ, queued)
        return queued[0] == 0

    wait_until(empty, "the helper reads what was sent")


def records(log: io.StringIO) -> list[tuple[str, dict[str, str]]]:
    return [(r.event, r.fields) for r in map(parse_audit_line, log.getvalue().splitlines())]


def disconnect_reason(log: io.StringIO) -> str:
    """The ``prh_disconnect`` reason, once the connection wrote it (its thread's last line)."""
    wait_until(lambda: "prh_disconnect" in log.getvalue(), "prh_disconnect")
    (fields,) = [f for event, f in records(log) if event == "prh_disconnect"]
    assert fields["pid"] == str(os.getpid())
    return fields["reason"]


def open_fds() -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd")}


def peer_pair() -> tuple[socket.socket, socket.socket]:
    """A socketpair whose SO_PEERCRED says ``PEER_IDS`` (root creates it under those ids)."""
    if os.geteuid() != 0:
        return socket.socketpair()
    os.setegid(PEER_IDS[1])
    os.seteuid(PEER_IDS[0])
    try:
        return socket.socketpair()
    finally:
        os.seteuid(0)
        os.setegid(0)


class Served:
    """``ClientHandler.handle`` on one end of a socketpair, run by an event loop in a thread of
    its own, so a test talks to the other end with plain blocking calls."""

    def __init__(self, handler: ClientHandler, served: socket.socket) -> None:
        self.loop = asyncio.new_event_loop()
        self.task = self.loop.create_task(handler.handle(served))
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.loop.run_until_complete(self.task)
        except BaseException as e:  # the test judges it
            self.error = e
        finally:
            self.loop.close()

    def cancel(self) -> None:
        """What the server does to a connection it stops."""
        self.loop.call_soon_threadsafe(self.task.cancel)

    def join(self) -> BaseException | None:
        self._thread.join(DEADLINE)
        assert not self._thread.is_alive(), "handle() did not return"
        return self.error


@contextlib.contextmanager
def serving(handler: ClientHandler) -> Iterator[tuple[socket.socket, Served]]:
    """(client end, the served connection) with the features word exchanged; the client end is
    closed on the way out whatever happened, which ends any connection still served."""
    client, served = peer_pair()
    client.settimeout(DEADLINE)
    with client:
        srv = Served(handler, served)
        assert recv_exactly(client, 4) == HANDSHAKE
        send(client, HANDSHAKE)
        yield client, srv


class Recorder(Executor):
    """GOOD with ``allocation_length`` bytes of 0xAB; counts its calls."""

    name = "recorder"

    def __init__(self) -> None:
        self.calls = 0

    def execute(self, fd: int, cdb: bytes, data_out: bytes, allocation_length: int) -> Reply:
        self.calls += 1
        return Reply(0, b"", b"\xab" * allocation_length)


class Raises(Executor):
    """An executor bug: raises ``error`` for every command."""

    name = "raises"

    def __init__(self, error: Exception) -> None:
        self.error = error

    def execute(self, fd: int, cdb: bytes, data_out: bytes, allocation_length: int) -> Reply:
        raise self.error


class Gate(Executor):
    """A device call that lasts until the test opens the gate (GOOD, no data)."""

    name = "gate"

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()

    def execute(self, fd: int, cdb: bytes, data_out: bytes, allocation_length: int) -> Reply:
        self.entered.set()
        assert self.release.wait(DEADLINE)
        return Reply(0)


class NeverCompletes(Executor):
    """A device that never answers (a profile's PREEMPT AND ABORT on LIO)."""

    name = "never"

    def __init__(self) -> None:
        self.entered = threading.Event()

    def execute(self, fd: int, cdb: bytes, data_out: bytes, allocation_length: int) -> Reply:
        self.entered.set()
        raise CommandNeverCompletes("never")
