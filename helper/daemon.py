"""The asyncio server: one task per client connection, requests in order per connection,
connections in parallel, blocking executors in worker threads.

Everything protocol-shaped is decided by ``scsi_pr.helper.proto.Connection``; this module only moves
bytes and fds between it and the socket, asks the executor, and writes the audit log.

Why raw non-blocking sockets rather than asyncio streams: streams cannot receive SCM_RIGHTS.
Why we never read more than the codec asks for: fds ride on the first byte of a ``sendmsg``
and qemu-pr-helper accepts them only with the CDB, so reads must not straddle frame parts.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import fnmatch
import os
import socket
import struct
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TextIO

from scsi_pr.helper.executors.base import Executor, Reply
from scsi_pr.helper.executors.status import INVALID_OPCODE, check_condition, from_errno
from scsi_pr.helper.proto import (
    NEED_DATA,
    PAUSED,
    Connection,
    ConnectionClosed,
    Features,
    ProtocolError,
    Request,
    Response,
    Role,
)
from scsi_pr.sim.describe import describe
from scsi_pr.sim.result import SenseData

MAX_FDS_PER_READ = 8  # more than one is already a violation; read a few to close them all
SHUTDOWN_GRACE = 30.0  # seconds an in-flight request may take to finish after SIGTERM
_UCRED = struct.Struct("3i")

# Trace events (the audit log). ``-T`` patterns select among them, as QEMU's -T does.
EVENTS = ("prh_command", "prh_refused", "prh_connect", "prh_disconnect", "prh_error")
DEFAULT_EVENTS = frozenset({"prh_command", "prh_refused", "prh_error"})


@dataclass
class Audit:
    """One line per event to ``stream``; ``enabled`` is the set of event names written."""

    stream: TextIO | None = sys.stderr
    enabled: frozenset[str] = DEFAULT_EVENTS

    @classmethod
    def from_patterns(cls, patterns: Iterable[str], stream: TextIO | None = sys.stderr) -> Audit:
        """QEMU -T semantics: each pattern (glob) enables events; ``-pattern`` disables them.
        With no pattern at all the default audit events are on."""
        patterns = list(patterns)
        enabled = set() if patterns else set(DEFAULT_EVENTS)
        for pattern in patterns:
            negate = pattern.startswith("-")
            names = fnmatch.filter(EVENTS, pattern.lstrip("-"))
            enabled = enabled - set(names) if negate else enabled | set(names)
        return cls(stream, frozenset(enabled))

    def __call__(self, event: str, **fields: object) -> None:
        if self.stream is None or event not in self.enabled:
            return
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        parts = " ".join(f"{k}={_quote(v)}" for k, v in fields.items())
        try:
            self.stream.write(f"{stamp} {event} {parts}\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed log must never take the helper down


def _quote(value: object) -> str:
    text = str(value)
    return f'"{text}"' if (" " in text or not text) else text


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the connecting process (SO_PEERCRED)."""
    try:
        return _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    except OSError:
        return (-1, -1, -1)


