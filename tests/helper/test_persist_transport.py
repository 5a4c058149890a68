"""``scsi-pr persist``'s way to the device (``helper/persist/transport.py``): what goes to the
helper socket, what comes back, and how every failure to get an answer is reported.

Two stand-ins, both in this process (mutmut only sees code run here):

* ``FakeHelper``: a thread serving one socket with the protocol codec's helper side, as
  qemu-pr-helper would: it proves the CDB, the parameter list and the device fd reach the
  helper, that its answer comes back unchanged, and that closing the transport hangs up.
* ``RecordingClient`` in place of ``scsi_pr.helper.client.Client``: what the transport asks
  of the client (socket, timeout, fd, data-in buffer) and the client failures no real helper
  can be made to produce on demand (a timeout after 60 s, an error without text).
"""

from __future__ import annotations

import errno
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pytest

from scsi_pr.helper import client as client_module
from scsi_pr.helper.client import HelperConnectionError, InvalidRequest
from scsi_pr.helper.executors.base import Reply
from scsi_pr.helper.persist.cli import execute
from scsi_pr.helper.persist.command import Response
from scsi_pr.helper.persist.options import Options
from scsi_pr.helper.persist.transport import (
    COMMAND_TIMEOUT,
    SOCKET_ENV,
    HelperTransport,
    helper_transport,
    socket_path,
)
from scsi_pr.helper.proto import NEED_DATA, Connection, ConnectionClosed, Features, Request, Role
from scsi_pr.helper.proto import Response as WireResponse
from scsi_pr.helper.unix_io import close_fds, recv_with_fds
from scsi_pr.sim.cdb import persistent_reserve_in, persistent_reserve_out, pr_out_parameters

JOIN = 30.0  # seconds a stand-in thread may take to finish; only reached when a test fails
READ_KEYS = persistent_reserve_in(0, 0x2000)  # 5e 00 .. 20 00 00
KEYS_DATA = bytes.fromhex("00000005 00000008 0000000000001a2b")
SENSE = bytes([0x70, 0, 0x06, 0, 0, 0, 0, 0x0A] + [0] * 4 + [0x29, 0]).ljust(96, b"\0")
REGISTER = persistent_reserve_out(0, 24)
REGISTER_DATA = pr_out_parameters(0, 0x1A2B)


@dataclass
class Seen:
    """One request as the helper received it: the padded CDB, the parameter list, and the
    (st_dev, st_ino) of the fd that came with it."""

    cdb: bytes
    data: bytes
    device: tuple[int, int]


@dataclass
class FakeHelper:
    """A helper on ``path`` serving one connection: each request gets the next of ``answers``
    (None: hang up instead of answering); ``hung_up`` once the client closed the connection."""

    path: str
    answers: list[WireResponse | None]
    seen: list[Seen] = field(default_factory=list)
    hung_up: bool = False

    def __post_init__(self) -> None:
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(1)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        sock, _ = self._listener.accept()
        conn = Connection(Role.HELPER)
        try:
            sock.sendall(conn.send(Features(0)))
            while True:
                event = conn.next_event()
                if event is NEED_DATA:
                    n = conn.bytes_needed
                    data, fds = recv_with_fds(sock, n) if conn.accepts_fds else (sock.recv(n), [])
                    conn.receive_data(data, fds)
                    close_fds(conn.release_fds())
                elif isinstance(event, Request):
                    assert event.fd is not None
                    st = os.fstat(event.fd)
                    os.close(event.fd)
                    self.seen.append(Seen(event.cdb, event.data, (st.st_dev, st.st_ino)))
                    answer = self.answers.pop(0)
                    if answer is None:
                        return
                    sock.sendall(conn.send(answer))
                elif isinstance(event, ConnectionClosed):
                    self.hung_up = True
                    return
        finally:
            close_fds(conn.abandon())
            sock.close()

    def finish(self) -> None:
        """Wait until the connection is over (the client hung up, or we did)."""
        self._thread.join(JOIN)
        assert self._thread.is_alive() is False
        self._listener.close()


