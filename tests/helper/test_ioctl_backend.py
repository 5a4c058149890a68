"""``--backend ioctl``: PR OUT as <linux/pr.h> ioctls, decided without a device
(``helper.executors.block_pr``) and issued by ``IoctlExecutor`` (here with the ioctl replaced:
the host has no SCSI disk; the VM tier runs the conformance suite on ``helper-lio-ioctl``)."""

from __future__ import annotations

import errno as E
import re
import struct

import pytest

from scsi_pr.helper.executors import block_pr, ioctl, limits
from scsi_pr.helper.executors.sg import SgIoResult
from scsi_pr.helper.executors.status import (
    INVALID_FIELD,
    INVALID_PARAM,
    INVALID_PARAM_LEN,
    IO_ERROR,
)
from scsi_pr.sim import cdb as C
from scsi_pr.sim.constants import PersistentReserveInAction as IN
from scsi_pr.sim.constants import PersistentReserveOutAction as SA
from scsi_pr.sim.constants import ReservationType as T
from scsi_pr.sim.constants import Status
from scsi_pr.sim.pr_in_data import (
    parse_read_keys,
    parse_read_reservation,
    parse_report_capabilities,
)

K1, K2 = 0x1111, 0x2222


def test_the_ioctl_numbers_are_those_of_linux_pr_h() -> None:
    """_IOW('p', 200, struct pr_registration) etc., as the kernel headers expand them."""
    assert block_pr.IOC_PR_REGISTER == 0x401870C8
    assert block_pr.IOC_PR_RESERVE == 0x401070C9
    assert block_pr.IOC_PR_RELEASE == 0x401070CA
    assert block_pr.IOC_PR_PREEMPT == 0x401870CB
    assert block_pr.IOC_PR_PREEMPT_ABORT == 0x401870CC
    assert block_pr.IOC_PR_CLEAR == 0x401070CD
    assert block_pr.IOC_PR_READ_KEYS == 0xC01070CE
    assert block_pr.IOC_PR_READ_RESERVATION == 0x801070CF


@pytest.mark.parametrize(("scsi", "nvme"), [
    (T.WRITE_EXCLUSIVE, 1), (T.EXCLUSIVE_ACCESS, 2), (T.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, 3),
    (T.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY, 4), (T.WRITE_EXCLUSIVE_ALL_REGISTRANTS, 5),
    (T.EXCLUSIVE_ACCESS_ALL_REGISTRANTS, 6)])  # fmt: skip
def test_scsi_types_become_the_block_layers_numbering(scsi: T, nvme: int) -> None:
    call = block_pr.pr_out(*C.prout(SA.RESERVE, K1, 0, scsi))
    assert call == block_pr.Ioctl(block_pr.IOC_PR_RESERVE, struct.pack("=QII", K1, nvme, 0),
                                  "RESERVE")  # fmt: skip
    data = block_pr.read_reservation_data(K1, 7, nvme)
    assert parse_read_reservation(data).reservation.type == scsi  # type: ignore[union-attr]


@pytest.mark.parametrize(("action", "request_", "argument"), [
    (SA.REGISTER, block_pr.IOC_PR_REGISTER, struct.pack("=QQII", K1, K2, 0, 0)),
    (SA.REGISTER_AND_IGNORE_EXISTING_KEY, block_pr.IOC_PR_REGISTER,
     struct.pack("=QQII", K1, K2, block_pr.PR_FL_IGNORE_KEY, 0)),
    (SA.RELEASE, block_pr.IOC_PR_RELEASE, struct.pack("=QII", K1, 1, 0)),
    (SA.CLEAR, block_pr.IOC_PR_CLEAR, struct.pack("=QII", K1, 0, 0)),
    (SA.PREEMPT, block_pr.IOC_PR_PREEMPT, struct.pack("=QQII", K1, K2, 1, 0)),
    (SA.PREEMPT_AND_ABORT, block_pr.IOC_PR_PREEMPT_ABORT, struct.pack("=QQII", K1, K2, 1, 0)),
])  # fmt: skip
def test_each_service_action_has_its_ioctl(action: SA, request_: int, argument: bytes) -> None:
    call = block_pr.pr_out(*C.prout(action, K1, K2, T.WRITE_EXCLUSIVE))
    assert isinstance(call, block_pr.Ioctl)
    assert (call.request, call.argument) == (request_, argument)


