"""Which simulated LU a file stands for: its (st_dev, st_ino) and the birth of that inode.

``--backend sim`` turns every regular file into an LU, and any path or fd of the same file must
reach the same LU, in every helper process and in ``scsi-pr sim``. (st_dev, st_ino) is that
name, but not an identity: ext4 gives a deleted file's inode number to the very next file
created, so a new image would inherit a deleted image's registrations and reservation. The
inode's *birth* tells them apart, read from the fd with one of two calls Python 3.11 lacks
(ctypes), whichever the filesystem answers first:

* ``name_to_handle_at``: the file handle, the kernel's own answer to "is this still the same
  file" (an NFS server returns ESTALE when it is not). On ext4, xfs, btrfs and tmpfs it holds
  the inode's generation, which changes on every reuse; it is stable for the life of the file,
  or every NFS client of the filesystem would break.
* ``statx`` STATX_BTIME: the creation time, which never changes for the life of the inode;
  second choice only because before Linux 6.13 it comes from the coarse clock (one tick,
  1-10 ms), so a file created within the same tick on the freed inode gets the same btime.

One source, not both, because this runs for every command (about 3 us each). An extended
attribute on the image was rejected: writing it needs write permission on the user's image
(the helper may run as ``nobody``), changes the image's ctime, tmpfs has no user xattrs before
Linux 6.6, and ``cp --preserve=xattr`` would copy it to a second file.

Fallback: a filesystem that gives neither (some FUSE filesystems, a libc without the two
calls) names the LU by (st_dev, st_ino) alone, and a new file there may still inherit a
deleted file's LU (``scsi-pr sim forget`` clears it). What the kernel gives depends only on the
filesystem, so every process computes the same key, unless a seccomp filter denies the calls
to some processes and not to others (then they would see different LUs).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import struct
import sys
import threading
from typing import Any, NamedTuple

AT_EMPTY_PATH = 0x1000
STATX_BTIME = 0x800
STATX_SIZE = 256  # sizeof(struct statx)
STATX_MASK_OFFSET = 0  # __u32 stx_mask
STATX_BTIME_OFFSET = 0x50  # struct statx_timestamp stx_btime {__s64 tv_sec; __u32 tv_nsec}
MAX_HANDLE_SZ = 128  # linux/exportfs.h


def _libc_function(name: str, *argtypes: Any) -> Any:
    try:
        fn = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (AttributeError, OSError):
        return None  # a libc without it (glibc < 2.28 for statx): no birth from this source
    fn.argtypes, fn.restype = argtypes, ctypes.c_int
    return fn


_statx = _libc_function(
    "statx", ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_char_p
)
_name_to_handle_at = _libc_function(
    "name_to_handle_at",
    ctypes.c_int,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.POINTER(ctypes.c_int),
    ctypes.c_int,
)
if _name_to_handle_at is not None:
    # Called for every command of the sim backend: without argtypes ctypes passes the int,
    # the bytes and the two buffers as they are, skipping a conversion step per argument.
    _name_to_handle_at.argtypes = None


def _btime(fd: int) -> str | None:
    """The inode's creation time as ``sec.nsec``; None if the filesystem does not keep it."""
    if _statx is None:
        return None
    buf = ctypes.create_string_buffer(STATX_SIZE)
    if _statx(fd, b"", AT_EMPTY_PATH, STATX_BTIME, buf) != 0:
        return None
    (mask,) = struct.unpack_from("=I", buf, STATX_MASK_OFFSET)
    if not mask & STATX_BTIME:
        return None
    sec, nsec = struct.unpack_from("=qI", buf, STATX_BTIME_OFFSET)
    return f"{sec}.{nsec:09d}"


class _HandleBuffers(threading.local):
    """One ``struct file_handle`` buffer per thread, reused: this runs for every command."""

    def __init__(self) -> None:
        self.handle = ctypes.create_string_buffer(8 + MAX_HANDLE_SZ)  # + f_handle[]
        self.mount_id = ctypes.c_int()
        self.mount_id_ref = ctypes.byref(self.mount_id)


_buffers = _HandleBuffers()
_HANDLE_ROOM = struct.pack("=I", MAX_HANDLE_SZ)  # handle_bytes in: the room f_handle has


def _file_handle(fd: int) -> bytes | None:
    """The file handle as the kernel wrote it (its size, type and bytes); None if the
    filesystem has no handles."""
    if _name_to_handle_at is None:
        return None
    buf = _buffers.handle
    buf[0:4] = _HANDLE_ROOM
    if _name_to_handle_at(fd, b"", buf, _buffers.mount_id_ref, AT_EMPTY_PATH) != 0:
        return None
    raw = buf.raw
    return raw[: 8 + int.from_bytes(raw[:4], sys.byteorder)]


@functools.lru_cache(maxsize=1024)
def _handle_birth(handle: bytes) -> str:
    """``_birth`` of a file handle (``_file_handle``'s bytes), memoised by those bytes: the
    text it hashes is built only for a handle not seen before."""
    size, kind = struct.unpack_from("=Ii", handle)
    return _birth(f"{kind}:{handle[8 : 8 + size].hex()}")


@functools.lru_cache(maxsize=1024)
def _birth(source: str) -> str:
    """The short name of an inode's birth (part of state file names: never change it)."""
    return hashlib.blake2b(source.encode(), digest_size=8).hexdigest()


class LuKey(NamedTuple):
    """Which simulated LU a file stands for: its device, inode number and the inode's birth
    (``""`` where the filesystem tells none). A NamedTuple, not a frozen dataclass: one is
    built and hashed for every command."""

    dev: int
    ino: int
    birth: str = ""

    @property
    def stem(self) -> str:
        """The name of the LU's files in a state dir."""
        stem = f"lu-{self.dev:x}-{self.ino:x}"
        return f"{stem}-{self.birth}" if self.birth else stem

    @property
    def serial(self) -> str:
        """Stable unit serial number, the same in every helper process (16 characters); a new
        file on a reused inode gets a new one, as a new LUN would."""
        if not self.birth:
            return f"SP{self.dev & 0xFFFF:04X}{self.ino & 0xFFFFFFFFFF:010X}"
        return "SP" + hashlib.sha256(self.stem.encode()).hexdigest()[:14].upper()


def identify(fd: int) -> tuple[LuKey, os.stat_result]:
    """The LU the open file ``fd`` stands for, and its ``fstat``."""
    st = os.fstat(fd)
    handle = _file_handle(fd)
    if handle is not None:
        return LuKey(st.st_dev, st.st_ino, _handle_birth(handle)), st
    source = _btime(fd)
    birth = "" if source is None else _birth(source)
    return LuKey(st.st_dev, st.st_ino, birth), st


def identify_path(path: str | os.PathLike[str]) -> tuple[LuKey, os.stat_result]:
    """Like ``identify`` for a path (symlinks followed); needs no permission on the file."""
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        return identify(fd)
    finally:
        os.close(fd)