@pytest.fixture
def device(tmp_path: Path) -> Iterator[tuple[int, tuple[int, int]]]:
    """An opened stand-in DEVICE: its fd and the (st_dev, st_ino) the helper must see."""
    path = tmp_path / "lu.img"
    path.write_bytes(bytes(4096))
    fd = os.open(path, os.O_RDWR)
    st = os.fstat(fd)
    try:
        yield fd, (st.st_dev, st.st_ino)
    finally:
        os.close(fd)


def test_a_pr_in_reaches_the_helper_with_the_device_and_its_answer_comes_back(
    tmp_path: Path, device: tuple[int, tuple[int, int]]
) -> None:
    """The CDB and the fd of the opened DEVICE go to the helper; status, sense and data-in
    come back as they were sent; close hangs up (the helper sees EOF)."""
    fd, identity = device
    helper = FakeHelper(str(tmp_path / "h.sock"), [WireResponse(2, SENSE, b"")])
    transport = HelperTransport(helper.path, fd)
    response = transport.execute(READ_KEYS)
    transport.close()
    helper.finish()
    assert response == Response(2, SENSE, b"")
    assert helper.seen == [Seen(READ_KEYS.ljust(16, b"\0"), b"", identity)]
    assert helper.hung_up is True


def test_requests_share_one_connection_and_carry_the_parameter_list(
    tmp_path: Path, device: tuple[int, tuple[int, int]]
) -> None:
    """A PR OUT's parameter list follows its CDB; a second command reuses the connection
    (the helper serves only one); data-in comes back byte for byte."""
    fd, identity = device
    answers: list[WireResponse | None] = [WireResponse(0), WireResponse(0, data=KEYS_DATA)]
    helper = FakeHelper(str(tmp_path / "h.sock"), answers)
    transport = HelperTransport(helper.path, fd)
    first = transport.execute(REGISTER, REGISTER_DATA)
    second = transport.execute(READ_KEYS)
    transport.close()
    helper.finish()
    assert (first, second) == (Response(0, bytes(96), b""), Response(0, bytes(96), KEYS_DATA))
    assert helper.seen == [
        Seen(REGISTER.ljust(16, b"\0"), REGISTER_DATA, identity),
        Seen(READ_KEYS.ljust(16, b"\0"), b"", identity),
    ]


def test_closing_a_transport_that_never_connected_does_nothing() -> None:
    """A run can fail before its first command (the transport is still closed in the end)."""
    transport = HelperTransport("/nonexistent/helper.sock", 0)
    assert transport.close() is None
    assert transport.close() is None


def test_the_default_factory_uses_the_socket_option(tmp_path: Path) -> None:
    """``scsi-pr persist --socket PATH DEVICE`` through the default transport: the keys the
    helper reports are printed as sg_persist prints them."""
    image = tmp_path / "lu.img"
    image.write_bytes(bytes(4096))
    helper = FakeHelper(str(tmp_path / "h.sock"), [WireResponse(0, data=KEYS_DATA)])
    outcome = execute(["-n", "-k", "--socket", helper.path, str(image)], env={})
    helper.finish()
    assert ("".join(outcome.stdout), outcome.stderr, outcome.code) == (
        "  PR generation=0x5, 1 registered reservation key follows:\n    0x1a2b\n",
        [],
        0,
    )
    assert helper.seen[0].cdb == READ_KEYS.ljust(16, b"\0")
    assert helper.hung_up is True


def test_a_helper_hanging_up_instead_of_answering_is_an_io_error(
    tmp_path: Path, device: tuple[int, tuple[int, int]]
) -> None:
    """The command was sent and may have run: EIO naming the socket and what happened."""
    fd, _ = device
    helper = FakeHelper(str(tmp_path / "h.sock"), [None])
    transport = HelperTransport(helper.path, fd)
    with pytest.raises(OSError) as caught:
        transport.execute(READ_KEYS)
    helper.finish()
    transport.close()
    assert (caught.value.errno, caught.value.strerror) == (
        errno.EIO,
        f"PR helper at {helper.path}: helper protocol error: "
        "connection closed mid-frame in state AWAIT_RESPONSE (0 bytes)",
    )
    assert type(caught.value.__cause__) is HelperConnectionError


