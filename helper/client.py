"""What QEMU's ``pr-manager-helper`` does, in Python: connect, handshake, send a PR CDB with
the device fd (SCM_RIGHTS), the PR OUT parameter list, read the answer.

Like QEMU it checks the request locally first (CDB length, transfer length <= 8192 and <= the
data-in buffer), keeps one connection and one outstanding request per ``Client``, and retries
only before the CDB has been sent (QEMU up to 5 times with a 1 s pause; we reconnect once, at
once). Once the CDB is out, a broken connection fails the command: PR OUT is not idempotent.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType

from scsi_pr.helper.errors import HelperError
from scsi_pr.helper.executors.base import Reply
from scsi_pr.helper.proto import (
    NEED_DATA,
    PR_HELPER_CDB_SIZE,
    Connection,
    Features,
    ProtocolError,
    Request,
    Response,
    Role,
)


class HelperConnectionError(HelperError, ConnectionError):
    """The helper broke the protocol or went away mid-command."""


class InvalidRequest(HelperError, ValueError):
    """A request QEMU refuses locally (-EINVAL) before contacting the helper."""


class Client:
    """``Client(path).execute(fd, cdb, data_out=b"", allocation_length=None) -> Reply``."""

    def __init__(self, path: str, timeout: float | None = None) -> None:
        self.path = path
        self.timeout = timeout
        self.helper_features: int | None = None
        # the kept connection: its socket and the codec's state of it, set and cleared together
        self._link: tuple[socket.socket, Connection] | None = None
        self._lock = threading.Lock()  # QEMU's per-object mutex: one request at a time

    # -- connection --------------------------------------------------------------------------
    def connect(self) -> tuple[socket.socket, Connection]:
        """Connect and handshake (read the helper's word first, then answer 0)."""
        self.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
            conn = Connection(Role.CLIENT)
            event = self._next(sock, conn)
            assert isinstance(event, Features)  # the codec's only event here (EOF raises)
            sock.sendall(conn.send(Features(0)))
        except BaseException:
            sock.close()
            raise
        self.helper_features = event.flags
        self._link = sock, conn
        return self._link

    @property
    def connected(self) -> bool:
        return self._link is not None

    @property
    def kept_socket(self) -> socket.socket | None:
        """The kept connection's socket (None when not connected)."""
        return None if self._link is None else self._link[0]

    def close(self) -> None:
        if self._link is not None:
            self._link[0].close()
        self._link = None

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @staticmethod
    def _next(sock: socket.socket, conn: Connection) -> object:
        while True:
            try:
                event = conn.next_event()
            except ProtocolError as e:
                raise HelperConnectionError(f"helper protocol error: {e}") from e
            if event is not NEED_DATA:
                return event
            # never past the frame part: what follows it is no answer of ours
            conn.receive_data(sock.recv(max(conn.bytes_needed, 1)))

    # -- commands ----------------------------------------------------------------------------
    def execute(
        self,
        fd: int,
        cdb: bytes,
        data_out: bytes = b"",
        allocation_length: int | None = None,
    ) -> Reply:
        """Run one PERSISTENT RESERVE IN/OUT on ``fd`` through the helper.

        Raises InvalidRequest (a ValueError) for a request QEMU would refuse locally (-EINVAL),
        OSError / HelperConnectionError when the helper cannot be reached or breaks off.
        """
        request = self._request(fd, cdb, data_out, allocation_length)
        with self._lock:
            try:
                sock, conn = self._send_cdb(request)
            except OSError:
                # a kept connection found broken (the helper restarted): reconnect once, at once
                self.close()
                try:
                    sock, conn = self._send_cdb(request)
                except OSError:
                    self.close()
                    raise
            try:
                if request.data:
                    sock.sendall(request.data)
                event = self._next(sock, conn)
            except (OSError, HelperConnectionError):
                self.close()
                raise
            assert isinstance(event, Response)  # the codec's only event here (EOF raises)
            return Reply(event.status, event.sense, event.data)

    def _send_cdb(self, request: Request) -> tuple[socket.socket, Connection]:
        """Connect if need be and send the CDB frame with the fd. Until this returns nothing
        of the command has reached the helper, so a failure here may be retried."""
        sock, conn = self.connect() if self._link is None else self._link
        wire = conn.send(request)[:PR_HELPER_CDB_SIZE]
        sent = socket.send_fds(sock, [wire], [request.fd])  # SCM_RIGHTS, the fd a C int
        if sent < len(wire):
            sock.sendall(wire[sent:])
        return sock, conn

    @staticmethod
    def _request(fd: int, cdb: bytes, data_out: bytes, allocation_length: int | None) -> Request:
        if not 1 <= len(cdb) <= PR_HELPER_CDB_SIZE:
            raise InvalidRequest(f"CDB length {len(cdb)} outside 1..{PR_HELPER_CDB_SIZE}")
        try:
            request = Request.build(cdb, data_out, fd)
        except ProtocolError as e:
            raise InvalidRequest(str(e)) from e
        # (above PR_HELPER_DATA_SIZE the codec has refused it already)
        if allocation_length is not None and request.allocation_length > allocation_length:
            raise InvalidRequest(
                f"ALLOCATION LENGTH {request.allocation_length} exceeds the data-in buffer "
                f"({allocation_length})"
            )
        return request
