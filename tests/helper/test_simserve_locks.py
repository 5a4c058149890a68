"""Simulated LUs shared through a state dir, in process: what a commit writes and what another
process (here a second ``SharedLUs`` on the same dir, or a forked child) sees after it, the
change token that lets a process keep its LU until someone else commits, the bounded LU cache,
and a lock held elsewhere under ``no_waiting``. Run in process so mutation testing sees them;
``test_simserve.py`` has the multi-process hammer."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from scsi_pr.helper.lu_identity import LuKey, identify_path
from scsi_pr.helper.lu_state_file import read_document
from scsi_pr.helper.simserve import TOKEN_SIZE, LuBusy, LuFiles, SharedLUs, _Slot, no_waiting
from scsi_pr.sim import cdb as C
from scsi_pr.sim.constants import PersistentReserveOutAction as SA
from scsi_pr.sim.device import LogicalUnit, LogicalUnitConfigError
from scsi_pr.sim.nexus import ITNexus

I1 = ITNexus.named("naa.5001405000000001")
I2 = ITNexus.named("naa.5001405000000002")
DEADLINE = 30  # seconds: only so that a broken build fails rather than hangs


def _image(tmp_path: Path, name: str = "lu.img") -> Path:
    image = tmp_path / name
    image.write_bytes(bytes(4096))
    return image


def _files(lus: SharedLUs, image: Path) -> LuFiles:
    return lus.files(identify_path(image)[0])


def _register(key: int, nexus: ITNexus = I1, aptpl: bool = False) -> Callable[[LogicalUnit], int]:
    """A command registering ``key`` for ``nexus``; returns its status."""
    cdb, data = C.prout(SA.REGISTER_AND_IGNORE_EXISTING_KEY, 0, key, aptpl=aptpl)
    return lambda lu: lu.execute(nexus, cdb, data).status


def _keys(lu: LogicalUnit) -> list[int]:
    return sorted(r.key for r in lu.pr.registrations.values())


def _same(lu: LogicalUnit) -> LogicalUnit:
    return lu


def test_a_commit_writes_the_state_file_and_a_fresh_token(tmp_path: Path) -> None:
    """The document holds the model's snapshot and APTPL image; the lock file's first bytes
    are a new random token per commit, nothing else."""
    image = _image(tmp_path)
    lus = SharedLUs(tmp_path / "state")
    files = _files(lus, image)
    assert lus.run_on_file(image, _register(0x11, aptpl=True)) == 0
    lu = lus.run_on_file(image, _same)
    doc = read_document(files.state)
    assert doc is not None and doc.state == lu.snapshot()
    assert doc.aptpl is not None and doc.aptpl == lu.store.load()
    first = files.lock.read_bytes()
    assert len(first) == TOKEN_SIZE
    assert lus.run_on_file(image, _register(0x12)) == 0
    second = files.lock.read_bytes()
    assert len(second) == TOKEN_SIZE and second != first
    assert not files.temp.exists()


def test_another_process_sees_a_commit_at_its_next_command(tmp_path: Path) -> None:
    """A process holding the LU in memory reads it back once the token says someone else
    committed, and keeps it (no reread) while nobody did."""
    image = _image(tmp_path)
    a, b = SharedLUs(tmp_path / "state"), SharedLUs(tmp_path / "state")
    cached = b.run_on_file(image, _same)
    assert b.run_on_file(image, _same) is cached
    assert a.run_on_file(image, _register(0x21)) == 0
    seen = b.run_on_file(image, _same)
    assert seen is not cached and _keys(seen) == [0x21]
    assert b.run_on_file(image, _register(0x22, I2)) == 0
    assert _keys(a.run_on_file(image, _same)) == [0x21, 0x22]


def test_a_process_keeps_the_lu_it_committed_itself(tmp_path: Path) -> None:
    """After its own commit the token is its own: the next command needs no reread."""
    image = _image(tmp_path)
    lus = SharedLUs(tmp_path / "state")
    committed = lus.run_on_file(image, lambda lu: (_register(0x31)(lu), lu)[1])
    assert _keys(committed) == [0x31]
    assert lus.run_on_file(image, _same) is committed


def test_a_command_that_changes_nothing_writes_nothing(tmp_path: Path) -> None:
    """No state file for an LU nobody changed; no rewrite, no new token for an unchanged one,
    also when the LU was just read back from another process's commit."""
    image = _image(tmp_path)
    a, b = SharedLUs(tmp_path / "state"), SharedLUs(tmp_path / "state")
    files = _files(a, image)
    a.run_on_file(image, _same)
    assert not files.state.exists() and files.lock.read_bytes() == b""
    assert a.run_on_file(image, _register(0x41)) == 0
    before = (os.stat(files.state).st_ino, files.lock.read_bytes())
    b.run_on_file(image, _same)
    a.run_on_file(image, _same)
    assert (os.stat(files.state).st_ino, files.lock.read_bytes()) == before


