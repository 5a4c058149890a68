"""SG_IO packing and error paths that need no SCSI device (the VM tier covers real devices)."""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterator

import pytest

from scsi_pr.helper.executors.sg import SgExecutor, SgIoError, SgIoHdr, sg_io
from scsi_pr.helper.executors.status import IO_ERROR
from scsi_pr.sim import cdb as C
from scsi_pr.sim.constants import PersistentReserveInAction, Status


def test_sg_io_hdr_matches_the_c_layout() -> None:
    """x86-64 <scsi/sg.h>: 88 bytes, pointers 8-aligned, status at 64, resid at 72."""
    assert ctypes.sizeof(SgIoHdr) == 88
    assert SgIoHdr.dxferp.offset == 16
    assert SgIoHdr.usr_ptr.offset == 56
    assert SgIoHdr.status.offset == 64
    assert SgIoHdr.host_status.offset == 68
    assert SgIoHdr.resid.offset == 72
    assert SgIoHdr.info.offset == 80


@pytest.fixture
def not_scsi() -> Iterator[int]:
    fd = os.open("/dev/null", os.O_RDWR)
    yield fd
    os.close(fd)


def test_ioctl_failure_is_data_not_an_exception(not_scsi: int) -> None:
    r = sg_io(not_scsi, C.test_unit_ready())
    assert r.errno == errno.ENOTTY
    assert not r.ok
    assert r.sense == bytes(96)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cdb": b"\0" * 5}, "CDB length 5"),
        ({"cdb": bytes(6), "data_out": b"x", "data_in_length": 1}, "one way"),
        ({"cdb": bytes(6), "data_in_length": -1}, "negative"),
    ],
)
def test_bad_requests_are_refused(not_scsi: int, kwargs: dict, message: str) -> None:
    with pytest.raises(SgIoError, match=message):
        sg_io(not_scsi, **kwargs)


def test_executor_maps_a_failed_ioctl_like_qemu(not_scsi: int) -> None:
    """ENOTTY is not in QEMU's errno table: CHECK CONDITION, ABORTED COMMAND 00/06."""
    reply = SgExecutor().execute(
        not_scsi, C.persistent_reserve_in(PersistentReserveInAction.READ_KEYS), b"", 8192
    )
    assert reply.status == Status.CHECK_CONDITION
    assert reply.sense == IO_ERROR.over()
    assert reply.data == b""
