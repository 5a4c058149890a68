"""Simulated LUs shared through a state dir: no lost updates across processes, crash leftovers
ignored, faults and the ``scsi-pr sim`` command."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest

from scsi_pr.helper.executors.sim import SimExecutor
from scsi_pr.helper.simserve import LuKey, SharedLUs, main
from scsi_pr.sim.cdb import persistent_reserve_in, persistent_reserve_out, pr_out_parameters
from scsi_pr.sim.nexus import ITNexus

ROUNDS = 25


def _hammer(args: tuple[str, str, int]) -> None:
    state, image, index = args
    lus = SharedLUs(state)
    nexus = ITNexus.named(f"naa.50014050000000{index + 1:02x}")
    for n in range(ROUNDS):
        cdb = persistent_reserve_out(6, 24)
        data = pr_out_parameters(0, (index << 16) | (n + 1))
        result = lus.run_on_file(image, lambda lu, c=cdb, d=data: lu.execute(nexus, c, d))
        assert result.status == 0, result


def test_processes_never_lose_each_others_updates(tmp_path: Path) -> None:
    image = tmp_path / "lu.img"
    image.write_bytes(bytes(4096))
    state = tmp_path / "state"
    with multiprocessing.get_context("fork").Pool(4) as pool:
        pool.map(_hammer, [(str(state), str(image), i) for i in range(4)])
    lu = SharedLUs(state).run_on_file(image, lambda lu: lu)
    assert lu.pr.generation == 4 * ROUNDS
    keys = sorted(r.key for r in lu.pr.registrations.values())
    assert keys == [(i << 16) | ROUNDS for i in range(4)]


def test_a_crash_leftover_temp_file_is_ignored(tmp_path: Path) -> None:
    image = tmp_path / "lu.img"
    image.write_bytes(bytes(4096))
    ex = SimExecutor("naa.5001405000000001", tmp_path / "state")
    fd = os.open(image, os.O_RDWR)
    try:
        assert ex.execute(fd, persistent_reserve_out(6, 24), pr_out_parameters(0, 7), 0).status == 0
        key = LuKey.of(os.stat(image))
        # a helper killed between writing its temp file and renaming it
        (tmp_path / "state" / f"{key.stem}.json.99999.tmp").write_text('{"format": 1, "sta')
        other = SimExecutor("naa.5001405000000002", tmp_path / "state")
        reply = other.execute(fd, persistent_reserve_in(0, 64), b"", 64)
        assert reply.status == 0 and reply.data[8:16] == (7).to_bytes(8, "big")
    finally:
        os.close(fd)


def test_stall_fault_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "lu.img"
    image.write_bytes(bytes(4096))
    state = tmp_path / "state"
    ex = SimExecutor("naa.5001405000000001", state)
    fd = os.open(image, os.O_RDWR)
    try:
        assert main(["stall", str(image), "--state-dir", str(state), "--seconds", "2.5"]) == 0
        result = ex.run(fd, persistent_reserve_in(0, 64), b"", 64)
        assert result.stall == 2.5
        assert main(["stall", str(image), "--state-dir", str(state), "--seconds", "0"]) == 0
        assert ex.run(fd, persistent_reserve_out(6, 24), pr_out_parameters(0, 9), 0).stall == 0
    finally:
        os.close(fd)
    capsys.readouterr()
    assert main(["show", str(image), "--state-dir", str(state)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["generation"] == 1
    assert shown["registrations"] == [
        {"nexus": "naa.5001405000000001@1", "key": "0x9", "all_tg_pt": False}
    ]
    assert main(["show", str(tmp_path / "missing.img"), "--state-dir", str(state)]) == 1


def test_serve_runs_one_helper_per_initiator(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    from scsi_pr.helper.client import Client

    image = tmp_path / "lu.img"
    image.write_bytes(bytes(4096))
    state = tmp_path / "state"
    exe = Path(sys.executable).parent / "scsi-pr"
    proc = subprocess.Popen(
        [str(exe), "sim", "serve", "--state-dir", str(state), "--initiators", "2"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    socks = [state / "host1.sock", state / "host2.sock"]
    try:
        deadline = time.monotonic() + 20
        while not all(s.exists() for s in socks):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        time.sleep(0.3)
        fd = os.open(image, os.O_RDWR)
        try:
            for n, sock in enumerate(socks, 1):
                with Client(str(sock)) as c:
                    reply = c.execute(fd, persistent_reserve_out(6, 24), pr_out_parameters(0, n))
                    assert reply.status == 0
            lu = SharedLUs(state).run_on_file(image, lambda lu: lu)
            assert sorted((r.nexus.target_port, r.key) for r in lu.pr.registrations.values()) == [
                (1, 1),
                (2, 2),
            ]
        finally:
            os.close(fd)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    assert not any(s.exists() for s in socks)