def _with(cdb_data: tuple[bytes, bytes], byte: int, value: int) -> tuple[bytes, bytes]:
    cdb, data = cdb_data
    return cdb, data[:byte] + bytes([value]) + data[byte + 1 :]


@pytest.mark.parametrize(("cdb_data", "code"), [
    (C.prout(SA.REGISTER_AND_MOVE, K1, K2), INVALID_FIELD),
    (C.prout(SA.REPLACE_LOST_RESERVATION, 0, K2, T.WRITE_EXCLUSIVE), INVALID_FIELD),
    ((bytes([0x5F, 0x1F]) + bytes(8), bytes(24)), INVALID_FIELD),  # no such service action
    (C.prout(SA.RESERVE, K1, 0, 0x2), INVALID_FIELD),  # reserved TYPE
    ((bytes([0x5F, SA.RESERVE, 0x21]) + bytes(7), bytes(24)), INVALID_FIELD),  # SCOPE 2
    (_with(C.prout(SA.REGISTER, 0, K2), 20, 0x04), INVALID_PARAM),  # ALL_TG_PT
    (_with(C.prout(SA.REGISTER, 0, K2), 20, 0x08), INVALID_PARAM),  # SPEC_I_PT, 24 bytes
    ((C.prout(SA.REGISTER, 0, K2)[0], bytes(16)), INVALID_PARAM_LEN),
    ((C.prout(SA.REGISTER, 0, K2)[0], bytes(28)), INVALID_PARAM_LEN),  # longer, no SPEC_I_PT
])  # fmt: skip
def test_what_no_ioctl_can_say_is_refused_as_a_device_would(
    cdb_data: tuple[bytes, bytes], code: object
) -> None:
    decided = block_pr.pr_out(*cdb_data)
    assert isinstance(decided, block_pr.Refusal) and decided.code == code


def test_read_keys_data_is_spc_layout() -> None:
    got = parse_read_keys(block_pr.read_keys_data(9, 2, [K1, K2]))
    assert (got.generation, list(got.keys)) == (9, [K1, K2])
    none = parse_read_reservation(block_pr.read_reservation_data(0, 9, 0))
    assert none.generation == 9 and none.reservation is None


@pytest.mark.parametrize(("release", "caps"), [
    ("6.1.0-57-amd64", {"CAP_SYS_ADMIN", "CAP_SYS_RAWIO"}),
    ("6.12.107+deb12-amd64", {"CAP_SYS_RAWIO"}),
    ("6.19.0", set()), ("7.0.1-arch1", set()),
    ("weird", {"CAP_SYS_ADMIN", "CAP_SYS_RAWIO"})])  # fmt: skip
def test_the_capabilities_follow_the_kernel(release: str, caps: set[str]) -> None:
    assert ioctl.capabilities_for(release) == caps


# -- the executor, with the ioctl replaced ---------------------------------------------------
class FakeKernel:
    """Records ioctls; answers with ``returns`` (an int, or an errno to raise)."""

    def __init__(self, returns: int = 0, error: int = 0, tur: SgIoResult | None = None) -> None:
        self.returns, self.error, self.tur = returns, error, tur
        #: answers of the next ioctls, before ``returns`` applies
        self.first: list[int] = []
        self.calls: list[tuple[int, bytes]] = []
        self.sg: list[bytes] = []

    def ioctl(self, fd: int, request: int, argument: bytearray, mutate: bool = True) -> int:
        self.calls.append((request, bytes(argument)))
        if self.error:
            raise OSError(self.error, "fake")
        return self.first.pop(0) if self.first else self.returns

    def sg_io(self, fd: int, cdb: bytes, *args: object, **kw: object) -> SgIoResult:
        self.sg.append(bytes(cdb))
        return self.tur or SgIoResult(0, 0, 0, bytes(96), b"", 0, errno=E.EPERM)


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> FakeKernel:
    fake = FakeKernel()
    monkeypatch.setattr(ioctl.fcntl, "ioctl", fake.ioctl)
    monkeypatch.setattr(ioctl, "sg_io", fake.sg_io)
    return fake


