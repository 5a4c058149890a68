"""The one class users touch: a sans-IO qemu-pr-helper connection for either side.

Bytes (and received fds) go in through ``receive_data``; ``next_event`` returns events or
``NEED_DATA``; ``send`` turns an event into bytes. No socket, no ``os``: the I/O edge owns
descriptors and closes the ones ``release_fds`` hands back.

File descriptors: SCM_RIGHTS data arrives with a chunk of bytes, so ``receive_data(data, fds)``
pins the fds to the stream offset where that chunk begins. qemu-pr-helper accepts fds only
while it reads a request's 16 CDB bytes (its handshake and PR OUT data reads pass no control
buffer, so the kernel drops fds sent then). To reproduce that exactly, the edge must never read
more than ``bytes_needed`` at once: then a chunk never straddles two frame parts.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Final

from scsi_pr.helper.proto import errors
from scsi_pr.helper.proto.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from scsi_pr.helper.proto.events import (
    FEATURES_SIZE,
    PR_HELPER_CDB_SIZE,
    PR_HELPER_DATA_SIZE,
    PR_OPCODES,
    RESPONSE_HEADER_SIZE,
    ConnectionClosed,
    Event,
    Features,
    Request,
    Response,
    transfer_length,
)
from scsi_pr.helper.proto.readers import read_cdb, read_features, read_response_header, take
from scsi_pr.helper.proto.state import INITIAL_STATE, Role, State, next_state
from scsi_pr.helper.proto.writers import write_features, write_request, write_response
from scsi_pr.sim.constants import Opcode


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


class _Paused:
    def __repr__(self) -> str:
        return "PAUSED"


NEED_DATA: Final = _NeedData()
"""``next_event`` result: feed more bytes with ``receive_data``."""
PAUSED: Final = _Paused()
"""``next_event`` result: it is this side's turn to ``send``; nothing is read meanwhile."""

_PR_OUT = int(Opcode.PERSISTENT_RESERVE_OUT)  # a plain int: compared once per request
# The members read for every frame part, as module globals: reading a member off its Enum
# class costs several times a global's lookup, and under TCG every step of the request path
# shows in the helper's round trip (docs/performance.md).
_HELPER = Role.HELPER
_IDLE, _CLOSED, _ERROR = State.IDLE, State.CLOSED, State.ERROR
_AWAIT_FEATURES, _AWAIT_PROUT_DATA = State.AWAIT_FEATURES, State.AWAIT_PROUT_DATA
_AWAIT_RESPONSE = State.AWAIT_RESPONSE
SUPPORTED_FEATURES = 0  # no feature is defined in released QEMU (protocol note 1.2)


