"""``IoctlExecutor`` against a kernel stand-in that behaves as ``fcntl.ioctl`` and ``sg_io`` do:
every call recorded with all its arguments, whole replies compared.

Why a faithful stand-in rather than a permissive one (as in test_ioctl_backend.py): the bugs
this edge can have are in how it calls the kernel. ``fcntl.ioctl`` with ``mutate_flag`` false
returns the buffer's bytes and leaves the caller's buffer unwritten; an int argument is a
pointer the kernel faults on; an fd must be an int; ``sg_io`` refuses data both ways. So a
wrong fd, flag, request or buffer shows as a wrong call or a wrong reply here, as on a disk.
"""

from __future__ import annotations

import ctypes
import errno as E
import struct
from collections.abc import Callable

import pytest

from scsi_pr.helper.executors import block_pr, ioctl
from scsi_pr.helper.executors.base import Reply
from scsi_pr.helper.executors.sg import DEFAULT_TIMEOUT_MS, SgIoError, SgIoResult
from scsi_pr.helper.executors.status import (
    INVALID_FIELD,
    INVALID_PARAM,
    IO_ERROR,
    TARGET_FAILURE,
    SenseCode,
    map_sg_io,
)
from scsi_pr.sim import cdb as C
from scsi_pr.sim.constants import PersistentReserveInAction as IN
from scsi_pr.sim.constants import PersistentReserveOutAction as SA
from scsi_pr.sim.constants import ReservationType as T
from scsi_pr.sim.constants import Status

FD = 7
K1, K2 = 0x1111, 0xFEDC_BA98_7654_3210
NO_SENSE = bytes(96)
#: what the device writes into an ioctl's argument, and the ioctl's return value
Device = Callable[[int, bytearray], int]


class Kernel:
    """``fcntl.ioctl`` and ``sg_io`` as the kernel answers them, for one disk."""

    def __init__(self) -> None:
        #: (fd, request, argument as passed, mutate_flag) of each ioctl
        self.calls: list[tuple[object, object, object, object]] = []
        #: errno each next ioctl fails with (0: it reaches ``device``)
        self.errors: list[int] = []
        self.device: Device = lambda request, argument: 0
        #: (fd, cdb, data_out, data_in_length) of each SG_IO
        self.sg: list[tuple[object, ...]] = []
        #: SG_IO outcomes in order; none left: EPERM (no CAP_SYS_RAWIO)
        self.sg_answers: list[SgIoResult] = []

    def ioctl(self, fd: int, request: int, arg: object = 0, mutate_flag: bool = True, /) -> object:
        passed = bytes(arg) if isinstance(arg, bytearray) else arg
        self.calls.append((fd, request, passed, mutate_flag))
        if not isinstance(fd, int) or not isinstance(request, int):
            raise TypeError("fd and request must be integers")
        if self.errors and (err := self.errors.pop(0)):
            raise OSError(err, "fake")
        if not isinstance(arg, bytearray):
            raise OSError(E.EFAULT, "the argument is no buffer")
        buffer = arg if mutate_flag else bytearray(arg)
        returned = self.device(request, buffer)
        return returned if mutate_flag else bytes(buffer)

    def sg_io(
        self,
        fd: int,
        cdb: bytes,
        data_out: bytes = b"",
        data_in_length: int = 0,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        *,
        sense_length: int = 96,
    ) -> SgIoResult:
        self.sg.append((fd, bytes(cdb), data_out, data_in_length))
        if not isinstance(fd, int):
            raise TypeError("fd must be an integer")
        if data_out and data_in_length:
            raise SgIoError("SG_IO moves data one way")
        if data_in_length < 0:
            raise SgIoError("negative data_in_length")
        if not self.sg_answers:
            return SgIoResult(0, 0, 0, bytes(sense_length), b"", 0, errno=E.EPERM)
        answer = self.sg_answers.pop(0)
        return answer._replace(data=answer.data[:data_in_length])


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> Kernel:
    fake = Kernel()
    monkeypatch.setattr(ioctl.fcntl, "ioctl", fake.ioctl)
    monkeypatch.setattr(ioctl, "sg_io", fake.sg_io)
    return fake


def run(cdb: bytes, data: bytes = b"", allocation_length: int = 0) -> Reply:
    return ioctl.IoctlExecutor().execute(FD, cdb.ljust(16, b"\0"), data, allocation_length)


