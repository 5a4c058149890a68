"""Hostile clients against the real ``scsi-pr-helper --backend sim`` process (issue 10).

Each test here failed on the helper before its fix: fds passed by clients that reset mid-frame
stayed open for good; SIGTERM was ignored while ``accept()`` kept failing (and a bad
socket-activation fd made it spin); client-controlled text forged audit lines; one busy
connection starved the others. The resource limits (clients, idle timeout) are checked here
too; that a connection never buffers more than one frame part is the codec's (test_proto).
"""

from __future__ import annotations

import fcntl
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_process import send_cdb
from prh_process import DEADLINE, EXE, Helper

from scsi_pr.helper.client import Client
from scsi_pr.helper.loadgen import run_load
from scsi_pr.rig import guest_cpu, processes
from scsi_pr.sim.cdb import persistent_reserve_in, persistent_reserve_out, pr_out_parameters

GOOD = 0x00
READ_KEYS = persistent_reserve_in(0, 256)
CDB_RK = READ_KEYS.ljust(16, b"\0")
CDB_REGISTER = persistent_reserve_out(6, 24).ljust(16, b"\0")
FEATURES = b"\0\0\0\0"


@pytest.fixture
def helper(tmp_path: Path) -> Iterator[Helper]:
    h = Helper(tmp_path)
    yield h
    h.stop()


def connect(helper: Helper) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(DEADLINE)
    s.connect(str(helper.sock))
    return s


def baseline_fds(helper: Helper, device: int) -> int:
    """The helper's fd count at rest after one full exchange (lazy setup done)."""
    with Client(str(helper.sock)) as c:
        assert c.execute(device, READ_KEYS).status == GOOD
    return _rest(helper)


def _rest(helper: Helper) -> int:
    """Wait until two readings 0.1 s apart agree (the last disconnect is processed)."""
    last, deadline = helper.fds(), time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = helper.fds()
        if now == last:
            return now
        last = now
    return last


# -- item 1: every fd received with SCM_RIGHTS dies with its connection ------------------------
def _features_arrived(s: socket.socket) -> None:
    """Wait for the helper's features word without reading it: closing with it unread makes
    the close a reset (ECONNRESET for the helper, after it has read what we sent)."""
    assert s.recv(4, socket.MSG_PEEK) == FEATURES


def _partial_cdb_reset(s: socket.socket, fds: list[int]) -> None:
    _features_arrived(s)
    send_cdb(s, FEATURES + CDB_RK[:9], [])
    send_cdb(s, CDB_RK[9:12], fds)


def _prout_without_data_reset(s: socket.socket, fds: list[int]) -> None:
    _features_arrived(s)
    s.sendall(FEATURES)
    send_cdb(s, CDB_REGISTER, fds)


def _partial_cdb_eof(s: socket.socket, fds: list[int]) -> None:
    assert s.recv(4) == FEATURES
    s.sendall(FEATURES)
    send_cdb(s, CDB_RK[:5], fds)


def _prout_without_data_eof(s: socket.socket, fds: list[int]) -> None:
    assert s.recv(4) == FEATURES
    s.sendall(FEATURES)
    send_cdb(s, CDB_REGISTER, fds)
    s.sendall(pr_out_parameters(0, 1)[:7])


def _fds_on_the_features_word(s: socket.socket, fds: list[int]) -> None:
    _features_arrived(s)
    send_cdb(s, FEATURES[:2], fds)


def _many_fds_mid_cdb(s: socket.socket, fds: list[int]) -> None:
    _features_arrived(s)
    s.sendall(FEATURES)
    send_cdb(s, CDB_RK[:3], fds * 12)  # more than the helper reads at once


