"""Simulated LUs shared through a state dir: no lost updates across processes, crash leftovers
ignored, the state dir's files. The ``scsi-pr sim`` command is in ``test_sim_cli.py``."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from scsi_pr.helper.executors.sim import SimExecutor
from scsi_pr.helper.simserve import LuFiles, LuKey, SharedLUs
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


def test_stall_and_forget_act_on_the_lu_files(tmp_path: Path) -> None:
    image = tmp_path / "lu.img"
    image.write_bytes(bytes(4096))
    lus = SharedLUs(tmp_path / "state")
    key = LuKey.of(os.stat(image))
    files = lus.files(key)
    assert files == LuFiles.of(tmp_path / "state", key)
    assert [p.name for p in files.all] == [
        f"{key.stem}.json",
        f"{key.stem}.aptpl.json",
        f"{key.stem}.fault.json",
        f"{key.stem}.lock",
    ]
    nexus = ITNexus.named("naa.5001405000000001")
    register = persistent_reserve_out(6, 24), pr_out_parameters(0, 5)
    lus.set_stall(key, 1.5)
    result = lus.run_on_file(image, lambda lu: lu.execute(nexus, *register))
    assert (result.status, result.stall) == (0, 1.5)
    assert files.state.exists() and files.lock.exists() and files.fault.exists()
    lus.forget(key)
    assert not any(p.exists() for p in files.all)
    fresh = SharedLUs(tmp_path / "state").run_on_file(image, lambda lu: lu)
    assert fresh.pr.generation == 0 and not fresh.pr.registrations
    assert fresh.fault(nexus, register[0]) is None  # the stall went with the LU
    with pytest.raises(ValueError, match="no files"):
        SharedLUs().files(key)
