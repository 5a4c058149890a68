"""device-mapper as the multipath executor asks it (``helper/executors/dm.py``): the ioctl
numbers and buffers, reading an answer's targets and paths, and which devices are asked about
at all (against a real map: tests/vm/test_multipath_vm.py)."""

from __future__ import annotations

import errno
import os
import struct
from pathlib import Path

import pytest

from scsi_pr.helper.executors import dm
from scsi_pr.helper.executors.dm import (
    DM_IOCTL,
    DM_TABLE_STATUS,
    DM_TARGET_SPEC,
    DM_VERSION,
    DeviceMapper,
    block_major,
    encode_dev,
    first_target_type,
    is_multipath_answer,
    pack_dm_ioctl,
    table_devices,
)


def test_ioctl_numbers_match_linux_dm_ioctl_h() -> None:
    assert DM_IOCTL.size == 312
    assert DM_TARGET_SPEC.size == 40
    assert DM_VERSION == 0xC138FD00
    assert DM_TABLE_STATUS == 0xC138FD0C


def answer(*types: bytes, params: bytes = b"") -> bytes:
    """A DM_TABLE_STATUS answer as the kernel fills it: header, then target specs, each
    followed by its params string."""
    buf = bytearray(pack_dm_ioctl())
    struct.pack_into("=I", buf, 20, len(types))  # target_count
    offset = DM_IOCTL.size
    step = DM_TARGET_SPEC.size + (len(params) + 8) // 8 * 8
    for t in types:
        DM_TARGET_SPEC.pack_into(buf, offset, 0, 2048, 0, step, t)
        buf[offset + DM_TARGET_SPEC.size : offset + DM_TARGET_SPEC.size + len(params)] = params
        offset += step
    return bytes(buf)


def test_a_multipath_table_names_its_paths_in_order() -> None:
    table = b"0 0 1 1 service-time 0 2 1 8:16 1 65:160 1"
    assert table_devices(answer(b"multipath", params=table)) == [(8, 16), (65, 160)]
    assert table_devices(answer()) == []


@pytest.mark.parametrize(
    ("types", "expected"),
    [
        ((b"multipath",), True),
        ((b"multipath", b"linear"), True),
        ((b"linear",), False),
        ((b"linear", b"multipath"), False),  # only the first target counts, as in QEMU
        ((b"multipath-x",), False),
        ((), False),
    ],
)
def test_detection_reads_the_first_target_type(types: tuple[bytes, ...], expected: bool) -> None:
    assert is_multipath_answer(answer(*types)) is expected


PROC_DEVICES = """Character devices:
  1 mem
240 device-mapper
Block devices:
  8 sd
 65 sd
252 virtblk
254 device-mapper
259 blkext
"""


def test_the_device_mapper_major_is_read_from_the_block_section() -> None:
    assert block_major(PROC_DEVICES, "device-mapper") == 254  # not the character 240
    assert block_major(PROC_DEVICES, "sd") == 8
    assert block_major(PROC_DEVICES, "mem") is None
    assert block_major(PROC_DEVICES.replace("254 device-mapper\n", ""), "device-mapper") is None
    assert block_major("", "device-mapper") is None


def test_only_devices_of_the_device_mapper_major_are_asked_about() -> None:
    """The kernel answers ENXIO for any other major; a control fd that is no control node
    (/dev/null: ENOTTY) shows whether the question was asked."""
    null = os.open(os.devnull, os.O_RDWR)  # a character device, major 1
    try:
        assert DeviceMapper(null, major=254).is_multipath(null) is False  # not asked
        for asked in (DeviceMapper(null, major=1), DeviceMapper(null, major=None)):
            with pytest.raises(OSError) as caught:
                asked.is_multipath(null)
            assert caught.value.errno == errno.ENOTTY
    finally:
        os.close(null)


def test_request_header_fields() -> None:
    buf = pack_dm_ioctl(dev=encode_dev((253 << 8) | 3), flags=1 << 11)
    fields = DM_IOCTL.unpack_from(buf)
    assert fields[:3] == (4, 0, 0)
    assert fields[3] == 312 + 1024 and fields[4] == 312
    assert fields[7] == 1 << 11
    assert first_target_type(buf) is None


def test_the_major_is_read_from_proc_devices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    devices = tmp_path / "devices"
    devices.write_text(PROC_DEVICES)
    monkeypatch.setattr(dm, "PROC_DEVICES", str(devices))
    assert dm._dm_major() == 254
    devices.write_text(PROC_DEVICES.replace("device-mapper", "DEVICE-MAPPER"))
    assert dm._dm_major() is None  # the driver's name as the kernel writes it
    monkeypatch.setattr(dm, "PROC_DEVICES", str(tmp_path / "absent"))
    assert dm._dm_major() is None  # unreadable: every device is asked


@pytest.mark.parametrize(
    ("table", "expected"),
    [(None, False), (answer(b"linear"), False), (answer(b"multipath"), True)],
    ids=["not dm (ENXIO)", "linear map", "multipath map"],
)
def test_a_device_of_the_major_is_judged_by_its_table(
    monkeypatch: pytest.MonkeyPatch, table: bytes | None, expected: bool
) -> None:
    asked: list[tuple[int, int, int]] = []

    def status(self: DeviceMapper, rdev: int, flags: int, size: int) -> bytes | None:
        asked.append((rdev, flags, size))
        return table

    monkeypatch.setattr(DeviceMapper, "_table", status)
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        rdev = os.fstat(null).st_rdev
        assert DeviceMapper(null, major=os.major(rdev)).is_multipath(null) is expected
    finally:
        os.close(null)
    assert asked == [(rdev, dm.DM_NOFLUSH_FLAG, dm.DM_DATA_SIZE)]


def test_a_device_number_is_encoded_as_the_kernel_decodes_it() -> None:
    # huge_encode_dev: minor's low byte, the major, then the minor's high bits above bit 20
    assert encode_dev(os.makedev(253, 0x1234)) == 0x34 | (253 << 8) | (0x1200 << 12)
    assert encode_dev(os.makedev(8, 16)) == 0x0810