def device_name(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return f"fd:{fd}"


def sense_text(reply: Reply) -> str:
    if reply.status != 0x02:
        return "-"
    sense = SenseData.parse(reply.sense)
    return "none" if sense is None else f"{sense.key:X}/{sense.asc:02X}/{sense.ascq:02X}"


STATUS_NAMES = {
    0x00: "GOOD",
    0x02: "CHECK_CONDITION",
    0x08: "BUSY",
    0x18: "RESERVATION_CONFLICT",
    0x28: "TASK_SET_FULL",
}


async def _wait_readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    fut = loop.create_future()
    fd = sock.fileno()
    loop.add_reader(fd, lambda: fut.done() or fut.set_result(None))
    try:
        await fut
    finally:
        loop.remove_reader(fd)


async def recv_with_fds(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, n: int
) -> tuple[bytes, list[int]]:
    """Up to ``n`` bytes and the fds sent with them (``b""`` = EOF)."""
    space = socket.CMSG_SPACE(MAX_FDS_PER_READ * 4)
    while True:
        try:
            data, ancdata, _flags, _addr = sock.recvmsg(n, space, socket.MSG_CMSG_CLOEXEC)
            break
        except (BlockingIOError, InterruptedError):
            await _wait_readable(loop, sock)
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % 4
            fds += struct.unpack(f"{usable // 4}i", payload[:usable])
    return data, fds


def _close_fds(fds: Iterable[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def is_read_only(fd: int) -> bool:
    return (fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE) == os.O_RDONLY


@dataclass
class HelperServer:
    """Serves one listening socket with one executor until ``stop`` is set."""

    executor: Executor
    audit: Audit = field(default_factory=Audit)
    verbose: int = 1
    workers: int = 64
    _busy: set[asyncio.Task[None]] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="prh-io")
        self._stopping = False

    def _report(self, message: str) -> None:
        """Connection errors go to stderr only when verbose, as in qemu-pr-helper."""
        if self.verbose:
            name = os.path.basename(sys.argv[0] or "scsi-pr-helper")
            print(f"{name}: {message}", file=sys.stderr)

    async def _execute(self, request: Request) -> Reply:
        fd = request.fd
        assert fd is not None
        if request.is_pr_out and is_read_only(fd):
            return check_condition(INVALID_OPCODE)  # qemu-pr-helper do_pr_out's only fabrication
        run_async = getattr(self.executor, "execute_async", None)
        args = (fd, request.cdb, request.data, request.allocation_length)
        if run_async is not None:
            return await run_async(*args)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.executor.execute, *args)

    async def _answer(self, request: Request, peer: tuple[int, int, int]) -> Response:
        start = time.perf_counter()
        fd = request.fd
        assert fd is not None
        logging = "prh_command" in self.audit.enabled and self.audit.stream is not None
        device = device_name(fd) if logging else ""
        try:
            reply = await self._execute(request)
        except Exception as e:  # an executor bug must still be a SCSI answer, and logged
            err = e.errno if isinstance(e, OSError) and e.errno else errno.EIO
            device = device or device_name(fd)
            self.audit("prh_error", pid=peer[0], device=device, error=f"{type(e).__name__}: {e}")
            reply = Reply(*from_errno(err))
        finally:
            _close_fds([fd])  # the helper closes the passed fd after every request
        data = reply.data[: request.allocation_length] if reply.status == 0 else b""
        if logging:
            self.audit(
                "prh_command",
                pid=peer[0],
                uid=peer[1],
                device=device,
                command=describe(request.cdb, request.data),
                status=STATUS_NAMES.get(reply.status, f"{reply.status:#04x}"),
                sense=sense_text(reply),
                bytes_in=len(data),
                duration_us=int((time.perf_counter() - start) * 1e6),
            )
        return Response(reply.status, reply.sense, data)

    async def handle(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        conn = Connection(Role.HELPER)
        peer = peer_credentials(sock)
        self.audit("prh_connect", pid=peer[0], uid=peer[1], gid=peer[2])
        reason = "closed"
        me = asyncio.current_task()
        try:
            await loop.sock_sendall(sock, conn.send(Features(0)))
            while not self._stopping:
                event = conn.next_event()
                if event is NEED_DATA:
                    data, fds = await recv_with_fds(loop, sock, conn.bytes_needed)
                    conn.receive_data(data, fds)
                    _close_fds(conn.release_fds())
                    continue
                if isinstance(event, ConnectionClosed):
                    break
                if isinstance(event, Request):
                    assert me is not None
                    self._busy.add(me)
                    try:
                        response = await self._answer(event, peer)
                        await loop.sock_sendall(sock, conn.send(response))
                    finally:
                        self._busy.discard(me)
                    continue
                assert event is PAUSED or isinstance(event, Features)
        except ProtocolError as e:
            reason = str(e)
            self.audit("prh_refused", pid=peer[0], uid=peer[1], reason=reason)
            if "No file descriptor" in reason or "Invalid CDB" in reason:
                self._report(reason)
        except (ConnectionError, OSError) as e:
            reason = f"I/O error: {e}"
        except asyncio.CancelledError:
            reason = "shutdown"
            raise
        finally:
            _close_fds(conn.release_fds())
            sock.close()
            self.audit("prh_disconnect", pid=peer[0], reason=reason)

    async def serve(self, listener: socket.socket, stop: asyncio.Event) -> None:
        """Accept until ``stop``; then close the listener, let in-flight requests finish
        (idle connections do not delay exit), and return."""
        loop = asyncio.get_running_loop()
        listener.setblocking(False)
        stopper = asyncio.ensure_future(stop.wait())
        try:
            while True:
                accept = asyncio.ensure_future(loop.sock_accept(listener))
                done, _ = await asyncio.wait({accept, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if accept not in done:
                    accept.cancel()
                    with contextlib.suppress(asyncio.CancelledError, OSError):
                        await accept
                    break
                try:
                    client, _addr = accept.result()
                except OSError as e:
                    if e.errno in (errno.EMFILE, errno.ENFILE):
                        self._report(f"accept: {e}")
                        await asyncio.sleep(0.1)
                    continue
                client.setblocking(False)
                task = asyncio.create_task(self.handle(client))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            stopper.cancel()
            listener.close()
            await self.shutdown()

    async def shutdown(self) -> None:
        self._stopping = True
        for task in list(self._tasks):
            if task not in self._busy:
                task.cancel()
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=SHUTDOWN_GRACE)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.executor.close()
