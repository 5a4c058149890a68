"""``scsi_pr.helper.client.Client`` in-process against a fake helper on a real Unix socket.

Why: the client is QEMU's side of the socket (the persist tool and the load tests use it), and
its decisions are easy to get wrong without any end-to-end test noticing: which failures it
retries (only before the CDB is out: PR OUT is not idempotent), what it refuses locally, how it
passes the fd, and when it drops the connection. The fake helper here serves each connection
with a scripted handler in a thread, speaking the protocol through the sans-IO
``Connection(Role.HELPER)`` or breaking it with raw bytes, and records exactly what arrived:
the client's handshake word, every request's bytes and the file behind each passed fd.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import tempfile
import termios
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from scsi_pr.helper.client import Client, HelperConnectionError, InvalidRequest
from scsi_pr.helper.errors import HelperError
from scsi_pr.helper.executors.base import Reply
from scsi_pr.helper.proto import (
    NEED_DATA,
    PR_HELPER_CDB_SIZE,
    PR_HELPER_DATA_SIZE,
    Connection,
    ConnectionClosed,
    Features,
    LocalProtocolError,
    Request,
    Response,
    ResponseTooLong,
    Role,
    ShortRead,
)
from scsi_pr.helper.unix_io import close_fds, recv_exactly, recv_with_fds
from scsi_pr.sim.cdb import persistent_reserve_in, persistent_reserve_out, pr_out_parameters

GUARD = 30.0  # seconds: only ever reached when a test is about to hang
READ_KEYS_16 = persistent_reserve_in(0, 16)
REGISTER = persistent_reserve_out(0, 24)
PARAMS = pr_out_parameters(0, 0x1122334455667788)
SENSE = bytes(range(1, 97))  # every byte distinct: a cut or shifted sense shows
CHECK_SENSE = bytes([0x70, 0, 0x05, 0, 0, 0, 0, 0x0A, 0, 0, 0, 0, 0x24]).ljust(96, b"\0")
KEYS = bytes(range(0xA0, 0xB0))  # 16 bytes of data-in

FileId = tuple[int, int]


def file_id(fd: int) -> FileId:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


@dataclass
class Received:
    """One request as the fake helper read it."""

    connection: int
    raw: bytes  # every byte of the request, CDB then parameter list
    request: Request
    files: list[FileId]  # the file behind each fd that came with it


@dataclass
class Served:
    """One accepted connection, as a handler sees it."""

    fake: FakeHelper
    sock: socket.socket
    index: int
    conn: Connection = field(default_factory=lambda: Connection(Role.HELPER))

    def handshake(self, features: int = 0) -> None:
        self.sock.sendall(self.conn.send(Features(features)))
        word = recv_exactly(self.sock, 4)
        self.fake.words.append(word)
        self.conn.receive_data(word)
        assert self.conn.next_event() == Features(0)

    def request(self) -> Received:
        received = self.next_request()
        assert received is not None, "the client closed instead of sending a request"
        return received

    def next_request(self) -> Received | None:
        """Read one request, never more than the codec needs (so fds stay with the CDB); None
        when the client closes between requests."""
        raw, fds = b"", []
        while (event := self.conn.next_event()) is NEED_DATA:
            data, got = recv_with_fds(self.sock, self.conn.bytes_needed)
            raw += data
            fds += got
            self.conn.receive_data(data, got)
        if isinstance(event, ConnectionClosed):
            return None
        assert isinstance(event, Request)
        files = [file_id(fd) for fd in fds]
        close_fds(fds)
        received = Received(self.index, raw, event, files)
        self.fake.requests.append(received)
        return received

    def answer(self, response: Response) -> None:
        self.sock.sendall(self.conn.send(response))

    def wait_eof(self) -> bool:
        """Whether the client closed its end (True) rather than sending more."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:  # closed with bytes of ours unread
            return True
        except TimeoutError:
            return False


Handler = Callable[[Served], None]


