"""``helper.executors.sg`` in-process, with ``fcntl.ioctl`` replaced by a fake kernel.

The host has no SCSI device, and the VM tier that has one is too slow to judge mutants, so a
fake SG_IO reads the ``sg_io_hdr`` through ctypes the way the kernel does (the CDB at ``cmdp``,
data-out at ``dxferp``) and answers by writing status, host/driver status, sense, data, resid
and duration back at the header's addresses. Each test pins exact header fields, the exact
``SgIoResult`` for one kernel answer, the per-thread buffer reuse, and ``SgExecutor``'s exact
Reply: the bytes qemu-pr-helper would send for the same SG_IO outcome.
"""

from __future__ import annotations

import ctypes
import errno
import threading
from dataclasses import dataclass
from typing import Any

import pytest

from scsi_pr.helper.executors import sg
from scsi_pr.helper.executors.base import Reply
from scsi_pr.helper.executors.sg import SgExecutor, SgIoError, SgIoHdr, SgIoResult, sg_io
from scsi_pr.helper.executors.status import (
    COMMAND_ABORTED,
    INVALID_FIELD,
    IO_ERROR,
)
from scsi_pr.sim import cdb as C
from scsi_pr.sim.constants import PersistentReserveInAction as IN
from scsi_pr.sim.constants import PersistentReserveOutAction as OUT
from scsi_pr.sim.constants import Status

SENSE = bytes([0x70, 0, 0x06, 0, 0, 0, 0, 0x0A, 0, 0, 0, 0, 0x29, 0x00, 0, 0, 0, 0])  # UA 29/00
HEADER_FIELDS = (
    "interface_id",
    "dxfer_direction",
    "cmd_len",
    "mx_sb_len",
    "iovec_count",
    "dxfer_len",
    "dxferp",
    "cmdp",
    "sbp",
    "timeout",
    "flags",
    "pack_id",
    "usr_ptr",
)


@dataclass
class Answer:
    """What the fake kernel reports for the next SG_IO; ``errno`` makes the ioctl fail."""

    status: int = 0
    host_status: int = 0
    driver_status: int = 0
    sense: bytes = b""
    data: bytes = b""
    resid: int = 0
    duration: int = 0
    errno: int | None = None


@dataclass(frozen=True)
class Seen:
    """One SG_IO as the kernel received it: the header's fields and the bytes they point at."""

    fd: Any
    request: int
    hdr: SgIoHdr | None
    fields: dict[str, Any]
    cdb: bytes | None
    data_out: bytes | None


class FakeKernel:
    """``fcntl.ioctl`` for SG_IO: records each call, then answers with ``answer``."""

    def __init__(self) -> None:
        self.answer = Answer()
        self.seen: list[Seen] = []

    def ioctl(self, fd: Any, request: int, hdr: Any = None, mutate: bool = True) -> int:
        if not isinstance(hdr, SgIoHdr):
            self.seen.append(Seen(fd, request, None, {}, None, None))
            return 0
        fields = {name: getattr(hdr, name) for name in HEADER_FIELDS}
        cdb = ctypes.string_at(hdr.cmdp, hdr.cmd_len) if hdr.cmdp else None
        out = ctypes.string_at(hdr.dxferp, hdr.dxfer_len) if hdr.dxferp else None
        self.seen.append(Seen(fd, request, hdr, fields, cdb, out))
        a = self.answer
        if a.errno is not None:
            raise OSError(a.errno, "fake SG_IO") if a.errno else OSError()
        sense = a.sense[: hdr.mx_sb_len]
        if hdr.sbp:
            ctypes.memmove(hdr.sbp, sense, len(sense))
        if hdr.dxferp:
            ctypes.memmove(hdr.dxferp, a.data, min(len(a.data), hdr.dxfer_len))
        hdr.status, hdr.host_status, hdr.driver_status = a.status, a.host_status, a.driver_status
        hdr.sb_len_wr, hdr.resid, hdr.duration = len(sense), a.resid, a.duration
        return 0

    @property
    def last(self) -> Seen:
        assert len(self.seen) >= 1
        return self.seen[-1]


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> FakeKernel:
    """The fake kernel, and fresh per-thread buffers so each test builds its own."""
    fake = FakeKernel()
    monkeypatch.setattr(sg.fcntl, "ioctl", fake.ioctl)
    monkeypatch.setattr(sg, "_local", threading.local())
    return fake


def addresses() -> tuple[int, int, int]:
    """The addresses of this thread's CDB, sense and data buffers."""
    bufs = sg._local.buffers
    cdb, sense = (ctypes.addressof(ctypes.c_char.from_buffer(b)) for b in (bufs.cdb, bufs.sense))
    return cdb, sense, bufs.data_address