def test_a_socket_nobody_listens_on_is_refused(tmp_path: Path) -> None:
    """The errno of the failed connect and its text, after the socket's name."""
    path = str(tmp_path / "dead.sock")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)  # bound, never listening: connect() gets ECONNREFUSED
    transport = HelperTransport(path, 0)
    try:
        with pytest.raises(OSError) as caught:
            transport.execute(READ_KEYS)
    finally:
        transport.close()
        dead.close()
    assert (caught.value.errno, str(caught.value)) == (
        errno.ECONNREFUSED,
        f"[Errno 111] PR helper at {path}: Connection refused",
    )


@pytest.mark.parametrize(
    ("cdb", "data", "message"),
    [
        (bytes(17), b"", "CDB length 17 outside 1..16"),
        (persistent_reserve_in(0, 0x2001), b"", "transfer length 8193 exceeds 8192"),
        (REGISTER, b"", "data is 0 bytes, the CDB says 24"),
    ],
)
def test_requests_qemu_refuses_locally_are_einval(cdb: bytes, data: bytes, message: str) -> None:
    """Refused before any helper is asked (the socket does not even exist), as QEMU's -EINVAL."""
    transport = HelperTransport("/nonexistent/helper.sock", 0)
    with pytest.raises(OSError) as caught:
        transport.execute(cdb, data)
    transport.close()
    assert (caught.value.errno, str(caught.value)) == (
        errno.EINVAL,
        f"[Errno 22] PR helper request refused: {message}",
    )
    assert type(caught.value.__cause__) is InvalidRequest


@dataclass
class Call:
    """What the transport asked of its client for one command."""

    fd: int
    cdb: bytes
    data_out: bytes
    allocation_length: int | None


class RecordingClient:
    """Stands in for ``scsi_pr.helper.client.Client``: records how it is made and called,
    raises ``failure`` when one is set, else answers ``reply``."""

    made: ClassVar[list[tuple[str, float | None]]]
    calls: ClassVar[list[Call]]
    closed: ClassVar[int]
    failure: ClassVar[BaseException | None] = None
    reply: ClassVar[Reply] = Reply(2, SENSE[:18], b"\x01\x02")

    def __init__(self, path: str, timeout: float | None = None) -> None:
        self.made.append((path, timeout))

    def execute(
        self, fd: int, cdb: bytes, data_out: bytes = b"", allocation_length: int | None = None
    ) -> Reply:
        self.calls.append(Call(fd, cdb, data_out, allocation_length))
        if self.failure is not None:
            raise self.failure
        return self.reply

    def close(self) -> None:
        type(self).closed += 1


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> type[RecordingClient]:
    """A ``RecordingClient`` with records of its own, in place of the real client."""

    class Fresh(RecordingClient):
        made: ClassVar[list[tuple[str, float | None]]] = []
        calls: ClassVar[list[Call]] = []
        closed: ClassVar[int] = 0

    monkeypatch.setattr(client_module, "Client", Fresh)
    return Fresh


@pytest.mark.parametrize(
    ("cdb", "data", "allocation"),
    [
        (READ_KEYS, b"", 0x2000),
        (persistent_reserve_in(1, 0x0123), b"", 0x0123),  # READ RESERVATION, odd length
        (REGISTER, REGISTER_DATA, None),  # PR OUT: no data-in buffer
    ],
)
def test_what_the_client_is_asked(
    recording: type[RecordingClient], cdb: bytes, data: bytes, allocation: int | None
) -> None:
    """One client per transport, on the socket with sg3_utils' 60 s command timeout; each
    command on the DEVICE fd with its parameter list and, for PR IN, the data-in buffer's
    size (the ALLOCATION LENGTH, CDB bytes 7-8), as QEMU passes its buffer's size. The
    client's reply is the response, sense at the length the client gave it."""
    transport = HelperTransport("/run/h.sock", 7)
    assert transport.execute(cdb, data) == Response(2, SENSE[:18].ljust(96, b"\0"), b"\x01\x02")
    assert transport.execute(cdb, data) == Response(2, SENSE[:18].ljust(96, b"\0"), b"\x01\x02")
    transport.close()
    assert recording.made == [("/run/h.sock", COMMAND_TIMEOUT)] == [("/run/h.sock", 60)]
    assert recording.calls == [Call(7, cdb, data, allocation)] * 2
    assert recording.closed == 1