def serve(features: int = 0) -> Handler:
    """A helper that answers every request GOOD (data-in all zero) until the client closes."""

    def handler(s: Served) -> None:
        s.handshake(features)
        while (received := s.next_request()) is not None:
            length = received.request.allocation_length
            s.answer(Response(0, bytes(96), bytes(length)))

    return handler


class FakeHelper:
    """A listener on a real Unix socket; its thread serves the n-th connection with the n-th
    handler, and every connection beyond them with ``serve()``, one connection at a time."""

    def __init__(self, path: str, *handlers: Handler) -> None:
        self.path = path
        self.handlers = handlers
        self.accepted = 0
        self.words: list[bytes] = []
        self.requests: list[Received] = []
        self.errors: list[BaseException] = []
        self.done = [threading.Event() for _ in handlers]
        self._stop = threading.Event()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(8)
        self.listener.settimeout(0.05)  # how often the thread looks at _stop
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            index = self.accepted
            self.accepted += 1
            handler = self.handlers[index] if index < len(self.handlers) else serve()
            with sock:
                sock.settimeout(GUARD)
                try:
                    handler(Served(self, sock, index))
                except BaseException as e:  # reported by the fixture
                    self.errors.append(e)
            if index < len(self.done):
                self.done[index].set()

    def wait(self, index: int) -> None:
        """Wait until the handler of connection ``index`` has returned (its socket closed)."""
        assert self.done[index].wait(GUARD), f"handler {index} never finished"

    def stop(self) -> None:
        """The listener goes away: no further connection is accepted."""
        self._stop.set()
        self.thread.join(GUARD)
        self.listener.close()
        if os.path.exists(self.path):
            os.unlink(self.path)


@pytest.fixture
def sock_path() -> Iterator[str]:
    """A short path (sun_path holds 108 bytes; pytest's tmp_path can be longer)."""
    with tempfile.TemporaryDirectory(prefix="prc") as d:
        yield os.path.join(d, "h.sock")


@pytest.fixture
def fake(sock_path: str) -> Iterator[Callable[..., FakeHelper]]:
    made: list[FakeHelper] = []

    def start(*handlers: Handler) -> FakeHelper:
        made.append(FakeHelper(sock_path, *handlers))
        return made[-1]

    yield start
    for f in made:
        f.stop()
        assert not f.thread.is_alive()
        assert f.errors == []


@pytest.fixture
def device(tmp_path: Path) -> Iterator[int]:
    path = tmp_path / "lu.img"
    path.write_bytes(bytes(4096))
    fd = os.open(path, os.O_RDWR)
    yield fd
    os.close(fd)


# -- connection --------------------------------------------------------------------------------
def test_connect_reads_the_helpers_word_then_answers_zero(
    fake: Callable[..., FakeHelper], sock_path: str
) -> None:
    eof: list[bool] = []

    def handler(s: Served) -> None:
        s.sock.sendall(struct.pack(">I", 0x80000001))  # big-endian, both halves set
        s.fake.words.append(recv_exactly(s.sock, 5))  # 4 bytes, then the close
        eof.append(s.wait_eof())

    f = fake(handler)
    client = Client(sock_path, timeout=7.5)
    assert (client.path, client.timeout) == (sock_path, 7.5)
    assert not client.connected and client.helper_features is None
    client.connect()
    assert client.connected and client.helper_features == 0x80000001
    assert client.kept_socket is not None and client.kept_socket.gettimeout() == 7.5
    client.close()
    assert not client.connected
    f.wait(0)
    assert f.words == [b"\0\0\0\0"] and eof == [True]
    client.close()  # closing twice is harmless
    assert not client.connected


def test_without_a_timeout_the_socket_blocks(
    fake: Callable[..., FakeHelper], sock_path: str
) -> None:
    fake()
    with Client(sock_path) as client:
        assert client.timeout is None
        client.connect()
        assert client.kept_socket is not None and client.kept_socket.gettimeout() is None
        assert client.helper_features == 0