class Connection:
    """One end of one helper socket. ``Connection(Role.HELPER)`` is what the daemon runs."""

    def __init__(self, role: Role, supported_features: int = SUPPORTED_FEATURES) -> None:
        self.role = role
        self.state = INITIAL_STATE[role]
        self.supported_features = supported_features
        self.peer_features: int | None = None
        self.pending: Request | None = None  # the request being answered / awaited
        self._buf = bytearray()
        self._eof = False
        self._received = 0  # stream offset of the next byte to arrive
        self._consumed = 0  # stream offset of the next byte to parse
        self._fd_queue: deque[tuple[int, list[int]]] = deque()  # (chunk offset, fds)
        self._request_fds: list[int] = []
        self._discarded: list[int] = []
        self._pending_cdb: bytes | None = None
        self._pending_length = 0  # its transfer length, read once
        self._error: ProtocolError | None = None
        # Dispatch tables, built once: next_event and bytes_needed run for every frame part.
        self._parsers = {
            (Role.HELPER, State.AWAIT_FEATURES): self._parse_features,
            (Role.CLIENT, State.AWAIT_FEATURES): self._parse_features,
            (Role.HELPER, State.IDLE): self._parse_cdb,
            (Role.HELPER, State.AWAIT_PROUT_DATA): self._parse_prout_data,
            (Role.CLIENT, State.AWAIT_RESPONSE): self._parse_response,
            (Role.CLIENT, State.IDLE): self._parse_idle_client,
        }

    # -- input -------------------------------------------------------------------------------
    def receive_data(self, data: bytes, fds: Iterable[int] = ()) -> None:
        """Buffer ``data`` (``b""`` = EOF) and the fds that arrived with it."""
        fds = list(fds)
        if self._eof and (data or fds):
            self._discarded.extend(fds)
            raise LocalProtocolError("data received after EOF")
        if fds:
            self._fd_queue.append((self._received, fds))
        if not data:
            self._eof = True
        self._buf += data
        self._received += len(data)

    @property
    def bytes_needed(self) -> int:
        """How many bytes complete the frame part being read (0 when nothing is being read)."""
        state = self.state
        if state is _IDLE:
            want = PR_HELPER_CDB_SIZE if self.role is _HELPER else 0
        elif state is _AWAIT_FEATURES:
            want = FEATURES_SIZE
        elif state is _AWAIT_PROUT_DATA:
            want = self._pending_length
        elif state is _AWAIT_RESPONSE:
            want = self._response_size()
        else:
            want = 0
        return max(want - len(self._buf), 0) if want else 0

    @property
    def accepts_fds(self) -> bool:
        """Whether the part being read may carry fds: only a request's CDB bytes (qemu-pr-helper
        passes a control buffer only for those). The edge reads every other part without one,
        so the kernel drops fds sent with it (a client cannot make the helper hold them)."""
        return self.role is _HELPER and self.state is _IDLE

    def next_event(self) -> Event | _NeedData | _Paused:
        """Parse the next event from the buffer, or return ``NEED_DATA`` / ``PAUSED``."""
        if self._error is not None:
            raise self._error
        if self.state is _CLOSED:
            return ConnectionClosed()
        try:
            event = self._parse()
        except LocalProtocolError as e:
            # Whatever fails validation while *reading* is the peer's fault.
            self._fail(RemoteProtocolError(str(e)))
            raise self._error from e  # type: ignore[misc]
        except RemoteProtocolError as e:
            self._fail(e)
            raise
        if event is PAUSED:
            return PAUSED
        if event is NEED_DATA:
            if self._eof:
                self._fail(errors.ShortRead(self._short_read_reason()))
                raise self._error  # type: ignore[misc]
            return NEED_DATA
        assert not isinstance(event, (_NeedData, _Paused))  # a tuple: `A | B` is built per call
        self.state = next_state(self.role, self.state, type(event), "recv")
        return event

    # -- output ------------------------------------------------------------------------------
    def send(self, event: Features | Request | Response) -> bytes:
        """Bytes for ``event``; refuses events the state or QEMU's assertions forbid."""
        if self._error is not None:
            raise LocalProtocolError(f"connection is in ERROR: {self._error}")
        # A subclass sends as its frame (an executor's Reply is a Response).
        if isinstance(event, Response):
            new_state = next_state(self.role, self.state, Response, "send")
            self._check_response(event)
            self.pending = None
            data = write_response(event)
        elif isinstance(event, Request):
            new_state = next_state(self.role, self.state, Request, "send")
            self.pending = event
            data = write_request(event)
        else:
            new_state = next_state(self.role, self.state, type(event), "send")
            data = write_features(event)
        self.state = new_state
        return data

    def release_fds(self) -> list[int]:
        """Fds the edge must close now: extras, fds sent outside a CDB, all of them on error."""
        out, self._discarded = self._discarded, []
        if self.state in (_ERROR, _CLOSED):
            out += self._request_fds
            self._request_fds = []
            for _, fds in self._fd_queue:
                out += fds
            self._fd_queue.clear()
        return out

    def abandon(self) -> list[int]:
        """The edge is done with this connection, in whatever state (EOF, reset, I/O error,
        idle timeout, cancellation): every fd the codec still holds, for the edge to close.

        Why this exists: fds pinned to a partial frame (a CDB cut short, a PR OUT without its
        parameter list) belong to no request yet; if the edge stops reading for any reason but
        a protocol error, only this hands them back. A ``Request`` already returned by
        ``next_event`` is the edge's to close. Later use of the connection is refused.
        """
        out = self._discarded + self._request_fds
        for _, fds in self._fd_queue:
            out += fds
        self._discarded, self._request_fds = [], []
        self._fd_queue.clear()
        self._pending_cdb = None
        if self.state not in (_CLOSED, _ERROR):
            self._fail(LocalProtocolError(f"connection abandoned in state {self.state.value}"))
        return out

    @property
    def buffered(self) -> int:
        """Bytes received but not yet parsed: never more than one frame part when the edge
        reads only ``bytes_needed``."""
        return len(self._buf)

    # -- internals ---------------------------------------------------------------------------
    def _fail(self, error: ProtocolError) -> None:
        self._error = error
        self.state = _ERROR

    def _consume(self, n: int) -> bytes | None:
        part = take(self._buf, n)
        if part is not None:
            self._consumed += n
        return part

    def _claim_fds(self, start: int, end: int, keep: bool) -> None:
        """Move fds pinned to offsets before ``end``: those from [start, end) into the request
        if ``keep``; all others are discarded, as the kernel drops them for QEMU."""
        while self._fd_queue and self._fd_queue[0][0] < end:
            offset, fds = self._fd_queue.popleft()
            if keep and offset >= start:
                self._request_fds += fds
            else:
                self._discarded += fds

    def _parse(self) -> Event | _NeedData | _Paused:
        parser = self._parsers.get((self.role, self.state))
        # Our turn to send: bytes the peer sent early wait, as in qemu-pr-helper.
        return PAUSED if parser is None else parser()

    def _parse_features(self) -> Event | _NeedData:
        start = self._consumed
        flags = read_features(self._buf)
        if flags is None:
            return NEED_DATA
        self._consumed += FEATURES_SIZE
        self._claim_fds(start, self._consumed, keep=False)
        self.peer_features = flags
        if self.role is _HELPER and flags & ~self.supported_features:
            raise errors.UnsupportedFeatures(f"client requested unsupported features {flags:#010x}")
        return Features(flags)

    def _parse_idle_client(self) -> Event | _NeedData:
        if self._buf:
            raise errors.UnsolicitedData("helper sent bytes without a request")
        return ConnectionClosed() if self._eof else NEED_DATA

    def _parse_cdb(self) -> Event | _NeedData:
        if not self._buf:
            if not self._eof:
                return NEED_DATA  # between requests: nothing received, no fd pinned
            self._claim_fds(0, self._received + 1, keep=False)
            return ConnectionClosed()
        start = self._consumed
        # qemu-pr-helper refuses a second fd as soon as it arrives, even mid-CDB.
        self._claim_fds(start, min(self._received, start + PR_HELPER_CDB_SIZE), keep=True)
        count = len(self._request_fds)
        if count > 1:
            raise errors.TooManyFileDescriptors(f"{count} file descriptors in one request")
        cdb = read_cdb(self._buf)
        if cdb is None:
            return NEED_DATA
        self._consumed += PR_HELPER_CDB_SIZE
        if not self._request_fds:
            raise errors.MissingFileDescriptor("No file descriptor in request.")
        if cdb[0] not in PR_OPCODES:
            raise errors.UnsupportedOpcode("Invalid CDB, closing socket.")
        length = transfer_length(cdb)
        if length > PR_HELPER_DATA_SIZE:
            raise errors.TransferTooLong(f"transfer length {length} exceeds {PR_HELPER_DATA_SIZE}")
        self._pending_cdb = cdb
        self._pending_length = length
        if cdb[0] == _PR_OUT:
            self.state = _AWAIT_PROUT_DATA
            return self._parse_prout_data()
        return self._finish_request(b"")

    def _parse_prout_data(self) -> Event | _NeedData:
        assert self._pending_cdb is not None
        start = self._consumed
        data = self._consume(self._pending_length)
        if data is None:
            return NEED_DATA
        self._claim_fds(start, self._consumed, keep=False)
        return self._finish_request(data)

    def _finish_request(self, data: bytes) -> Request:
        assert self._pending_cdb is not None
        (fd,) = self._request_fds
        self._request_fds = []
        request = Request.parsed(self._pending_cdb, data, fd, self._pending_length)
        self._pending_cdb = None
        self.pending = request
        return request

    def _response_size(self) -> int:
        header = read_response_header(self._buf)
        if header is None:
            return RESPONSE_HEADER_SIZE
        return RESPONSE_HEADER_SIZE + max(header[1], 0)

    def _parse_response(self) -> Event | _NeedData:
        assert self.pending is not None
        header = read_response_header(self._buf)
        if header is None:
            return NEED_DATA
        status, sz, sense = header
        limit = self.pending.allocation_length
        if sz < 0 or sz > limit:
            # QEMU would abort on its assertion; we refuse the reply instead.
            raise errors.ResponseTooLong(f"response sz={sz} outside 0..{limit}")
        frame = self._consume(RESPONSE_HEADER_SIZE + sz)
        if frame is None:
            return NEED_DATA
        self.pending = None
        return Response(status, sense, frame[RESPONSE_HEADER_SIZE:])

    def _check_response(self, event: Response) -> None:
        """Refuse replies that trip QEMU's assertions in ``prh_write_response``."""
        request = self.pending
        assert request is not None
        if request.is_pr_out or event.status != 0:
            if event.data:
                raise LocalProtocolError("only a GOOD PR IN reply may carry data (QEMU asserts)")
        elif len(event.data) > request.allocation_length:
            raise LocalProtocolError(
                f"{len(event.data)} bytes of data-in exceed ALLOCATION LENGTH "
                f"{request.allocation_length}"
            )

    def _short_read_reason(self) -> str:
        return f"connection closed mid-frame in state {self.state.value} ({len(self._buf)} bytes)"
