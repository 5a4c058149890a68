"""``--backend ioctl``: PR OUT as <linux/pr.h> ioctls, decided without a device
(``helper.executors.block_pr``), the capabilities each kernel needs, and the path limits
the docs name. ``IoctlExecutor`` itself is tested against a stand-in kernel in
test_executors_ioctl.py; the VM tier runs the conformance suite on ``helper-lio-ioctl``."""

from __future__ import annotations

import re
import struct

import pytest

from scsi_pr.helper.executors import block_pr, ioctl, limits
from scsi_pr.helper.executors.status import (
    INVALID_FIELD,
    INVALID_PARAM,
    INVALID_PARAM_LEN,
)
from scsi_pr.sim import cdb as C
from scsi_pr.sim.constants import PersistentReserveOutAction as SA
from scsi_pr.sim.constants import ReservationType as T
from scsi_pr.sim.pr_in_data import (
    parse_read_keys,
    parse_read_reservation,
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


# -- the path limits (the executor itself: test_executors_ioctl.py) ---------------------------
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