def test_connecting_again_closes_the_first_connection(
    fake: Callable[..., FakeHelper], sock_path: str
) -> None:
    eof: list[bool] = []

    def first(s: Served) -> None:
        s.handshake(1)
        eof.append(s.wait_eof())

    f = fake(first, serve(2))
    client = Client(sock_path, timeout=GUARD)
    client.connect()
    assert client.helper_features == 1
    client.connect()
    assert client.helper_features == 2 and client.connected
    f.wait(0)
    assert eof == [True] and f.accepted == 2
    client.close()


def test_the_context_manager_closes_the_connection(
    fake: Callable[..., FakeHelper], sock_path: str, device: int
) -> None:
    eof: list[bool] = []

    def handler(s: Served) -> None:
        s.handshake()
        s.request()
        s.answer(Response(0, bytes(96), bytes(16)))
        eof.append(s.wait_eof())

    f = fake(handler)
    client = Client(sock_path, timeout=GUARD)
    with client as entered:
        assert entered is client
        assert client.execute(device, READ_KEYS_16) == Reply(0, bytes(96), bytes(16))
        assert client.connected
    assert not client.connected
    f.wait(0)
    assert eof == [True]


# -- requests ----------------------------------------------------------------------------------
def test_pr_in_passes_the_padded_cdb_and_the_fd_and_returns_the_reply(
    fake: Callable[..., FakeHelper], sock_path: str, device: int
) -> None:
    held: list[bool] = []
    client = Client(sock_path, timeout=GUARD)

    def handler(s: Served) -> None:
        s.handshake()
        s.request()
        held.append(client._lock.locked())  # one request at a time: held while it runs
        s.answer(Response(0, SENSE, KEYS))
        s.wait_eof()

    f = fake(handler)
    reply = client.execute(device, READ_KEYS_16)
    assert type(reply) is Reply
    assert (reply.status, reply.sense, reply.data) == (0, SENSE, KEYS)
    assert not client._lock.locked() and held == [True]
    assert client.connected  # the connection is kept for the next request
    client.close()
    f.wait(0)
    (received,) = f.requests
    assert received.raw == READ_KEYS_16 + bytes(6)
    assert len(received.raw) == PR_HELPER_CDB_SIZE
    assert received.files == [file_id(device)]
    assert f.words == [bytes(4)]


def test_pr_out_sends_the_parameter_list_after_the_cdb(
    fake: Callable[..., FakeHelper], sock_path: str, device: int
) -> None:
    def handler(s: Served) -> None:
        s.handshake()
        s.request()
        s.answer(Response(2, CHECK_SENSE))

    f = fake(handler)
    with Client(sock_path, timeout=GUARD) as client:
        reply = client.execute(device, REGISTER, PARAMS, allocation_length=0)
    assert (reply.status, reply.sense, reply.data) == (2, CHECK_SENSE, b"")
    f.wait(0)
    (received,) = f.requests
    assert received.raw == REGISTER + bytes(6) + PARAMS
    assert received.request == Request(REGISTER + bytes(6), PARAMS, received.request.fd)
    assert received.files == [file_id(device)]


def test_requests_share_one_connection(
    fake: Callable[..., FakeHelper], sock_path: str, device: int, tmp_path: Path
) -> None:
    """Each request carries its own fd: the second names another file than the first."""
    other_path = tmp_path / "other.img"
    other_path.write_bytes(b"x")
    other = os.open(other_path, os.O_RDONLY)

    def handler(s: Served) -> None:
        s.handshake(7)
        s.request()
        s.answer(Response(0, SENSE, KEYS[:3]))
        s.request()
        s.answer(Response(0x18))
        s.request()
        s.answer(Response(0, bytes(96), KEYS))

    f = fake(handler)
    try:
        with Client(sock_path, timeout=GUARD) as client:
            assert client.execute(device, READ_KEYS_16) == Reply(0, SENSE, KEYS[:3])
            assert client.execute(other, REGISTER, PARAMS) == Reply(0x18)
            assert client.execute(device, READ_KEYS_16, allocation_length=16) == Reply(
                0, bytes(96), KEYS
            )
            assert client.helper_features == 7
    finally:
        os.close(other)
    f.wait(0)
    assert f.accepted == 1 and [r.connection for r in f.requests] == [0, 0, 0]
    assert [r.files for r in f.requests] == [
        [file_id(device)],
        [(os.stat(other_path).st_dev, os.stat(other_path).st_ino)],
        [file_id(device)],
    ]
    assert file_id(device) != f.requests[1].files[0]