def header(**changed: Any) -> dict[str, Any]:
    """The header fields sg_io sets for a command without data, with ``changed`` applied."""
    cdb_at, sense_at, _ = addresses()
    fields = dict(interface_id=ord("S"), dxfer_direction=-1, cmd_len=6, mx_sb_len=96,
                  iovec_count=0, dxfer_len=0, dxferp=None, cmdp=cdb_at, sbp=sense_at,
                  timeout=30_000, flags=0, pack_id=0, usr_ptr=None)  # fmt: skip
    return fields | changed


# -- sg_io: the header the kernel receives ---------------------------------------------------
def test_a_command_without_data_sends_no_buffer(kernel: FakeKernel) -> None:
    kernel.answer = Answer(resid=0)
    r = sg_io(7, C.test_unit_ready())
    seen = kernel.last
    assert (seen.fd, seen.request) == (7, 0x2285)
    assert seen.fields == header()
    assert seen.cdb == bytes(6) and seen.data_out is None
    assert r == SgIoResult(0, 0, 0, bytes(96), b"", 0, 0, 0, 0)
    assert r.ok


def test_data_out_is_sent_from_the_data_buffer(kernel: FakeKernel) -> None:
    """Direction TO_DEV; nothing comes back as data even though the buffer holds bytes."""
    params = bytes(range(24))
    cdb = C.persistent_reserve_out(OUT.REGISTER, len(params))
    r = sg_io(3, cdb, params, timeout_ms=5)
    assert kernel.last.fields == header(dxfer_direction=-2, cmd_len=10, dxfer_len=24,
                                        dxferp=addresses()[2], timeout=5)  # fmt: skip
    assert kernel.last.cdb == cdb and kernel.last.data_out == params
    assert r == SgIoResult(0, 0, 0, bytes(96), b"", 0)


def test_data_in_is_trimmed_by_resid(kernel: FakeKernel) -> None:
    kernel.answer = Answer(data=bytes(range(60)), resid=40)
    r = sg_io(3, C.persistent_reserve_in(IN.READ_KEYS, 100), data_in_length=100, timeout_ms=0)
    assert kernel.last.fields == header(dxfer_direction=-3, cmd_len=10, dxfer_len=100,
                                        dxferp=addresses()[2], timeout=0)  # fmt: skip
    assert r == SgIoResult(0, 0, 0, bytes(96), bytes(range(60)), 40)


@pytest.mark.parametrize(("resid", "kept"), [(0, 100), (99, 1), (100, 0), (130, 0)])
def test_a_resid_at_or_beyond_the_length_keeps_nothing(
    kernel: FakeKernel, resid: int, kept: int
) -> None:
    kernel.answer = Answer(data=b"\xab" * 100, resid=resid)
    r = sg_io(3, bytes(10), data_in_length=100)
    assert r.data == b"\xab" * kept and r.resid == resid


def test_every_header_field_lands_in_its_own_result_field(kernel: FakeKernel) -> None:
    kernel.answer = Answer(status=0x02, host_status=0x07, driver_status=0x08, sense=SENSE,
                           data=b"xyz", resid=5, duration=1234)  # fmt: skip
    r = sg_io(3, bytes(6), data_in_length=8)
    assert r == SgIoResult(2, 7, 8, SENSE.ljust(96, b"\0"), b"xyz", 5, 0, 18, 1234)
    assert not r.ok


def test_a_resid_without_data_is_still_reported(kernel: FakeKernel) -> None:
    kernel.answer = Answer(resid=3)
    assert sg_io(3, bytes(6)) == SgIoResult(0, 0, 0, bytes(96), b"", 3)


@pytest.mark.parametrize(("length", "offered"), [(18, 96), (96, 96), (200, 255), (96, 1), (5, 32)])
def test_sense_comes_back_as_the_whole_buffer_offered(
    kernel: FakeKernel, length: int, offered: int
) -> None:
    sense = bytes((0x70 + i) % 256 for i in range(length))
    kernel.answer = Answer(status=0x02, sense=sense)
    r = sg_io(3, bytes(6), sense_length=offered)
    assert kernel.last.fields["mx_sb_len"] == offered
    written = min(length, offered)
    assert r.sense == sense[:written].ljust(offered, b"\0")
    assert (r.status, r.sb_len_wr) == (2, written)


def test_the_sense_buffer_is_cleared_before_each_command(kernel: FakeKernel) -> None:
    kernel.answer = Answer(status=0x02, sense=b"\xee" * 255)
    assert sg_io(3, bytes(6), sense_length=255).sense == b"\xee" * 255
    kernel.answer = Answer()
    assert sg_io(3, bytes(6), sense_length=255).sense == bytes(255)


