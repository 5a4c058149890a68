"""Simulated LUs shared through a state dir: no lost updates across processes, crash leftovers
ignored, the state dir's files, a bounded LU cache, one LU never waiting for another. The
commit path under kills is in ``test_simserve_commit.py``, the LU identity in
``test_lu_identity.py``, the ``scsi-pr sim`` command in ``test_sim_cli.py``."""

from __future__ import annotations

import contextlib
import fcntl
import gc
import json
import multiprocessing
import os
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from scsi_pr.helper.executors.sim import SimExecutor
from scsi_pr.helper.lu_identity import identify_path
from scsi_pr.helper.lu_state_file import StateFileError
from scsi_pr.helper.simserve import (
    FileMedium,
    LuBusy,
    LuFiles,
    LuProfileMismatch,
    SharedLUs,
    no_waiting,
)
from scsi_pr.sim import cdb as C
from scsi_pr.sim.cdb import (
    persistent_reserve_in,
    persistent_reserve_out,
    pr_out_parameters,
)
from scsi_pr.sim.constants import PersistentReserveOutAction as SA
from scsi_pr.sim.device import LogicalUnit
from scsi_pr.sim.faults import Stall
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


# -- the LU a SharedLUs builds: geometry, profile, medium, faults ---------------------------------
I1 = ITNexus.named("naa.5001405000000001")


def _image(tmp_path: Path, size: int, name: str = "lu.img") -> Path:
    image = tmp_path / name
    image.write_bytes(bytes(size))
    return image


@pytest.mark.parametrize(
    ("size", "blocks"), [(4096, 8), (4096 + 300, 8), (100, 1)], ids=["exact", "tail", "tiny"]
)
@pytest.mark.parametrize("state", [True, False], ids=["state-dir", "in-memory"])
def test_the_lu_is_built_from_the_image_and_the_options(
    tmp_path: Path, size: int, blocks: int, state: bool
) -> None:
    """Whole 512-byte blocks of the image (at least one), the configured ports, profile and the
    key's serial: what INQUIRY and READ CAPACITY report must match in every process."""
    image = _image(tmp_path, size)
    lus = SharedLUs(tmp_path / "state" if state else None, target_ports=3, profile="lio-6.1")
    lu = lus.run_on_file(image, lambda lu: lu)
    assert type(lu.blocks) is int and lu.blocks == blocks
    assert lu.block_size == 512
    assert lu.target_ports == (1, 2, 3)
    assert lu.profile.name == "lio-6.1"
    assert lu.serial == identify_path(image)[0].serial
    default = SharedLUs(tmp_path / "other" if state else None).run_on_file(image, lambda lu: lu)
    assert (default.target_ports, default.profile.name) == ((1, 2), "spc5")


def test_the_state_dir_is_made_with_its_parents(tmp_path: Path) -> None:
    """``--state-dir`` may name a directory nobody made yet, however deep."""
    state = tmp_path / "a" / "b" / "state"
    SharedLUs(state)
    assert state.is_dir()
    SharedLUs(state)  # an existing one is fine


def test_without_a_state_dir_there_are_no_files(tmp_path: Path) -> None:
    key = identify_path(_image(tmp_path, 4096))[0]
    with pytest.raises(ValueError, match=r"^simulated LUs without a state dir keep no files$"):
        SharedLUs().files(key)


def test_a_profile_less_process_adopts_the_state_files_profile(tmp_path: Path) -> None:
    """``scsi-pr sim`` (profile None) reads an LU as its helpers wrote it, ``spc5`` if new; a
    helper running another profile is refused with the file and both profiles named."""
    image, other = _image(tmp_path, 4096), _image(tmp_path, 4096, "new.img")
    state = tmp_path / "state"
    lio = SharedLUs(state, profile="lio-6.12")
    assert (
        lio.run_on_file(image, lambda lu: lu.execute(I1, *C.prout(SA.REGISTER, 0, 9))).status == 0
    )
    inspect = SharedLUs(state, profile=None)
    lu = inspect.run_on_file(image, lambda lu: lu)
    assert lu.profile.name == "lio-6.12"
    assert [r.key for r in lu.pr.registrations.values()] == [9]
    assert inspect.run_on_file(other, lambda lu: lu.profile.name) == "spc5"
    files = lio.files(identify_path(image)[0])
    with pytest.raises(LuProfileMismatch) as caught:
        SharedLUs(state).run_on_file(image, lambda lu: lu)
    assert str(caught.value) == (
        f"{files.state}: the LU's state was written under profile 'lio-6.12', this LU runs "
        "'spc5' (every process sharing a state dir must use the same --profile)"
    )


