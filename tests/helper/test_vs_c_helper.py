"""Differential test: the same bytes and fds to the C ``qemu-pr-helper`` and to
``scsi-pr-helper --backend sg``; the raw bytes they answer (or their silent close) must match.

No SCSI device is needed: on regular files, pipes, sockets, directories and /dev/null SG_IO
fails, so both helpers answer through their errno mapping, their read-only check and their
protocol checks, which is exactly the part that is the helper's own (the rest is the device).
Needs root (the C helper keeps CAP_SYS_RAWIO and refuses to start otherwise).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fd_kinds import non_device_fds
from needs import unavailable

from scsi_pr.helper.executable import helper_executable
from scsi_pr.rig.processes import NotListening, wait_listening
from scsi_pr.sim.cdb import persistent_reserve_in, persistent_reserve_out, pr_out_parameters

C_HELPER = shutil.which("qemu-pr-helper")
OURS = Path(helper_executable())


def _start(argv: list[str], sock: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([*argv, "-k", str(sock)], stderr=subprocess.DEVNULL)
    try:
        wait_listening(proc, sock, 20, name=argv[0])
    except NotListening as e:
        proc.kill()
        raise AssertionError(str(e)) from None
    return proc


@pytest.fixture(scope="module")
def helpers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    if C_HELPER is None:
        unavailable("qemu-pr-helper not installed (apt-get install qemu-system-common)")
    if os.geteuid() != 0:
        unavailable("the C qemu-pr-helper needs root")
    tmp = tmp_path_factory.mktemp("vs-c")
    socks = {"c": tmp / "c.sock", "ours": tmp / "ours.sock"}
    procs = [
        _start([str(C_HELPER)], socks["c"]),
        _start([str(OURS), "--backend", "sg"], socks["ours"]),
    ]
    yield socks
    for proc in procs:
        proc.terminate()
        proc.wait(10)


def _exchange(sock: Path, chunks: list[tuple[bytes, list[int]]], features: bytes) -> bytes:
    """Handshake, send the chunks (with fds), shut down writing, return every byte answered."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(sock))
        got = s.recv(4)
        s.sendall(features)
        try:
            for data, fds in chunks:
                raw = b"".join(f.to_bytes(4, "little") for f in fds)
                anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, raw)]
                s.sendmsg([data], anc if fds else [])
                time.sleep(0.05)  # keep chunk boundaries (and the fds on them) as sent
            s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the helper already closed: what it answered before is still readable
        while True:
            try:
                part = s.recv(65536)
            except ConnectionResetError:
                break
            if not part:
                break
            got += part
    return got


RK = persistent_reserve_in(0, 0x2000).ljust(16, b"\0")
RK_ZERO = persistent_reserve_in(0, 0).ljust(16, b"\0")
REG = persistent_reserve_out(0, 24).ljust(16, b"\0")
REG_EMPTY = persistent_reserve_out(3, 0).ljust(16, b"\0")
PARAMS = pr_out_parameters(0, 0x1234)


def _fds(tmp: Path) -> dict[str, Callable[[], int]]:
    image = tmp / "img"
    image.write_bytes(bytes(4096))
    return {
        "file-rw": lambda: os.open(image, os.O_RDWR),
        "file-ro": lambda: os.open(image, os.O_RDONLY),
        **non_device_fds(tmp),
    }


CASES: dict[str, list[tuple[bytes, str | None]]] = {
    # name: [(bytes, fd kind or None)] -- one chunk per entry
    "read-keys": [(RK, "file-rw")],
    "read-keys-alloc-0": [(RK_ZERO, "file-rw")],
    "register": [(REG, "file-rw"), (PARAMS, None)],
    "register-read-only": [(REG, "file-ro"), (PARAMS, None)],
    "clear-no-data": [(REG_EMPTY, "file-rw")],
    "pipe": [(RK, "pipe")],
    "socket": [(RK, "socket")],
    "dev-null": [(RK, "/dev/null"), (REG, "/dev/null"), (PARAMS, None)],
    "directory": [(RK, "directory")],
    "two-requests": [(RK, "file-rw"), (REG, "file-ro"), (PARAMS, None)],
    "no-fd": [(RK, None)],
    "not-pr": [(b"\x12" + bytes(15), "file-rw")],
    "too-long": [(b"\x5e" + bytes(6) + b"\x20\x01" + bytes(7), "file-rw")],
    "short-cdb": [(RK[:7], "file-rw")],
    "short-data": [(REG, "file-rw"), (PARAMS[:20], None)],
    "fd-mid-cdb": [(RK[:5], None), (RK[5:], "file-rw")],
    "fd-with-data-only": [(REG, None), (PARAMS, "file-rw")],
    "answer-then-violation": [(RK, "pipe"), (b"\x00" * 16, "pipe")],
}


@pytest.mark.parametrize("features", [b"\0\0\0\0", b"\0\0\0\1"], ids=["features-0", "features-1"])
@pytest.mark.parametrize("case", list(CASES))
def test_same_bytes_as_the_c_helper(
    helpers: dict[str, Path], tmp_path: Path, case: str, features: bytes
) -> None:
    makers = _fds(tmp_path)
    answers = {}
    for name, sock in helpers.items():
        chunks = []
        opened = []
        for data, kind in CASES[case]:
            fds = [makers[kind]()] if kind else []
            opened += fds
            chunks.append((data, fds))
        try:
            answers[name] = _exchange(sock, chunks, features)
        finally:
            for fd in opened:
                os.close(fd)
    assert answers["ours"] == answers["c"]
    assert answers["c"][:4] == b"\0\0\0\0"  # the helper's feature word