def test_a_reply_sent_in_small_pieces_is_read_whole(
    fake: Callable[..., FakeHelper], sock_path: str, device: int
) -> None:
    def handler(s: Served) -> None:
        s.handshake()
        s.request()
        wire = s.conn.send(Response(0, SENSE, KEYS))
        for start, end in ((0, 1), (1, 5), (5, 8), (8, 50), (50, 104), (104, 105), (105, 120)):
            s.sock.sendall(wire[start:end])
        assert len(wire) == 120

    f = fake(handler)
    with Client(sock_path, timeout=GUARD) as client:
        assert client.execute(device, READ_KEYS_16) == Reply(0, SENSE, KEYS)
    f.wait(0)


def unread_by_peer(sock: socket.socket) -> int:
    """Bytes ``sock`` sent that its peer has not read yet (SIOCOUTQ)."""
    return int.from_bytes(fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, bytes(4)), "little")


def test_the_client_never_reads_past_its_reply(
    fake: Callable[..., FakeHelper], sock_path: str, device: int
) -> None:
    """The client asks the socket only for what the reply still needs: with the reply's last
    byte and one more byte waiting, it takes the last byte alone. The byte it left unread makes
    its close a reset for the helper; a client that read ahead would close cleanly."""
    seen: list[bytes | str] = []

    def handler(s: Served) -> None:
        s.handshake()
        s.request()
        wire = s.conn.send(Response(0, SENSE, KEYS))
        s.sock.sendall(wire[:-1])
        deadline = time.monotonic() + GUARD
        while unread_by_peer(s.sock):  # the client has taken all but the reply's last byte
            assert time.monotonic() < deadline, "the client never read the reply"
            time.sleep(0.001)
        s.sock.sendall(wire[-1:] + b"!")
        try:
            seen.append(s.sock.recv(1))
        except ConnectionResetError:
            seen.append("reset")

    f = fake(handler)
    with Client(sock_path, timeout=GUARD) as client:
        assert client.execute(device, READ_KEYS_16) == Reply(0, SENSE, KEYS)
    f.wait(0)
    assert seen == ["reset"]


def test_the_largest_reply_is_read_whole(
    fake: Callable[..., FakeHelper], sock_path: str, device: int
) -> None:
    data = bytes(i % 251 for i in range(PR_HELPER_DATA_SIZE))

    def handler(s: Served) -> None:
        s.handshake()
        s.request()
        s.answer(Response(0, SENSE, data))

    fake(handler)
    with Client(sock_path, timeout=GUARD) as client:
        cdb = persistent_reserve_in(1, PR_HELPER_DATA_SIZE)
        reply = client.execute(device, cdb, allocation_length=PR_HELPER_DATA_SIZE)
    assert reply == Reply(0, SENSE, data)


# -- retries -----------------------------------------------------------------------------------
def serve_one_then_close(features: int) -> Handler:
    def handler(s: Served) -> None:
        s.handshake(features)
        received = s.request()
        s.answer(Response(0, bytes(96), bytes(received.request.allocation_length)))

    return handler


