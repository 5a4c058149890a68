"""SG_IO on a Linux SCSI generic (or block) device fd, and the executor that uses it.

``sg_io`` is the one place the project talks to a kernel SCSI device: it packs an ``sg_io_hdr``
(``<scsi/sg.h>``, interface 'S') with ctypes, issues the ioctl and returns every field a caller
may need, errors included, as data. ``SgExecutor`` issues exactly the SG_IO the C
``qemu-pr-helper`` issues (16-byte CDB, 96-byte sense, 8192-byte PR IN buffer, its 1 ms timeout
field) and maps the outcome with ``executors.status`` so the reply is byte-compatible.

``fcntl.ioctl`` copies a mutable argument of at most 1024 bytes into a C buffer and releases the
GIL around the call, so a device that hangs (LIO's PREEMPT AND ABORT) blocks only the calling
thread; callers that need a deadline run ``sg_io`` in a worker thread and stop waiting.
"""

from __future__ import annotations

import ctypes
import errno as E
import fcntl
import threading
from typing import NamedTuple

from scsi_pr.helper.errors import HelperError
from scsi_pr.helper.executors.base import Executor, Reply
from scsi_pr.helper.executors.status import map_sg_io, reply_from_sg_io
from scsi_pr.helper.proto import PR_HELPER_CDB_SIZE, PR_HELPER_DATA_SIZE, PR_HELPER_SENSE_SIZE
from scsi_pr.sim.constants import Opcode

_PR_IN = int(Opcode.PERSISTENT_RESERVE_IN)  # a plain int: compared once per request

# <scsi/sg.h>
SG_IO = 0x2285
SG_DXFER_NONE = -1
SG_DXFER_TO_DEV = -2
SG_DXFER_FROM_DEV = -3
SG_INTERFACE_ID = ord("S")
SG_INFO_OK_MASK = 0x1
# qemu-pr-helper.c do_sgio_worker sets ``timeout = 1`` (milliseconds). The block layer rounds a
# request's deadline up to a whole second, so in practice that is a 1-2 s timeout.
HELPER_TIMEOUT_MS = 1
DEFAULT_TIMEOUT_MS = 30_000
MAX_CDB_LENGTH = 252  # the sg driver's upper bound (SCSI_MAX_VARLEN_CDB_SIZE + 8 rounded)
MAX_SENSE_LENGTH = 255  # mx_sb_len is one byte


class SgIoHdr(ctypes.Structure):
    """``struct sg_io_hdr`` from ``<scsi/sg.h>``; ctypes reproduces the C padding."""

    _fields_ = (
        ("interface_id", ctypes.c_int),
        ("dxfer_direction", ctypes.c_int),
        ("cmd_len", ctypes.c_ubyte),
        ("mx_sb_len", ctypes.c_ubyte),
        ("iovec_count", ctypes.c_ushort),
        ("dxfer_len", ctypes.c_uint),
        ("dxferp", ctypes.c_void_p),
        ("cmdp", ctypes.c_void_p),
        ("sbp", ctypes.c_void_p),
        ("timeout", ctypes.c_uint),
        ("flags", ctypes.c_uint),
        ("pack_id", ctypes.c_int),
        ("usr_ptr", ctypes.c_void_p),
        ("status", ctypes.c_ubyte),
        ("masked_status", ctypes.c_ubyte),
        ("msg_status", ctypes.c_ubyte),
        ("sb_len_wr", ctypes.c_ubyte),
        ("host_status", ctypes.c_ushort),
        ("driver_status", ctypes.c_ushort),
        ("resid", ctypes.c_int),
        ("duration", ctypes.c_uint),
        ("info", ctypes.c_uint),
    )


class SgIoResult(NamedTuple):
    """One SG_IO outcome. ``errno`` != 0 means the ioctl itself failed (other fields zero).

    ``sense`` is the full sense buffer the caller offered (``sb_len_wr`` says how much the
    kernel wrote); ``data`` is the data-in buffer trimmed by ``resid``. A NamedTuple, not a
    frozen dataclass: one is built per helper request, and a frozen dataclass sets each of its
    nine fields through ``object.__setattr__``.
    """

    status: int
    host_status: int
    driver_status: int
    sense: bytes
    data: bytes
    resid: int
    errno: int = 0
    sb_len_wr: int = 0
    duration_ms: int = 0

    @property
    def ok(self) -> bool:
        """Transport and device both reported success (no check of the data)."""
        return not (self.errno or self.host_status or self.driver_status or self.status)

    def reply(self, allocation_length: int = 0) -> Reply:
        """What qemu-pr-helper answers for this outcome (``executors.status``)."""
        mapped = map_sg_io(
            err=self.errno,
            host_status=self.host_status,
            driver_status=self.driver_status,
            status=self.status,
            sense=self.sense,
        )
        # resid 0: sg_io already trimmed the data by resid
        return reply_from_sg_io(mapped, self.data, 0, allocation_length)


class SgIoError(HelperError, ValueError):
    """The caller asked for an SG_IO the kernel would reject outright."""


