"""The socket fuzzer: ``run_fuzz(socket_path, frames, clients, workdir) -> FuzzReport``.

Several fuzzing clients (threads) play ``scsi_pr.helper.fuzz_frames`` frames against one helper
at once, opening real fds of every kind for them, and judge every reaction against the frame's
oracle: an answer of the right shape (and the right sense for pipes, sockets, directories,
read-only fds), a close without an answer, or a helper still waiting. Alongside, one
well-behaved client runs a fixed PR cycle on its own LU and must see every answer exactly as
the model gives it. Afterwards the helper must be alive with its fd count back at the baseline.
The frame count, not time, decides the work: CI runs 20,000, ``scripts/soak`` millions.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from scsi_pr.helper.errors import HelperError
from scsi_pr.helper.fuzz_frames import (
    NOT_DEVICES,
    Ending,
    FdKind,
    Frame,
    Opening,
    Outcome,
    frames,
    outcome,
    request_fd,
)
from scsi_pr.helper.unix_io import recv_exactly
from scsi_pr.sim.cdb import persistent_reserve_in, persistent_reserve_out, pr_out_parameters

__all__ = ["FuzzReport", "frames", "run_fuzz"]

HEADER = 8 + 96
FEATURES = bytes(4)
STATUSES = {0x00, 0x02, 0x08, 0x18, 0x28}
MAX_ANOMALIES = 50  # kept verbatim; the rest are only counted
READ_ONLY = (FdKind.IMAGE_RO, FdKind.DIRECTORY)  # opened O_RDONLY by the fuzzer


@dataclass
class FuzzReport:
    """What was tried and what went wrong (``ok`` when nothing did)."""

    frames: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    answers: int = 0
    anomalies: list[str] = field(default_factory=list)
    anomaly_count: int = 0
    good_requests: int = 0
    good_errors: list[str] = field(default_factory=list)
    fds_before: int | None = None
    fds_after: int | None = None
    helper_alive: bool | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (
            self.anomaly_count == 0
            and not self.good_errors
            and self.good_requests > 0
            and self.helper_alive is not False
            and self.fds_after == self.fds_before
        )

    def table(self) -> str:
        """The report as text: one row per frame kind, then the verdicts."""
        rows = [f"{'frame kind':<16}{'tried':>9}"]
        rows += [f"{kind:<16}{n:>9}" for kind, n in sorted(self.by_kind.items())]
        rows.append(f"{'total':<16}{self.frames:>9}  in {self.seconds:.1f} s")
        rows.append("outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items())))
        rows.append(f"answers checked: {self.answers}; anomalies: {self.anomaly_count}")
        rows.append(f"well-behaved client: {self.good_requests} requests, "
                    f"{len(self.good_errors)} errors")  # fmt: skip
        rows.append(f"helper alive: {self.helper_alive}; fds {self.fds_before} -> {self.fds_after}")
        rows += [f"  ! {a}" for a in self.anomalies[:10]] + [
            f"  ! {e}" for e in self.good_errors[:10]
        ]
        return "\n".join(rows)


class _Fds:
    """Opens the fds a part asks for: shared ones for the images and stdio, fresh ones (closed
    after sending) for the rest."""

    def __init__(self, image: Path, workdir: Path) -> None:
        self.workdir = workdir
        self.shared = {
            FdKind.IMAGE: os.open(image, os.O_RDWR),
            FdKind.IMAGE_RO: os.open(image, os.O_RDONLY),
            FdKind.STDIN: 0,
            FdKind.STDOUT: 1,
            FdKind.STDERR: 2,
        }
        self.fresh: dict[FdKind, Callable[[], list[int]]] = {
            FdKind.DEVNULL: lambda: [os.open(os.devnull, os.O_RDWR)],
            FdKind.PIPE: lambda: list(os.pipe()),
            FdKind.SOCKET: lambda: [s.detach() for s in socket.socketpair()],
            FdKind.DIRECTORY: lambda: [os.open(self.workdir, os.O_RDONLY | os.O_DIRECTORY)],
        }

    @contextlib.contextmanager
    def opened(self, kinds: Iterable[FdKind]) -> Iterator[list[int]]:
        passed, owned = [], []
        try:
            for kind in kinds:
                if kind in self.shared:
                    passed.append(self.shared[kind])
                else:
                    fds = self.fresh[kind]()
                    owned += fds
                    passed.append(fds[-1])
            yield passed
        finally:
            for fd in owned:
                os.close(fd)

    def close(self) -> None:
        os.close(self.shared[FdKind.IMAGE])
        os.close(self.shared[FdKind.IMAGE_RO])


class _Anomaly(HelperError):
    """A fuzz frame was handled other than its oracle says (recorded, never raised out)."""


def _read_to_close(sock: socket.socket) -> bytes:
    data = b""
    with contextlib.suppress(ConnectionResetError):  # it closed with our bytes unread
        while part := sock.recv(65536):
            data += part
    return data


def check_answer(cdb: bytes, fd: FdKind | None, answer: bytes) -> str | None:
    """Why ``answer`` cannot be the helper's answer to ``cdb`` on an fd of kind ``fd``."""
    if len(answer) < HEADER:
        return f"short answer ({len(answer)} bytes)"
    status = int.from_bytes(answer[0:4], "big", signed=True)
    size = int.from_bytes(answer[4:8], "big", signed=True)
    sense = (answer[10] & 0x0F, answer[20], answer[21])
    limit = 0 if cdb[0] == 0x5F or status != 0 else int.from_bytes(cdb[7:9], "big")
    if len(answer) != HEADER + size or not 0 <= size <= limit:
        return f"sz={size} (allowed 0..{limit}) for {len(answer)} bytes"
    if status not in STATUSES:
        return f"status {status:#x}"
    if cdb[0] == 0x5F and fd in READ_ONLY:  # checked first, as qemu-pr-helper does
        if (status, sense) != (0x02, (0x05, 0x20, 0x00)):
            return f"PR OUT on a read-only fd ({fd.value}): {status:#x} {sense}"
    elif fd in NOT_DEVICES and (status, sense) != (0x02, (0x0B, 0x00, 0x06)):
        return f"{fd.value}: {status:#x} {sense} instead of the failed SG_IO answer"
    return None


