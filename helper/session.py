"""One client connection: the handshake, then one request after another, answered in order.

Everything protocol-shaped is decided by ``scsi_pr.helper.proto.Connection``; this module only
moves bytes and fds between it and the socket (``scsi_pr.helper.unix_io``), asks the executor,
and writes the audit log. Connections run in parallel, one task each (``scsi_pr.helper.daemon``).
"""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from concurrent.futures import Executor as ThreadPool
from dataclasses import dataclass, field

from scsi_pr.helper.audit import Audit, error_report, sense_text, status_name
from scsi_pr.helper.errors import HelperError
from scsi_pr.helper.executors.base import Executor, Reply
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


class IdleTimeout(HelperError):
    """The client kept the helper waiting longer than the idle timeout."""


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
    pool: ThreadPool
    audit: Audit = field(default_factory=Audit)
    verbose: int = 1
    idle_timeout: float | None = None
    busy: set[asyncio.Task[None]] = field(default_factory=set)
    stopping: bool = False

    async def handle(self, sock: socket.socket) -> None:
        """Serve ``sock`` until the client closes, breaks the protocol, idles too long, or the
        server stops; always closes ``sock`` and every fd received on it, on every path."""
        loop = asyncio.get_running_loop()
        conn = Connection(Role.HELPER)
        peer = peer_credentials(sock)
        reason = "closed"
        me = asyncio.current_task()
        try:
            self.audit("prh_connect", pid=peer[0], uid=peer[1], gid=peer[2])
            await self._send(loop, sock, conn.send(Features(0)))
            deadline = self._deadline(loop)
            while not self.stopping:
                event = conn.next_event()
                if event is NEED_DATA:
                    data, fds = await self._recv(loop, sock, conn.bytes_needed, deadline)
                    conn.receive_data(data, fds)
                    close_fds(conn.release_fds())
                    continue
                if isinstance(event, ConnectionClosed):
                    break
                if isinstance(event, Request):
                    assert me is not None
                    self.busy.add(me)
                    try:
                        response = await self._answer(event, peer)
                        await self._send(loop, sock, conn.send(response))
                    finally:
                        self.busy.discard(me)
                    deadline = self._deadline(loop)
                    # Yield between requests: a client whose next request is already buffered
                    # would otherwise be read, executed and answered without ever giving the
                    # loop back, starving every other connection (round-robin instead).
                    await asyncio.sleep(0)
                    continue
                assert event is PAUSED or isinstance(event, Features)
        except ProtocolError as e:
            reason = str(e)
            self.audit("prh_refused", pid=peer[0], uid=peer[1], reason=reason)
            if isinstance(e, REPORTED_REFUSALS):
                error_report(reason, self.verbose)
        except IdleTimeout as e:
            reason = str(e)
        except (ConnectionError, OSError) as e:
            reason = f"I/O error: {e}"
        except asyncio.CancelledError:
            reason = "shutdown"
            raise
        finally:
            close_fds(conn.abandon())
            sock.close()
            self.audit("prh_disconnect", pid=peer[0], reason=reason)

    def _deadline(self, loop: asyncio.AbstractEventLoop) -> float | None:
        return None if self.idle_timeout is None else loop.time() + self.idle_timeout

    async def _recv(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, n: int, deadline: float | None
    ) -> tuple[bytes, list[int]]:
        if deadline is None:
            return await recv_with_fds(loop, sock, n)
        try:
            async with asyncio.timeout_at(deadline):
                return await recv_with_fds(loop, sock, n)
        except TimeoutError:
            raise IdleTimeout(f"idle timeout ({self.idle_timeout:g} s)") from None

    async def _send(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, data: bytes
    ) -> None:
        deadline = self._deadline(loop)
        if deadline is None:
            return await loop.sock_sendall(sock, data)
        try:
            async with asyncio.timeout_at(deadline):
                await loop.sock_sendall(sock, data)
        except TimeoutError:
            raise IdleTimeout(f"idle timeout ({self.idle_timeout:g} s): answer not taken") from None

    async def _execute(self, request: Request) -> Reply:
        fd = request.fd
        assert fd is not None
        if request.is_pr_out and is_read_only(fd):
            return check_condition(INVALID_OPCODE)  # qemu-pr-helper do_pr_out's only fabrication
        args = (fd, request.cdb, request.data, request.allocation_length)
        return await self.executor.execute_async(*args, self.pool)

    async def _answer(self, request: Request, peer: tuple[int, int, int]) -> Response:
        start = time.perf_counter()
        fd = request.fd
        assert fd is not None
        logging = self.audit.wants("prh_command")
        device = device_name(fd) if logging else ""
        try:
            reply = await self._execute(request)
        except Exception as e:  # an executor bug must still be a SCSI answer, and logged
            err = e.errno if isinstance(e, OSError) and e.errno else errno.EIO
            device = device or device_name(fd)
            self.audit("prh_error", pid=peer[0], device=device, error=f"{type(e).__name__}: {e}")
            reply = Reply(*from_errno(err))
        finally:
            close_fds([fd])  # the helper closes the passed fd after every request
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
        return Response(reply.status, reply.sense, data)
