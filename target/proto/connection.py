"""The one class the I/O edge drives: a sans-IO iSCSI target connection (h11 style).

The edge feeds bytes in (``receive_data``, ``b""`` at end of stream), takes events out
(``next_event`` until ``NEED_DATA`` or ``CLOSED``), writes what ``data_to_send`` returns, calls
``tick(now)`` now and then (the time is passed in: it drives NOP-In pings of an idle initiator
and their timeout), and closes the socket once ``should_close`` is set and everything is sent.
An asyncio edge is one task per TCP connection::

    conn = TargetConnection(settings, tsih=..., random_bytes=secrets.token_bytes)
    while not conn.should_close:
        conn.receive_data(await reader.read(65536))
        while (event := conn.next_event()) not in (NEED_DATA, CLOSED):
            handle(event)   # execute CommandReceived, then conn.complete_command(...)
        writer.write(conn.data_to_send())

Login runs inside (``Login``); after it, ``FullFeatureSession`` handles the PDUs. Every
protocol violation becomes the Reject or login failure RFC 7143 asks for, plus a ``Rejected``
event for the log; only unrecoverable ones close the connection, never an exception to the edge.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass
from enum import Enum

from scsi_pr.target.proto.constants import (
    DEFAULT_MAX_TRANSFER,
    LoginStatus,
    TaskManagementResponseCode,
)
from scsi_pr.target.proto.discovery import Portal
from scsi_pr.target.proto.errors import RemoteProtocolError
from scsi_pr.target.proto.events import (
    ConnectionClosed,
    Event,
    LoginCompleted,
    LogoutReceived,
    Rejected,
)
from scsi_pr.target.proto.framer import (
    CLOSED,
    NEED_DATA,
    DataDigestError,
    Framer,
    UnsupportedOpcode,
    WrongDirection,
)
from scsi_pr.target.proto.layout import Pdu
from scsi_pr.target.proto.login import Login, LoginFailed, LoginSettings, LoginState
from scsi_pr.target.proto.pdus import LoginRequest, Reject
from scsi_pr.target.proto.session import FullFeatureSession


class ConnectionState(Enum):
    LOGIN = "login"
    FULL_FEATURE_PHASE = "full feature phase"
    CLOSING = "closing"  # send what is queued, then close
    CLOSED = "closed"  # the peer closed


@dataclass(frozen=True)
class ConnectionSettings:
    """The login settings plus what the full feature phase needs from the configuration."""

    login: LoginSettings
    portals: tuple[Portal, ...] = ()
    nop_interval: float = 15.0  # seconds of silence before the target pings (11.19)
    nop_timeout: float = 30.0  # seconds a ping may stay unanswered before the connection ends
    login_timeout: float = 30.0  # seconds from connect to full feature phase
    #: seconds a write waiting for data may go without a Data-Out before the connection ends
    #: (ErrorRecoveryLevel 0 cannot recover a lost Data-Out; LIO does the same after its
    #: dataout_timeout, 3 s by default: ours is as long as a ping may go unanswered)
    data_out_timeout: float = 30.0
    max_write_length: int = DEFAULT_MAX_TRANSFER  # the largest write this target buffers
    max_immediate: int = 8  # immediate commands pending at once (11.17.1 reason 0x06)


class TargetConnection:
    """One TCP connection of the target, from the first Login Request to its close."""

    def __init__(
        self,
        settings: ConnectionSettings,
        *,
        tsih: int,
        random_bytes: Callable[[int], bytes],
        existing_sessions: Collection[int] = (),
        now: float = 0.0,
        refusal: LoginStatus | None = None,
    ) -> None:
        self.settings = settings
        self.state = ConnectionState.LOGIN
        self.login = Login(settings.login, tsih=tsih, random_bytes=random_bytes,
                           existing_sessions=existing_sessions)  # fmt: skip
        self.session: FullFeatureSession | None = None
        self._framer = Framer()
        self._out = bytearray()
        self._events: deque[Event] = deque()
        self._received = False
        self._last_activity = self._started = now
        self._data_wait: tuple[int, float] | None = None  # (Data-Outs taken, since when)
        #: the edge is out of room (e.g. too many sessions): fail the first login request
        self._refusal = refusal

    # -- the edge's interface ---------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Bytes from the socket; ``b""`` when the peer closed it."""
        if self.state is ConnectionState.CLOSED:
            return
        self._framer.receive_data(data)
        self._received = True

    def next_event(self) -> Event | object:
        """The next event, or ``NEED_DATA`` (feed bytes), or ``CLOSED`` (nothing more comes)."""
        while not self._events:
            if self.should_close:
                return CLOSED
            try:
                pdu = self._framer.next_pdu()
            except RemoteProtocolError as e:
                self._refuse(e)
                continue
            if pdu is NEED_DATA:
                return NEED_DATA
            if pdu is CLOSED:
                self._close("the initiator closed the connection", peer=True)
                continue
            assert isinstance(pdu, Pdu)
            try:
                self._dispatch(pdu)
            except RemoteProtocolError as e:
                self._refuse(e.with_header(e.header or pdu.bhs()))
        return self._events.popleft()

    def data_to_send(self) -> bytes:
        """Everything queued for the socket since the last call."""
        out, self._out = bytes(self._out), bytearray()
        return out

    @property
    def should_close(self) -> bool:
        """Close the socket once ``data_to_send`` is drained."""
        return self.state in (ConnectionState.CLOSING, ConnectionState.CLOSED)

    def complete_command(self, itt: int, status: int, *, data: bytes = b"",
                         sense: bytes = b"", transferred: int | None = None) -> None:  # fmt: skip
        """The reply to a ``CommandReceived``: read data, SCSI status, sense (see session)."""
        if self.session is not None and not self.should_close:
            self.session.complete_command(itt, status, data=data, sense=sense,
                                          transferred=transferred)  # fmt: skip

    def abort_command(self, itt: int) -> None:
        """A ``CommandReceived`` that a task management function aborted: no reply."""
        if self.session is not None and not self.should_close:
            self.session.abort_command(itt)

    def abort_collecting(self, lun: int | None) -> list[int]:
        """Another session's LUN- or target-wide function: end this session's writes still
        collecting data on ``lun`` (None: every LUN) and its commands waiting behind a CmdSN
        gap there, without replies. Their ITTs."""
        if self.session is not None and not self.should_close:
            return self.session.abort_collecting(lun)
        return []

    def complete_task_management(self, itt: int, response: TaskManagementResponseCode) -> None:
        """The reply to a ``TaskManagementReceived``."""
        if self.session is not None and not self.should_close:
            self.session.complete_task_management(itt, response)

    def tick(self, now: float) -> None:
        """Advance time: ping an idle initiator, end the connection if a ping goes unanswered,
        the login takes too long or a write's data stop coming."""
        if self._received:
            self._received, self._last_activity = False, now
        session = self.session
        if self.should_close:
            return
        if session is None:
            if now - self._started >= self.settings.login_timeout:
                self._close(f"login not complete within {self.settings.login_timeout} s")
            return
        if self._data_stalled(session, now):
            self._close(f"a write got no Data-Out for {self.settings.data_out_timeout} s")
        elif session.ping is not None:
            if now - session.ping[1] >= self.settings.nop_timeout:
                self._close(f"no NOP-Out answered our ping within {self.settings.nop_timeout} s")
        elif now - self._last_activity >= self.settings.nop_interval:
            session.send_ping(now)

    def _data_stalled(self, session: FullFeatureSession, now: float) -> bool:
        """Whether writes have waited for data ``data_out_timeout`` with no Data-Out coming."""
        if not session.waiting_for_data:
            self._data_wait = None
            return False
        if self._data_wait is None or self._data_wait[0] != session.data_outs:
            self._data_wait = (session.data_outs, now)
            return False
        return now - self._data_wait[1] >= self.settings.data_out_timeout

    def close(self, reason: str) -> None:
        """The edge ends the connection (e.g. a newer login reinstated this session)."""
        self._close(reason)

    # -- inside -------------------------------------------------------------------------------
    def _send(self, pdu: Pdu) -> None:
        self._out += self._framer.send(pdu)

    def _close(self, reason: str, *, peer: bool = False, clean: bool = False) -> None:
        if self.should_close:
            return
        self.state = ConnectionState.CLOSED if peer else ConnectionState.CLOSING
        self._events.append(ConnectionClosed(reason, clean))

    def _emit(self, event: Event) -> None:
        self._events.append(event)
        if isinstance(event, LogoutReceived):
            self._close("logout", clean=True)

    def _dispatch(self, pdu: Pdu) -> None:
        if self.state is ConnectionState.LOGIN:
            if not isinstance(pdu, LoginRequest):
                raise LoginFailed(LoginStatus.INVALID_DURING_LOGIN, f"{type(pdu).__name__}")
            self._login_step(pdu)
        elif self.session is not None:  # (never called once closing: next_event stops first)
            self.session.receive(pdu)

    def _login_step(self, request: LoginRequest) -> None:
        if self._refusal is not None:
            error = LoginFailed(self._refusal, "refused by the target")
            self._send(self.login.fail(error, request))
        else:
            self._send(self.login.receive(request))
        if self.login.state is LoginState.FAILED:
            assert self.login.error is not None
            self._events.append(Rejected(self.login.error))
            self._close(f"login failed: {self.login.error}")
        elif self.login.state is LoginState.COMPLETE:
            self._start_full_feature_phase()

    def _start_full_feature_phase(self) -> None:
        params = self.login.parameters
        assert params is not None
        login = self.settings.login
        self._framer.set_digests(params.header_digest, params.data_digest)  # 13.1: from now on
        self._framer.max_recv_data_segment_length = params.target_max_recv_data_segment_length
        self.session = FullFeatureSession(
            params,
            stat_sn=self.login.stat_sn,
            exp_cmd_sn=self.login.exp_cmd_sn,
            command_window=login.command_window,
            max_immediate=self.settings.max_immediate,
            max_write_length=self.settings.max_write_length,
            targets=login.targets,
            portals=self.settings.portals,
            send=self._send,
            emit=self._emit,
            refuse=self._refuse,
        )
        self.state = ConnectionState.FULL_FEATURE_PHASE
        self._events.append(LoginCompleted(params))

    def _refuse(self, error: RemoteProtocolError) -> None:
        """Answer a protocol violation as the RFC asks; see the errors of ``framer``."""
        self._events.append(Rejected(error))
        if self.state is ConnectionState.LOGIN:  # 11.13.5: a login failure, never a Reject
            if isinstance(error, LoginFailed) or not error.close_connection:
                if not isinstance(error, LoginFailed):
                    wrong_pdu = isinstance(error, (UnsupportedOpcode, WrongDirection))
                    status = (LoginStatus.INVALID_DURING_LOGIN if wrong_pdu
                              else LoginStatus.INITIATOR_ERROR)  # fmt: skip
                    error = LoginFailed(status, str(error))
                if self.login.state is LoginState.IN_PROGRESS:
                    self._send(self.login.fail(error))
            self._close(f"login failed: {error}")
            return
        session = self.session
        if session is not None and error.reject_reason is not None and not self.should_close:
            numbers = session.numbers()
            self._send(Reject(reason=error.reject_reason, stat_sn=numbers.stat_sn,
                              exp_cmd_sn=numbers.exp_cmd_sn, max_cmd_sn=numbers.max_cmd_sn,
                              data=error.header[:48]))  # fmt: skip
            if isinstance(error, DataDigestError):
                length = int.from_bytes(error.header[5:8], "big") if error.header else 0
                try:
                    session.data_digest_error(error.pdu, length)
                except RemoteProtocolError as e:  # the lost PDU did not fit either: one Reject
                    self._events.append(Rejected(e))
        if error.close_connection:
            self._close(f"protocol error: {error}")
