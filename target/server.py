"""The asyncio iSCSI target: listening portals, one task per TCP connection, the shared LUs.

``TargetServer`` owns what every connection shares: the LUs (``ServedLUs``) and the one worker
thread that runs commands on them in arrival order (the model is one state machine per LU and
its state files are locked per command, so one thread loses nothing and keeps CmdSN order
within a session and arrival order across sessions; when it is idle and the LU's lock free, a
command runs on the loop's thread instead: ``run_on_one_lu``), the session table (TSIHs,
reinstatement), the limits, and a clock that ticks every connection (NOP-In pings, login and
ping timeouts).
A login over ``max_sessions`` sessions fails with OUT OF RESOURCES (RFC 7143 11.13.5);
connections still logging in do not count, and past ``MAX_LOGINS_PENDING`` of them the oldest
is closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from scsi_pr.helper.simserve import LuBusy, no_waiting
from scsi_pr.target.errors import TargetError
from scsi_pr.target.handler import ConnectionHandler
from scsi_pr.target.lus import ServedLUs
from scsi_pr.target.proto import (
    ChapPolicy,
    ConnectionSettings,
    LoginSettings,
    LoginStatus,
    OperationalSettings,
    Portal,
    TargetNode,
)
from scsi_pr.target.proto.constants import DEFAULT_MAX_TRANSFER, MAX_24
from scsi_pr.target.sessions import NoTsihLeft, SessionTable

T = TypeVar("T")
log = logging.getLogger("scsi_pr.target")
TICK = 1.0  # seconds between ticks of every connection
PORTAL_GROUP_TAG = 1
STOP_TIMEOUT = 10.0  # seconds connections get to close when the target stops
#: connections not logged in at once; a new one past this closes the oldest of them
MAX_LOGINS_PENDING = 16


class TargetConfigError(TargetError, ValueError):
    """The configuration cannot be served (e.g. a target port the LUs do not have)."""


class PortalUnusable(TargetError, OSError):
    """A portal host the resolver refuses to encode (not UTF-8, an IDNA label over 63 bytes).

    An ``OSError`` so that it takes the path of every other portal that cannot be bound
    ("cannot listen", exit status 1) instead of escaping as the codec's ``UnicodeError``."""


@dataclass(frozen=True)
class TargetConfig:
    """Everything ``scsi-pr target serve`` decides."""

    iqn: str
    state_dir: Path
    portals: tuple[tuple[str, int], ...] = (("0.0.0.0", 3260),)
    luns: int = 1
    size: int = 1 << 30
    alias: str | None = None
    chap: ChapPolicy | None = None
    discovery_chap: ChapPolicy | None = None
    allowed_initiators: frozenset[str] | None = None
    max_sessions: int = 64  # sessions at once, discovery included (logins in progress: not)
    command_window: int = 32  # commands outstanding per session (MaxCmdSN - ExpCmdSN + 1)
    max_recv_data_segment_length: int = 65536  # what one PDU may carry to the target
    max_burst_length: int = 262144
    max_write_length: int = DEFAULT_MAX_TRANSFER  # the largest write buffered, and READ
    target_port: int = 1  # the RELATIVE TARGET PORT IDENTIFIER sessions come through
    target_ports: int = 2  # the LUs' ports: as many as the helpers sharing the state dir use
    # the connection's own defaults (seconds), written once there
    nop_interval: float = ConnectionSettings.nop_interval
    nop_timeout: float = ConnectionSettings.nop_timeout
    login_timeout: float = ConnectionSettings.login_timeout
    data_out_timeout: float = ConnectionSettings.data_out_timeout
    profile: str = "spc5"  # how the LUs answer (scsi_pr.sim.profiles); the helpers' --profile

    def __post_init__(self) -> None:
        if not 1 <= self.target_port <= self.target_ports <= 0xFFFF:
            ports = f"1..{self.target_ports}"
            raise TargetConfigError(f"target port {self.target_port} is not one of {ports}")
        limits = {
            "max_sessions": (self.max_sessions, 1, 0xFFFF),
            "command_window": (self.command_window, 1, 1 << 16),
            "max_recv_data_segment_length": (self.max_recv_data_segment_length, 512, MAX_24),
            "max_burst_length": (self.max_burst_length, 512, MAX_24),
            "max_write_length": (self.max_write_length, 512, 1 << 30),
        }
        for name, (value, low, high) in limits.items():
            if not low <= value <= high:
                raise TargetConfigError(f"{name} {value}: must be {low}..{high}")
        if min(self.nop_interval, self.nop_timeout, self.login_timeout, self.data_out_timeout) <= 0:
            raise TargetConfigError(
                "NOP interval and the NOP, login and Data-Out timeouts must be > 0"
            )

    def login_settings(self) -> LoginSettings:
        node = TargetNode(self.iqn, self.alias, self.allowed_initiators, self.chap)
        operational = OperationalSettings(
            max_recv_data_segment_length=self.max_recv_data_segment_length,
            max_burst_length=self.max_burst_length,
            first_burst_length=min(65536, self.max_burst_length),
        )
        return LoginSettings(
            targets=(node,),
            portal_group_tag=PORTAL_GROUP_TAG,
            operational=operational,
            discovery_chap=self.discovery_chap,
            command_window=self.command_window,
        )


