"""``--backend sim``'s executor on fds that are not a simulated LU: answered as SG_IO on such
an fd would fail, never with the LU's data."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from scsi_pr.helper.executors.base import Reply
from scsi_pr.helper.executors.sim import SimExecutor
from scsi_pr.helper.executors.status import from_errno
from scsi_pr.sim.cdb import persistent_reserve_in, persistent_reserve_out, pr_out_parameters

READ_KEYS = persistent_reserve_in(0, 100).ljust(16, b"\0")
REGISTER = persistent_reserve_out(0, 24).ljust(16, b"\0")


def test_an_image_answers_and_an_o_path_fd_of_it_does_not(tmp_path: Path) -> None:
    """An fd opened O_PATH allows no I/O (SG_IO fails with EBADF): it must not read the keys
    of an image its holder could not open for reading."""
    image = tmp_path / "lu.img"
    image.write_bytes(bytes(4096))
    executor = SimExecutor(state_dir=tmp_path / "state")
    rw = os.open(image, os.O_RDWR)
    path_only = os.open(image, os.O_PATH)
    try:
        assert executor.execute(rw, REGISTER, pr_out_parameters(0, 0xA), 0).status == 0
        keys = executor.execute(rw, READ_KEYS, b"", 100)
        assert keys.status == 0 and keys.data[8:16] == (0xA).to_bytes(8, "big")
        assert executor.execute(path_only, READ_KEYS, b"", 100) == Reply(*from_errno(errno.EBADF))
    finally:
        os.close(rw)
        os.close(path_only)


def test_a_pipe_is_not_a_device(tmp_path: Path) -> None:
    read, write = os.pipe()
    try:
        answer = SimExecutor(state_dir=tmp_path).execute(read, READ_KEYS, b"", 100)
        assert answer == Reply(*from_errno(errno.ENOTTY)) and answer.data == b""
    finally:
        os.close(read)
        os.close(write)
