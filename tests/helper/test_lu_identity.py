"""Which simulated LU a file stands for (issue 10, item 9a): every path and fd of one file reach
the same LU, in every process; a new file never inherits a deleted file's LU, even when the
filesystem hands it the same inode number."""

from __future__ import annotations

import ctypes
import hashlib
import os
import sys
from pathlib import Path

import pytest

from scsi_pr.helper import lu_identity
from scsi_pr.helper.executors.sim import SimExecutor
from scsi_pr.helper.lu_identity import LuKey, identify, identify_path
from scsi_pr.helper.simserve import SharedLUs
from scsi_pr.sim.cdb import persistent_reserve_in, persistent_reserve_out, pr_out_parameters
from scsi_pr.sim.nexus import ITNexus

NEXUS = ITNexus.named("naa.5001405000000001")
REGISTER = persistent_reserve_out(6, 24), pr_out_parameters(0, 0x51)


def _keys(lus: SharedLUs, image: Path) -> list[int]:
    return lus.run_on_file(image, lambda lu: [r.key for r in lu.pr.registrations.values()])


def _same_inode_again(directory: Path, ino: int) -> Path:
    """A new file on the inode number ``ino`` (just freed): ext4 hands it out at once."""
    for n in range(200):
        new = directory / f"new{n}.img"
        new.write_bytes(bytes(4096))
        if new.stat().st_ino == ino:
            return new
        new.unlink()
    pytest.skip("this filesystem does not reuse inode numbers soon enough to test")


@pytest.mark.parametrize("state_dir", [True, False], ids=["state dir", "in memory"])
def test_a_new_file_on_a_reused_inode_is_a_new_lu(tmp_path: Path, state_dir: bool) -> None:
    images = tmp_path / "images"
    images.mkdir()
    old = images / "old.img"
    old.write_bytes(bytes(4096))
    lus = SharedLUs(tmp_path / "state" if state_dir else None)
    assert lus.run_on_file(old, lambda lu: lu.execute(NEXUS, *REGISTER)).status == 0
    ino = old.stat().st_ino
    old.unlink()
    new = _same_inode_again(images, ino)
    assert _keys(lus, new) == [], "the new file inherited the deleted file's registrations"
    if state_dir:
        assert _keys(SharedLUs(tmp_path / "state"), new) == []
    fd = os.open(new, os.O_RDWR)
    try:
        reply = SimExecutor(state_dir=tmp_path / "state").execute(
            fd, persistent_reserve_in(0, 64), b"", 64
        )
    finally:
        os.close(fd)
    assert reply.status == 0 and reply.data[4:8] == bytes(4), "READ KEYS found a key"


def test_every_path_and_fd_of_one_file_is_the_same_lu(tmp_path: Path) -> None:
    image = tmp_path / "lu.img"
    image.write_bytes(bytes(4096))
    (tmp_path / "hard.img").hardlink_to(image)
    (tmp_path / "soft.img").symlink_to(image)
    key = identify_path(image)[0]
    fd = os.open(tmp_path / "soft.img", os.O_RDONLY)
    try:
        assert identify(fd)[0] == key
    finally:
        os.close(fd)
    assert identify_path(tmp_path / "hard.img")[0] == key
    image.rename(tmp_path / "moved.img")
    assert identify_path(tmp_path / "moved.img")[0] == key
    assert len(key.serial) == 16 and key.serial.isalnum()


def test_a_filesystem_without_birth_falls_back_to_device_and_inode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No file handle: the btime; neither (some FUSE filesystems): (st_dev, st_ino) alone, as
    the state dir named LUs before; the stem says so."""
    image = tmp_path / "lu.img"
    image.write_bytes(bytes(4096))
    with_birth = identify_path(image)[0]
    monkeypatch.setattr(lu_identity, "_file_handle", lambda fd: None)
    by_btime = identify_path(image)[0]  # the second source: stable too
    assert by_btime == identify_path(image)[0]
    monkeypatch.setattr(lu_identity, "_btime", lambda fd: None)
    key, st = identify_path(image)
    assert key == LuKey(st.st_dev, st.st_ino, "")
    assert key.stem == f"lu-{st.st_dev:x}-{st.st_ino:x}"
    if with_birth.birth:  # this filesystem tells a birth: the LU names differ
        assert with_birth.stem.startswith(key.stem + "-") and with_birth != key


def test_the_birth_of_a_file_handle_is_the_hash_of_its_type_and_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """State files are named by it: the text hashed is ``TYPE:HEX`` of the handle the kernel
    wrote (its first 4 bytes give the size used, the next 4 the type), whatever the memo."""
    handle = bytes.fromhex("0a0b0c0d11121314")  # 8 bytes of f_handle

    def kernel(fd: int, path: bytes, buf: ctypes.Array, mount_id: object, flags: int) -> int:
        assert (path, flags) == (b"", lu_identity.AT_EMPTY_PATH)
        room = int.from_bytes(bytes(buf[0:4]), sys.byteorder)
        assert room == lu_identity.MAX_HANDLE_SZ  # the room is offered anew for every call
        kind = (-7).to_bytes(4, sys.byteorder, signed=True)
        buf[0:16] = len(handle).to_bytes(4, sys.byteorder) + kind + handle
        return 0

    monkeypatch.setattr(lu_identity, "_name_to_handle_at", kernel)
    image = tmp_path / "lu.img"
    image.write_bytes(bytes(4096))
    fd = os.open(image, os.O_RDONLY)
    try:
        lu_identity._buffers.handle[0:4] = bytes(4)  # a size left by an earlier call
        expected = hashlib.blake2b(b"-7:0a0b0c0d11121314", digest_size=8).hexdigest()
        assert identify(fd)[0].birth == expected
        assert identify(fd)[0].birth == expected  # from the memo
    finally:
        os.close(fd)


def test_a_real_file_is_named_by_its_file_handle(tmp_path: Path) -> None:
    """The test directory's filesystem (ext4 or tmpfs here) gives handles: the birth is the
    handle's, whole (its size as the kernel wrote it), not the btime's."""
    image = tmp_path / "lu.img"
    image.write_bytes(bytes(4096))
    fd = os.open(image, os.O_RDONLY)
    try:
        handle = lu_identity._file_handle(fd)
        assert handle is not None
        assert len(handle) == 8 + int.from_bytes(handle[:4], sys.byteorder) > 8
        assert identify(fd)[0].birth == lu_identity._handle_birth(handle)
        assert identify(fd)[0].birth != lu_identity._birth(lu_identity._btime(fd) or "")
    finally:
        os.close(fd)
