"""File descriptors of every kind that is not a SCSI device, for tests that pass fds to a helper.

SG_IO fails on each of them, and the sim backend refuses them the same way, so a helper answers
through its errno mapping: the part of the answer that is the helper's own.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path


def _pipe() -> int:
    r, w = os.pipe()
    os.close(r)
    return w


def _socket() -> int:
    a, b = socket.socketpair()
    b.close()
    return a.detach()


def non_device_fds(tmp: Path) -> dict[str, Callable[[], int]]:
    """Kind name -> a function opening a new fd of that kind (the caller closes it)."""
    return {
        "pipe": _pipe,
        "socket": _socket,
        "/dev/null": lambda: os.open("/dev/null", os.O_RDWR),
        "directory": lambda: os.open(tmp, os.O_RDONLY | os.O_DIRECTORY),
    }
