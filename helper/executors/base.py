"""The one interface every executor implements: run one PR CDB on one passed fd.

The daemon validates the request first (``scsi_pr.helper.proto``); an executor only ever sees a
PERSISTENT RESERVE IN/OUT CDB, and returns exactly what the helper sends back on the wire.
Executors are blocking; the daemon calls them from a worker thread so a stalled device never
blocks the event loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

SENSE_BUFFER_LENGTH = 96  # qemu scsi/pr-helper.h PR_HELPER_SENSE_SIZE


@dataclass(frozen=True)
class Reply:
    """``result`` is the SCSI status QEMU uses verbatim; ``sense`` is always 96 bytes."""

    status: int
    sense: bytes = bytes(SENSE_BUFFER_LENGTH)
    data: bytes = b""

    def __post_init__(self) -> None:
        if len(self.sense) != SENSE_BUFFER_LENGTH:
            object.__setattr__(self, "sense", self.sense[:SENSE_BUFFER_LENGTH].ljust(96, b"\0"))


class Executor(ABC):
    """Runs PR commands on device fds handed over by QEMU."""

    name: str

    @abstractmethod
    def execute(self, fd: int, cdb: bytes, data_out: bytes, allocation_length: int) -> Reply:
        """Run ``cdb`` (16 bytes, zero padded) on ``fd``.

        ``data_out`` is the PR OUT parameter list (empty for PR IN); ``allocation_length`` is
        the PR IN ALLOCATION LENGTH (0 for PR OUT). Must not raise for device errors: map them
        to a Reply the way qemu-pr-helper does.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (threads, sockets) at daemon shutdown."""