def sg_io(
    fd: int,
    cdb: bytes,
    data_out: bytes = b"",
    data_in_length: int = 0,
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
    *,
    sense_length: int = PR_HELPER_SENSE_SIZE,
) -> SgIoResult:
    """Issue ``cdb`` on ``fd`` with SG_IO; never raises for device or transport errors.

    At most one of ``data_out`` / ``data_in_length`` may be given (SG_IO has one direction).
    """
    cmd_len = len(cdb)
    if not 6 <= cmd_len <= MAX_CDB_LENGTH:
        raise SgIoError(f"CDB length {cmd_len} outside 6..{MAX_CDB_LENGTH}")
    if data_out and data_in_length:
        raise SgIoError("SG_IO moves data one way: give data_out or data_in_length, not both")
    if data_in_length < 0 or timeout_ms < 0 or not 0 < sense_length <= MAX_SENSE_LENGTH:
        raise SgIoError("negative data_in_length/timeout or sense_length outside 1..255")
    if data_out:
        direction, length = SG_DXFER_TO_DEV, len(data_out)
    elif data_in_length:
        direction, length = SG_DXFER_FROM_DEV, data_in_length
    else:
        direction, length = SG_DXFER_NONE, 0
    bufs = _thread_buffers(length)
    hdr = bufs.hdr
    bufs.cdb[:cmd_len] = cdb
    if data_out:
        bufs.data[:length] = data_out
    elif length:  # what the device leaves unwritten reads as zeros, not as an earlier answer
        bufs.data_view[:length] = bufs.zeros[:length]
    hdr.dxferp = bufs.data_address if length else None
    hdr.dxfer_direction = direction
    hdr.cmd_len = cmd_len
    hdr.mx_sb_len = sense_length
    hdr.dxfer_len = length
    hdr.timeout = timeout_ms
    bufs.sense_view[:sense_length] = _NO_SENSE_VIEW[:sense_length]  # all of it goes back
    try:
        fcntl.ioctl(fd, SG_IO, hdr)
    except OSError as e:
        return SgIoResult(0, 0, 0, bytes(sense_length), b"", 0, errno=e.errno or E.EIO)
    resid = hdr.resid
    data = b""
    if direction == SG_DXFER_FROM_DEV:
        data = bufs.data_view[: max(0, length - resid)].tobytes()
    return SgIoResult(
        hdr.status,
        hdr.host_status,
        hdr.driver_status,
        bufs.sense_view[:sense_length].tobytes(),
        data,
        resid,
        0,
        hdr.sb_len_wr,
        hdr.duration,
    )


_NO_SENSE = bytes(MAX_SENSE_LENGTH)
_NO_SENSE_VIEW = memoryview(_NO_SENSE)  # sliced without a copy


class _Buffers:
    """One thread's SG_IO header and its CDB, sense and data buffers, reused by every call the
    thread makes: building them (ctypes buffers and a Structure from keywords) cost more than
    the rest of ``sg_io`` in Python, for every helper request. Per thread because the ioctl
    releases the GIL: two threads' commands may be in the kernel at once.

    The buffers are bytearrays the header points into (their addresses taken once): filling
    and reading them by slice is C work, where ctypes' memmove, memset and string_at are each
    a foreign call. A bytearray whose buffer is exported never moves (it cannot be resized).
    """

    def __init__(self, data_size: int) -> None:
        self.cdb = bytearray(MAX_CDB_LENGTH)
        self.sense = bytearray(MAX_SENSE_LENGTH)
        self.data = bytearray(data_size)
        self.sense_view, self.data_view = memoryview(self.sense), memoryview(self.data)
        self.zeros = memoryview(bytes(data_size))  # sliced without a copy
        self._pins = [ctypes.c_char.from_buffer(b) for b in (self.cdb, self.sense, self.data)]
        cdb_at, sense_at, self.data_address = (ctypes.addressof(pin) for pin in self._pins)
        self.hdr = SgIoHdr(interface_id=SG_INTERFACE_ID, cmdp=cdb_at, sbp=sense_at)


_local = threading.local()


def _thread_buffers(data_length: int) -> _Buffers:
    """This thread's buffers, with room for ``data_length`` bytes of data either way."""
    bufs: _Buffers | None = getattr(_local, "buffers", None)
    if bufs is None or len(bufs.data) < data_length:
        bufs = _local.buffers = _Buffers(max(data_length, PR_HELPER_DATA_SIZE))
    return bufs


class SgExecutor(Executor):
    """PR IN/OUT on the fd QEMU passed, the way ``qemu-pr-helper`` (non-multipath) does it."""

    name = "sg"
    capabilities = frozenset({"CAP_SYS_RAWIO"})  # SG_IO on the passed fd

    def __init__(self, timeout_ms: int = HELPER_TIMEOUT_MS) -> None:
        self.timeout_ms = timeout_ms

    def execute(self, fd: int, cdb: bytes, data_out: bytes, allocation_length: int) -> Reply:
        # PR OUT on a read-only fd (qemu-pr-helper's one made-up answer) is refused before any
        # executor runs (scsi_pr.helper.session), so every backend answers it alike
        padded = bytes(cdb[:PR_HELPER_CDB_SIZE]).ljust(PR_HELPER_CDB_SIZE, b"\0")
        if padded[0] == _PR_IN:
            r = sg_io(fd, padded, b"", PR_HELPER_DATA_SIZE, self.timeout_ms)
        else:
            r = sg_io(fd, padded, data_out, 0, self.timeout_ms)
            allocation_length = 0
        return r.reply(allocation_length)