def test_a_connection_found_broken_before_the_cdb_is_replaced_once(
    fake: Callable[..., FakeHelper], sock_path: str, device: int
) -> None:
    f = fake(serve_one_then_close(1), serve_one_then_close(2))
    client = Client(sock_path, timeout=GUARD)
    assert client.execute(device, READ_KEYS_16) == Reply(0, bytes(96), bytes(16))
    assert client.helper_features == 1
    f.wait(0)  # the helper has closed: the next send finds the connection broken
    assert client.connected
    assert client.execute(device, REGISTER, PARAMS) == Reply(0)
    assert client.helper_features == 2 and client.connected
    f.wait(1)
    assert f.accepted == 2
    assert [(r.connection, r.raw) for r in f.requests] == [
        (0, READ_KEYS_16 + bytes(6)),
        (1, REGISTER + bytes(6) + PARAMS),
    ]
    assert [r.files for r in f.requests] == [[file_id(device)]] * 2
    client.close()


def test_a_listener_gone_between_requests_fails_the_second_attempt(
    fake: Callable[..., FakeHelper], sock_path: str, device: int
) -> None:
    f = fake(serve_one_then_close(0))
    client = Client(sock_path, timeout=GUARD)
    assert client.execute(device, READ_KEYS_16) == Reply(0, bytes(96), bytes(16))
    f.wait(0)
    f.stop()
    with pytest.raises(FileNotFoundError):
        client.execute(device, READ_KEYS_16)
    assert not client.connected
    assert len(f.requests) == 1


def test_no_helper_at_all_raises_the_oserror(sock_path: str, device: int) -> None:
    client = Client(sock_path, timeout=GUARD)
    with pytest.raises(FileNotFoundError):
        client.execute(device, READ_KEYS_16)
    assert not client.connected and client.helper_features is None


def close_at_once(s: Served) -> None:
    """Accept, then close before the handshake."""


def test_a_helper_closing_before_the_handshake_is_retried(
    fake: Callable[..., FakeHelper], sock_path: str, device: int
) -> None:
    f = fake(close_at_once, serve(3))
    with Client(sock_path, timeout=GUARD) as client:
        assert client.execute(device, READ_KEYS_16) == Reply(0, bytes(96), bytes(16))
        assert client.helper_features == 3
    f.wait(0)
    assert f.accepted == 2 and [r.connection for r in f.requests] == [1]


def test_a_second_failure_before_the_cdb_is_raised(
    fake: Callable[..., FakeHelper], sock_path: str, device: int
) -> None:
    """Two helpers closing before the handshake: the second error is raised, no third try (a
    third connection would be served)."""
    f = fake(close_at_once, close_at_once)
    client = Client(sock_path, timeout=GUARD)
    with pytest.raises(HelperConnectionError) as caught:
        client.execute(device, READ_KEYS_16)
    assert str(caught.value) == (
        "helper protocol error: connection closed mid-frame in state AWAIT_FEATURES (0 bytes)"
    )
    assert not client.connected and client.helper_features is None
    f.wait(1)
    assert f.accepted == 2 and f.requests == []


def test_a_short_handshake_is_a_protocol_error(
    fake: Callable[..., FakeHelper], sock_path: str
) -> None:
    def handler(s: Served) -> None:
        s.sock.sendall(b"\0\0")

    fake(handler)
    client = Client(sock_path, timeout=GUARD)
    with pytest.raises(HelperConnectionError) as caught:
        client.connect()
    assert str(caught.value) == (
        "helper protocol error: connection closed mid-frame in state AWAIT_FEATURES (2 bytes)"
    )
    assert isinstance(caught.value, ConnectionError) and isinstance(caught.value, HelperError)
    assert isinstance(caught.value.__cause__, ShortRead)
    assert not client.connected and client.helper_features is None


def test_a_failed_handshake_closes_the_socket(
    fake: Callable[..., FakeHelper], sock_path: str
) -> None:
    """The helper never speaks; the client's timeout ends the handshake and its socket is
    closed at once (the helper reads EOF, not its own guard timeout)."""
    eof: list[bool] = []

    def handler(s: Served) -> None:
        eof.append(s.wait_eof())

    f = fake(handler)
    client = Client(sock_path, timeout=0.2)
    with pytest.raises(TimeoutError):
        client.connect()
    assert not client.connected and client.helper_features is None
    f.wait(0)
    assert eof == [True]


