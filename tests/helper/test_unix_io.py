"""``scsi_pr.helper.unix_io`` on real socketpairs, pipes and files: SCM_RIGHTS reads (none, one,
several, more than the helper reads at once), peer credentials, a passed fd's path and access
mode, closing fds without raising, and the clients' whole-answer reads.

Why beside tests/helper/test_session.py (which reads requests through a session): these pin the
module's own promises, the ones a session cannot show, e.g. that fds beyond the first eight are
never installed in the helper, that received fds are close-on-exec, and that ancillary data
other than SCM_RIGHTS is ignored.
"""

from __future__ import annotations

import array
import fcntl
import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from scsi_pr.helper.unix_io import (
    MAX_FDS_PER_READ,
    close_fds,
    device_name,
    is_read_only,
    peer_credentials,
    recv_exactly,
    recv_with_fds,
)

SOL, RIGHTS = socket.SOL_SOCKET, socket.SCM_RIGHTS


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    b.settimeout(10)  # a broken read fails the test instead of hanging it
    with a, b:
        yield a, b


@pytest.fixture
def pipes() -> Iterator[list[tuple[int, int]]]:
    """Ten pipes: distinct files, so an fd received is told apart by its inode."""
    made = [os.pipe() for _ in range(10)]
    yield made
    close_fds(fd for p in made for fd in p)


def send_fds(sock: socket.socket, data: bytes, fds: list[int]) -> None:
    sock.sendmsg([data], [(SOL, RIGHTS, array.array("i", fds))] if fds else [])


def inode(fd: int) -> int:
    return os.fstat(fd).st_ino


