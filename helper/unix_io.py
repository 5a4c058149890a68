"""The operating-system edge of a helper connection: a Unix socket carrying SCM_RIGHTS fds.

Why raw ``recvmsg`` rather than socket files or asyncio streams: those cannot receive
SCM_RIGHTS. Callers must never read more than the codec asks for: fds ride on the first byte of
a ``sendmsg`` and qemu-pr-helper accepts them only with the CDB, so reads must not straddle
frame parts. Besides reading, this module answers what the kernel knows about the peer
(SO_PEERCRED) and about a passed fd (its path, its access mode), and closes fds without raising.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import struct
from collections.abc import Iterable

MAX_FDS_PER_READ = 8  # more than one is already a violation; read a few to close them all
_UCRED = struct.Struct("3i")


_CMSG_SPACE = socket.CMSG_SPACE(MAX_FDS_PER_READ * 4)
_SOL_SOCKET, _SCM_RIGHTS = socket.SOL_SOCKET, socket.SCM_RIGHTS  # read for every request


def recv_with_fds(sock: socket.socket, n: int) -> tuple[bytes, list[int]]:
    """Up to ``n`` bytes and the fds sent with them (``b""`` = EOF), from a blocking socket
    (its timeout, if any, raises TimeoutError)."""
    data, ancdata, _flags, _addr = sock.recvmsg(n, _CMSG_SPACE, socket.MSG_CMSG_CLOEXEC)
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == _SOL_SOCKET and kind == _SCM_RIGHTS:
            usable = len(payload) - len(payload) % 4
            fds += memoryview(payload)[:usable].cast("i").tolist()  # C ints, native order
    return data, fds


def close_fds(fds: Iterable[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the connecting process (SO_PEERCRED)."""
    try:
        return _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    except OSError:
        return (-1, -1, -1)


def device_name(fd: int) -> str:
    """The path a passed fd was opened with (for the audit log), or ``fd:N``."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return f"fd:{fd}"


def is_read_only(fd: int) -> bool:
    return (fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE) == os.O_RDONLY


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    """``n`` bytes from a blocking socket, or fewer if the peer closed first (for clients:
    the fuzzer and the load generator read whole answers)."""
    data = b""
    while len(data) < n:
        part = sock.recv(n - len(data))
        if not part:
            break
        data += part
    return data