# -- once the CDB is out -----------------------------------------------------------------------
def test_a_helper_closing_after_the_cdb_fails_the_command_without_retry(
    fake: Callable[..., FakeHelper], sock_path: str, device: int
) -> None:
    """PR OUT is not idempotent: exactly one CDB reaches a helper. The next command connects
    again."""

    def handler(s: Served) -> None:
        s.handshake()
        s.request()

    f = fake(handler)
    client = Client(sock_path, timeout=GUARD)
    with pytest.raises(HelperConnectionError) as caught:
        client.execute(device, REGISTER, PARAMS)
    assert str(caught.value) == (
        "helper protocol error: connection closed mid-frame in state AWAIT_RESPONSE (0 bytes)"
    )
    assert not client.connected
    assert f.accepted == 1
    assert [r.raw for r in f.requests] == [REGISTER + bytes(6) + PARAMS]
    assert client.execute(device, READ_KEYS_16) == Reply(0, bytes(96), bytes(16))
    assert f.accepted == 2
    client.close()


def test_a_helper_closing_mid_answer_fails_the_command(
    fake: Callable[..., FakeHelper], sock_path: str, device: int
) -> None:
    def handler(s: Served) -> None:
        s.handshake()
        s.request()
        s.sock.sendall(s.conn.send(Response(0, SENSE, KEYS))[:50])

    f = fake(handler)
    client = Client(sock_path, timeout=GUARD)
    with pytest.raises(HelperConnectionError) as caught:
        client.execute(device, READ_KEYS_16)
    assert str(caught.value) == (
        "helper protocol error: connection closed mid-frame in state AWAIT_RESPONSE (50 bytes)"
    )
    assert not client.connected
    assert f.accepted == 1 and len(f.requests) == 1


@pytest.mark.parametrize(
    ("size", "message"),
    [(17, "response sz=17 outside 0..16"), (-1, "response sz=-1 outside 0..16")],
)
def test_a_garbage_reply_fails_the_command(
    fake: Callable[..., FakeHelper], sock_path: str, device: int, size: int, message: str
) -> None:
    """A reply whose size QEMU would assert on is the helper's protocol error."""
    eof: list[bool] = []

    def handler(s: Served) -> None:
        s.handshake()
        s.request()
        s.sock.sendall(struct.pack(">ii", 0, size) + bytes(96) + bytes(max(size, 0)))
        eof.append(s.wait_eof())

    f = fake(handler)
    client = Client(sock_path, timeout=GUARD)
    with pytest.raises(HelperConnectionError) as caught:
        client.execute(device, READ_KEYS_16)
    assert str(caught.value) == f"helper protocol error: {message}"
    assert isinstance(caught.value.__cause__, ResponseTooLong)
    assert not client.connected
    f.wait(0)
    assert eof == [True] and f.accepted == 1 and len(f.requests) == 1


def test_a_helper_that_never_answers_times_out(
    fake: Callable[..., FakeHelper], sock_path: str, device: int
) -> None:
    release = threading.Event()

    def handler(s: Served) -> None:
        s.handshake()
        s.request()
        release.wait(GUARD)

    f = fake(handler)
    # Short, but long enough for the fake's handshake on a busy machine: a handshake that timed
    # out would be retried on a second connection.
    client = Client(sock_path, timeout=1.0)
    try:
        with pytest.raises(socket.timeout):
            client.execute(device, READ_KEYS_16)
        assert not client.connected
    finally:
        release.set()
    f.wait(0)
    assert f.accepted == 1 and len(f.requests) == 1


