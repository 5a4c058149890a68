"""Simulated LUs shared through a state dir: no lost updates across processes, crash leftovers
ignored, the state dir's files, a bounded LU cache, one LU never waiting for another. The
commit path under kills is in ``test_simserve_commit.py``, the LU identity in
``test_lu_identity.py``, the ``scsi-pr sim`` command in ``test_sim_cli.py``."""

from __future__ import annotations

import contextlib
import fcntl
import gc
import multiprocessing
import os
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from scsi_pr.helper.executors.sim import SimExecutor
from scsi_pr.helper.lu_identity import identify_path
from scsi_pr.helper.simserve import LuBusy, LuFiles, SharedLUs, no_waiting
from scsi_pr.sim import cdb as C
from scsi_pr.sim.cdb import (
    persistent_reserve_in,
    persistent_reserve_out,
    pr_out_parameters,
)
from scsi_pr.sim.device import LogicalUnit
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
        key = identify_path(image)[0]
        # a helper killed between writing its temp file and renaming it
        ex.lus.files(key).temp.write_text('{"format": 2, "sta')
        other = SimExecutor("naa.5001405000000002", tmp_path / "state")
        reply = other.execute(fd, persistent_reserve_in(0, 64), b"", 64)
        assert reply.status == 0 and reply.data[8:16] == (7).to_bytes(8, "big")
    finally:
        os.close(fd)


def test_stall_and_forget_act_on_the_lu_files(tmp_path: Path) -> None:
    image = tmp_path / "lu.img"
    image.write_bytes(bytes(4096))
    lus = SharedLUs(tmp_path / "state")
    key = identify_path(image)[0]
    files = lus.files(key)
    assert files == LuFiles.of(tmp_path / "state", key)
    assert [p.name for p in files.all] == [
        f"{key.stem}.json",
        f"{key.stem}.json.tmp",
        f"{key.stem}.fault.json",
        f"{key.stem}.fault.json.tmp",
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


def _register(lus: SharedLUs, image: Path, key: int) -> None:
    nexus = ITNexus.named("naa.5001405000000001")
    cdb, data = persistent_reserve_out(6, 24), pr_out_parameters(0, key)
    assert lus.run_on_file(image, lambda lu: lu.execute(nexus, cdb, data)).status == 0


def _images(tmp_path: Path, count: int) -> list[Path]:
    images = [tmp_path / f"lu{n}.img" for n in range(count)]
    for image in images:
        image.write_bytes(bytes(4096))
    return images


def test_the_lu_cache_is_bounded_and_the_disk_stays_the_truth(tmp_path: Path) -> None:
    """9b: LUs beyond the cache size are freed; an evicted LU comes back from its state file."""
    lus = SharedLUs(tmp_path / "state", cache_size=4)
    images = _images(tmp_path, 20)
    _register(lus, images[0], 0x77)
    refs = [lus.run_on_file(image, weakref.ref) for image in images]
    gc.collect()
    assert sum(ref() is not None for ref in refs) <= 4
    assert lus.cached <= 4
    lu = lus.run_on_file(images[0], lambda lu: lu)
    assert [r.key for r in lu.pr.registrations.values()] == [0x77]


def test_in_memory_lus_with_state_are_kept_and_pristine_ones_freed(tmp_path: Path) -> None:
    """9b: without a state dir the process is the only copy: an LU holding PR state is kept
    whatever the cache size; one a fresh LU would equal is freed beyond it, also when it has
    seen an I_T nexus (a TEST UNIT READY)."""
    lus = SharedLUs(cache_size=4)
    images = _images(tmp_path, 30)
    for n, image in enumerate(images[:10]):
        _register(lus, image, n + 1)
    nexus = ITNexus.named("naa.5001405000000002")

    def probe(lu: LogicalUnit) -> weakref.ref[LogicalUnit]:
        assert lu.execute(nexus, C.test_unit_ready()).status == 0 and nexus in lu.nexuses
        return weakref.ref(lu)

    refs = [lus.run_on_file(image, probe) for image in images[10:]]
    gc.collect()
    assert sum(ref() is not None for ref in refs) <= 4
    assert lus.cached <= 14
    for n, image in enumerate(images[:10]):
        lu = lus.run_on_file(image, lambda lu: lu)
        assert [r.key for r in lu.pr.registrations.values()] == [n + 1]


@contextlib.contextmanager
def _running(lus: SharedLUs, image: Path) -> Iterator[None]:
    """Within: a command of another thread is running on the LU of ``image``."""
    inside, release = threading.Event(), threading.Event()

    def hold(lu: object) -> None:
        inside.set()
        release.wait(30)

    holder = threading.Thread(target=lus.run_on_file, args=(image, hold))
    holder.start()
    try:
        assert inside.wait(10)
        yield
    finally:
        release.set()
        holder.join(30)


def test_a_busy_lu_does_not_delay_another_lu_of_the_same_process(tmp_path: Path) -> None:
    """9c: a command held up on one LU (here: still running) leaves other LUs free."""
    lus = SharedLUs(tmp_path / "state")
    busy, free = _images(tmp_path, 2)
    other = threading.Thread(target=_register, args=(lus, free, 5))
    with _running(lus, busy):
        other.start()
        other.join(5)
        assert not other.is_alive(), "a command on another LU waited for the busy one"
    other.join(30)


def test_no_waiting_refuses_a_held_lu_before_running_anything(tmp_path: Path) -> None:
    """Under ``no_waiting`` an LU whose lock another process holds (here another open file
    description's flock) or another thread is using raises ``LuBusy`` and runs nothing; free,
    it runs as usual. Outside it, the same call waits (the target's worker thread does)."""
    lus = SharedLUs(tmp_path / "state")
    (image,) = _images(tmp_path, 1)
    _register(lus, image, 7)  # creates the LU's files
    ran: list[str] = []
    lock = os.open(lus.files(identify_path(image)[0]).lock, os.O_RDWR)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with no_waiting(), pytest.raises(LuBusy):
            lus.run_on_file(image, lambda lu: ran.append("while locked"))
        waiter = threading.Thread(target=lus.run_on_file, args=(image, lambda lu: ran.append("w")))
        waiter.start()
        waiter.join(0.2)
        assert waiter.is_alive() and ran == [], "without no_waiting the call waits its turn"
    finally:
        os.close(lock)  # releases the flock
    waiter.join(30)
    assert ran == ["w"]
    with _running(lus, image), no_waiting(), pytest.raises(LuBusy):
        lus.run_on_file(image, lambda lu: ran.append("while in use"))
    with no_waiting():
        lus.run_on_file(image, lambda lu: ran.append("free"))
    assert ran == ["w", "free"]