class _Fuzzer:
    def __init__(self, path: str, frames: Iterator[Frame], fds: _Fds, timeout: float) -> None:
        self.path = path
        self.frames = frames
        self.fds = fds
        self.timeout = timeout
        self.lock = threading.Lock()
        self.report = FuzzReport()

    def next_frame(self) -> Frame | None:
        with self.lock:
            frame = next(self.frames, None)
            if frame is not None:
                self.report.frames += 1
                self.report.by_kind[frame.kind] += 1
            return frame

    def note(self, problem: str, frame: Frame) -> None:
        with self.lock:
            self.report.anomaly_count += 1
            if len(self.report.anomalies) < MAX_ANOMALIES:
                self.report.anomalies.append(f"{problem}: {frame.summary()}")

    def client(self) -> None:
        kept: socket.socket | None = None
        while (frame := self.next_frame()) is not None:
            try:
                kept = self.play(frame, kept)
            except _Anomaly as e:
                self.note(str(e), frame)
                kept = None
            except OSError as e:
                self.note(f"{type(e).__name__}: {e}", frame)
                kept = None
        if kept is not None:
            kept.close()

    def connect(self, frame: Frame) -> tuple[socket.socket, bool]:
        """A new connection opened as ``frame`` says; whether the features word is unread."""
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(self.timeout)
        sock.connect(self.path)
        if frame.opening is Opening.HANDSHAKE:
            if recv_exactly(sock, 4) != FEATURES:
                sock.close()
                raise _Anomaly("no features word")
            sock.sendall(FEATURES)
            return sock, False
        if frame.opening is Opening.UNREAD:
            sock.sendall(FEATURES)
        elif frame.opening is Opening.BAD_FEATURES:
            sock.sendall(frame.features.to_bytes(4, "big"))
        return sock, True

    def play(self, frame: Frame, kept: socket.socket | None) -> socket.socket | None:
        """Run ``frame``; the connection to reuse for the next one, if any."""
        result, cdb = outcome(frame)
        with self.lock:
            self.report.outcomes[result.value] += 1
        if kept is not None and frame.opening is not Opening.HANDSHAKE:
            kept.close()
            kept = None
        sock, unread = (kept, False) if kept is not None else self.connect(frame)
        try:
            for part in frame.parts:
                with self.fds.opened(part.fds) as fds:
                    raw = b"".join(fd.to_bytes(4, "little") for fd in fds)
                    rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, raw)] if fds else []
                    sock.sendmsg([part.data], rights)
        except (BrokenPipeError, ConnectionResetError):
            sock.close()
            if result is Outcome.ANSWERED and frame.ending is not Ending.CLOSE:
                raise _Anomaly("closed before the request was sent") from None
            return None
        return self.finish(frame, sock, unread, result, cdb)

    def finish(
        self, frame: Frame, sock: socket.socket, unread: bool, result: Outcome, cdb: bytes
    ) -> socket.socket | None:
        ending = frame.ending
        if ending is Ending.CLOSE:
            sock.close()
            return None
        try:
            if ending in (Ending.KEEP, Ending.ANSWER_CLOSE):
                if unread and recv_exactly(sock, 4) != FEATURES:
                    raise _Anomaly("no features word")
                header = recv_exactly(sock, HEADER)
                size = (
                    int.from_bytes(header[4:8], "big", signed=True) if len(header) == 8 + 96 else 0
                )
                self.judge(cdb, frame, header + recv_exactly(sock, max(size, 0)))
                if ending is Ending.KEEP:
                    return sock
                sock.close()
                return None
            if ending is Ending.HALF_CLOSE:
                sock.shutdown(socket.SHUT_WR)
            data = _read_to_close(sock)
        except TimeoutError:
            sock.close()
            raise _Anomaly(f"no reaction within {self.timeout} s ({result.value})") from None
        sock.close()
        if unread:
            if data[:4] != FEATURES[: len(data[:4])]:
                raise _Anomaly("no features word")
            data = data[4:]
        if result is Outcome.ANSWERED:
            self.judge(cdb, frame, data)
        elif data:
            raise _Anomaly(f"{len(data)} bytes answered to a frame the helper must refuse")
        return None

    def judge(self, cdb: bytes, frame: Frame, answer: bytes) -> None:
        problem = check_answer(cdb, request_fd(frame), answer)
        if problem is not None:
            raise _Anomaly(problem)
        with self.lock:
            self.report.answers += 1