def test_the_default_factory_passes_the_socket_and_the_fd(
    recording: type[RecordingClient],
) -> None:
    """``helper_transport``: the socket the options name, the fd the run opened."""
    transport = helper_transport(Options(socket="/run/a.sock"), 9)
    assert transport.execute(READ_KEYS).status == 2
    assert recording.made == [("/run/a.sock", 60)]
    assert recording.calls == [Call(9, READ_KEYS, b"", 0x2000)]


@pytest.mark.parametrize(
    ("failure", "reason", "code", "text"),
    [
        # ETIMEDOUT (110) is past sg_convert_errno's table: exit status 50
        (
            TimeoutError("timed out"),
            "at /run/h.sock: no answer within 60 s",
            50,
            "An OS error occurred",
        ),
        (
            FileNotFoundError(errno.ENOENT, "No such file or directory"),
            "at /run/h.sock: No such file or directory",  # strerror, not str(): no "[Errno 2]"
            52,
            "No such file or directory",
        ),
        (
            HelperConnectionError("helper closed the connection before answering"),
            "at /run/h.sock: helper closed the connection before answering",  # no errno: EIO
            55,
            "Input/output error",
        ),
        # neither errno nor text: the exception's type
        (BrokenPipeError(), "at /run/h.sock: BrokenPipeError", 55, "Input/output error"),
        # refused before any helper is asked: no socket named
        (InvalidRequest("CDB length 17"), "request refused: CDB length 17", 72, "Invalid argument"),
    ],
)
def test_client_failures_as_the_user_sees_them(
    recording: type[RecordingClient],
    tmp_path: Path,
    failure: BaseException,
    reason: str,
    code: int,
    text: str,
) -> None:
    """Every way the client fails becomes sg_persist's pass-through OS error report: the
    socket and the reason, then the errno's text, and the exit status sg3_utils derives from
    the errno. The client is still closed."""
    image = tmp_path / "lu.img"
    image.write_bytes(bytes(4096))
    recording.failure = failure
    outcome = execute(["-n", "-k", "--socket", "/run/h.sock", str(image)], env={})
    assert (outcome.stderr, outcome.code, outcome.stdout) == (
        [
            f"Persistent reservation in: pass-through os error: PR helper {reason}\n",
            f"PR in (Read keys): {text}\n",
            f"sg_persist failed: {text}\n",
        ],
        code,
        [],
    )
    assert recording.closed == 1


@pytest.mark.parametrize(
    ("option", "environment", "expected"),
    [
        ("/run/a.sock", "/run/b.sock", "/run/a.sock"),
        (None, "/run/b.sock", "/run/b.sock"),
        (None, None, "/var/run/qemu-pr-helper.sock"),
    ],
)
def test_the_socket_comes_from_the_process_environment(
    monkeypatch: pytest.MonkeyPatch, option: str | None, environment: str | None, expected: str
) -> None:
    """Without an explicit environment, $SCSI_PR_HELPER_SOCKET is read from the process's own
    (what ``helper_transport`` relies on), after --socket and before the default."""
    if environment is None:
        monkeypatch.delenv(SOCKET_ENV, raising=False)
    else:
        monkeypatch.setenv(SOCKET_ENV, environment)
    assert socket_path(Options(socket=option)) == expected
    assert helper_transport(Options(socket=option), 3).socket_path == expected  # type: ignore[attr-defined]