HOSTILE = {
    "partial-cdb-reset": _partial_cdb_reset,
    "prout-without-data-reset": _prout_without_data_reset,
    "partial-cdb-eof": _partial_cdb_eof,
    "prout-short-data-eof": _prout_without_data_eof,
    "fds-on-features": _fds_on_the_features_word,
    "many-fds-mid-cdb": _many_fds_mid_cdb,
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_fds_of_broken_connections_are_closed(helper: Helper, device: int, case: str) -> None:
    baseline = baseline_fds(helper, device)
    for _ in range(50):
        with connect(helper) as s:
            HOSTILE[case](s, [device])
    assert helper.settle_fds(baseline) == baseline, f"{case}: passed fds leak"
    with Client(str(helper.sock)) as c:  # and the helper still serves
        assert c.execute(device, READ_KEYS).status == GOOD


def _until_read(s: socket.socket) -> None:
    """Until the peer has read everything sent on ``s`` (SIOCOUTQ: bytes it has not taken)."""
    deadline = time.monotonic() + DEADLINE
    while int.from_bytes(fcntl.ioctl(s, SIOCOUTQ, bytes(4)), "little"):
        assert time.monotonic() < deadline, "the helper stopped reading"
        time.sleep(0.01)


SIOCOUTQ = 0x5411  # <linux/sockios.h>, the same number as TIOCOUTQ


def test_fds_sent_outside_a_cdb_are_never_held(helper: Helper, device: int) -> None:
    """Fds ride only with a CDB: sent with the features word or a PR OUT parameter list the
    kernel drops them (those parts are read without a control buffer, as qemu-pr-helper
    reads them), so a client cannot make the helper hold fds for as long as it likes."""
    baseline = baseline_fds(helper, device)
    with connect(helper) as s:
        assert s.recv(4) == FEATURES
        send_cdb(s, FEATURES, [device] * 8)
        send_cdb(s, CDB_REGISTER, [device])
        params = pr_out_parameters(0, 1)
        for i in range(len(params) - 1):  # every byte but the last, 8 fds with each
            send_cdb(s, params[i : i + 1], [device] * 8)
        _until_read(s)
        assert helper.fds() <= baseline + 2, "held: its socket and the request's fd only"
        s.sendall(params[-1:])
        assert s.recv(4) == bytes(4)  # GOOD
    assert helper.settle_fds(baseline) == baseline


# -- item 4: client-controlled text cannot forge audit lines -----------------------------------
FORGED = b'x\n2026-11-25T14:35:45 prh_command pid=1 uid=0 device=/dev/sdb command="PR OUT CLEAR'
HOSTILE_NAMES = [
    FORGED,
    b'quote"d name',
    b"back\\slash",
    b"esc\x1b[31mred\rcr\ttab",
    b"undecodable\xff\xfe",
    "unicode \u2028 line separator".encode(),
]


def test_hostile_device_names_parse_back_exactly(helper: Helper, tmp_path: Path) -> None:
    paths = []
    for i, name in enumerate(HOSTILE_NAMES):
        path = os.fsencode(tmp_path) + b"/" + name.replace(b"/", b"_") + str(i).encode()
        with open(path, "wb") as f:
            f.write(bytes(4096))
        paths.append(path)
    with Client(str(helper.sock)) as c:
        for path in paths:
            fd = os.open(path, os.O_RDWR)
            try:
                assert c.execute(fd, READ_KEYS).status == GOOD
            finally:
                os.close(fd)
    deadline = time.monotonic() + DEADLINE
    while helper.trace.read_bytes().count(b" prh_command ") < len(paths):
        assert time.monotonic() < deadline, "audit lines missing"
        time.sleep(0.05)
    commands = [fields for event, fields in helper.audit() if event == "prh_command"]
    assert [os.fsencode(f["device"]) for f in commands] == paths
    assert all(f["pid"] == str(os.getpid()) for f in commands)  # no forged pid=1 line


# -- item 2: SIGTERM is honoured in every state, and accept() never spins -----------------------


def test_sigterm_while_accept_is_out_of_fds(helper: Helper, device: int) -> None:
    baseline = baseline_fds(helper, device)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.prlimit(helper.proc.pid, resource.RLIMIT_NOFILE, (baseline + 1, hard))
    clients = []
    try:
        deadline = time.monotonic() + DEADLINE
        while "Too many open files" not in helper.output():  # the fd limit is reached...
            assert time.monotonic() < deadline, f"no EMFILE: {helper.output()}"
            clients.append(connect(helper))  # ...and these wait in the backlog
            time.sleep(0.1)
        before = guest_cpu.usage(helper.proc.pid).own
        time.sleep(1.0)
        spent = guest_cpu.usage(helper.proc.pid).own - before
        assert spent < 0.5, "accept() spins while out of fds"
        code, _took = helper.terminate_within()
        assert code == 0, helper.output()
        assert helper.output().count("Too many open files") == 1  # reported once, not per retry
    finally:
        for c in clients:
            c.close()


ACTIVATE = """
import os, socket, sys
kind = sys.argv[1]
if kind == "unbound-socket":
    fd = socket.socket(socket.AF_UNIX).detach()
elif kind == "datagram-socket":
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(sys.argv[2] + ".dgram")
    fd = s.detach()
else:
    fd = os.open(sys.argv[2] + ".file", os.O_RDWR | os.O_CREAT)
if fd != 3:
    os.dup2(fd, 3)
os.set_inheritable(3, True)
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="1")
os.execv(sys.argv[3], sys.argv[3:])
"""


@pytest.mark.parametrize("kind", ["unbound-socket", "datagram-socket", "regular-file"])
def test_a_bad_activation_fd_is_a_clear_error_not_a_busy_loop(tmp_path: Path, kind: str) -> None:
    log = tmp_path / "activated.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", ACTIVATE, kind, str(tmp_path / "x"), EXE, "--backend", "sim"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        code = proc.wait(DEADLINE)
    except subprocess.TimeoutExpired:
        busy = guest_cpu.usage(proc.pid).own
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(DEADLINE)
            ended = "exited on SIGTERM"
        except subprocess.TimeoutExpired:
            processes.kill(proc)
            ended = "ignored SIGTERM"
        pytest.fail(f"helper kept running on a bad fd 3 ({busy:.1f} s CPU), then {ended}")
    text = log.read_text()
    assert code == 1, text
    # a non-socket is refused when it is adopted, a socket that does not listen by the server
    message = {"regular-file": "Failed to use socket activation"}
    assert message.get(kind, "fd 3 is not a listening stream socket") in text, text
    assert "Traceback" not in text, text


def test_sigterm_with_clients_mid_frame_and_mid_request(tmp_path: Path, image: Path) -> None:
    from scsi_pr.helper import sim_cli

    state = tmp_path / "state"
    state.mkdir()
    h = Helper(tmp_path, "m", "--state-dir", str(state))
    fd = os.open(image, os.O_RDWR)
    sockets = []
    try:
        with Client(str(h.sock)) as c:
            assert c.execute(fd, READ_KEYS).status == GOOD
        for case in ("partial-cdb-eof", "prout-short-data-eof"):
            s = connect(h)
            sockets.append(s)
            HOSTILE[case](s, [fd])  # and stays connected mid-frame
        stall = ["stall", str(image), "--state-dir", str(state), "--seconds", "2"]
        assert sim_cli.main(stall) == 0
        answers: list[int] = []
        busy = Client(str(h.sock))
        busy.connect()
        worker = threading.Thread(target=lambda: answers.append(busy.execute(fd, READ_KEYS).status))
        worker.start()
        time.sleep(0.5)  # the request is in the stalled LU now
        code, took = h.terminate_within()
        worker.join(DEADLINE)
        assert code == 0 and answers == [GOOD]  # the request in flight was answered first
        assert took >= 1.0  # it waited for that answer (2 s stall, 0.5 s of it already gone)
        for s in sockets:
            assert s.recv(200) == b""  # mid-frame clients: closed without an answer
    finally:
        os.close(fd)
        for s in sockets:
            s.close()
        h.stop()


# -- item 7: connections are served round-robin ------------------------------------------------
def test_many_clients_are_served_within_a_bounded_spread(tmp_path: Path, image: Path) -> None:
    """48 connections from 2 other processes, READ KEYS for 3 s each run. Before the fix a
    connection whose next request was already buffered kept the loop (counts 22..12,375); with
    a yield between requests the spread is about 1.1. The bound leaves room for a loaded
    2-core machine; a run that misses it is repeated (3 runs) before the test fails."""
    h = Helper(tmp_path, "fair", "-T", "-prh_command")
    try:
        runs = []
        for _ in range(3):
            report = run_load(h.sock, image, clients=48, seconds=3.0, processes=2)
            assert report.errors == []
            runs.append((min(report.counts), max(report.counts), report.latency(0.99)))
            if runs[-1][0] * 4 >= runs[-1][1]:
                break
        low, high, _p99 = runs[-1]
        assert low * 4 >= high, f"per-connection counts (min, max, p99 s) per run: {runs}"
        assert low > 0
    finally:
        h.stop()


# -- resource limits -------------------------------------------------------------------------
def closed_at_once(s: socket.socket) -> bool:
    try:
        return s.recv(4) == b""
    except ConnectionResetError:
        return True


def handshake(helper: Helper) -> socket.socket:
    s = connect(helper)
    assert s.recv(4) == FEATURES
    s.sendall(FEATURES)
    return s


def read_keys(s: socket.socket, fd: int) -> int:
    """One READ KEYS on an open connection; its status."""
    send_cdb(s, CDB_RK, [fd])
    header = b""
    while len(header) < 104:
        part = s.recv(104 - len(header))
        assert part, "closed without an answer"
        header += part
    size = int.from_bytes(header[4:8], "big")
    while size:
        size -= len(s.recv(size))
    return int.from_bytes(header[:4], "big")


def test_clients_beyond_the_limit_are_refused_and_the_others_served(
    tmp_path: Path, device: int
) -> None:
    h = Helper(tmp_path, "limit", "--max-clients", "3")
    served = []
    try:
        for _ in range(3):  # no probe came before (READY=1): the three places are free
            s = connect(h)
            served.append(s)
            assert not closed_at_once(s), h.output()
            s.sendall(FEATURES)
        for _ in range(5):
            with connect(h) as extra:
                assert closed_at_once(extra)  # no features word: QEMU sees a failed connect
        assert all(read_keys(s, device) == GOOD for s in served)
        served.pop().close()  # a place is free again
        deadline = time.monotonic() + DEADLINE
        while True:
            s = connect(h)
            if not closed_at_once(s):
                break
            s.close()
            assert time.monotonic() < deadline, "the freed place was never given again"
            time.sleep(0.05)
        s.sendall(FEATURES)
        served.append(s)
        assert read_keys(s, device) == GOOD
        refused = [f for e, f in h.audit() if e == "prh_refused"]
        assert len(refused) >= 5
        assert {f["reason"] for f in refused} == {"too many clients (3)"}
        assert {f["pid"] for f in refused} == {str(os.getpid())}
    finally:
        for s in served:
            s.close()
        assert h.terminate_within()[0] == 0


def test_idle_timeout_closes_idle_and_slow_clients_only(tmp_path: Path, device: int) -> None:
    h = Helper(tmp_path, "idle", "--idle-timeout", "0.5")
    try:
        idle, busy, slow = handshake(h), handshake(h), handshake(h)
        start = time.monotonic()
        for i in range(8):  # a request every 0.2 s: never idle for 0.5 s
            assert read_keys(busy, device) == GOOD
            if i < 3:
                send_cdb(slow, CDB_RK[i : i + 1], [device] if i == 0 else [])
            time.sleep(0.2)
        assert closed_at_once(idle) and closed_at_once(slow)  # slowloris: the frame is timed
        assert read_keys(busy, device) == GOOD
        assert time.monotonic() - start < DEADLINE
        reasons = [f["reason"] for e, f in h.audit() if e == "prh_disconnect"]
        assert reasons.count("idle timeout (0.5 s)") >= 2
        for s in (idle, busy, slow):
            s.close()
    finally:
        assert h.terminate_within()[0] == 0


def test_limits_default_to_the_c_helper_behaviour() -> None:
    from scsi_pr.helper.daemon import HelperServer, default_max_clients
    from scsi_pr.helper.executors.sim import SimExecutor

    server = HelperServer(SimExecutor())
    assert server.idle_timeout is None  # QEMU keeps its connection idle for hours
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert server.max_clients == default_max_clients()
    assert 1 <= server.max_clients <= max(soft // 2, 1)
    with pytest.raises(ValueError, match="max_clients"):
        HelperServer(SimExecutor(), max_clients=0)


def test_sigterm_with_a_request_stuck_in_a_worker_thread(tmp_path: Path, image: Path) -> None:
    """A call that never returns (here: the LU lock held by another process for ever; on a real
    helper SG_IO on a dead path) gets the shutdown grace, then the helper exits anyway."""
    state = tmp_path / "state"
    state.mkdir()
    h = Helper(tmp_path, "stuck", "--shutdown-grace", "1", "--state-dir", str(state))
    fd = os.open(image, os.O_RDWR)
    held = None
    try:
        with Client(str(h.sock)) as c:
            assert c.execute(fd, READ_KEYS).status == GOOD
        (lock,) = state.glob("*.lock")
        held = os.open(lock, os.O_RDWR)
        fcntl.flock(held, fcntl.LOCK_EX)  # the helper's next command waits for it for ever
        stuck = handshake(h)
        send_cdb(stuck, CDB_RK, [fd])
        time.sleep(0.5)
        code, took = h.terminate_within()
        assert code == 0, h.output()
        assert took < DEADLINE
        assert closed_at_once(stuck)  # no answer: the grace (1 s) was over
        stuck.close()
    finally:
        os.close(fd)
        if held is not None:
            os.close(held)
        h.stop()