def test_a_state_file_with_a_non_string_profile_is_refused_as_malformed(tmp_path: Path) -> None:
    """Only a string names a profile; anything else is a damaged file, said as such."""
    image = _image(tmp_path, 4096)
    state = tmp_path / "state"
    lus = SharedLUs(state, profile=None)
    assert (
        lus.run_on_file(image, lambda lu: lu.execute(I1, *C.prout(SA.REGISTER, 0, 9))).status == 0
    )
    files = lus.files(identify_path(image)[0])
    doc = json.loads(files.state.read_text())
    doc["state"]["profile"] = 5
    files.state.write_text(json.dumps(doc))
    with pytest.raises(StateFileError) as caught:
        SharedLUs(state, profile=None).run_on_file(image, lambda lu: lu)
    assert str(caught.value) == f"{files.state}: malformed LU snapshot: profile: 5 is not a string"


def test_a_file_medium_reads_and_writes_the_images_bytes(tmp_path: Path) -> None:
    """Blocks past the end of the file read as zeros, a partial last block is zero-padded."""
    image = tmp_path / "lu.img"
    image.write_bytes(b"\xab" * 700)
    medium = FileMedium(image)
    assert (medium.path, medium.block_size) == (str(image), 512)
    assert medium.read(1, 2) == b"\xab" * 188 + bytes(512 - 188 + 512)
    medium.write(2, b"\xcd" * 512)
    assert image.read_bytes() == b"\xab" * 700 + bytes(1024 - 700) + b"\xcd" * 512
    assert medium.read(0, 1) == b"\xab" * 512
    assert FileMedium(image, 1024).read(1, 1) == b"\xcd" * 512 + bytes(512)


@pytest.mark.parametrize("state", [True, False], ids=["state-dir", "in-memory"])
def test_read_and_write_through_run_on_file_use_the_image(tmp_path: Path, state: bool) -> None:
    """Every process sees the same data: WRITE lands in the image file, READ reads it. The
    medium is kept while the path stays, and follows another path of the same file."""
    image = _image(tmp_path, 4096)
    link = tmp_path / "link.img"
    os.link(image, link)
    lus = SharedLUs(tmp_path / "state" if state else None)
    data = bytes(range(256)) * 2
    wrote = lus.run_on_file(image, lambda lu: lu.execute(I1, C.write_10(3, 1), data))
    assert wrote.status == 0
    assert image.read_bytes()[3 * 512 : 4 * 512] == data
    with open(image, "r+b") as f:
        f.seek(5 * 512)
        f.write(b"\x5a" * 512)  # another process writes the image
    read = lus.run_on_file(image, lambda lu: lu.execute(I1, C.read_10(3, 3)))
    assert read.data == data + bytes(512) + b"\x5a" * 512
    medium = lus.run_on_file(image, lambda lu: lu.medium)
    assert lus.run_on_file(image, lambda lu: lu.medium) is medium
    assert lus.run_on_file(link, lambda lu: lu.medium.path) == str(link)


def test_without_a_state_dir_an_aptpl_registration_survives_a_power_cycle(
    tmp_path: Path,
) -> None:
    """The in-memory LU keeps its APTPL image in its slot's store, as a shared one on disk."""
    image = _image(tmp_path, 4096)
    lus = SharedLUs()
    register = C.prout(SA.REGISTER, 0, 0x42, aptpl=True)
    assert lus.run_on_file(image, lambda lu: lu.execute(I1, *register)).status == 0

    def power_cycle(lu: LogicalUnit) -> list[int]:
        lu.power_loss()
        lu.power_on()
        return [r.key for r in lu.pr.registrations.values()]

    assert lus.run_on_file(image, power_cycle) == [0x42]


def test_a_stall_is_read_from_the_fault_file_per_command(tmp_path: Path) -> None:
    """Any positive stall, however short, delays; zero, none or a file without one does not."""
    image = _image(tmp_path, 4096)
    lus = SharedLUs(tmp_path / "state")
    key = identify_path(image)[0]
    hook = lus.run_on_file(image, lambda lu: lu.fault)
    tur = C.test_unit_ready()
    assert hook(I1, tur) is None  # no fault file
    lus.set_stall(key, 0.25)
    assert hook(I1, tur) == Stall(0.25)
    lus.set_stall(key, 0)
    assert hook(I1, tur) is None
    lus.files(key).fault.write_text("{}")
    assert hook(I1, tur) is None
    lus.files(key).fault.write_text('{"stall": "x"}')
    assert hook(I1, tur) is None
    lus.files(key).fault.write_text('{"stall": 3}')
    assert hook(I1, tur) == Stall(3.0)