class TargetServer:
    """Serve ``config`` until ``close``; see the module docstring."""

    def __init__(self, config: TargetConfig) -> None:
        self.config = config
        self.lus = ServedLUs(
            config.state_dir, config.luns, config.size, config.target_ports, config.profile,
            max_read=config.max_write_length,
        )  # fmt: skip
        self.sessions = SessionTable()
        #: every connection, in the order they came (a dict as an ordered set)
        self.handlers: dict[ConnectionHandler, None] = {}
        self.addresses: list[tuple[str, int]] = []  # where it listens (port 0 resolved)
        self._login = config.login_settings()
        self._settings: dict[tuple[str, int], ConnectionSettings] = {}
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scsi-pr-lu")
        self._submitted = self._finished = 0  # calls handed to the worker, and run by it
        self._servers: list[asyncio.Server] = []
        self._ticker: asyncio.Task[None] | None = None
        self._connections: set[asyncio.Task[Any]] = set()

    # -- life cycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Listen on every portal (OSError, PortalUnusable included, when one cannot be bound)."""
        for host, port in self.config.portals:
            try:
                server = await asyncio.start_server(self._accept, host, port, reuse_address=True)
            except UnicodeError as e:  # getaddrinfo encodes the host (IDNA) before resolving
                shown = repr(host) if len(host) <= 64 else f"{host[:64]!r}… ({len(host)} chars)"
                raise PortalUnusable(f"host {shown}: not a host name ({e})") from e
            self._servers.append(server)
            for sock in server.sockets:
                address = sock.getsockname()
                self.addresses.append((address[0], address[1]))
        self._ticker = asyncio.get_running_loop().create_task(self._tick())
        luns = ", ".join(f"{lun}: {path}" for lun, path in self.lus.images.items())
        log.info("target %s listening on %s; LUNs %s", self.config.iqn,
                 ", ".join(Portal(h, p).address for h, p in self.addresses), luns)  # fmt: skip
        log.info("limits: %d sessions, %d commands per session, %d-byte data segments, "
                 "%d-byte bursts, %d-byte writes", self.config.max_sessions,
                 self.config.command_window, self.config.max_recv_data_segment_length,
                 self.config.max_burst_length, self.config.max_write_length)  # fmt: skip

    async def close(self) -> None:
        """Stop listening, end every session (an I_T nexus loss each), finish the LU work."""
        for server in self._servers:
            server.close()
        self.end_all("target stopping")
        if self._connections:  # the ticker cuts a closing socket its peer does not read
            await asyncio.wait(self._connections, timeout=STOP_TIMEOUT)
        if self._ticker is not None:
            self._ticker.cancel()
        for server in self._servers:
            await server.wait_closed()
        await asyncio.get_running_loop().run_in_executor(None, self._worker.shutdown)
        log.info("target %s stopped", self.config.iqn)

    def end_all(self, reason: str, *, loss: bool = True) -> None:
        for handler in list(self.handlers):
            handler.end(reason, loss=loss)

    # -- the LUs' worker thread ------------------------------------------------------------
    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the worker thread, after everything submitted before."""
        self._submitted += 1
        return await asyncio.get_running_loop().run_in_executor(
            self._worker, self._counted, fn, *args
        )

    async def run_on_one_lu(self, fn: Callable[..., T], *args: Any) -> T:
        """``run`` for an ``fn`` that acts on one LU (one ``SharedLUs.run``): here, on the
        loop's thread, when the worker has nothing left to do and the LU's lock is free;
        otherwise (``LuBusy``: another process sharing the state dir holds it, nothing was run)
        on the worker thread. One LU only: an ``fn`` over several could be stopped by a busy
        lock after acting on the first, and would then act on it twice.

        Why not always the worker: the hand-over (a futex wake for the worker, a self-pipe
        write and an epoll wake-up back) was a fifth of the target's CPU under libiscsi's
        suites on the host (12.2 -> 9.6 s), and more under TCG. A command that runs here holds
        up the loop for its own run only; a stalled answer waits on the loop, not in ``fn``."""
        if not self.queued:
            try:
                with no_waiting():
                    return fn(*args)
            except LuBusy:
                pass
        return await self.run(fn, *args)

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """``fn(*args)`` on the worker thread without waiting for it; a failure is logged."""
        self._submitted += 1
        future = self._worker.submit(self._counted, fn, *args)
        future.add_done_callback(_log_failure)

    @property
    def queued(self) -> int:
        """Calls handed to the worker thread that it has not finished."""
        return self._submitted - self._finished

    def _counted(self, fn: Callable[..., T], *args: Any) -> T:
        """On the worker thread, its only writer of ``_finished``: the loop reads it to know
        whether anything submitted is still to run."""
        try:
            return fn(*args)
        finally:
            self._finished += 1

    # -- connections ------------------------------------------------------------------------
    def connection_settings(self, local: Any) -> ConnectionSettings:
        """Settings for a connection that arrived at ``local``: SendTargets names that
        address, which is right even when listening on every address."""
        host, port = (local[0], local[1]) if isinstance(local, tuple) else ("0.0.0.0", 3260)
        settings = self._settings.get((host, port))
        if settings is None:
            config = self.config
            settings = self._settings[(host, port)] = ConnectionSettings(
                login=self._login,
                portals=(Portal(host, port, PORTAL_GROUP_TAG),),
                nop_interval=config.nop_interval,
                nop_timeout=config.nop_timeout,
                data_out_timeout=config.data_out_timeout,
                login_timeout=config.login_timeout,
                max_write_length=config.max_write_length,
            )
        return settings

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._connections.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        refusal = None
        # Only sessions count against --max-sessions: connections that never log in must not
        # lock real initiators out. They end at the login timeout; past MAX_LOGINS_PENDING of
        # them the oldest goes, so holding the target's slots costs a connection a second.
        logging_in = [h for h in self.handlers if h.session is None]
        if len(logging_in) >= MAX_LOGINS_PENDING:
            log.warning("closing %s: %d connections not logged in", logging_in[0].peer,
                        len(logging_in))  # fmt: skip
            logging_in[0].conn.close("too many connections not logged in")
            logging_in[0].pump()
        sessions = len(self.handlers) - len(logging_in)
        if sessions >= self.config.max_sessions:
            refusal = LoginStatus.OUT_OF_RESOURCES
            log.warning("refusing a login from %s: %d sessions open (--max-sessions %d)",
                        writer.get_extra_info("peername"), sessions,
                        self.config.max_sessions)  # fmt: skip
        try:
            tsih = self.sessions.reserve_tsih()
        except NoTsihLeft:
            writer.close()
            return
        handler = ConnectionHandler(self, reader, writer, tsih=tsih, refusal=refusal)
        self.handlers[handler] = None
        log.debug("connection from %s", handler.peer)
        try:
            await handler.run()
        finally:
            self.handlers.pop(handler, None)
            self.sessions.release_tsih(tsih)

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(TICK)
            now = loop.time()
            for handler in list(self.handlers):
                handler.tick(now)


def _log_failure(future: Any) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("LU work failed", exc_info=future.exception())