def pr_in(action: IN, allocation_length: int = 8192) -> tuple[bytes, Reply]:
    cdb = C.persistent_reserve_in(action, allocation_length)
    return cdb.ljust(16, b"\0"), run(cdb, b"", allocation_length)


def check(code: SenseCode) -> Reply:
    """The CHECK CONDITION the helper builds: 18 bytes of fixed-format sense, zero padded."""
    return Reply(Status.CHECK_CONDITION, code.build())


def sg_good(data: bytes) -> SgIoResult:
    return SgIoResult(Status.GOOD, 0, 0, NO_SENSE, data, 0)


# -- PR OUT ------------------------------------------------------------------------------------
def test_a_pr_out_is_one_ioctl_on_the_passed_fd_with_its_buffer(kernel: Kernel) -> None:
    assert run(*C.prout(SA.PREEMPT, K1, K2, T.EXCLUSIVE_ACCESS)) == Reply(Status.GOOD)
    argument = struct.pack("=QQII", K1, K2, 2, 0)
    assert kernel.calls == [(FD, block_pr.IOC_PR_PREEMPT, argument, True)]
    assert kernel.sg == []


def test_what_no_ioctl_carries_is_refused_before_the_kernel(kernel: Kernel) -> None:
    assert run(*C.prout(SA.REGISTER_AND_MOVE, K1, K2)) == check(INVALID_FIELD)
    assert run(*C.prout(SA.REGISTER, 0, K2, all_tg_pt=True)) == check(INVALID_PARAM)
    assert kernel.calls == [] and kernel.sg == []


@pytest.mark.parametrize(
    ("err", "reply"),
    [
        (E.EINVAL, check(INVALID_FIELD)),  # sd's ILLEGAL REQUEST from 6.12
        (E.EBADE, Reply(Status.RESERVATION_CONFLICT, NO_SENSE)),
        (E.ENODEV, check(TARGET_FAILURE)),
        (E.EPERM, check(IO_ERROR)),
    ],
)
def test_a_failed_pr_out_ioctl_is_answered_by_its_errno(
    kernel: Kernel, err: int, reply: Reply
) -> None:
    kernel.errors = [err]
    assert run(*C.prout(SA.CLEAR, K1)) == reply
    assert kernel.calls == [(FD, block_pr.IOC_PR_CLEAR, struct.pack("=QII", K1, 0, 0), True)]


