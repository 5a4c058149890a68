"""The real helper process's limit options and trace patterns, and the client against it."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from daemon_process import GOOD, READ_KEYS, Helper, closed_without_answer, raw, register, send_cdb

from scsi_pr.helper.client import Client, InvalidRequest
from scsi_pr.sim.cdb import persistent_reserve_in


# -- the limit options ------------------------------------------------------------------------
def test_max_clients_option(tmp_path: Path, open_image: Callable[[int], int]) -> None:
    h = Helper(tmp_path, "max", "--max-clients", "2", "-T", "prh_refused")
    fd = open_image(os.O_RDWR)
    try:
        with Client(str(h.sock)) as c1, Client(str(h.sock)) as c2:
            assert c1.execute(fd, READ_KEYS).status == GOOD
            assert c2.execute(fd, READ_KEYS).status == GOOD
            with socket.socket(socket.AF_UNIX) as third:
                third.settimeout(10)
                third.connect(str(h.sock))
                assert closed_without_answer(third)  # closed before the handshake
            assert c1.execute(fd, READ_KEYS).status == GOOD
    finally:
        assert h.stop() == 0
    assert 'reason="too many clients (2)"' in h.log_text()


def test_idle_timeout_option(tmp_path: Path, open_image: Callable[[int], int]) -> None:
    h = Helper(tmp_path, "idle", "--idle-timeout", "0.3")
    fd = open_image(os.O_RDWR)
    try:
        with raw(h) as idle:  # handshake read, then nothing
            start = time.monotonic()
            assert closed_without_answer(idle)
            assert time.monotonic() - start < 8
        with Client(str(h.sock)) as busy:
            for _ in range(3):
                assert busy.execute(fd, READ_KEYS).status == GOOD
    finally:
        assert h.stop() == 0


def test_shutdown_grace_option(
    tmp_path: Path, state_dir: Path, image: Path, open_image: Callable[[int], int]
) -> None:
    """A request stuck in a 30 s stall: SIGTERM ends the helper after the 0.5 s grace."""
    from scsi_pr.helper import sim_cli

    h = Helper(tmp_path, "grace", "--state-dir", str(state_dir), "--shutdown-grace", "0.5")
    fd = open_image(os.O_RDWR)
    busy = Client(str(h.sock))
    try:
        assert busy.execute(fd, READ_KEYS).status == GOOD
        stall = ["stall", str(image), "--state-dir", str(state_dir), "--seconds", "30"]
        assert sim_cli.main(stall) == 0
        ended: list[str] = []

        def stuck() -> None:
            try:
                busy.execute(fd, READ_KEYS)
                ended.append("answered")
            except OSError:  # HelperConnectionError: the helper gave up on it
                ended.append("cut off")

        worker = threading.Thread(target=stuck, daemon=True)
        worker.start()
        time.sleep(0.5)  # the request is in the stalled LU now
        start = time.monotonic()
        h.proc.send_signal(signal.SIGTERM)
        assert h.proc.wait(20) == 0
        assert time.monotonic() - start < 10
        worker.join(10)
        assert ended == ["cut off"]  # not answered: the 30 s stall outlived the grace
    finally:
        h.stop()
        busy.close()


def test_trace_patterns_select_audit_events_and_file(
    tmp_path: Path, open_image: Callable[[int], int]
) -> None:
    trace = tmp_path / "trace.log"
    events = tmp_path / "events"
    events.write_text("# connection events only\nprh_conn*\n")
    h = Helper(tmp_path, "tr", "-T", f"events={events},file={trace}", "-T", "prh_refused")
    try:
        with Client(str(h.sock)) as c:
            assert c.execute(open_image(os.O_RDWR), READ_KEYS).status == GOOD
        with raw(h) as s:
            s.sendall(b"\0\0\0\0")
            send_cdb(s, READ_KEYS.ljust(16, b"\0"), [])
            assert closed_without_answer(s)
    finally:
        assert h.stop() == 0
    text = trace.read_text()
    assert "prh_connect pid=" in text and "prh_refused" in text
    assert 'reason="No file descriptor in request."' in text
    assert "prh_command" not in text and "prh_disconnect" not in text
    assert "prh_" not in h.log_text().replace("No file descriptor in request.", "")


def test_client_reconnects_once_after_a_helper_restart(
    tmp_path: Path, state_dir: Path, open_image: Callable[[int], int]
) -> None:
    h = Helper(tmp_path, "r", "--state-dir", str(state_dir))
    fd = open_image(os.O_RDWR)
    with Client(str(h.sock)) as c:
        assert c.execute(fd, *register(0x77)).status == GOOD
        h.proc.kill()
        h.proc.wait()
        h = Helper(tmp_path, "r", "--state-dir", str(state_dir))  # same socket path
        try:
            keys = c.execute(fd, READ_KEYS)  # the old connection is dead: one reconnect
            assert keys.status == GOOD and keys.data[8:16] == (0x77).to_bytes(8, "big")
        finally:
            h.stop()
        with pytest.raises(OSError):
            c.execute(fd, READ_KEYS)  # nobody listening any more: the error surfaces


def test_client_refuses_what_qemu_refuses_locally(helper: Helper) -> None:
    with Client(str(helper.sock)) as c:
        with pytest.raises(InvalidRequest, match="CDB length"):
            c.execute(0, bytes(17))
        with pytest.raises(InvalidRequest, match="not PERSISTENT RESERVE"):
            c.execute(0, b"\x12" + bytes(5))
        with pytest.raises(InvalidRequest, match="exceeds 8192"):
            c.execute(0, persistent_reserve_in(0, 8193))
        with pytest.raises(ValueError, match="data-in buffer"):  # still a ValueError
            c.execute(0, persistent_reserve_in(0, 100), allocation_length=50)
        assert not c.connected  # refused before touching the socket
