"""The errno / host_status / driver_status table of qemu-pr-helper (protocol note 2.4)."""

from __future__ import annotations

import errno

import pytest

from scsi_pr.helper.executors.status import map_sg_io, reply_from_sg_io

GOOD, CHECK, BUSY, CONFLICT, TSF = 0x00, 0x02, 0x08, 0x18, 0x28


def triple(sense: bytes) -> tuple[int, int, int]:
    assert sense[0] == 0x70 and sense[7] == 0x0A
    return sense[2], sense[12], sense[13]


@pytest.mark.parametrize(
    ("err", "status", "code"),
    [
        (errno.EDOM, TSF, None),
        (errno.EBADE, CONFLICT, None),
        (errno.ENODEV, CHECK, (0x04, 0x44, 0x00)),
        (errno.EREMOTEIO, CHECK, (0x04, 0x44, 0x00)),
        (errno.ENOMEM, CHECK, (0x04, 0x44, 0x00)),
        (errno.ENODATA, CHECK, (0x03, 0x11, 0x00)),
        (errno.ENOMEDIUM, CHECK, (0x02, 0x3A, 0x00)),
        (errno.EINVAL, CHECK, (0x05, 0x24, 0x00)),
        (errno.ENOSPC, CHECK, (0x07, 0x27, 0x07)),
        (errno.ENOTTY, CHECK, (0x0B, 0x00, 0x06)),
        (errno.EPERM, CHECK, (0x0B, 0x00, 0x06)),
        (errno.EACCES, CHECK, (0x0B, 0x00, 0x06)),
    ],
)
def test_errno_rows(err: int, status: int, code: tuple[int, int, int] | None) -> None:
    got, sense = map_sg_io(err=err, host_status=0x02, status=0x18)  # errno wins over the rest
    assert got == status
    assert len(sense) == 96
    if code is None:
        assert sense == bytes(96)
    else:
        assert triple(sense) == code
        assert sense[14:] == bytes(82)


@pytest.mark.parametrize(
    ("host", "status", "code"),
    [
        (0x01, CHECK, (0x0B, 0x05, 0x00)),
        (0x02, BUSY, None),
        (0x03, CHECK, (0x0B, 0x2E, 0x02)),
        (0x04, CHECK, (0x0B, 0x08, 0x00)),
        (0x05, CHECK, (0x0B, 0x2F, 0x02)),
        (0x08, CHECK, (0x06, 0x29, 0x00)),
        (0x0E, CHECK, (0x0B, 0x29, 0x07)),
        (0x10, CHECK, (0x04, 0x44, 0x00)),
        (0x11, CONFLICT, None),
        (0x12, CHECK, (0x07, 0x27, 0x07)),
        (0x13, CHECK, (0x03, 0x11, 0x00)),
        (0x07, GOOD, None),  # QEMU quirk: unknown host_status reads as GOOD
    ],
)
def test_host_status_rows(host: int, status: int, code: tuple[int, int, int] | None) -> None:
    got, sense = map_sg_io(host_status=host, driver_status=0x06, status=0x02)
    assert got == status
    if code is not None:
        assert triple(sense) == code


@pytest.mark.parametrize("driver", [0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x0E])
def test_driver_status_is_a_mask_test(driver: int) -> None:
    assert map_sg_io(driver_status=driver, status=0x18)[0] == BUSY


def test_device_status_and_sense_pass_through() -> None:
    device_sense = bytes([0x72, 0x06, 0x2A, 0x03]) + bytes(range(1, 21))
    status, sense = map_sg_io(driver_status=0x08, status=CHECK, sense=device_sense)
    assert status == CHECK
    assert sense == device_sense.ljust(96, b"\0")
    assert map_sg_io(driver_status=0x01, status=CONFLICT)[0] == CONFLICT


def test_fabricated_sense_keeps_kernel_tail() -> None:
    kernel = bytes([0xEE]) * 96
    _, sense = map_sg_io(host_status=0x01, sense=kernel)
    assert sense[:18] != kernel[:18] and sense[18:] == kernel[18:]


def test_pr_in_size_is_8192_minus_resid_clamped_to_allocation_length() -> None:
    data = bytes(range(256)) * 32
    good, check = map_sg_io(), map_sg_io(status=CHECK)
    assert len(reply_from_sg_io(good, data, resid=8192 - 16, allocation_length=8).data) == 8
    assert len(reply_from_sg_io(good, data, resid=8192 - 16, allocation_length=100).data) == 16
    assert reply_from_sg_io(check, data, resid=0, allocation_length=100).data == b""
    assert reply_from_sg_io(good, data, resid=0, allocation_length=0).data == b""


def test_a_check_conditions_sense_goes_with_it() -> None:
    sense = bytes([0x70, 0, 5]) + bytes(93)
    reply = reply_from_sg_io((CHECK, sense), b"", resid=0, allocation_length=0)
    assert (reply.status, reply.sense) == (CHECK, sense)


def test_no_outcome_is_good_with_zeroed_sense() -> None:
    assert map_sg_io() == (GOOD, bytes(96))


def test_a_fabricated_check_condition_is_built_over_the_kernels_sense() -> None:
    """QEMU builds its 18 bytes in place: what the kernel wrote after them stays, the rest of
    the 96 bytes are zeros."""
    from scsi_pr.helper.executors import status as S

    kernel = bytes(18) + b"\xee" * 6
    reply = S.check_condition(S.INVALID_OPCODE, kernel)
    assert reply.status == CHECK
    assert triple(reply.sense) == (0x05, 0x20, 0x00)
    assert reply.sense[18:] == b"\xee" * 6 + bytes(72)
    assert S.check_condition(S.INVALID_OPCODE).sense == S.INVALID_OPCODE.build() + bytes(78)
    # the tables are built at import: their row builder, called here
    assert S._check(S.TARGET_FAILURE) == S.Mapping(S.Status.CHECK_CONDITION, S.TARGET_FAILURE)