def test_an_oserror_without_errno_is_an_io_error(
    kernel: Kernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fails(*args: object) -> int:
        raise OSError("no errno")

    monkeypatch.setattr(ioctl.fcntl, "ioctl", fails)
    assert run(*C.prout(SA.CLEAR, K1)) == check(IO_ERROR)


def test_the_returned_status_and_host_byte_are_the_answer(kernel: Kernel) -> None:
    kernel.device = lambda request, argument: Status.RESERVATION_CONFLICT
    assert run(*C.prout(SA.RESERVE, K1, 0, T.WRITE_EXCLUSIVE)) == Reply(0x18, NO_SENSE)
    kernel.device = lambda request, argument: 0x0002_0000  # DID_BUSY
    assert run(*C.prout(SA.RESERVE, K1, 0, T.WRITE_EXCLUSIVE)) == Reply(Status.BUSY, NO_SENSE)
    kernel.device = lambda request, argument: 0x000E_0000  # DID_TRANSPORT_DISRUPTED
    nexus_loss = map_sg_io(host_status=0x0E)
    assert nexus_loss[1][2] & 0x0F == 0x0B and nexus_loss[1][12:14] == bytes([0x29, 0x07])
    assert run(*C.prout(SA.RESERVE, K1, 0, T.WRITE_EXCLUSIVE)) == Reply(*nexus_loss)
    assert len(kernel.calls) == 3 and kernel.sg == []


def test_a_check_condition_asks_the_same_fd_for_the_pending_condition(kernel: Kernel) -> None:
    kernel.device = lambda request, argument: Status.CHECK_CONDITION
    sense = bytes.fromhex("700006000000000a000000002a030000").ljust(96, b"\0")
    kernel.sg_answers = [SgIoResult(Status.CHECK_CONDITION, 0, 0x08, sense, b"", 0, 0, 18)]
    assert run(*C.prout(SA.REGISTER, 0, K2)) == Reply(Status.CHECK_CONDITION, sense)
    assert kernel.sg == [(FD, bytes(6), b"", 0)]
    assert len(kernel.calls) == 1


def test_only_a_check_condition_of_the_tur_is_a_pending_condition(kernel: Kernel) -> None:
    """A TEST UNIT READY that is GOOD, even with sense written (a recovered error), or that
    failed, reports nothing pending: the PR OUT is sent once more, then the sense is built."""
    kernel.device = lambda request, argument: Status.CHECK_CONDITION
    recovered = bytes.fromhex("700001000000000a00000000").ljust(96, b"\0")
    kernel.sg_answers = [
        SgIoResult(Status.GOOD, 0, 0, recovered, b"", 0, 0, 18),
        SgIoResult(0, 0, 0, NO_SENSE, b"", 0, errno=E.EIO),
    ]
    assert run(*C.prout(SA.REGISTER, 0, K2)) == check(IO_ERROR)
    assert len(kernel.calls) == ioctl.ATTEMPTS == 2
    assert kernel.sg == [(FD, bytes(6), b"", 0)] * 2


def test_a_condition_the_kernel_consumed_costs_one_more_ioctl(kernel: Kernel) -> None:
    answers = [Status.CHECK_CONDITION, Status.GOOD]
    kernel.device = lambda request, argument: answers.pop(0)
    kernel.sg_answers = [SgIoResult(Status.GOOD, 0, 0, NO_SENSE, b"", 0, 0, 18)]
    assert run(*C.prout(SA.REGISTER, 0, K2)) == Reply(Status.GOOD)
    assert [c[:2] for c in kernel.calls] == [(FD, block_pr.IOC_PR_REGISTER)] * 2


# -- PR IN by the 6.19 read ioctls -----------------------------------------------------------
def test_read_reservation_by_its_ioctl(kernel: Kernel) -> None:
    """struct pr_read_reservation {key, generation, type} filled by the kernel; type 5 (WE-AR)
    is SCSI TYPE 7."""

    def device(request: int, argument: bytearray) -> int:
        argument[:] = block_pr.READ_RESERVATION.pack(K2, 0x0A0B0C0D, 5)
        return 0

    kernel.device = device
    reply = pr_in(IN.READ_RESERVATION)[1]
    data = bytes.fromhex("0a0b0c0d 00000010 fedcba9876543210 00000000 00 07 0000")
    assert reply == Reply(Status.GOOD, NO_SENSE, data)
    assert kernel.calls == [(FD, block_pr.IOC_PR_READ_RESERVATION, bytes(16), True)]
    assert kernel.sg == []


def test_read_reservation_without_a_reservation(kernel: Kernel) -> None:
    def device(request: int, argument: bytearray) -> int:
        argument[:] = block_pr.READ_RESERVATION.pack(0, 3, 0)
        return 0

    kernel.device = device
    data = bytes.fromhex("00000003 00000000")
    assert pr_in(IN.READ_RESERVATION)[1] == Reply(Status.GOOD, NO_SENSE, data)


def test_read_keys_by_its_ioctl_asks_for_as_many_keys_as_fit(kernel: Kernel) -> None:
    """struct pr_read_keys {generation, num_keys, keys_ptr}: in, generation 0 and room for
    MAX_KEYS; out, the generation and the device's key count, the keys at keys_ptr."""
    seen: list[tuple[int, int]] = []

    def device(request: int, argument: bytearray) -> int:
        generation, room, pointer = block_pr.READ_KEYS.unpack(argument)
        seen.append((generation, room))
        ctypes.memmove(pointer, struct.pack("=QQ", K1, K2), 16)
        argument[:] = block_pr.READ_KEYS.pack(0x55, 2, pointer)
        return 0

    kernel.device = device
    reply = pr_in(IN.READ_KEYS)[1]
    data = bytes.fromhex("00000055 00000010 0000000000001111 fedcba9876543210")
    assert reply == Reply(Status.GOOD, NO_SENSE, data)
    assert seen == [(0, ioctl.MAX_KEYS)] and ioctl.MAX_KEYS == 1023
    assert [c[:2] + c[3:] for c in kernel.calls] == [(FD, block_pr.IOC_PR_READ_KEYS, True)]


def test_read_keys_past_the_helpers_buffer_tells_the_devices_whole_length(
    kernel: Kernel,
) -> None:
    """2,000 keys registered: the kernel copies the 1,023 asked for and returns num_keys 2,000
    (the device's count); the data holds the 1,023 and an ADDITIONAL LENGTH of 16,000, cut to
    the guest's allocation length as the device's own answer would be."""
    registered = [0x1000 + i for i in range(2000)]

    def device(request: int, argument: bytearray) -> int:
        _, room, pointer = block_pr.READ_KEYS.unpack(argument)
        ctypes.memmove(pointer, struct.pack(f"={room}Q", *registered[:room]), 8 * room)
        argument[:] = block_pr.READ_KEYS.pack(9, len(registered), pointer)
        return 0

    kernel.device = device
    data = pr_in(IN.READ_KEYS)[1].data
    assert data[:8] == bytes.fromhex("00000009 00003e80") and len(data) == 8 + 8 * 1023
    assert data[8:] == struct.pack(">1023Q", *registered[:1023])
    assert pr_in(IN.READ_KEYS, 24)[1].data == data[:24]


@pytest.mark.parametrize(
    ("err", "reply"),
    [(E.ENODEV, check(TARGET_FAILURE)), (E.EBADE, Reply(Status.RESERVATION_CONFLICT))],
)
@pytest.mark.parametrize("action", [IN.READ_KEYS, IN.READ_RESERVATION])
def test_a_read_ioctl_that_fails_otherwise_is_answered_by_its_errno(
    kernel: Kernel, action: IN, err: int, reply: Reply
) -> None:
    """Only "no such ioctl" falls back to SG_IO; any other errno is the answer."""
    kernel.errors = [err]
    assert pr_in(action)[1] == reply
    assert kernel.sg == []


# -- PR IN by SG_IO where the kernel has no read ioctls ----------------------------------------
@pytest.mark.parametrize("err", sorted(ioctl.NO_SUCH_IOCTL))
def test_without_the_read_ioctls_the_pr_in_goes_by_sg_io_on_the_same_fd(
    kernel: Kernel, err: int
) -> None:
    kernel.errors = [err]
    device_data = bytes.fromhex("00000004 00000008 0000000000001111")
    kernel.sg_answers = [sg_good(device_data)]
    cdb, reply = pr_in(IN.READ_KEYS, 12)
    assert reply == Reply(Status.GOOD, NO_SENSE, device_data[:12])
    assert kernel.sg == [(FD, cdb, b"", 8192)]


def test_without_sg_io_either_the_pr_in_is_an_invalid_field(kernel: Kernel) -> None:
    kernel.errors = [E.ENOTTY]
    cdb, reply = pr_in(IN.READ_RESERVATION)
    assert reply == check(INVALID_FIELD)
    assert kernel.sg == [(FD, cdb, b"", 8192)]


def test_read_full_status_has_no_ioctl(kernel: Kernel) -> None:
    assert pr_in(IN.READ_FULL_STATUS)[1] == check(INVALID_FIELD)
    assert kernel.calls == [] and kernel.sg == []


# -- REPORT CAPABILITIES -----------------------------------------------------------------------
def test_report_capabilities_is_the_devices_by_sg_io_less_what_the_path_cannot_carry(
    kernel: Kernel,
) -> None:
    kernel.sg_answers = [sg_good(bytes.fromhex("0008ff91ea010000"))]
    cdb, reply = pr_in(IN.REPORT_CAPABILITIES)
    assert reply == Reply(Status.GOOD, NO_SENSE, bytes.fromhex("00087391ea010000"))
    assert kernel.sg == [(FD, cdb, b"", 8192)] and kernel.calls == []


def test_report_capabilities_the_device_refuses_is_its_answer(kernel: Kernel) -> None:
    sense = bytes.fromhex("700005000000000a0000000020000000").ljust(96, b"\0")
    kernel.sg_answers = [SgIoResult(Status.CHECK_CONDITION, 0, 0x08, sense, b"", 0, 0, 18)]
    assert pr_in(IN.REPORT_CAPABILITIES)[1] == Reply(Status.CHECK_CONDITION, sense)


def test_report_capabilities_without_sg_io_is_what_the_path_supports(kernel: Kernel) -> None:
    """PTPL_C; TMV; the six types; ALLOW COMMANDS 0: eight bytes, no sense."""
    cdb, reply = pr_in(IN.REPORT_CAPABILITIES)
    assert reply == Reply(Status.GOOD, NO_SENSE, bytes.fromhex("00080180ea010000"))
    assert ioctl.report_capabilities() == reply.data
    assert kernel.sg == [(FD, cdb, b"", 8192)] and kernel.calls == []


def test_a_pr_in_reply_is_cut_to_the_allocation_length(kernel: Kernel) -> None:
    assert pr_in(IN.REPORT_CAPABILITIES, 5)[1].data == ioctl.report_capabilities()[:5]