def test_no_fds(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    a.sendall(b"hello")
    assert recv_with_fds(b, 5) == (b"hello", [])
    a.close()
    assert recv_with_fds(b, 5) == (b"", [])  # EOF


def test_one_fd_is_a_new_close_on_exec_fd_of_the_same_file(
    pair: tuple[socket.socket, socket.socket], pipes: list[tuple[int, int]]
) -> None:
    a, b = pair
    read_end, write_end = pipes[0]
    send_fds(a, b"x", [read_end])
    data, fds = recv_with_fds(b, 1)
    try:
        assert data == b"x" and len(fds) == 1 and fds[0] not in (read_end, write_end)
        assert fcntl.fcntl(fds[0], fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        os.write(write_end, b"through")
        assert os.read(fds[0], 7) == b"through"
    finally:
        close_fds(fds)


def test_several_fds_come_in_the_order_sent(
    pair: tuple[socket.socket, socket.socket], pipes: list[tuple[int, int]]
) -> None:
    a, b = pair
    sent = [pipes[i][0] for i in (2, 0, 1)]
    send_fds(a, b"abc", sent)
    data, fds = recv_with_fds(b, 3)
    try:
        assert data == b"abc"
        assert [inode(fd) for fd in fds] == [inode(fd) for fd in sent]
        assert all(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC for fd in fds)
    finally:
        close_fds(fds)


def test_at_most_eight_fds_are_taken_from_one_read(
    pair: tuple[socket.socket, socket.socket], pipes: list[tuple[int, int]]
) -> None:
    """The control buffer holds eight: the kernel installs no more (the rest are dropped with
    MSG_CTRUNC), so a client cannot fill the helper's fd table with one message."""
    a, b = pair
    sent = [p[0] for p in pipes]
    send_fds(a, b"y", sent)
    data, fds = recv_with_fds(b, 1)
    try:
        assert MAX_FDS_PER_READ == 8
        assert data == b"y"
        assert [inode(fd) for fd in fds] == [inode(fd) for fd in sent[:8]]
    finally:
        close_fds(fds)


def test_other_ancillary_data_is_not_taken_for_fds(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """SO_PASSCRED adds an SCM_CREDENTIALS message at the same level (SOL_SOCKET): its pid,
    uid and gid are no fds."""
    a, b = pair
    b.setsockopt(SOL, socket.SO_PASSCRED, 1)
    a.sendall(b"z")
    assert recv_with_fds(b, 1) == (b"z", [])


class FakeSocket:
    """A socket whose recvmsg answers what the kernel does not produce on its own: a
    truncated SCM_RIGHTS payload and several SCM_RIGHTS messages in one read."""

    def __init__(self, ancdata: list[tuple[int, int, bytes]]) -> None:
        self.ancdata = ancdata
        self.calls: list[tuple[int, ...]] = []

    def recvmsg(self, *args: int) -> tuple[bytes, list[tuple[int, int, bytes]], int, None]:
        self.calls.append(args)
        return b"d", self.ancdata, 0, None


def test_the_read_asks_for_eight_fds_close_on_exec() -> None:
    fake = FakeSocket([])
    assert recv_with_fds(fake, 7) == (b"d", [])  # type: ignore[arg-type]
    assert fake.calls == [(7, socket.CMSG_SPACE(8 * 4), socket.MSG_CMSG_CLOEXEC)]


def test_a_truncated_payload_yields_its_whole_ints_only() -> None:
    """Python hands over a control message cut at the buffer's end as it is; a partial C int
    at its end is no fd."""
    fake = FakeSocket([(SOL, RIGHTS, struct.pack("=i", 5) + b"\x01\x02")])
    assert recv_with_fds(fake, 1) == (b"d", [5])  # type: ignore[arg-type]


def test_fds_of_every_rights_message_are_kept_as_signed_ints() -> None:
    fake = FakeSocket(
        [
            (SOL, RIGHTS, struct.pack("=ii", 5, 6)),
            (SOL, socket.SCM_CREDENTIALS, struct.pack("=3i", 1, 2, 3)),
            (socket.IPPROTO_IP, RIGHTS, struct.pack("=i", 9)),  # same type, another level
            (SOL, RIGHTS, struct.pack("=i", -1)),
        ]
    )
    assert recv_with_fds(fake, 1) == (b"d", [5, 6, -1])  # type: ignore[arg-type]


def test_close_fds_skips_fds_already_closed() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    close_fds([read_end, write_end, -1])
    with pytest.raises(OSError):
        os.fstat(write_end)


def test_peer_credentials_of_a_socketpair_are_this_process(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    _a, b = pair
    assert peer_credentials(b) == (os.getpid(), os.getuid(), os.getgid())


def test_peer_credentials_of_a_closed_socket_are_unknown() -> None:
    """getsockopt fails (EBADF): (-1, -1, -1), as the audit log prints an unknown peer."""
    sock = socket.socket(socket.AF_UNIX)
    sock.close()
    assert peer_credentials(sock) == (-1, -1, -1)


def test_device_name_is_the_path_opened_or_the_fd_number(tmp_path: Path) -> None:
    path = tmp_path / "disk"
    path.write_bytes(b"")
    fd = os.open(path, os.O_RDONLY)
    try:
        assert device_name(fd) == str(path)
    finally:
        os.close(fd)
    assert device_name(fd) == f"fd:{fd}"  # closed
    read_end, write_end = os.pipe()
    try:
        assert device_name(read_end) == f"pipe:[{inode(read_end)}]"
    finally:
        close_fds([read_end, write_end])


@pytest.mark.parametrize(
    ("mode", "read_only"), [(os.O_RDONLY, True), (os.O_WRONLY, False), (os.O_RDWR, False)]
)
def test_is_read_only_for_each_access_mode(tmp_path: Path, mode: int, read_only: bool) -> None:
    path = tmp_path / "disk"
    path.write_bytes(b"")
    fd = os.open(path, mode | os.O_NONBLOCK)  # other flags do not count
    try:
        assert is_read_only(fd) is read_only
    finally:
        os.close(fd)


def test_recv_exactly_gathers_parts_and_reads_no_further() -> None:
    """Datagrams come one per recv and are cut to the size asked: each part is asked for
    only what is missing, and the datagram after the last part stays queued."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        b.settimeout(10)
        for part in (b"ab", b"cdef", b"gh", b"ij"):
            a.send(part)
        assert recv_exactly(b, 5) == b"abcde"  # "f" is cut off with its datagram
        assert recv_exactly(b, 2) == b"gh"
        assert b.recv(10) == b"ij"


def test_recv_exactly_returns_what_came_before_the_peer_closed(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    a.sendall(b"abc")
    assert recv_exactly(b, 3) == b"abc"
    a.sendall(b"def")
    a.close()
    assert recv_exactly(b, 10) == b"def"
    assert recv_exactly(b, 10) == b""
