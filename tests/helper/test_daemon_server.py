"""``HelperServer`` in process: the fd-limit default, the listener check, the accept-error
table and its backoff, refusing clients over ``max_clients``, and shutdown (idle connections
cancelled, a busy one answered, a stuck one cut off after the grace).

Why in process: ``test_daemon.py`` runs the real helper as a subprocess, which checks the whole
program but none of this module's decisions one by one, and the mutation tests only see code
run in the pytest process. Here the server runs its own event loop in a background thread, on
a real listening AF_UNIX socket, with real clients speaking the protocol from the test thread;
only what cannot be produced for real is faked (``accept()`` failing with a chosen errno, the
fd limit, a thread that cannot be started) or watched (the ``wake`` of a task that never ran).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from daemon_process import send_cdb

from scsi_pr.helper import daemon
from scsi_pr.helper.audit import EVENTS, Audit, parse_audit_line
from scsi_pr.helper.daemon import HelperServer, ListenerError, check_listener, default_max_clients
from scsi_pr.helper.executors.base import Executor, Reply
from scsi_pr.helper.unix_io import recv_exactly
from scsi_pr.sim.cdb import persistent_reserve_in

DEADLINE = 10.0  # only against hangs: every wait below ends long before on a working server
HANDSHAKE = b"\0\0\0\0"
READ_KEYS = persistent_reserve_in(0, 8).ljust(16, b"\0")
ANSWER = struct.pack(">ii", 0, 8) + bytes(96) + b"\xab" * 8  # GOOD, 8 bytes of Gate's data
EMFILE_REPORT = ": accept: [Errno 24] Too many open files\n"


class Gate(Executor):
    """Answers GOOD with ``allocation_length`` bytes of 0xAB; ``hold``: only once released.
    Records that it was entered, that it returned, and that the server closed it."""

    name = "gate"

    def __init__(self, hold: bool = False) -> None:
        self.entered, self.released, self.returned = (threading.Event() for _ in range(3))
        if not hold:
            self.released.set()
        self.closed = False

    def execute(self, fd: int, cdb: bytes, data_out: bytes, allocation_length: int) -> Reply:
        self.entered.set()
        self.released.wait(3 * DEADLINE)
        self.returned.set()
        return Reply(0, b"", b"\xab" * allocation_length)

    def close(self) -> None:
        self.closed = True


class Log(io.StringIO):
    """An audit stream the test can wait on: connections write from threads of their own."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = threading.Condition()

    def write(self, s: str) -> int:
        with self.changed:
            n = super().write(s)
            self.changed.notify_all()
            return n

    def wait_for(self, event: str, count: int = 1) -> list[dict[str, str]]:
        """The fields of every ``event`` line, once there are ``count`` (or at the deadline)."""

        def records() -> list[dict[str, str]]:
            lines = map(parse_audit_line, self.getvalue().splitlines())
            return [r.fields for r in lines if r.event == event]

        with self.changed:
            self.changed.wait_for(lambda: len(records()) >= count, DEADLINE)
            return records()


def wait_until(condition: Callable[[], bool]) -> bool:
    end = time.monotonic() + DEADLINE
    while not condition() and time.monotonic() < end:
        time.sleep(0.01)
    return condition()