def test_a_command_that_fails_leaves_disk_and_cache_as_before(tmp_path: Path) -> None:
    """A command raising after it changed the model commits nothing, and its process reads the
    LU back rather than keep the half-run change."""
    image = _image(tmp_path)
    lus = SharedLUs(tmp_path / "state")
    files = _files(lus, image)
    assert lus.run_on_file(image, _register(0x51)) == 0
    token = files.lock.read_bytes()

    def fails(lu: LogicalUnit) -> None:
        assert _register(0x52, I2)(lu) == 0
        raise RuntimeError("the caller failed")

    with pytest.raises(RuntimeError, match=r"^the caller failed$"):
        lus.run_on_file(image, fails)
    assert files.lock.read_bytes() == token
    lu = lus.run_on_file(image, _same)
    assert isinstance(lu, LogicalUnit) and _keys(lu) == [0x51]
    assert _keys(SharedLUs(tmp_path / "state").run_on_file(image, _same)) == [0x51]


def test_a_change_that_keeps_the_aptpl_image_syncs_the_file_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under APTPL a change outside the image (a new I_T nexus) syncs the new state file, not
    the directory: the commit is told the image it replaces."""
    image = _image(tmp_path)
    lus = SharedLUs(tmp_path / "state")
    assert lus.run_on_file(image, _register(0x61, aptpl=True)) == 0
    synced: list[bool] = []  # per fsync: a directory?
    real = os.fsync
    monkeypatch.setattr(
        os, "fsync", lambda fd: (synced.append(stat.S_ISDIR(os.fstat(fd).st_mode)), real(fd))[1]
    )
    assert lus.run_on_file(image, lambda lu: lu.execute(I2, C.test_unit_ready()).status) == 0
    assert synced == [False]
    doc = read_document(_files(lus, image).state)
    assert doc is not None and len(doc.state["nexuses"]) == 2


def test_the_lu_cache_keeps_exactly_the_most_recently_used(tmp_path: Path) -> None:
    """With a state dir: beyond ``cache_size`` the least recently used idle LUs go, and only as
    many as the excess."""
    x, y, z = (_image(tmp_path, f"lu{n}.img") for n in range(3))
    lus = SharedLUs(tmp_path / "state", cache_size=2)
    lx, ly, lz = (lus.run_on_file(image, _same) for image in (x, y, z))
    assert lus.cached == 2
    assert lus.run_on_file(y, _same) is ly and lus.run_on_file(z, _same) is lz
    assert lus.run_on_file(x, _same) is not lx
    assert lus.cached == 2
    assert lus.run_on_file(z, _same) is lz  # y went, z stayed


def test_in_memory_a_pristine_lu_is_kept_up_to_the_cache_size(tmp_path: Path) -> None:
    """Without a state dir a pristine LU is dropped only beyond ``cache_size``, and only by
    its own command: the newcomer goes, not the LU already held."""
    image = _image(tmp_path)
    lus = SharedLUs(cache_size=1)
    lu = lus.run_on_file(image, _same)
    assert lus.cached == 1 and lus.run_on_file(image, _same) is lu
    lus.run_on_file(_image(tmp_path, "other.img"), _same)
    assert lus.cached == 1 and lus.run_on_file(image, _same) is lu


def test_an_lu_that_cannot_be_built_leaves_no_slot(tmp_path: Path) -> None:
    """Nothing was made, so nothing is kept beyond the cache size (it equals a fresh LU)."""
    lus = SharedLUs(target_ports=0, cache_size=0)
    with pytest.raises(LogicalUnitConfigError):
        lus.run_on_file(_image(tmp_path), _same)
    assert lus.cached == 0
    assert _Slot().pristine()


def test_a_waiting_command_keeps_a_pristine_in_memory_lu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a state dir an LU another thread waits for is not dropped when the command
    before it leaves it pristine: the waiter's registration would go with the dropped copy."""
    image = _image(tmp_path)
    lus = SharedLUs(cache_size=0)
    inside, release, waiting = threading.Event(), threading.Event(), threading.Event()
    acquire = lus._acquire

    def counted(key: LuKey) -> _Slot:
        slot = acquire(key)
        if threading.current_thread() is waiter:
            waiting.set()
        return slot

    monkeypatch.setattr(lus, "_acquire", counted)

    def hold(lu: LogicalUnit) -> None:
        inside.set()
        assert release.wait(DEADLINE)

    statuses: list[int] = []
    holder = threading.Thread(target=lus.run_on_file, args=(image, hold))
    waiter = threading.Thread(
        target=lambda: statuses.append(lus.run_on_file(image, _register(0x71)))
    )
    holder.start()
    try:
        assert inside.wait(DEADLINE)
        waiter.start()
        assert waiting.wait(DEADLINE)  # counted as a user, waiting for (or past) the mutex
    finally:
        release.set()
        holder.join(DEADLINE)
        waiter.join(DEADLINE)
    assert statuses == [0]
    assert _keys(lus.run_on_file(image, _same)) == [0x71]


