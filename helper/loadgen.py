"""Many well-behaved clients hammering one helper with READ KEYS, from other processes:
``run_load(socket_path, image, clients, seconds) -> LoadReport`` (per-connection counts and a
latency histogram).

Why other processes, each driving its connections from one non-blocking ``selectors`` loop:
client threads in the measuring process would share its GIL, and the measurement would be of
the GIL's scheduling, not of the helper's fairness. Every connection speaks the protocol as QEMU
does (one request outstanding, the image's fd passed with every CDB) and checks each answer.
Used by the fairness test (issue 10 item 7) and by ``scripts/soak``.

Worker protocol (``python -m scsi_pr.helper.loadgen SOCKET IMAGE CLIENTS``): connect and
handshake every client, print ``ready``, wait for a line on stdin holding the seconds to run,
run, print one JSON line: ``{"counts": [...], "histogram": {...}, "errors": [...]}``.
"""

from __future__ import annotations

import json
import math
import os
import selectors
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from scsi_pr.helper.unix_io import recv_exactly
from scsi_pr.sim.cdb import persistent_reserve_in

CDB = persistent_reserve_in(0, 256).ljust(16, b"\0")  # READ KEYS
HEADER = 8 + 96
BUCKET = math.log(1.05)  # latency histogram: 5 % wide buckets of microseconds
STARTUP_TIMEOUT = 60.0


@dataclass
class LoadReport:
    """What ``run_load`` saw: requests answered per connection, latencies, wrong answers."""

    counts: list[int]
    histogram: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.counts)

    def latency(self, quantile: float) -> float:
        """Seconds below which ``quantile`` (0..1) of the requests were answered."""
        wanted, seen = quantile * sum(self.histogram.values()), 0
        for bucket in sorted(self.histogram):
            seen += self.histogram[bucket]
            if seen >= wanted:
                return math.exp((bucket + 1) * BUCKET) / 1e6
        return 0.0

    def merge(self, other: LoadReport) -> None:
        self.counts += other.counts
        self.histogram.update(other.histogram)
        self.errors += other.errors


class _Conn:
    """One client connection: send the CDB with the fd, read the answer, repeat."""

    def __init__(self, path: str, fd: int) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(STARTUP_TIMEOUT)
        self.sock.connect(path)
        if recv_exactly(self.sock, 4) != b"\0\0\0\0":
            raise ConnectionError("bad features word")
        self.sock.sendall(b"\0\0\0\0")
        self.sock.setblocking(False)
        self.fd = fd
        self.count = 0
        self.buf = bytearray()
        self.sent_at = 0.0

    def send(self) -> None:
        rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, self.fd.to_bytes(4, "little"))]
        self.sent_at = time.perf_counter()
        if self.sock.sendmsg([CDB], rights) != len(CDB):
            raise ConnectionError("short CDB write")  # 16 bytes into an empty socket buffer

    def readable(self) -> bytes | None:
        """The complete answer once it is in, else None."""
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("helper closed the connection")
        self.buf += chunk
        if len(self.buf) < HEADER:
            return None
        size = HEADER + int.from_bytes(self.buf[4:8], "big", signed=True)
        if len(self.buf) < size:
            return None
        answer, self.buf = bytes(self.buf[:size]), self.buf[size:]
        return answer


def _check(answer: bytes) -> str | None:
    status = int.from_bytes(answer[0:4], "big", signed=True)
    size = int.from_bytes(answer[4:8], "big", signed=True)
    if status != 0 or not 8 <= size <= 256 or len(answer) != HEADER + size:
        return f"unexpected answer status={status:#x} sz={size}"
    return None


def drive(conns: list[_Conn], seconds: float) -> LoadReport:
    """Run every connection for ``seconds``; one selectors loop serves all of them fairly."""
    report = LoadReport([])
    with selectors.DefaultSelector() as sel:
        for conn in conns:
            sel.register(conn.sock, selectors.EVENT_READ, conn)
            conn.send()
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            for key, _ in sel.select(min(left, 1.0)):
                conn = key.data
                try:
                    answer = conn.readable()
                except OSError as e:
                    report.errors.append(f"connection: {e}")
                    sel.unregister(conn.sock)
                    continue
                if answer is None:
                    continue
                latency_us = max((time.perf_counter() - conn.sent_at) * 1e6, 1.0)
                report.histogram[int(math.log(latency_us) / BUCKET)] += 1
                if (error := _check(answer)) is not None:
                    report.errors.append(error)
                conn.count += 1
                conn.send()
    report.counts = [conn.count for conn in conns]
    report.seconds = seconds
    return report


def worker(path: str, image: str, clients: int) -> int:
    """One load process (see the module docstring for its stdin/stdout protocol)."""
    fd = os.open(image, os.O_RDWR)
    conns = [_Conn(path, fd) for _ in range(clients)]
    print("ready", flush=True)
    seconds = float(sys.stdin.readline())
    report = drive(conns, seconds)
    for conn in conns:
        conn.sock.close()
    doc = {"counts": report.counts, "histogram": dict(report.histogram), "errors": report.errors}
    print(json.dumps(doc), flush=True)
    return 0


def run_load(
    socket_path: str | os.PathLike[str],
    image: str | os.PathLike[str],
    clients: int,
    seconds: float,
    processes: int = 2,
) -> LoadReport:
    """``clients`` connections spread over ``processes`` worker processes, all started before
    the clock runs, each sending READ KEYS on ``image`` for ``seconds``."""
    shares = [clients // processes + (i < clients % processes) for i in range(processes)]
    argv = [sys.executable, "-m", "scsi_pr.helper.loadgen", str(socket_path), str(image)]
    procs = [
        subprocess.Popen([*argv, str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for n in shares
        if n
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"load worker {proc.pid} did not start")
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(f"{seconds}\n")
            proc.stdin.flush()
        return _collect(procs, seconds)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def _collect(procs: Iterable[subprocess.Popen[str]], seconds: float) -> LoadReport:
    report = LoadReport([], seconds=seconds)
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds + STARTUP_TIMEOUT)
        doc = json.loads(out.strip().splitlines()[-1])
        histogram = Counter({int(k): v for k, v in doc["histogram"].items()})
        report.merge(LoadReport(doc["counts"], histogram, doc["errors"]))
    return report


if __name__ == "__main__":
    sys.exit(worker(sys.argv[1], sys.argv[2], int(sys.argv[3])))
