"""The one interface every executor implements: run one PR CDB on one passed fd.

The daemon validates the request first (``scsi_pr.helper.proto``); an executor only ever sees a
PERSISTENT RESERVE IN/OUT CDB, and returns exactly what the helper sends back on the wire.
What an executor can do beyond that is declared here, with defaults, rather than probed for:
``capabilities`` (what it keeps after the privilege drop). The daemon calls the blocking
``execute`` in the connection's own thread (``scsi_pr.helper.session``), so a stalled device
blocks only that connection.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from scsi_pr.helper.errors import HelperError
from scsi_pr.helper.proto import PR_HELPER_SENSE_SIZE, Response


class CommandNeverCompletes(HelperError):
    """The device never completes this command (the sim backend's profile of LIO's PREEMPT AND
    ABORT hang): the daemon withholds the answer until the client hangs up, as the C helper
    stuck in SG_IO does."""


@dataclass(frozen=True)
class Reply(Response):
    """An executor's answer: a wire ``Response`` whose sense may be given at any length.

    Sense is cut or zero-padded to the 96 bytes the helper sends, as QEMU zeroes its buffer
    before the device writes into it; devices and the model write fewer.
    """

    def __post_init__(self) -> None:
        if len(self.sense) != PR_HELPER_SENSE_SIZE:
            padded = self.sense[:PR_HELPER_SENSE_SIZE].ljust(PR_HELPER_SENSE_SIZE, b"\0")
            object.__setattr__(self, "sense", padded)
        Response.__post_init__(self)  # not super(): its lookup costs as much as the checks


class Executor(ABC):
    """Runs PR commands on device fds handed over by QEMU."""

    name: str
    #: The capabilities (names from linux/capability.h) the helper keeps after the privilege
    #: drop for this executor; everything else is dropped, bounding set included. None by
    #: default: SG_IO needs CAP_SYS_RAWIO, device-mapper ioctls CAP_SYS_ADMIN.
    capabilities: ClassVar[frozenset[str]] = frozenset()

    @abstractmethod
    def execute(self, fd: int, cdb: bytes, data_out: bytes, allocation_length: int) -> Reply:
        """Run ``cdb`` (16 bytes, zero padded) on ``fd``.

        ``data_out`` is the PR OUT parameter list (empty for PR IN); ``allocation_length`` is
        the PR IN ALLOCATION LENGTH (0 for PR OUT). Must not raise for device errors: map them
        to a Reply the way qemu-pr-helper does.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (threads, sockets) at daemon shutdown."""