def test_no_waiting_names_the_lu_another_thread_uses(tmp_path: Path) -> None:
    image = _image(tmp_path)
    lus = SharedLUs(tmp_path / "state")
    inside, release = threading.Event(), threading.Event()

    def hold(lu: LogicalUnit) -> None:
        inside.set()
        assert release.wait(DEADLINE)

    holder = threading.Thread(target=lus.run_on_file, args=(image, hold))
    holder.start()
    try:
        assert inside.wait(DEADLINE)
        serial = identify_path(image)[0].serial
        with no_waiting(), pytest.raises(LuBusy) as caught:
            lus.run_on_file(image, _same)
        assert str(caught.value) == f"LU {serial} is in use by another thread"
    finally:
        release.set()
        holder.join(DEADLINE)


def test_a_lock_held_by_another_process_is_waited_for_and_its_commit_seen(
    tmp_path: Path,
) -> None:
    """A forked helper holds the LU's lock mid-command: under ``no_waiting`` this process
    refuses with the lock file named; otherwise it waits, then runs on the state the other
    process committed."""
    image = _image(tmp_path)
    lus = SharedLUs(tmp_path / "state")
    files = _files(lus, image)
    assert lus.run_on_file(image, _register(0x81)) == 0
    locked_r, locked_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the other helper: no pytest machinery beyond this point, only os._exit
        code = 1
        try:
            os.close(locked_r)
            os.close(go_w)

            def held(lu: LogicalUnit) -> int:
                os.write(locked_w, b"L")
                os.read(go_r, 1)
                return _register(0x82, I2)(lu)

            code = SharedLUs(tmp_path / "state").run_on_file(image, held)
        finally:
            os._exit(code)
    os.close(locked_w)
    os.close(go_r)
    waiter: threading.Thread | None = None
    try:
        assert os.read(locked_r, 1) == b"L"
        with no_waiting(), pytest.raises(LuBusy) as caught:
            lus.run_on_file(image, _same)
        assert str(caught.value) == f"{files.lock} is locked"
        seen: list[list[int]] = []
        waiter = threading.Thread(target=lambda: seen.append(lus.run_on_file(image, _keys)))
        waiter.start()
    finally:
        os.write(go_w, b"G")
        os.close(go_w)
        os.close(locked_r)
        _, status = os.waitpid(pid, 0)
        if waiter is not None:
            waiter.join(DEADLINE)
    assert os.waitstatus_to_exitcode(status) == 0
    assert seen == [[0x81, 0x82]]