class Served:
    """``server.serve(listener, stop, ready)`` on an event loop in a background thread, and
    clients of it. ``script``: what the loop's ``sock_accept`` does on its first calls, in
    order: raise that OSError, or (``None``) accept for real; later calls accept for real."""

    def __init__(self, server: HelperServer, listener: socket.socket, script: Script) -> None:
        self.server, self.listener, self.script = server, listener, list(script)
        self.path = listener.getsockname()
        self.started, self.ready, self.finished = (threading.Event() for _ in range(3))
        self.error: BaseException | None = None
        self.timeout_when_ready: float | None = None
        self.clients: list[socket.socket] = []
        threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True).start()
        assert self.started.wait(DEADLINE)

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stop_event = asyncio.Event()
        real_accept = self.loop.sock_accept

        async def sock_accept(sock: socket.socket) -> tuple[socket.socket, object]:
            if self.script and (failure := self.script.pop(0)) is not None:
                raise failure
            return await real_accept(sock)

        self.loop.sock_accept = sock_accept  # type: ignore[method-assign]
        self.started.set()
        try:
            await self.server.serve(self.listener, self.stop_event, self._ready)
        except BaseException as e:  # the test looks at whatever serve raised
            self.error = e
        finally:
            self.finished.set()

    def _ready(self) -> None:
        self.timeout_when_ready = self.listener.gettimeout()
        self.ready.set()

    def set_stop(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: serve has returned
            self.loop.call_soon_threadsafe(self.stop_event.set)

    def stop(self) -> BaseException | None:
        """Set ``stop``, wait for ``serve`` to return; what it raised."""
        self.set_stop()
        assert self.finished.wait(DEADLINE), "serve did not return after stop"
        return self.error

    def connect(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.clients.append(s)
        s.settimeout(DEADLINE)
        s.connect(self.path)
        return s

    def client(self) -> socket.socket:
        """A client past the handshake (the helper speaks first)."""
        s = self.connect()
        assert recv_exactly(s, 4) == HANDSHAKE
        s.sendall(HANDSHAKE)
        return s


Script = Sequence[OSError | None]


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """Listening on an autobound abstract address: no path to make or remove."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind("")
        s.listen(16)
        yield s


@pytest.fixture
def device(tmp_path: Path) -> Iterator[int]:
    fd = os.open(tmp_path / "lu.img", os.O_RDWR | os.O_CREAT)
    yield fd
    os.close(fd)


@pytest.fixture
def serve(listener: socket.socket) -> Iterator[Callable[..., Served]]:
    """``serve(server, script=())`` serves ``listener``; stopped (its gate opened, its clients
    closed) at the end if the test did not."""
    started: list[Served] = []

    def start(server: HelperServer, script: Script = ()) -> Served:
        started.append(Served(server, listener, script))
        return started[-1]

    yield start
    for s in started:
        if isinstance(s.server.executor, Gate):
            s.server.executor.released.set()
        if not s.finished.is_set():
            s.set_stop()
            s.finished.wait(DEADLINE)
        for c in s.clients:
            c.close()


def rest(s: socket.socket) -> bytes:
    """Everything until the helper closes (a hang fails on the socket's timeout)."""
    data = b""
    try:
        while part := s.recv(4096):
            data += part
    except ConnectionResetError:
        pass
    return data


def send_request(s: socket.socket, device: int) -> None:
    send_cdb(s, READ_KEYS, (device,))


def full_audit() -> tuple[Log, Audit]:
    log = Log()
    return log, Audit(log, frozenset(EVENTS))


@pytest.mark.parametrize(
    ("soft", "expected"),
    [
        (daemon.resource.RLIM_INFINITY, 65536),  # no limit: the cap
        (1025, 480),  # (1025 - 64 reserved) // 2 fds per client, rounded down
        (64, 1),  # nothing left beside the reserve: still one client
        (1 << 20, 65536),  # more than the cap allows
    ],
)
def test_max_clients_defaults_to_what_the_fd_limit_allows(
    monkeypatch: pytest.MonkeyPatch, soft: int, expected: int
) -> None:
    monkeypatch.setattr(daemon.resource, "getrlimit", lambda _which: (soft, soft))
    got = default_max_clients()
    assert (got, type(got)) == (expected, int)
    assert HelperServer(Gate()).max_clients == expected
    assert HelperServer(Gate(), max_clients=5).max_clients == 5  # given: kept


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"max_clients": 0}, "max_clients must be at least 1, not 0"),
        ({"idle_timeout": 0}, "idle_timeout must be positive, not 0"),
        ({"idle_timeout": -1.5}, "idle_timeout must be positive, not -1.5"),
    ],
)
def test_limits_out_of_range_are_refused(limits: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError) as raised:
        HelperServer(Gate(), **limits)  # type: ignore[arg-type]
    assert str(raised.value) == message
    smallest = HelperServer(Gate(), max_clients=1, idle_timeout=0.5)  # both just in range
    assert (smallest.max_clients, smallest.idle_timeout) == (1, 0.5)


@pytest.mark.parametrize(
    ("kind", "listen", "usable"),
    [
        (socket.SOCK_STREAM, True, True),
        (socket.SOCK_STREAM, False, False),
        (socket.SOCK_SEQPACKET, True, False),
    ],
)
def test_check_listener_wants_a_listening_stream_socket(
    kind: int, listen: bool, usable: bool
) -> None:
    """Either half alone fails: a stream socket that does not listen, a listening one that is
    not a stream (SOCK_SEQPACKET)."""
    with socket.socket(socket.AF_UNIX, kind) as s:
        s.bind("")
        if listen:
            s.listen(1)
        if usable:
            check_listener(s)
            return
        with pytest.raises(ListenerError) as raised:
            check_listener(s)
        assert str(raised.value) == f"fd {s.fileno()} is not a listening stream socket"


def test_check_listener_refuses_a_closed_socket() -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.close()
    with pytest.raises(ListenerError) as raised:
        check_listener(s)
    assert str(raised.value) == "fd -1 is not a usable socket: Bad file descriptor"


