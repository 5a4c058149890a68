"""One client connection: the handshake, then one request after another, answered in order.

Everything protocol-shaped is decided by ``scsi_pr.helper.proto.Connection``; this module only
moves bytes and fds between it and the socket (``scsi_pr.helper.unix_io``), asks the executor,
and writes the audit log. Each connection is served by a thread of its own, with blocking
reads, and runs the executor in that thread; the event loop (``scsi_pr.helper.daemon``) only
accepts, counts and stops connections: one task per connection waits for its thread.

Why a thread per connection, not one event loop for every connection plus a worker-thread hop
per request (the first design): a request then cost an epoll wake-up of the loop, a hand-over
to a worker, and a wake-up of the loop again, about as much CPU as everything else the helper
does per request; ``scripts/bench --vm`` measured the difference on a real LUN under TCG (see
docs/performance.md). Requests on one connection are in order anyway (QEMU sends one at a time),
so a blocked device call still blocks only its own connection, as with the hop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

from scsi_pr.helper.audit import Audit, error_report, sense_text, status_name
from scsi_pr.helper.errors import HelperError
from scsi_pr.helper.executors.base import CommandNeverCompletes, Executor, Reply
from scsi_pr.helper.executors.status import INVALID_OPCODE, check_condition, from_errno
from scsi_pr.helper.proto import (
    NEED_DATA,
    PAUSED,
    Connection,
    ConnectionClosed,
    Features,
    MissingFileDescriptor,
    ProtocolError,
    Request,
    Response,
    Role,
    UnsupportedOpcode,
)
from scsi_pr.helper.unix_io import (
    close_fds,
    device_name,
    is_read_only,
    peer_credentials,
    recv_with_fds,
)
from scsi_pr.sim.describe import describe

# The refusals qemu-pr-helper reports on stderr itself (when verbose); it closes silently on
# the others (extra fds, oversized transfers, short reads).
REPORTED_REFUSALS = (MissingFileDescriptor, UnsupportedOpcode)
#: what tells a connection whose answer is withheld that its client is gone or we stop
_HANG_UP = select.POLLHUP | select.POLLERR | select.POLLRDHUP | select.POLLNVAL


def wake(sock: socket.socket) -> None:
    """End a connection served by a thread from another thread: its blocked reads return EOF,
    its sends fail. (Closing the fd instead would wake nobody, and its number could be reused
    under the thread.)"""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class IdleTimeout(HelperError):
    """The client kept the helper waiting longer than the idle timeout."""


class _Gone(HelperError):
    """The client hung up (or the server stopped) while its answer was withheld."""


@dataclass
class ClientHandler:
    """Serves client connections for one server; ``busy`` and ``stopping`` let the server's
    shutdown tell connections answering a request from idle ones.

    ``idle_timeout`` (seconds, ``None`` = wait for ever, as qemu-pr-helper does: QEMU keeps its
    connection open and idle for hours) bounds every wait on the client: from the handshake or
    the end of an answer until the next request is complete, and while the client does not take
    an answer.
    """

    executor: Executor
    audit: Audit = field(default_factory=Audit)
    verbose: int = 1
    idle_timeout: float | None = None
    busy: set[asyncio.Task[None]] = field(default_factory=set)
    stopping: bool = False

    async def handle(self, sock: socket.socket) -> None:
        """Serve ``sock`` until the client closes, breaks the protocol, idles too long, or the
        server stops (``start`` then ``wait``)."""
        done = asyncio.get_running_loop().create_future()
        me = asyncio.current_task()
        assert me is not None
        try:
            self.start(sock, me, done)
        except RuntimeError:
            sock.close()
            raise
        await self.wait(sock, done)

    def start(
        self, sock: socket.socket, task: asyncio.Task[None], done: asyncio.Future[None]
    ) -> None:
        """Hand ``sock`` to a thread of its own, which always closes it and every fd received
        on it, on every path, then completes ``done``; ``task`` stands for the connection in
        ``busy``. RuntimeError (``sock`` left to the caller) when no thread can be had (a
        process or memory limit)."""
        loop = done.get_loop()

        def finished() -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
                loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))

        thread = threading.Thread(
            target=self._serve, args=(sock, task, finished), name=f"prh-conn-{sock.fileno()}",
            daemon=True,  # a call stuck in the kernel must not keep a stopping helper alive
        )  # fmt: skip
        thread.start()

    @staticmethod
    async def wait(sock: socket.socket, done: asyncio.Future[None]) -> None:
        """Until the connection's thread is done. Cancelled (the server stops), it wakes the
        thread first: reads see EOF, sends fail, the thread closes up."""
        try:
            await asyncio.shield(done)
        except asyncio.CancelledError:
            wake(sock)
            raise

    def _serve(
        self, sock: socket.socket, task: asyncio.Task[None], finished: Callable[[], None]
    ) -> None:
        conn = Connection(Role.HELPER)
        peer = peer_credentials(sock)
        reason = "closed"
        try:
            sock.setblocking(True)
            self.audit("prh_connect", pid=peer[0], uid=peer[1], gid=peer[2])
            self._send(sock, conn.send(Features(0)))
            deadline = self._deadline()
            # Decided once per connection (the audit's events do not change while it runs):
            # per request, formatting and timing cost as much as the codec.
            logging = self.audit.wants("prh_command")
            while not self.stopping:
                event = conn.next_event()
                if event is NEED_DATA:
                    data, fds = self._recv(sock, conn.bytes_needed, deadline, conn.accepts_fds)
                    conn.receive_data(data, fds)
                    if refused := conn.release_fds():
                        close_fds(refused)
                    continue
                if isinstance(event, Request):  # the common event first
                    self.busy.add(task)
                    try:
                        response = self._answer(sock, event, peer, logging)
                        self._send(sock, conn.send(response))
                    finally:
                        self.busy.discard(task)
                    deadline = self._deadline()
                    continue
                if isinstance(event, ConnectionClosed):
                    break
                assert event is PAUSED or isinstance(event, Features)
            if self.stopping:
                reason = "shutdown"
        except ProtocolError as e:
            reason = "shutdown" if self.stopping else str(e)
            if not self.stopping:
                self.audit("prh_refused", pid=peer[0], uid=peer[1], reason=reason)
                if isinstance(e, REPORTED_REFUSALS):
                    error_report(reason, self.verbose)
        except IdleTimeout as e:
            reason = str(e)
        except _Gone:
            reason = "shutdown" if self.stopping else "closed"
        except (ConnectionError, OSError) as e:
            reason = "shutdown" if self.stopping else f"I/O error: {e}"
        finally:
            close_fds(conn.abandon())
            sock.close()
            self.audit("prh_disconnect", pid=peer[0], reason=reason)
            finished()

    def _deadline(self) -> float | None:
        return None if self.idle_timeout is None else time.monotonic() + self.idle_timeout

    def _wait_budget(self, sock: socket.socket, deadline: float, what: str) -> None:
        """Let the next blocking call on ``sock`` wait until ``deadline`` at most. Only with an
        idle timeout: without one the socket stays blocking, as ``_serve`` set it, and reads
        and sends take no clock read or syscall of their own."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise self._idle(what)
        sock.settimeout(left)

    def _idle(self, what: str) -> IdleTimeout:
        return IdleTimeout(f"idle timeout ({self.idle_timeout:g} s){what}")

    def _recv(
        self, sock: socket.socket, n: int, deadline: float | None, with_fds: bool
    ) -> tuple[bytes, list[int]]:
        """Up to ``n`` bytes and, ``with_fds``, the fds sent with them (``b""`` = EOF); without,
        the kernel drops any fds sent (``Connection.accepts_fds``). Never more than the codec
        asks for: fds ride on the first byte of a ``sendmsg``, so a read must not straddle
        frame parts (``scsi_pr.helper.unix_io``)."""
        if deadline is not None:  # else the blocking socket waits as long as it takes
            self._wait_budget(sock, deadline, "")
        try:
            return recv_with_fds(sock, n) if with_fds else (sock.recv(n), [])
        except TimeoutError:
            raise self._idle("") from None

    def _send(self, sock: socket.socket, data: bytes) -> None:
        if self.idle_timeout is None:
            sock.sendall(data)
            return
        what = ": answer not taken"
        self._wait_budget(sock, time.monotonic() + self.idle_timeout, what)
        try:
            sock.sendall(data)
        except TimeoutError:
            raise self._idle(what) from None

    def _execute(self, sock: socket.socket, request: Request) -> Reply:
        fd = request.fd
        assert fd is not None
        if request.is_pr_out and is_read_only(fd):
            return check_condition(INVALID_OPCODE)  # qemu-pr-helper do_pr_out's only fabrication
        try:
            return self.executor.execute(fd, request.cdb, request.data, request.allocation_length)
        except CommandNeverCompletes:
            self._withhold(sock)

    def _withhold(self, sock: socket.socket) -> NoReturn:
        """The device never answers this command (a profile's hang): keep the client waiting,
        as the C helper stuck in SG_IO does, until it hangs up or the server stops."""
        poller = select.poll()
        poller.register(sock, _HANG_UP)
        while not self.stopping and not poller.poll(1000):
            pass
        raise _Gone  # its reason is decided by ``stopping``, not by a message

    def _answer(
        self, sock: socket.socket, request: Request, peer: tuple[int, int, int], logging: bool
    ) -> Response:
        """The answer to ``request``; ``logging``: write its ``prh_command`` audit line."""
        start = time.perf_counter() if logging else 0.0
        fd = request.fd
        assert fd is not None
        device = device_name(fd) if logging else ""
        try:
            reply = self._execute(sock, request)
        except _Gone:
            raise
        except Exception as e:  # an executor bug must still be a SCSI answer, and logged
            err = e.errno if isinstance(e, OSError) and e.errno else errno.EIO
            device = device or device_name(fd)
            self.audit("prh_error", pid=peer[0], device=device, error=f"{type(e).__name__}: {e}")
            reply = Reply(*from_errno(err))
        finally:
            # the helper closes the passed fd after every request; not contextlib.suppress:
            # a context manager per request costs as much as the close
            try:  # noqa: SIM105
                os.close(fd)
            except OSError:
                pass
        data = reply.data[: request.allocation_length] if reply.status == 0 else b""
        if logging:
            self.audit(
                "prh_command",
                pid=peer[0],
                uid=peer[1],
                device=device,
                command=describe(request.cdb, request.data),
                status=status_name(reply.status),
                sense=sense_text(reply),
                bytes_in=len(data),
                duration_us=int((time.perf_counter() - start) * 1e6),
            )
        if data is reply.data:  # nothing cut (an unchanged slice of bytes is the same object)
            return reply
        return Response(reply.status, reply.sense, data)