# -- the well-behaved client -------------------------------------------------------------------
def _good_steps(key: int) -> list[tuple[bytes, bytes, Callable[[bytes], bool]]]:
    """One PR cycle on the client's own LU with exactly predictable answers (the data-in)."""
    mine = key.to_bytes(8, "big")
    return [
        (persistent_reserve_out(6, 24), pr_out_parameters(0, key), lambda d: d == b""),
        (persistent_reserve_in(0, 256), b"", lambda d: d[4:] == (8).to_bytes(4, "big") + mine),
        (persistent_reserve_out(1, 24, 1), pr_out_parameters(key), lambda d: d == b""),
        (
            persistent_reserve_in(1, 256),
            b"",
            lambda d: d[4:16] == (16).to_bytes(4, "big") + mine and d[21] == 0x01,
        ),
        (persistent_reserve_out(2, 24, 1), pr_out_parameters(key), lambda d: d == b""),
        (persistent_reserve_in(1, 256), b"", lambda d: d[4:] == bytes(4)),
    ]


def _good_client(path: str, image: Path, stop: threading.Event, report: FuzzReport) -> None:
    from scsi_pr.helper.client import Client  # the QEMU-like client, as a VM would use it

    fd = os.open(image, os.O_RDWR)
    try:
        with Client(path, timeout=30.0) as client:
            for key in itertools.count(1):
                for n, (cdb, data, good) in enumerate(_good_steps(key)):
                    try:
                        reply = client.execute(fd, cdb, data)
                    except (OSError, ValueError) as e:
                        report.good_errors.append(f"key {key} step {n}: {type(e).__name__}: {e}")
                        return
                    report.good_requests += 1
                    if reply.status != 0 or not good(reply.data):
                        report.good_errors.append(f"key {key} step {n}: {reply}")
                if stop.is_set():
                    return
    finally:
        os.close(fd)


# -- the run -----------------------------------------------------------------------------------
def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def settled_fd_count(pid: int, at_most: int | None = None, timeout: float = 20.0) -> int:
    """The helper's fd count once two readings 0.1 s apart agree (or it is down to
    ``at_most``), or the last reading at ``timeout``: its disconnects are asynchronous."""
    deadline = time.monotonic() + timeout
    last = fd_count(pid)
    while time.monotonic() < deadline and (at_most is None or last > at_most):
        time.sleep(0.1)
        now = fd_count(pid)
        if at_most is None and now == last:
            break
        last = now
    return last


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def run_fuzz(
    socket_path: str | os.PathLike[str],
    frames: Iterable[Frame],
    clients: int = 4,
    *,
    workdir: Path,
    helper_pid: int | None = None,
    timeout: float = 10.0,
) -> FuzzReport:
    """Play ``frames`` (e.g. ``itertools.islice(frames(seed), 20000)``) from ``clients``
    fuzzing connections at once, with one well-behaved client alongside; ``workdir`` holds the
    two image files. With ``helper_pid`` the report has the helper's fd counts and liveness."""
    path = os.fspath(socket_path)
    fuzz_image, good_image = workdir / "fuzz.img", workdir / "good.img"
    for image in (fuzz_image, good_image):
        image.write_bytes(bytes(1 << 16))
    before = settled_fd_count(helper_pid) if helper_pid is not None else None
    fds = _Fds(fuzz_image, workdir)
    fuzzer = _Fuzzer(path, iter(frames), fds, timeout)
    report = fuzzer.report
    stop = threading.Event()
    start = time.monotonic()
    good = threading.Thread(target=_good_client, args=(path, good_image, stop, report))
    workers = [threading.Thread(target=fuzzer.client) for _ in range(clients)]
    try:
        good.start()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        stop.set()
        good.join()
        fds.close()
    report.seconds = time.monotonic() - start
    if helper_pid is not None:
        report.fds_before = before
        report.fds_after = settled_fd_count(helper_pid, at_most=before)
        report.helper_alive = alive(helper_pid)
    return report
