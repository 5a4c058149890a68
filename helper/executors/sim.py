"""The ``sim`` executor: the fd of a regular file is a simulated LU (``scsi_pr.helper.simserve``).

QEMU hands the helper the fd of its disk; with ``--backend sim`` that is the image file, and
every helper process that receives an fd of the same file reaches the same LU, as initiator
``--initiator NAME`` through RELATIVE TARGET PORT ``--target-port`` (default 1) of an LU with
``--target-ports`` ports (default 2), answering as ``--profile`` says (``scsi_pr.sim.profiles``;
a command the profile never completes, LIO's PREEMPT AND ABORT, is never answered, as the C
helper stuck in SG_IO on such a LUN never answers). Anything that is not a regular file (pipe,
socket, directory, /dev/null) is answered as the C helper answers a device that rejects SG_IO:
the ioctl fails with ENOTTY, which the status table maps to CHECK CONDITION 0B/00/06.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time

from scsi_pr.helper.errors import HelperError
from scsi_pr.helper.executors.base import CommandNeverCompletes, Executor, Reply
from scsi_pr.helper.executors.status import from_errno
from scsi_pr.helper.lu_identity import LuKey, identify
from scsi_pr.helper.simserve import SharedLUs
from scsi_pr.sim import profiles
from scsi_pr.sim.constants import Status
from scsi_pr.sim.nexus import ITNexus
from scsi_pr.sim.result import CommandResult

DEFAULT_INITIATOR = "naa.5001405000000001"
TARGET_PORT = 1


class NotASimulatedLU(HelperError):
    """The passed fd is not a regular file; carries the errno SG_IO would have failed with."""

    def __init__(self, reason: str, err: int = errno.ENOTTY) -> None:
        super().__init__(reason)
        self.errno = err


def reply_from_result(result: CommandResult, allocation_length: int) -> Reply:
    """What SG_IO would have returned for the model's answer, through QEMU's clamp."""
    status = int(result.status)
    if status != Status.GOOD:
        return Reply(status, result.sense)
    return Reply(status, b"", result.data[:allocation_length])


class SimExecutor(Executor):
    name = "sim"

    def __init__(
        self,
        initiator: str = DEFAULT_INITIATOR,
        state_dir: str | os.PathLike[str] | None = None,
        target_port: int = TARGET_PORT,
        target_ports: int = 2,
        profile: str = profiles.DEFAULT_PROFILE,
    ) -> None:
        if not 1 <= target_port <= target_ports:
            raise ValueError(f"target port {target_port} is not one of the LU's 1..{target_ports}")
        self.nexus = ITNexus.named(initiator, target_port)
        self.lus = SharedLUs(state_dir, target_ports, profile=profile)

    @staticmethod
    def lu_key(fd: int) -> tuple[LuKey, int]:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_PATH:  # no I/O through it: SG_IO fails so
            raise NotASimulatedLU(f"fd {fd} is an O_PATH fd", errno.EBADF)
        key, st = identify(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = stat.filemode(st.st_mode)[0]
            raise NotASimulatedLU(f"fd {fd} is not a regular file (mode {kind!r})")
        return key, st.st_size

    def run(self, fd: int, cdb: bytes, data_out: bytes) -> CommandResult:
        """The model's answer, before QEMU's allocation-length clamp (``execute`` applies it);
        raises NotASimulatedLU for a non-file fd."""
        key, size = self.lu_key(fd)
        return self.lus.run(key, size, lambda lu: lu.execute(self.nexus, cdb, data_out))

    def execute(self, fd: int, cdb: bytes, data_out: bytes, allocation_length: int) -> Reply:
        try:
            result = self.run(fd, cdb, data_out)
        except NotASimulatedLU as e:
            return Reply(*from_errno(e.errno))
        if not result.completes:
            raise CommandNeverCompletes("the LU's profile never completes this command")
        if result.stall:
            time.sleep(result.stall)
        return reply_from_result(result, allocation_length)