def test_the_data_buffer_is_cleared_before_each_data_in_command(kernel: FakeKernel) -> None:
    """A device that writes less than it reports (resid 0, nothing written: an answer QEMU's
    status mapping may turn GOOD) leaves zeros, not the thread's earlier answer."""
    kernel.answer = Answer(data=b"\xee" * 8192)
    assert sg_io(3, bytes(10), data_in_length=8192).data == b"\xee" * 8192
    kernel.answer = Answer(data=b"\x11" * 4)
    assert sg_io(3, bytes(10), data_in_length=8192).data == b"\x11" * 4 + bytes(8188)
    kernel.answer = Answer(data=b"\xee" * 9000)  # the grown buffers are cleared as well
    assert sg_io(3, bytes(10), data_in_length=9000).data == b"\xee" * 9000
    kernel.answer = Answer()
    assert sg_io(3, bytes(10), data_in_length=9000).data == bytes(9000)


def test_the_longest_cdb_is_sent_whole(kernel: FakeKernel) -> None:
    cdb = bytes(range(252))
    sg_io(3, cdb)
    assert kernel.last.fields["cmd_len"] == 252 and kernel.last.cdb == cdb


# -- sg_io: what it refuses, and a failed ioctl ----------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cdb": bytes(5)}, "CDB length 5 outside 6..252"),
        ({"cdb": bytes(253)}, "CDB length 253 outside 6..252"),
        ({"data_out": b"x", "data_in_length": 1},
         "SG_IO moves data one way: give data_out or data_in_length, not both"),
        ({"data_in_length": -1}, "negative data_in_length/timeout or sense_length outside 1..255"),
        ({"timeout_ms": -1}, "negative data_in_length/timeout or sense_length outside 1..255"),
        ({"sense_length": 0}, "negative data_in_length/timeout or sense_length outside 1..255"),
        ({"sense_length": 256}, "negative data_in_length/timeout or sense_length outside 1..255"),
    ],
)  # fmt: skip
def test_bad_requests_are_refused_before_the_ioctl(
    kernel: FakeKernel, kwargs: dict[str, Any], message: str
) -> None:
    args = {"cdb": bytes(6)} | kwargs
    with pytest.raises(SgIoError) as caught:
        sg_io(3, **args)
    assert str(caught.value) == message
    assert kernel.seen == []


@pytest.mark.parametrize(("err", "expected"), [(errno.EBADE, errno.EBADE), (0, errno.EIO)])
def test_a_failed_ioctl_is_an_errno_and_nothing_else(
    kernel: FakeKernel, err: int, expected: int
) -> None:
    """An OSError without errno counts as EIO."""
    kernel.answer = Answer(status=0x02, host_status=1, sense=SENSE, data=b"d", resid=1, errno=err)
    r = sg_io(3, bytes(6), data_in_length=4, sense_length=32)
    assert r == SgIoResult(0, 0, 0, bytes(32), b"", 0, expected, 0, 0)


# -- the per-thread buffers ------------------------------------------------------------------
def test_one_thread_reuses_its_buffers(kernel: FakeKernel) -> None:
    sg_io(3, bytes(6), data_in_length=8192)
    bufs = sg._local.buffers
    assert len(bufs.data) == 8192
    sg_io(3, bytes(10), data_in_length=8192)
    sg_io(3, bytes(6), b"out")
    assert sg._local.buffers is bufs
    first, *rest = kernel.seen
    assert all(s.hdr is first.hdr for s in rest)
    assert first.fields["interface_id"] == ord("S")


def test_the_buffers_start_at_the_helper_size_and_grow_on_demand(kernel: FakeKernel) -> None:
    sg_io(3, bytes(6))
    small = sg._local.buffers
    assert len(small.data) == 8192
    kernel.answer = Answer(data=b"\x5a" * 10_000)
    assert sg_io(3, bytes(6), data_in_length=10_000).data == b"\x5a" * 10_000
    big = sg._local.buffers
    assert big is not small and len(big.data) == 10_000
    assert kernel.last.fields == header(dxfer_direction=-3, dxfer_len=10_000,
                                        dxferp=big.data_address)  # fmt: skip
    sg_io(3, bytes(6), data_in_length=100)
    assert sg._local.buffers is big


def test_each_thread_has_its_own_buffers(kernel: FakeKernel) -> None:
    """The ioctl releases the GIL: two threads' commands must not share a header."""
    sg_io(3, bytes(6))
    mine, main_hdr = addresses(), kernel.last.hdr
    theirs: list[tuple[int, int, int]] = []

    def other() -> None:
        kernel.answer = Answer(data=b"t" * 4)
        assert sg_io(4, bytes(6), data_in_length=4).data == b"tttt"
        theirs.append(addresses())

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert kernel.last.hdr is not main_hdr and kernel.last.fd == 4
    assert len(theirs) == 1 and set(theirs[0]).isdisjoint(mine)
    assert addresses() == mine


