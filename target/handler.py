"""One TCP connection of the target: its socket, its ``TargetConnection``, its commands.

``ConnectionHandler.run`` feeds the socket's bytes to the sans-IO connection and writes back
what it queues (``pump``); the events become work: a login registers the session (its I_T
nexus), a command runs on the LUs in the server's one worker thread (``Flight``), a task
management function goes to ``task_management``, the end of the session is an I_T nexus loss
on every LU. Nothing the initiator sends can raise out of here: the codec turns protocol errors
into Rejects and login failures, the model turns every CDB into a SCSI answer.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Coroutine
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from scsi_pr.sim.constants import INTERNAL_TARGET_FAILURE, SenseKey
from scsi_pr.sim.describe import describe
from scsi_pr.sim.nexus import ITNexus
from scsi_pr.sim.result import CommandResult
from scsi_pr.target import task_management
from scsi_pr.target.lus import Answer
from scsi_pr.target.proto import (
    CLOSED,
    NEED_DATA,
    CommandReceived,
    ConnectionClosed,
    LocalProtocolError,
    LoginCompleted,
    LoginStatus,
    LogoutReceived,
    Rejected,
    TargetConnection,
    TaskManagementReceived,
)
from scsi_pr.target.sessions import Session, nexus_of

if TYPE_CHECKING:
    from scsi_pr.target.server import TargetServer

log = logging.getLogger("scsi_pr.target")
READ_SIZE = 256 << 10
CLOSE_TIMEOUT = 5.0  # seconds a closing socket may take to flush before it is cut


@dataclass(eq=False)
class Flight:
    """A command handed to the LUs and not answered yet."""

    event: CommandReceived
    aborted: bool = False  # read by the worker thread before it runs the command
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # ends a stall early
    task: asyncio.Task[None] | None = None

    def abort(self) -> None:
        self.aborted = True
        self.wake.set()


def peer_name(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = f"[{address[0]}]" if ":" in str(address[0]) else address[0]
        return f"{host}:{address[1]}"
    return str(address)


class ConnectionHandler:
    """See the module docstring; ``end`` is how others end its session."""

    def __init__(
        self,
        server: TargetServer,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        tsih: int,
        refusal: LoginStatus | None = None,
    ) -> None:
        self.server, self.reader, self.writer = server, reader, writer
        self.peer = peer_name(writer.get_extra_info("peername"))
        self.conn = TargetConnection(
            server.connection_settings(writer.get_extra_info("sockname")),
            tsih=tsih,
            random_bytes=secrets.token_bytes,
            existing_sessions=server.sessions.live,
            now=asyncio.get_running_loop().time(),
            refusal=refusal,
        )
        self.session: Session | None = None
        self.flights: dict[int, Flight] = {}
        self._jobs: set[asyncio.Task[None]] = set()
        self._closing_since = 0.0
        self._handlers: dict[type, Callable[[Any], None]] = {
            LoginCompleted: self._logged_in,
            CommandReceived: self._command,
            TaskManagementReceived: self._task_management,
            LogoutReceived: self._logout,
            Rejected: self._rejected,
            ConnectionClosed: self._closed,
        }

    @property
    def nexus(self) -> ITNexus | None:
        return None if self.session is None else self.session.nexus

    # -- the socket -------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            while not self.conn.should_close:
                try:
                    data = await self.reader.read(READ_SIZE)
                except OSError:  # reset by peer and friends: the stream has ended
                    data = b""
                self.conn.receive_data(data)
                self.pump()
                with suppress(OSError):
                    await self.writer.drain()
        finally:
            self.end("connection handler stopped")
            self.pump()
            await self._close_socket()

    def pump(self) -> None:
        """Act on every event the connection has, then hand its bytes to the socket."""
        conn = self.conn
        while (event := conn.next_event()) is not NEED_DATA and event is not CLOSED:
            self._handlers[type(event)](event)
        out = conn.data_to_send()
        if out and not self.writer.is_closing():
            self.writer.write(out)
        if conn.should_close and not self.writer.is_closing():
            self.writer.close()  # flushes what is written, then ends the read loop

    async def _close_socket(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), CLOSE_TIMEOUT)
        except (OSError, TimeoutError):
            self.writer.transport.abort()
        for job in list(self._jobs):
            job.cancel()

    def tick(self, now: float) -> None:
        self.conn.tick(now)
        self.pump()
        if self.writer.is_closing():
            # A peer that stops reading keeps a closing socket (and our drain) waiting forever.
            self._closing_since = self._closing_since or now
            if now - self._closing_since > CLOSE_TIMEOUT:
                self.writer.transport.abort()

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._jobs.add(task)
        task.add_done_callback(self._job_done)
        return task

    def _job_done(self, task: asyncio.Task[None]) -> None:
        self._jobs.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: internal error", self.peer, exc_info=task.exception())
            self.end("internal error")

    # -- the session ------------------------------------------------------------------------
    def end(self, reason: str, *, loss: bool = True) -> None:
        """End the session (an I_T nexus loss unless ``loss`` is False) and the connection."""
        self._end_session(reason, loss=loss)
        self.conn.close(reason)
        self.pump()

    def _end_session(self, reason: str, *, loss: bool = True) -> None:
        for flight in self.flights.values():
            flight.abort()  # nobody will take their answers
        session = self.session
        if session is None or session.ended:
            return
        session.ended = True
        self.server.sessions.remove(session)
        if session.nexus is not None and loss:
            log.info("I_T nexus loss: %s (%s)", session, reason)
            self.server.submit(self.server.lus.nexus_loss, session.nexus)

    def _logged_in(self, event: LoginCompleted) -> None:
        params = event.parameters
        # the login refused names a TransportID cannot carry (proto.login), so this builds
        nexus = nexus_of(params, self.server.config.target_port)
        self.session = session = Session(params, nexus, self, self.peer)
        old = self.server.sessions.add(session)
        if nexus is not None:  # before any command of the session: the worker runs in order
            self.server.submit(self.server.lus.attach, nexus)
        digests = f"header {(params.header_digest and 'CRC32C') or 'None'}, data " + (
            "CRC32C" if params.data_digest else "None"
        )
        log.info("login: %s (%s session, %s digest)", session, params.session_type, digests)
        if old is not None:
            log.info("session reinstatement: %s replaces TSIH %s", session, old.params.tsih)
            old.owner.end("session reinstated by a new login")

    def _logout(self, event: LogoutReceived) -> None:
        log.info("logout: %s", self.session or self.peer)
        # The session (the I_T nexus) is over: SAM-5 6.3.4, with its SPC-2 reservation.
        self._end_session("logout")

    def _rejected(self, event: Rejected) -> None:
        error = event.error
        log.warning("%s: %s: %s", self.session or self.peer, type(error).__name__, error)

    def _closed(self, event: ConnectionClosed) -> None:
        log.info("connection closed: %s: %s", self.session or self.peer, event.reason)
        self._end_session(event.reason)

    # -- commands ---------------------------------------------------------------------------
    def _command(self, event: CommandReceived) -> None:
        flight = Flight(event)
        self.flights[event.initiator_task_tag] = flight
        flight.task = self.spawn(self._execute(flight))

    async def _execute(self, flight: Flight) -> None:
        event, nexus = flight.event, self.nexus
        assert nexus is not None  # the codec takes commands in normal sessions only
        try:
            answer = await self.server.run_on_one_lu(self._run_command, flight, nexus)
        except Exception:  # a broken state dir must still look like a SCSI answer
            log.exception("%s: command %s failed", self.session, event.cdb[:1].hex())
            failure = CommandResult.check_condition(
                SenseKey.HARDWARE_ERROR, INTERNAL_TARGET_FAILURE
            )
            answer = Answer(failure)
        if log.isEnabledFor(logging.DEBUG):  # which nexus saw which answer (a lost UA's trail)
            told = "aborted before it ran" if answer is None else str(answer.result)
            log.debug("command: %s lun %s %s -> %s%s", self.session, event.lun,
                      describe(event.cdb, event.data), told,
                      " (aborted: not delivered)" if flight.aborted else "")  # fmt: skip
        if answer is not None and answer.result.stall and not flight.aborted:
            with suppress(TimeoutError):
                await asyncio.wait_for(flight.wake.wait(), answer.result.stall)
        itt = event.initiator_task_tag
        if self.flights.get(itt) is flight:
            del self.flights[itt]
        try:
            if flight.aborted or answer is None:
                self.conn.abort_command(itt)
            else:
                result = answer.result
                self.conn.complete_command(itt, int(result.status), data=result.data,
                                           sense=result.sense,
                                           transferred=answer.transferred)  # fmt: skip
        except LocalProtocolError:  # the session ended (logout) while it ran
            pass
        self.pump()

    def _run_command(self, flight: Flight, nexus: ITNexus) -> Answer | None:
        """In the worker thread: an aborted command that has not started never runs."""
        if flight.aborted:
            return None
        event = flight.event
        return self.server.lus.execute(event.lun, nexus, event.cdb, event.data, event.write)

    def abort_flights(self, lun: int | None) -> list[Flight]:
        """Abort this connection's commands on ``lun`` (None: every LUN)."""
        hit = [f for f in self.flights.values() if lun is None or f.event.lun == lun]
        for flight in hit:
            flight.abort()
        return hit

    def abort_collecting(self, lun: int | None) -> bool:
        """Abort this connection's writes still collecting data, and its commands waiting
        behind a CmdSN gap, on ``lun`` (None: every LUN) for another session's function;
        whether there were any."""
        aborted = self.conn.abort_collecting(lun)
        self.pump()
        return bool(aborted)

    # -- task management --------------------------------------------------------------------
    def _task_management(self, event: TaskManagementReceived) -> None:
        self.spawn(self._apply(event))

    async def _apply(self, event: TaskManagementReceived) -> None:
        response, after = await task_management.apply(self, event)
        function = task_management.name(event.function)
        log.info("task management: %s %s -> %s", self.session, function, response.name)
        with suppress(LocalProtocolError):  # the session ended meanwhile
            self.conn.complete_task_management(event.initiator_task_tag, response)
        self.pump()
        if after is not None:
            after()