# -- local refusals ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cdb", "data_out", "allocation_length", "message"),
    [
        (b"", b"", None, "CDB length 0 outside 1..16"),
        (READ_KEYS_16.ljust(17, b"\0"), b"", None, "CDB length 17 outside 1..16"),
        (persistent_reserve_in(0, 8193), b"", None, "transfer length 8193 exceeds 8192"),
        (persistent_reserve_in(0, 8193), b"", 9000, "transfer length 8193 exceeds 8192"),
        (bytes([0x12]), b"", None, "opcode 0x12 is not PERSISTENT RESERVE IN/OUT"),
        (REGISTER, bytes(23), None, "data is 23 bytes, the CDB says 24"),
        (READ_KEYS_16, b"x", None, "data is 1 bytes, the CDB says 0"),
        (READ_KEYS_16, b"", 15, "ALLOCATION LENGTH 16 exceeds the data-in buffer (15)"),
        (READ_KEYS_16, b"", 0, "ALLOCATION LENGTH 16 exceeds the data-in buffer (0)"),
        (
            persistent_reserve_in(0, 8192),
            b"",
            8191,
            "ALLOCATION LENGTH 8192 exceeds the data-in buffer (8191)",
        ),
    ],
)
def test_requests_qemu_refuses_locally(
    sock_path: str,
    device: int,
    cdb: bytes,
    data_out: bytes,
    allocation_length: int | None,
    message: str,
) -> None:
    """Refused before any connection: there is no helper at ``sock_path`` to reach."""
    client = Client(sock_path, timeout=GUARD)
    with pytest.raises(InvalidRequest) as caught:
        client.execute(device, cdb, data_out, allocation_length)
    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, HelperError)
    assert not client.connected


def test_a_codec_refusal_keeps_its_cause(device: int) -> None:
    with pytest.raises(InvalidRequest) as caught:
        Client._request(device, persistent_reserve_in(0, 8193), b"", None)
    assert isinstance(caught.value.__cause__, LocalProtocolError)


@pytest.mark.parametrize(
    ("cdb", "data_out", "allocation_length"),
    [
        (bytes([0x5E]), b"", None),  # one byte: the shortest CDB
        (READ_KEYS_16.ljust(16, b"\0"), b"", None),  # sixteen: the longest
        (READ_KEYS_16, b"", 16),  # ALLOCATION LENGTH equal to the buffer
        (READ_KEYS_16, b"", 17),
        (persistent_reserve_in(0, 8192), b"", 8192),  # the largest transfer
        (persistent_reserve_in(0, 8192), b"", 8193),  # a buffer beyond what the wire carries
        (persistent_reserve_in(0, 8192), b"", None),
        (REGISTER, PARAMS, 0),  # PR OUT: no data-in
        (persistent_reserve_out(0, 8192), bytes(8192), 0),
    ],
)
def test_requests_at_the_limits_pass(
    device: int, cdb: bytes, data_out: bytes, allocation_length: int | None
) -> None:
    request = Client._request(device, cdb, data_out, allocation_length)
    assert request == Request(cdb.ljust(16, b"\0"), data_out, device)


class ShortSender:
    """A connected socket whose ``sendmsg`` takes only the first 5 bytes (with the fds), as a
    stream socket may: the client must send the rest of the CDB itself."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.short_sends = 0

    def sendmsg(self, buffers: list[bytes], ancillary: list[tuple[int, int, bytes]]) -> int:
        self.short_sends += 1
        return self.sock.sendmsg([b"".join(buffers)[:5]], ancillary)

    def __getattr__(self, name: str) -> object:
        return getattr(self.sock, name)


def test_a_cdb_sent_in_part_is_completed_with_its_fd_once(
    fake: Callable[..., FakeHelper], sock_path: str, device: int
) -> None:
    f = fake()
    with Client(sock_path, timeout=GUARD) as client:
        client.connect()
        assert client._link is not None
        short = ShortSender(client._link[0])
        client._link = (short, client._link[1])  # type: ignore[assignment]
        reply = client.execute(device, REGISTER, PARAMS)
    assert reply == Reply(0, bytes(96), b"")
    assert short.short_sends == 1
    [received] = f.requests
    assert received.raw == REGISTER.ljust(16, b"\0") + PARAMS
    assert received.files == [file_id(device)]