def run(cdb_data: tuple[bytes, bytes], allocation_length: int = 0) -> ioctl.Reply:
    cdb, data = cdb_data
    return ioctl.IoctlExecutor().execute(3, cdb.ljust(16, b"\0"), data, allocation_length)


def test_a_register_is_one_ioctl_and_zero_is_good(kernel: FakeKernel) -> None:
    assert run(C.prout(SA.REGISTER, 0, K2)).status == Status.GOOD
    assert kernel.calls == [(block_pr.IOC_PR_REGISTER, struct.pack("=QQII", 0, K2, 0, 0))]


def test_a_reservation_conflict_comes_back_as_its_status(kernel: FakeKernel) -> None:
    kernel.returns = 0x18
    assert run(C.prout(SA.RESERVE, K1, 0, T.WRITE_EXCLUSIVE)).status == Status.RESERVATION_CONFLICT


def test_a_host_byte_is_mapped_as_the_c_helper_maps_host_status(kernel: FakeKernel) -> None:
    kernel.returns = 0x0E << 16  # DID_TRANSPORT_DISRUPTED: I_T NEXUS LOSS OCCURRED
    r = run(C.prout(SA.RESERVE, K1, 0, T.WRITE_EXCLUSIVE))
    assert (r.status, r.sense[2], r.sense[12], r.sense[13]) == (2, 0x0B, 0x29, 0x07)


def test_a_failed_ioctl_maps_its_errno(kernel: FakeKernel) -> None:
    kernel.error = E.EPERM  # e.g. no CAP_SYS_ADMIN on a kernel before 6.5
    r = run(C.prout(SA.CLEAR, K1))
    assert (r.status, r.sense[2], r.sense[12], r.sense[13]) == (2, *IO_ERROR.build()[2:3], 0, 6)


def test_a_check_condition_fetches_the_pending_condition(kernel: FakeKernel) -> None:
    """The ioctl loses the sense; a TEST UNIT READY tells what the device reports now."""
    kernel.returns = Status.CHECK_CONDITION
    sense = bytes([0x70, 0, 0x02, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x04, 0x01]).ljust(96, b"\0")
    kernel.tur = SgIoResult(Status.CHECK_CONDITION, 0, 0x08, sense, b"", 0, sb_len_wr=18)
    r = run(C.prout(SA.RESERVE, K1, 0, T.WRITE_EXCLUSIVE))
    assert r.status == Status.CHECK_CONDITION and r.sense[:18] == sense[:18]
    assert kernel.sg == [bytes(6)] and len(kernel.calls) == 1
    kernel.tur = SgIoResult(Status.GOOD, 0, 0, bytes(96), b"", 0)  # nothing pending: again,
    kernel.calls.clear()
    assert run(C.prout(SA.RESERVE, K1, 0, T.WRITE_EXCLUSIVE)).sense[:18] == IO_ERROR.build()
    assert len(kernel.calls) == ioctl.ATTEMPTS  # then the sense is built


def test_a_unit_attention_the_kernel_swallowed_costs_one_more_try(kernel: FakeKernel) -> None:
    """6.1's sd returns CHECK CONDITION for a PR OUT refused by a unit attention, which it
    consumed: nothing is pending any more, and the command, sent again, goes through."""
    kernel.first = [Status.CHECK_CONDITION]
    kernel.tur = SgIoResult(Status.GOOD, 0, 0, bytes(96), b"", 0)
    assert run(C.prout(SA.REGISTER, 0, K2)).status == Status.GOOD
    assert len(kernel.calls) == 2 and kernel.sg == [bytes(6)]


