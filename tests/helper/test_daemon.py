"""The real ``scsi-pr-helper --backend sim`` process over real Unix sockets.

Covers: concurrent clients, two helpers (two initiators) sharing one LU, fd checks, every
protocol violation closing only that connection, the audit log, SIGTERM shutdown, socket
activation, pidfile locking and a second helper on a live socket. The limit options and the
client's reconnect are in test_daemon_options.py, the privilege drop in test_privileges.py, the
command line against the C helper's in test_cli_vs_c_helper.py.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from daemon_process import (
    CHECK,
    CONFLICT,
    EXE,
    GOOD,
    NODE1,
    NODE2,
    READ_KEYS,
    READ_RESERVATION,
    Helper,
    closed_without_answer,
    raw,
    register,
    send_cdb,
    sense_triple,
)
from fd_kinds import non_device_fds

from scsi_pr.helper.client import Client
from scsi_pr.sim.cdb import persistent_reserve_out, pr_out_parameters


# -- happy paths ------------------------------------------------------------------------------
def test_concurrent_clients_each_get_their_own_answers(
    helper: Helper, open_image: Callable[[int], int]
) -> None:
    fd = open_image(os.O_RDWR)
    with Client(str(helper.sock)) as c:
        assert c.execute(fd, *register(0xABC)).status == GOOD
    errors: list[str] = []

    def worker(n: int) -> None:
        with Client(str(helper.sock)) as c:
            for _ in range(25):
                r = c.execute(fd, READ_KEYS)
                if r.status != GOOD or r.data[8:16] != (0xABC).to_bytes(8, "big"):
                    errors.append(f"client {n}: {r}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    audit = helper.log_text()
    assert audit.count('command="PR IN READ KEYS alloc=256" status=GOOD') == 16 * 25
    assert f"device={helper.sock.parent / 'lu.img'}" in audit
    assert f"pid={os.getpid()} uid={os.getuid()}" in audit


def test_two_helpers_two_initiators_share_one_lu(
    tmp_path: Path, state_dir: Path, open_image: Callable[[int], int]
) -> None:
    h1 = Helper(tmp_path, "n1", "--state-dir", str(state_dir), initiator=NODE1)
    h2 = Helper(tmp_path, "n2", "--state-dir", str(state_dir), initiator=NODE2)
    try:
        fd = open_image(os.O_RDWR)
        with Client(str(h1.sock)) as c1, Client(str(h2.sock)) as c2:
            assert c1.execute(fd, *register(0x1A2B)).status == GOOD
            assert c2.execute(fd, *register(0x3C4D)).status == GOOD
            reserve = persistent_reserve_out(1, 24, 5), pr_out_parameters(0x1A2B)
            assert c1.execute(fd, *reserve).status == GOOD
            keys = c2.execute(fd, READ_KEYS)
            assert keys.data[:8] == (2).to_bytes(4, "big") + (16).to_bytes(4, "big")
            assert keys.data[8:24] == (0x1A2B).to_bytes(8, "big") + (0x3C4D).to_bytes(8, "big")
            # node2 cannot reserve over node1's WE-RO reservation
            conflict = c2.execute(fd, persistent_reserve_out(1, 24, 5), pr_out_parameters(0x3C4D))
            assert conflict.status == CONFLICT
            # node2 preempts node1 (fence): node1's key is gone, node2 holds the reservation
            preempt = persistent_reserve_out(4, 24, 5), pr_out_parameters(0x3C4D, 0x1A2B)
            assert c2.execute(fd, *preempt).status == GOOD
            ua = c1.execute(fd, READ_KEYS)
            assert ua.status == CHECK and sense_triple(ua) == (0x6, 0x2A, 0x05)
            res = c1.execute(fd, READ_RESERVATION)
            assert res.status == GOOD
            assert res.data[8:16] == (0x3C4D).to_bytes(8, "big")
            assert c1.execute(fd, *reserve).status == CONFLICT
    finally:
        assert h1.stop() == 0 and h2.stop() == 0


# -- what the helper refuses ------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["pipe", "/dev/null", "socket", "directory"])
def test_non_file_fds_get_the_failed_sg_io_answer(
    helper: Helper, tmp_path: Path, kind: str, open_image: Callable[[int], int]
) -> None:
    fd = non_device_fds(tmp_path)[kind]()
    try:
        with Client(str(helper.sock)) as c:
            r = c.execute(fd, READ_KEYS)
            assert (r.status, sense_triple(r), r.data) == (CHECK, (0x0B, 0x00, 0x06), b"")
            assert r.sense[:18] == bytes.fromhex("70000b000000000a000000000006") + bytes(4)
            # the connection stays usable, and a real file works on it
            assert c.execute(open_image(os.O_RDWR), READ_KEYS).status == GOOD
    finally:
        os.close(fd)


def test_pr_out_on_read_only_fd_is_invalid_opcode(
    helper: Helper, open_image: Callable[[int], int]
) -> None:
    with Client(str(helper.sock)) as c:
        r = c.execute(open_image(os.O_RDONLY), *register(1))
        assert (r.status, sense_triple(r)) == (CHECK, (0x05, 0x20, 0x00))
        assert c.execute(open_image(os.O_RDONLY), READ_KEYS).status == GOOD


@pytest.mark.parametrize(
    "case",
    [
        "features-1",
        "features-short",
        "no-fd",
        "two-fds",
        "not-pr-opcode",
        "too-long",
        "short-cdb",
        "short-data",
    ],
)
def test_protocol_violations_close_only_that_connection(
    helper: Helper, case: str, open_image: Callable[[int], int]
) -> None:
    fd = open_image(os.O_RDWR)
    rk = READ_KEYS.ljust(16, b"\0")
    with Client(str(helper.sock)) as bystander, raw(helper) as s:
        assert bystander.execute(fd, READ_KEYS).status == GOOD
        if case == "features-1":
            s.sendall(b"\0\0\0\1")
        elif case == "features-short":
            s.sendall(b"\0\0")
            s.shutdown(socket.SHUT_WR)
        else:
            s.sendall(b"\0\0\0\0")
            if case == "no-fd":
                send_cdb(s, rk, [])
            elif case == "two-fds":
                send_cdb(s, rk, [fd, fd])
            elif case == "not-pr-opcode":
                send_cdb(s, b"\x12" + bytes(15), [fd])
            elif case == "too-long":
                send_cdb(s, b"\x5e" + bytes(6) + b"\x20\x01" + bytes(7), [fd])
            elif case == "short-cdb":
                send_cdb(s, rk[:9], [fd])
                s.shutdown(socket.SHUT_WR)
            elif case == "short-data":
                send_cdb(s, persistent_reserve_out(6, 24).ljust(16, b"\0"), [fd])
                s.sendall(pr_out_parameters(0, 5)[:10])
                s.shutdown(socket.SHUT_WR)
        assert closed_without_answer(s)
        # the other client was not disturbed, and no state changed
        r = bystander.execute(fd, READ_KEYS)
        assert (r.status, r.data[:8]) == (GOOD, bytes(8))
    time.sleep(0.2)
    assert "prh_refused" in helper.log_text()


# -- process lifecycle -------------------------------------------------------------------------
def test_sigterm_exits_zero_with_idle_client_and_removes_socket(
    tmp_path: Path, open_image: Callable[[int], int]
) -> None:
    h = Helper(tmp_path, "t")
    with Client(str(h.sock)) as idle:
        assert idle.execute(open_image(os.O_RDWR), READ_KEYS).status == GOOD
        start = time.monotonic()
        assert h.stop() == 0
        assert time.monotonic() - start < 10
    assert not h.sock.exists()


STOPPED_AT_START = """
import os, signal, sys
from scsi_pr.helper import main as helper_main