# -- SgIoResult.reply: qemu-pr-helper's mapping ----------------------------------------------
def result(**kw: Any) -> SgIoResult:
    fields: dict[str, Any] = dict(status=0, host_status=0, driver_status=0, sense=bytes(96),
                                  data=b"", resid=0)  # fmt: skip
    return SgIoResult(**(fields | kw))


def test_reply_of_good_keeps_data_up_to_the_allocation_length() -> None:
    r = result(data=b"abcdef")
    assert r.reply() == Reply(0, bytes(96), b"")
    assert r.reply(4) == Reply(0, bytes(96), b"abcd")
    assert r.reply(100) == Reply(0, bytes(96), b"abcdef")


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"status": 0x02, "sense": SENSE}, Reply(2, SENSE.ljust(96, b"\0"))),
        ({"status": 0x18, "data": b"kept?"}, Reply(0x18, bytes(96))),
        ({"host_status": 0x11, "sense": SENSE}, Reply(0x18, SENSE.ljust(96, b"\0"))),
        ({"host_status": 0x05, "status": 0x18}, Reply(2, COMMAND_ABORTED.over())),
        ({"driver_status": 0x06, "sense": SENSE}, Reply(0x08, SENSE.ljust(96, b"\0"))),
        ({"driver_status": 0x08, "status": 0x02, "sense": SENSE}, Reply(2, SENSE.ljust(96, b"\0"))),
        ({"errno": errno.EINVAL, "status": 0x18}, Reply(2, INVALID_FIELD.over())),
    ],
)  # fmt: skip
def test_reply_maps_each_outcome_like_qemu(kw: dict[str, Any], expected: Reply) -> None:
    assert result(**kw).reply(8192) == expected


# -- SgExecutor ------------------------------------------------------------------------------
def test_pr_in_asks_for_8192_bytes_with_a_1_ms_timeout(kernel: FakeKernel) -> None:
    cdb = C.persistent_reserve_in(IN.READ_KEYS, 24)
    data = bytes(range(40))
    kernel.answer = Answer(data=data, resid=8192 - 40)
    reply = SgExecutor().execute(5, cdb, b"", 24)
    seen = kernel.last
    assert seen.fd == 5
    assert seen.fields == header(dxfer_direction=-3, cmd_len=16, dxfer_len=8192,
                                 dxferp=addresses()[2], timeout=1)  # fmt: skip
    assert seen.cdb == cdb + bytes(6)
    assert reply == Reply(0, bytes(96), data[:24])


def test_pr_in_check_condition_sends_the_sense_and_no_data(kernel: FakeKernel) -> None:
    kernel.answer = Answer(status=0x02, sense=SENSE, data=b"\x01" * 8)
    reply = SgExecutor(timeout_ms=2500).execute(5, C.persistent_reserve_in(IN.READ_KEYS), b"", 8)
    assert kernel.last.fields["timeout"] == 2500
    assert reply == Reply(2, SENSE.ljust(96, b"\0"))


def test_pr_out_sends_its_parameters(kernel: FakeKernel) -> None:
    params = bytes(range(1, 25))
    cdb = C.persistent_reserve_out(OUT.REGISTER, len(params))
    reply = SgExecutor().execute(9, cdb, params, 0)
    seen = kernel.last
    assert seen.fd == 9
    assert seen.fields == header(dxfer_direction=-2, cmd_len=16, dxfer_len=24,
                                 dxferp=addresses()[2], timeout=1)  # fmt: skip
    assert seen.cdb == cdb + bytes(6) and seen.data_out == params
    assert reply == Reply(0, bytes(96), b"")


def test_pr_out_without_parameters_moves_no_data(kernel: FakeKernel) -> None:
    kernel.answer = Answer(status=0x18)
    reply = SgExecutor().execute(9, C.persistent_reserve_out(OUT.CLEAR, 0), b"", 0)
    assert kernel.last.fields == header(cmd_len=16, timeout=1)
    assert reply == Reply(0x18, bytes(96))


def test_a_long_cdb_is_cut_to_16_bytes(kernel: FakeKernel) -> None:
    cdb = bytes([0x5E]) + bytes(range(1, 20))
    SgExecutor().execute(5, cdb, b"", 8192)
    assert kernel.last.cdb == cdb[:16] and kernel.last.fields["dxfer_direction"] == -3


def test_a_failed_ioctl_maps_its_errno(kernel: FakeKernel) -> None:
    kernel.answer = Answer(errno=errno.ENOTTY)
    reply = SgExecutor().execute(5, C.persistent_reserve_in(IN.READ_KEYS), b"", 8192)
    assert reply == Reply(Status.CHECK_CONDITION, IO_ERROR.over())
