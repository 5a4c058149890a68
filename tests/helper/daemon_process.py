"""The ``scsi-pr-helper --backend sim`` process the daemon tests start, and what they send it."""

from __future__ import annotations

import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from scsi_pr.helper.executable import helper_executable
from scsi_pr.helper.executors.base import Reply
from scsi_pr.rig import processes
from scsi_pr.rig.processes import stop
from scsi_pr.sim.cdb import persistent_reserve_in, persistent_reserve_out, pr_out_parameters

EXE = Path(helper_executable())
NODE1, NODE2 = "naa.5001405000000001", "naa.5001405000000002"
GOOD, CHECK, CONFLICT = 0x00, 0x02, 0x18
READ_KEYS = persistent_reserve_in(0, 256)
READ_RESERVATION = persistent_reserve_in(1, 256)


def sense_triple(reply: Reply) -> tuple[int, int, int]:
    return reply.sense[2] & 0x0F, reply.sense[12], reply.sense[13]


def register(key: int) -> tuple[bytes, bytes]:
    return persistent_reserve_out(6, 24), pr_out_parameters(0, key)


class Helper:
    def __init__(self, tmp: Path, name: str, *extra: str, initiator: str = NODE1) -> None:
        self.sock = tmp / f"{name}.sock"
        self.log = tmp / f"{name}.log"
        self.argv = [str(EXE), "--backend", "sim", "--initiator", initiator, "-k", str(self.sock)]
        self.argv += list(extra)
        self.log.unlink(missing_ok=True)  # a restarted helper's log starts afresh
        try:
            self.proc = processes.spawn_notifying(self.argv, self.log, 20, name=name)
        except processes.NotListening as e:
            raise AssertionError(str(e)) from None

    def stop(self) -> int:
        return stop(self.proc, timeout=15)

    def log_text(self) -> str:
        return self.log.read_text()


def raw(helper: Helper) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(str(helper.sock))
    assert s.recv(4) == b"\0\0\0\0"
    return s


def closed_without_answer(s: socket.socket) -> bool:
    try:
        return s.recv(200) == b""
    except ConnectionResetError:
        return True


def send_cdb(s: socket.socket, data: bytes, fds: Sequence[int] = ()) -> None:
    """``data`` (a CDB, or any part of a frame) in one ``sendmsg``, ``fds`` riding on it (C
    ints, native order)."""
    rights = b"".join(f.to_bytes(4, sys.byteorder) for f in fds)
    s.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)] if fds else [])
