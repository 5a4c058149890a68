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
    PR_HELPER_DATA_SIZE,
    Connection,
    ConnectionClosed,
    Features,
    ProtocolError,
    Request,
    Response,
    Role,
)

RECV_CHUNK = 65536


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
        self._sock: socket.socket | None = None
        self._conn: Connection | None = None
        self._lock = threading.Lock()  # QEMU's per-object mutex: one request at a time

    # -- connection --------------------------------------------------------------------------
    def connect(self) -> None:
        """Connect and handshake (read the helper's word first, then answer 0)."""
        self.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
            conn = Connection(Role.CLIENT)
            event = self._next(sock, conn)
            if not isinstance(event, Features):
                raise HelperConnectionError("helper closed the connection during the handshake")
            sock.sendall(conn.send(Features(0)))
        except BaseException:
            sock.close()
            raise
        self.helper_features = event.flags
        self._sock, self._conn = sock, conn

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = self._conn = None

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
            data = sock.recv(max(conn.bytes_needed, 1) if conn.bytes_needed else RECV_CHUNK)
            conn.receive_data(data)

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
            cdb_sent = False
            for attempt in range(2):
                try:
                    if self._sock is None:
                        self.connect()
                    assert self._sock is not None and self._conn is not None
                    wire = self._conn.send(request)
                    sent = self._sock.sendmsg(
                        [wire[:PR_HELPER_CDB_SIZE]],
                        [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fd.to_bytes(4, "little"))],
                    )
                    cdb_sent = True
                    if sent < PR_HELPER_CDB_SIZE:
                        self._sock.sendall(wire[sent:PR_HELPER_CDB_SIZE])
                    break
                except OSError:
                    self.close()
                    if attempt == 1:
                        raise
            assert self._sock is not None and self._conn is not None and cdb_sent
            try:
                if request.data:
                    self._sock.sendall(request.data)
                event = self._next(self._sock, self._conn)
            except (OSError, HelperConnectionError):
                self.close()
                raise
            if isinstance(event, ConnectionClosed) or not isinstance(event, Response):
                self.close()
                raise HelperConnectionError("helper closed the connection before answering")
            return Reply(event.status, event.sense, event.data)

    @staticmethod
    def _request(fd: int, cdb: bytes, data_out: bytes, allocation_length: int | None) -> Request:
        if not 1 <= len(cdb) <= PR_HELPER_CDB_SIZE:
            raise InvalidRequest(f"CDB length {len(cdb)} outside 1..{PR_HELPER_CDB_SIZE}")
        try:
            request = Request.build(cdb, data_out, fd)
        except ProtocolError as e:
            raise InvalidRequest(str(e)) from e
        if allocation_length is not None and request.allocation_length > min(
            allocation_length, PR_HELPER_DATA_SIZE
        ):
            raise InvalidRequest(
                f"ALLOCATION LENGTH {request.allocation_length} exceeds the data-in buffer "
                f"({allocation_length})"
            )
        return request
