"""The asyncio server: accepts on one listening socket, one task per client connection
(``scsi_pr.helper.session``), requests in order per connection, connections in parallel,
blocking executors in worker threads; and the orderly stop after SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from scsi_pr.helper.audit import Audit, error_report
from scsi_pr.helper.executors.base import Executor
from scsi_pr.helper.session import ClientHandler

__all__ = ["SHUTDOWN_GRACE", "Audit", "HelperServer"]

SHUTDOWN_GRACE = 30.0  # seconds an in-flight request may take to finish after SIGTERM
ACCEPT_RETRY = 0.1  # seconds to wait when out of fds, so the loop does not spin on accept


@dataclass
class HelperServer:
    """Serves one listening socket with one executor until ``stop`` is set."""

    executor: Executor
    audit: Audit = field(default_factory=Audit)
    verbose: int = 1
    workers: int = 64
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="prh-io")
        self._clients = ClientHandler(self.executor, self._pool, self.audit, self.verbose)

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
                        error_report(f"accept: {e}", self.verbose)
                        await asyncio.sleep(ACCEPT_RETRY)
                    continue
                client.setblocking(False)
                task = asyncio.create_task(self._clients.handle(client))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            stopper.cancel()
            listener.close()
            await self.shutdown()

    async def shutdown(self) -> None:
        """Cancel idle connections at once; give busy ones ``SHUTDOWN_GRACE`` to answer."""
        self._clients.stopping = True
        for task in list(self._tasks):
            if task not in self._clients.busy:
                task.cancel()
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=SHUTDOWN_GRACE)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.executor.close()