def test_serve_refuses_a_listener_that_is_not_listening() -> None:
    """At once: never ready, and the listener and the executor are closed all the same."""
    gate, readies = Gate(), []
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server = HelperServer(gate)
    with pytest.raises(ListenerError, match="is not a listening stream socket"):
        asyncio.run(server.serve(s, asyncio.Event(), lambda: readies.append(1)))
    assert (readies, s.fileno(), gate.closed) == ([], -1, True)


@pytest.mark.parametrize(
    ("code", "backoff", "then"),
    [
        (errno.EMFILE, 0.0, 0.05),  # an episode starts at the shortest pause
        (errno.ENFILE, 0.05, 0.1),  # and doubles
        (errno.ENOBUFS, 0.6, 1.0),  # up to the longest
        (errno.ENOMEM, 1.0, 1.0),
        (errno.ECONNABORTED, 0.4, 0.4),  # one connection failed: no pause, backoff unchanged
        (errno.EPROTO, 0.0, 0.0),
        (errno.EPERM, 0.0, 0.0),
        (errno.EINTR, 0.1, 0.1),
        (errno.EAGAIN, 0.0, 0.0),
        (errno.EINVAL, 0.0, None),  # None: the listener is unusable
        (errno.ENOTSOCK, 0.0, None),
        (errno.EBADF, 0.0, None),
        (None, 0.0, None),  # no errno at all (errno 1 would be EPERM, a retry)
    ],
)
def test_accept_errors_back_off_retry_or_give_up(
    code: int | None, backoff: float, then: float | None
) -> None:
    error = OSError(code, os.strerror(code)) if code else OSError("no errno")

    async def main() -> float:
        stopped = asyncio.get_running_loop().create_future()
        stopped.set_result(True)  # a pause would end at once
        return await HelperServer(Gate())._accept_failed(error, backoff, stopped)

    if then is not None:
        assert asyncio.run(main()) == then
        return
    with pytest.raises(ListenerError) as raised:
        asyncio.run(main())
    assert str(raised.value) == f"accept: {error}" and raised.value.__cause__ is error


def test_a_backoff_episode_is_reported_once_and_pauses(capsys: pytest.CaptureFixture[str]) -> None:
    """The first failure of an episode is reported (when verbose), the next ones are not; and
    the pause ends on its own while not stopped."""
    emfile = OSError(errno.EMFILE, "Too many open files")

    async def main() -> list[float]:
        server = HelperServer(Gate(), verbose=1)
        pending = asyncio.get_running_loop().create_future()
        first = await asyncio.wait_for(server._accept_failed(emfile, 0.0, pending), DEADLINE)
        assert capsys.readouterr().err.endswith(EMFILE_REPORT)
        second = await asyncio.wait_for(server._accept_failed(emfile, first, pending), DEADLINE)
        assert capsys.readouterr().err == ""
        quiet = HelperServer(Gate(), verbose=0)
        await asyncio.wait_for(quiet._accept_failed(emfile, 0.0, pending), DEADLINE)
        assert capsys.readouterr().err == ""
        return [first, second]

    assert asyncio.run(main()) == [0.05, 0.1]


def test_the_accept_loop_goes_on_after_failures(
    serve: Callable[..., Served], capsys: pytest.CaptureFixture[str]
) -> None:
    """Out of fds twice around a served client, then a dropped connection: both clients are
    served, and each out-of-fds episode (not each failure) is reported once."""
    emfile = OSError(errno.EMFILE, "Too many open files")
    aborted = OSError(errno.ECONNABORTED, "Software caused connection abort")
    served = serve(HelperServer(Gate()), [emfile, None, emfile, emfile, aborted])
    a, b = served.client(), served.client()
    assert served.stop() is None
    assert rest(a) == b"" and rest(b) == b""
    assert capsys.readouterr().err.count(EMFILE_REPORT) == 2


def test_an_unusable_listener_found_by_accept_ends_serve(
    listener: socket.socket, serve: Callable[..., Served]
) -> None:
    gate = Gate()
    served = serve(HelperServer(gate), [OSError(errno.EINVAL, "Invalid argument")])
    assert served.finished.wait(DEADLINE)
    assert isinstance(served.error, ListenerError)
    assert str(served.error) == "accept: [Errno 22] Invalid argument"
    assert (served.ready.is_set(), listener.fileno(), gate.closed) == (True, -1, True)