def test_read_keys_by_ioctl_where_the_kernel_has_it(
    kernel: FakeKernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_keys_ioctl(fd: int, request: int, argument: bytearray, mutate: bool = True) -> int:
        assert request == block_pr.IOC_PR_READ_KEYS
        _, room, pointer = block_pr.READ_KEYS.unpack(argument)
        assert room == ioctl.MAX_KEYS
        ioctl.ctypes.memmove(pointer, struct.pack("=QQ", K1, K2), 16)
        argument[:] = block_pr.READ_KEYS.pack(5, 2, pointer)
        return 0

    monkeypatch.setattr(ioctl.fcntl, "ioctl", read_keys_ioctl)
    r = run((C.persistent_reserve_in(IN.READ_KEYS), b""), 8192)
    got = parse_read_keys(r.data)
    assert r.status == Status.GOOD and (got.generation, list(got.keys)) == (5, [K1, K2])
    short = run((C.persistent_reserve_in(IN.READ_KEYS, 12), b""), 12)
    assert short.data == r.data[:12], "cut to the ALLOCATION LENGTH"


def test_without_read_ioctls_pr_in_goes_by_sg_io_or_is_refused(kernel: FakeKernel) -> None:
    kernel.error = E.ENOTTY  # a kernel before 6.19
    r = run((C.persistent_reserve_in(IN.READ_RESERVATION), b""), 8192)
    assert len(kernel.sg) == 1 and kernel.sg[0][0] == 0x5E  # tried SG_IO on the same fd
    assert r.status == Status.CHECK_CONDITION and r.sense[:18] == INVALID_FIELD.build()
    kernel.tur = SgIoResult(Status.GOOD, 0, 0, bytes(96), bytes.fromhex("0000000300000000"), 0)
    r = run((C.persistent_reserve_in(IN.READ_RESERVATION), b""), 8192)
    assert r.status == Status.GOOD and r.data == bytes.fromhex("0000000300000000")


def test_report_capabilities_says_what_this_path_supports(kernel: FakeKernel) -> None:
    r = run((C.persistent_reserve_in(IN.REPORT_CAPABILITIES), b""), 8192)
    caps = parse_report_capabilities(r.data)
    assert r.status == Status.GOOD and kernel.calls == []
    assert caps.ptpl_c and not (caps.sip_c or caps.atp_c or caps.crh or caps.rlr_c)
    assert caps.tmv and caps.type_mask == frozenset(T) and caps.allow_commands == 0


def test_report_capabilities_is_the_device_s_less_what_the_path_cannot_carry(
    kernel: FakeKernel,
) -> None:
    """Where SG_IO may ask the device (LIO's answer, measured: CRH SIP_C ATP_C PTPL_C, TMV,
    PTPL_A as the device has it): SIP_C, ATP_C and RLR_C are cleared, the rest passes."""
    device = bytes.fromhex("00089d91ea010000")  # RLR_C too, PTPL_A set
    kernel.tur = SgIoResult(Status.GOOD, 0, 0, bytes(96), device, 0)
    r = run((C.persistent_reserve_in(IN.REPORT_CAPABILITIES), b""), 8192)
    assert r.status == Status.GOOD and r.data == bytes.fromhex("000811" + "91ea010000")
    assert kernel.sg == [C.persistent_reserve_in(IN.REPORT_CAPABILITIES).ljust(16, b"\0")]


def test_read_full_status_has_no_ioctl(kernel: FakeKernel) -> None:
    r = run((C.persistent_reserve_in(IN.READ_FULL_STATUS), b""), 8192)
    assert r.status == Status.CHECK_CONDITION and r.sense[:18] == INVALID_FIELD.build()
    assert kernel.calls == [] and kernel.sg == []


def test_every_path_limit_is_in_the_helper_docs() -> None:
    """docs/helper.md's table names every limit of ``limits.LIMITS`` (and no other)."""
    from pathlib import Path

    from scsi_pr.helper.executors import limits

    text = (Path(__file__).parents[2] / "docs" / "helper.md").read_text()
    named = set(re.findall(r"^\| `((?:ioctl|mpath)-[a-z-]+)` \|", text, re.M))
    assert named == set(limits.LIMITS)


def test_a_limit_of_some_kernels_only_applies_from_its_series() -> None:
    einval = limits.IOCTL_ILLEGAL_REQUEST_AS_EINVAL.name
    assert einval not in limits.of_backend("ioctl")
    assert einval not in limits.of_backend("ioctl", "6.1.0-57-amd64")
    assert einval in limits.of_backend("ioctl", "6.12.118+deb12-amd64")
    assert einval in limits.of_backend("ioctl", "7.0.1")
    assert limits.IOCTL_SENSE_LOST.name in limits.of_backend("ioctl", "6.12.118+deb12-amd64")
    assert einval not in limits.of_backend("multipath", "6.12.118+deb12-amd64")