# started as a shell's background job is: SIGINT ignored, which the helper must not keep
signal.signal(signal.SIGINT, signal.SIG_IGN)

# the signal arrives once the socket and the pidfile exist, before the server's loop runs
helper_main.drop_privileges = lambda opts, executor: os.kill(os.getpid(), int(sys.argv[1]))
sys.exit(helper_main.main(["scsi-pr-helper", "--backend", "sim", *sys.argv[2:]]))
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=str)
def test_a_signal_before_the_loop_runs_still_removes_socket_and_pidfile(
    tmp_path: Path, signum: signal.Signals
) -> None:
    sock, pidfile = tmp_path / "h.sock", tmp_path / "h.pid"
    r = subprocess.run(
        [sys.executable, "-c", STOPPED_AT_START, str(int(signum)), "-k", str(sock), "-f",
         str(pidfile)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert not sock.exists() and not pidfile.exists()


ACTIVATE = """
import os, sys
os.dup2(int(sys.argv[1]), 3)
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="1")
os.execv(sys.argv[2], sys.argv[2:])
"""


def test_socket_activation(tmp_path: Path, open_image: Callable[[int], int]) -> None:
    path = tmp_path / "activated.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen()
    # as systemd does: the listener on fd 3, LISTEN_PID = the pid that execs the helper
    proc = subprocess.Popen(
        [sys.executable, "-c", ACTIVATE, str(listener.fileno()), str(EXE), "--backend", "sim"],
        pass_fds=[listener.fileno()],
    )
    listener.close()
    try:
        with Client(str(path)) as c:
            assert c.execute(open_image(os.O_RDWR), READ_KEYS).status == GOOD
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    bad = subprocess.run(
        ["sh", "-c", f"LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" -k {tmp_path}/x.sock", str(EXE)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert bad.returncode == 1
    assert bad.stderr.endswith("Unix socket can't be set when using socket activation\n")
    two = subprocess.run(
        ["sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=2 exec "$0"', str(EXE)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert two.returncode == 1 and "LISTEN_FDS > 1" in two.stderr


def test_pidfile_is_locked(tmp_path: Path) -> None:
    pidfile = tmp_path / "helper.pid"
    h = Helper(tmp_path, "p1", "-f", str(pidfile))
    try:
        assert pidfile.read_text() == f"{h.proc.pid}\n"
        second = subprocess.run(
            [str(EXE), "--backend", "sim", "-k", str(tmp_path / "p2.sock"), "-f", str(pidfile)],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert second.returncode == 1
        assert second.stderr.endswith(": Cannot lock pid file: Resource temporarily unavailable\n")
    finally:
        assert h.stop() == 0


def _second(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(EXE), "--backend", "sim", *args], capture_output=True, text=True, timeout=30,
        check=False,
    )  # fmt: skip


@pytest.mark.parametrize("pidfile", ["same-pidfile", "own-pidfile", "no-pidfile"])
def test_a_second_helper_on_a_live_socket_refuses_and_leaves_it(
    tmp_path: Path, open_image: Callable[[int], int], pidfile: str
) -> None:
    """Issue 10 item 8: B used to unlink A's socket before failing on the pidfile lock (or to
    take the path over), cutting A off from every new client. Now B asks the socket first."""
    a = Helper(tmp_path, "live", "-f", str(tmp_path / "a.pid"))
    fd = open_image(os.O_RDWR)
    try:
        with Client(str(a.sock)) as c:  # a client connected before B
            assert c.execute(fd, READ_KEYS).status == GOOD
            inode = a.sock.stat().st_ino
            own = {"same-pidfile": "a.pid", "own-pidfile": "b.pid"}.get(pidfile)
            extra = ["-f", str(tmp_path / own)] if own else []
            b = _second("-k", str(a.sock), *extra)
            assert b.returncode == 1, b.stderr
            assert b.stderr == (
                f"scsi-pr-helper: Failed to bind socket to {a.sock}: "
                "a helper is already listening there\n"
            )
            assert a.sock.stat().st_ino == inode  # the socket file was not touched
            assert not (tmp_path / "b.pid").exists()
            assert c.execute(fd, READ_KEYS).status == GOOD  # A's client goes on
        with Client(str(a.sock)) as fresh:  # and new clients still reach A
            assert fresh.execute(fd, READ_KEYS).status == GOOD
    finally:
        assert a.stop() == 0
    assert "Traceback" not in a.log_text()


def test_a_stale_socket_is_replaced(tmp_path: Path, open_image: Callable[[int], int]) -> None:
    path = tmp_path / "stale.sock"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))
    dead.close()  # the file stays, nobody listens: a helper killed with SIGKILL leaves this
    h = Helper(tmp_path, "stale")
    try:
        with Client(str(h.sock)) as c:
            assert c.execute(open_image(os.O_RDWR), READ_KEYS).status == GOOD
    finally:
        assert h.stop() == 0