def test_a_client_is_served_until_stop_then_all_is_closed(
    listener: socket.socket,
    device: int,
    serve: Callable[..., Served],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Ready with a non-blocking listener (a blocking accept would stall the loop); a request
    answered, a refusal reported (verbose); at stop the idle connection closed, the listener
    and the executor too."""
    gate, (log, audit) = Gate(), full_audit()
    server = HelperServer(gate, audit, verbose=1)
    served = serve(server)
    assert served.ready.wait(DEADLINE) and served.timeout_when_ready == 0.0
    c = served.client()
    send_request(c, device)
    assert recv_exactly(c, len(ANSWER)) == ANSWER
    assert log.wait_for("prh_command")[0]["command"] == "PR IN READ KEYS alloc=8"
    no_fd = served.client()
    no_fd.sendall(READ_KEYS)
    assert rest(no_fd) == b""
    assert log.wait_for("prh_disconnect")[0]["reason"] == "No file descriptor in request."
    assert capsys.readouterr().err.endswith(": No file descriptor in request.\n")
    assert wait_until(lambda: server.clients == 1)  # the refused one is gone, not the idle one
    assert served.stop() is None
    assert rest(c) == b""
    assert [r["reason"] for r in log.wait_for("prh_disconnect", 2)][1] == "shutdown"
    assert (listener.fileno(), gate.closed, server.clients) == (-1, True, 0)


def test_the_server_gives_connections_its_idle_timeout(serve: Callable[..., Served]) -> None:
    log, audit = full_audit()
    served = serve(HelperServer(Gate(), audit, idle_timeout=0.2))
    assert rest(served.client()) == b""  # closed by the helper, not by the socket's timeout
    assert log.wait_for("prh_disconnect")[0]["reason"] == "idle timeout (0.2 s)"


def test_a_client_over_max_clients_is_refused_until_a_slot_is_free(
    serve: Callable[..., Served],
) -> None:
    log, audit = full_audit()
    server = HelperServer(Gate(), audit, max_clients=1)
    served = serve(server)
    first = served.client()
    assert rest(served.connect()) == b""  # closed without even the handshake
    refused = log.wait_for("prh_refused")
    expected = {"pid": str(os.getpid()), "uid": str(os.getuid()), "reason": "too many clients (1)"}
    assert refused == [expected]
    assert server.clients == 1
    first.close()
    assert wait_until(lambda: server.clients == 0)
    served.client()  # the slot is free again
    assert wait_until(lambda: server.clients == 1)


def test_a_client_without_a_thread_is_refused(
    serve: Callable[..., Served], monkeypatch: pytest.MonkeyPatch
) -> None:
    log, audit = full_audit()
    server = HelperServer(Gate(), audit)

    def no_thread(*_args: object) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(server._clients, "start", no_thread)
    assert rest(serve(server).connect()) == b""
    (refused,) = log.wait_for("prh_refused")
    assert refused["reason"] == "no thread for the client: can't start new thread"
    assert refused["pid"] == str(os.getpid())
    assert server.clients == 0


def test_shutdown_answers_a_busy_request_and_closes_idle_connections(
    device: int, serve: Callable[..., Served]
) -> None:
    gate, (log, audit) = Gate(hold=True), full_audit()
    served = serve(HelperServer(gate, audit, shutdown_grace=3 * DEADLINE))
    idle, busy = served.client(), served.client()
    send_request(busy, device)
    assert gate.entered.wait(DEADLINE)
    served.set_stop()
    assert rest(idle) == b""  # cancelled at once, while the busy one still waits
    assert not served.finished.is_set()
    gate.released.set()
    assert rest(busy) == ANSWER  # its answer, then closed
    assert served.stop() is None
    assert [r["reason"] for r in log.wait_for("prh_disconnect", 2)] == ["shutdown"] * 2
    assert gate.closed


def test_a_request_still_running_after_the_grace_is_cut_off(
    device: int, serve: Callable[..., Served]
) -> None:
    """serve returns while the executor is still stuck; its client is closed unanswered."""
    gate = Gate(hold=True)
    served = serve(HelperServer(gate, Audit(None), shutdown_grace=0.2))
    busy = served.client()
    send_request(busy, device)
    assert gate.entered.wait(DEADLINE)
    assert served.stop() is None
    assert not gate.returned.is_set() and gate.closed
    assert rest(busy) == b""


def test_a_connection_cancelled_before_its_task_ran_is_woken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stopped right after the accept: the task's ``wait`` never ran to wake the connection's
    thread, so the task's done callback must."""
    woken: list[socket.socket] = []
    real_wake = daemon.wake

    def wake(sock: socket.socket) -> None:
        woken.append(sock)
        real_wake(sock)

    monkeypatch.setattr(daemon, "wake", wake)
    server = HelperServer(Gate(), Audit(None))
    peer, served = socket.socketpair()

    async def main() -> None:
        server._start(served)
        await server.shutdown()

    with peer:
        peer.settimeout(DEADLINE)
        asyncio.run(main())
        assert woken == [served]
        assert rest(peer) in (b"", HANDSHAKE)  # closed, whether or not it got to the hello
