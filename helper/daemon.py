"""The asyncio server: accepts on one listening socket, one task per client connection
(``scsi_pr.helper.session``: a thread each, which runs the executor), requests in order per
connection, connections in parallel; the resource limits; and the orderly stop after SIGTERM.

Why the accept loop decides on errno through a table: ``accept()`` fails for three different
reasons that need three different answers. Out of fds (EMFILE, ENFILE, ENOBUFS, ENOMEM) the
pending client stays in the backlog and the listener stays readable, so retrying at once would
spin: back off. A client that gave up before we took it (ECONNABORTED...) is its own problem:
go on. Anything else (EINVAL, ENOTSOCK, EBADF...) means the listener itself is unusable, e.g. a
socket-activation fd that is not a listening socket: no retry can help, so stop with a clear
error instead of spinning. SIGTERM is honoured in every one of these states.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import resource
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from scsi_pr.helper.audit import Audit, error_report
from scsi_pr.helper.errors import HelperError
from scsi_pr.helper.executors.base import Executor
from scsi_pr.helper.session import ClientHandler, wake
from scsi_pr.helper.unix_io import peer_credentials

__all__ = [
    "SHUTDOWN_GRACE",
    "Audit",
    "HelperServer",
    "ListenerError",
    "check_listener",
    "default_max_clients",
]

SHUTDOWN_GRACE = 30.0  # seconds an in-flight request may take to finish after SIGTERM
ACCEPT_BACKOFF = (0.05, 1.0)  # first and longest pause while out of fds (doubling)
RESERVED_FDS = 64  # the helper's own fds (listener, loop, logs, state files) beside clients'
FDS_PER_CLIENT = 2  # its socket and the fd passed with the request being read or answered
MAX_CLIENTS_CAP = 65536


class ListenerError(HelperError):
    """The listening socket cannot accept connections (not a listening socket, closed...)."""


class AcceptFailure(Enum):
    BACKOFF = "backoff"  # out of a resource: the client waits in the backlog; pause, retry
    RETRY = "retry"  # that one connection failed: take the next one at once


# errno of a failed accept() -> what to do; any errno not listed is a ListenerError.
ACCEPT_ERRORS: dict[int, AcceptFailure] = {
    errno.EMFILE: AcceptFailure.BACKOFF,
    errno.ENFILE: AcceptFailure.BACKOFF,
    errno.ENOBUFS: AcceptFailure.BACKOFF,
    errno.ENOMEM: AcceptFailure.BACKOFF,
    errno.ECONNABORTED: AcceptFailure.RETRY,
    errno.EPROTO: AcceptFailure.RETRY,
    errno.EPERM: AcceptFailure.RETRY,  # a security module refused this one connection
    errno.EINTR: AcceptFailure.RETRY,
    errno.EAGAIN: AcceptFailure.RETRY,
}


def _nothing() -> None:
    pass


def default_max_clients() -> int:
    """As many clients as the fd limit (RLIMIT_NOFILE, soft) allows, so that the helper
    refuses clients cleanly before ``accept()`` itself runs out of fds."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CLIENTS_CAP
    return min(max((soft - RESERVED_FDS) // FDS_PER_CLIENT, 1), MAX_CLIENTS_CAP)


def check_listener(listener: socket.socket) -> None:
    """ListenerError unless ``listener`` is a listening stream socket: a socket-activation fd
    can be anything, and accept() on a non-listening socket fails for ever."""
    try:
        listening = listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        kind = listener.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)
    except OSError as e:
        raise ListenerError(f"fd {listener.fileno()} is not a usable socket: {e.strerror}") from e
    if kind != socket.SOCK_STREAM or not listening:
        raise ListenerError(f"fd {listener.fileno()} is not a listening stream socket")


@dataclass
class HelperServer:
    """Serves one listening socket with one executor until ``stop`` is set.

    Limits (the defaults keep the C helper's behaviour where it has one):

    * ``max_clients``: connections served at once; one more is accepted and closed at once,
      with a ``prh_refused`` audit line (``None``: ``default_max_clients()``, from the fd
      limit). The C helper has no limit and fails ``accept()`` at the fd limit.
    * ``idle_timeout``: seconds a connection may keep the helper waiting for its next request
      (or for taking an answer) before it is closed; ``None`` (default) waits for ever, as the
      C helper does, because QEMU keeps its connection open and idle for hours.
    * ``shutdown_grace``: seconds requests in flight at SIGTERM may take to be answered.
    * Request sizes are the protocol's (CDB 16 bytes, data 8192): a connection never has more
      than one frame part buffered in the helper.
    """

    executor: Executor
    audit: Audit = field(default_factory=Audit)
    verbose: int = 1
    max_clients: int | None = None
    idle_timeout: float | None = None
    shutdown_grace: float = SHUTDOWN_GRACE
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.max_clients is None:
            self.max_clients = default_max_clients()
        if self.max_clients < 1:
            raise ValueError(f"max_clients must be at least 1, not {self.max_clients}")
        if self.idle_timeout is not None and self.idle_timeout <= 0:
            raise ValueError(f"idle_timeout must be positive, not {self.idle_timeout}")
        self._clients = ClientHandler(self.executor, self.audit, self.verbose, self.idle_timeout)

    @property
    def clients(self) -> int:
        """Connections being served now."""
        return len(self._tasks)

    async def serve(
        self, listener: socket.socket, stop: asyncio.Event, ready: Callable[[], None] = _nothing
    ) -> None:
        """Accept until ``stop``; then close the listener, let in-flight requests finish
        (idle connections do not delay exit), and return. ListenerError if the listener is
        unusable, at once or when accept() says so. ``ready()`` once it is known usable (the
        service manager's ``READY=1``)."""
        stopper = asyncio.ensure_future(stop.wait())
        try:
            check_listener(listener)
            listener.setblocking(False)
            ready()
            await self._accept_loop(listener, stopper)
        finally:
            stopper.cancel()
            listener.close()
            await self.shutdown()

    async def _accept_loop(self, listener: socket.socket, stopper: asyncio.Future[bool]) -> None:
        loop = asyncio.get_running_loop()
        backoff = 0.0
        while not stopper.done():
            accept = asyncio.ensure_future(loop.sock_accept(listener))
            await asyncio.wait({accept, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if not accept.done():
                accept.cancel()
                with contextlib.suppress(asyncio.CancelledError):  # not done when cancelled
                    await accept
                return
            try:
                client, _addr = accept.result()
            except OSError as e:
                backoff = await self._accept_failed(e, backoff, stopper)
                continue
            backoff = 0.0
            self._start(client)

    async def _accept_failed(
        self, error: OSError, backoff: float, stopper: asyncio.Future[bool]
    ) -> float:
        """Wait as ``ACCEPT_ERRORS`` says (or until stopped); the next backoff."""
        failure = ACCEPT_ERRORS.get(error.errno or 0)
        if failure is None:
            raise ListenerError(f"accept: {error}") from error
        if failure is AcceptFailure.RETRY:
            return backoff
        if not backoff:  # report an episode once, not every retry
            error_report(f"accept: {error}", self.verbose)
        backoff = min(max(backoff * 2, ACCEPT_BACKOFF[0]), ACCEPT_BACKOFF[1])
        await asyncio.wait({stopper}, timeout=backoff)
        return backoff

    def _start(self, client: socket.socket) -> None:
        assert self.max_clients is not None
        if len(self._tasks) >= self.max_clients:
            self._refuse(client, f"too many clients ({self.max_clients})")
            return
        done = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self._clients.wait(client, done))
        try:
            self._clients.start(client, task, done)  # the thread owns (and closes) the socket
        except RuntimeError as e:
            task.cancel()
            self._refuse(client, f"no thread for the client: {e}")
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        # A task cancelled before its first step never ran ``wait``: wake its thread here.
        task.add_done_callback(lambda t: t.cancelled() and wake(client))

    def _refuse(self, client: socket.socket, reason: str) -> None:
        pid, uid, _gid = peer_credentials(client)
        client.close()
        self.audit("prh_refused", pid=pid, uid=uid, reason=reason)

    async def shutdown(self) -> None:
        """Cancel idle connections at once; give busy ones ``shutdown_grace`` to answer."""
        self._clients.stopping = True
        for task in list(self._tasks):
            if task not in self._clients.busy:
                task.cancel()
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=self.shutdown_grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        self.executor.close()
