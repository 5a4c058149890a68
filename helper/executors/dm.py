"""device-mapper, as the multipath executor needs it: is a passed fd a multipath map, and
which path devices does it have. Facts: ``include/uapi/linux/dm-ioctl.h``.

Detection is the C helper's: ``DM_TABLE_STATUS`` on /dev/mapper/control for the fd's st_rdev;
ENXIO means not a dm device; multipath iff the first target's type is "multipath" (not a
dm-uuid check). Buffer packing and parsing are pure; ``DeviceMapper`` issues the ioctls.

One step is skipped where its answer is known: the kernel looks the device number up only
under device-mapper's own block major (``dm_get_md``) and answers ENXIO for any other, so a
device of another major (every SCSI disk) is not asked about. The major comes from
/proc/devices when the control node is opened; without it every device is asked, as the C
helper asks. Under TCG that ioctl and its ENXIO exception were a tenth of a helper request.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import struct
from pathlib import Path

DM_VERSION_MAJOR = 4
DM_IOCTL = struct.Struct("=3IIIIiIIIQ128s129s7s")  # struct dm_ioctl, 312 bytes
DM_TARGET_SPEC = struct.Struct("=QQiI16s")  # struct dm_target_spec, then its params string
DM_DATA_SIZE = 1024  # qemu-pr-helper's DMData data area
#: a table with many paths needs more room than the C helper's detection buffer
DM_TABLE_DATA_SIZE = 16384
DM_STATUS_TABLE_FLAG = 1 << 4
DM_NOFLUSH_FLAG = 1 << 11
_IOC_READ_WRITE = 3
CONTROL_PATH = "/dev/mapper/control"
PROC_DEVICES = "/proc/devices"
DEVICE_NUMBER = re.compile(r"^(\d+):(\d+)$")


def _iowr(nr: int, size: int) -> int:
    return (_IOC_READ_WRITE << 30) | (size << 16) | (0xFD << 8) | nr


DM_VERSION = _iowr(0, DM_IOCTL.size)
DM_TABLE_STATUS = _iowr(12, DM_IOCTL.size)


def pack_dm_ioctl(dev: int = 0, flags: int = 0, data_size: int = DM_DATA_SIZE) -> bytes:
    """A ``struct dm_ioctl`` header plus a ``data_size`` data area (the C helper's 1024)."""
    header = DM_IOCTL.pack(
        DM_VERSION_MAJOR, 0, 0,
        DM_IOCTL.size + data_size, DM_IOCTL.size,
        0, 0, flags, 0, 0, dev, b"", b"", b"",
    )  # fmt: skip
    return header + bytes(data_size)


def first_target_type(buf: bytes) -> str | None:
    """Target type of the first table entry in a DM_TABLE_STATUS answer (None: no targets)."""
    fields = DM_IOCTL.unpack_from(buf)
    data_start, target_count = fields[4], fields[5]
    if target_count == 0 or len(buf) < data_start + DM_TARGET_SPEC.size:
        return None
    *_, target_type = DM_TARGET_SPEC.unpack_from(buf, data_start)
    return target_type.split(b"\0", 1)[0].decode(errors="replace")


def is_multipath_answer(buf: bytes) -> bool:
    return first_target_type(buf) == "multipath"


def table_devices(buf: bytes) -> list[tuple[int, int]]:
    """The (major, minor) of every device a DM_TABLE_STATUS (with DM_STATUS_TABLE_FLAG)
    answer's first target names: for a multipath map, its paths, in table order."""
    fields = DM_IOCTL.unpack_from(buf)
    data_start, target_count = fields[4], fields[5]
    if target_count == 0:
        return []
    params = buf[data_start + DM_TARGET_SPEC.size :].split(b"\0", 1)[0].decode(errors="replace")
    found = (DEVICE_NUMBER.match(word) for word in params.split())
    return [(int(m[1]), int(m[2])) for m in found if m]


def encode_dev(rdev: int) -> int:
    """The kernel's huge_encode_dev, which dm_ioctl.dev expects."""
    major, minor = os.major(rdev), os.minor(rdev)
    return (minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12)


def block_major(devices: str, name: str) -> int | None:
    """The block major /proc/devices (its text: ``devices``) gives the driver ``name``."""
    _, _, block = devices.partition("Block devices:")
    for line in block.splitlines():
        number, _, driver = line.strip().partition(" ")
        if driver == name and number.isdigit():
            return int(number)
    return None


def _dm_major() -> int | None:
    try:
        with open(PROC_DEVICES) as f:
            return block_major(f.read(), "device-mapper")
    except OSError:
        return None


class DeviceMapper:
    """Questions about passed fds, asked through an open /dev/mapper/control; ``major`` is
    device-mapper's block major (None: unknown, every device is asked)."""

    def __init__(self, control_fd: int, major: int | None = None) -> None:
        self.control_fd = control_fd
        self.major = major

    @classmethod
    def open(cls) -> DeviceMapper:
        """/dev/mapper/control, checked to speak this interface version (OSError otherwise)."""
        control = os.open(CONTROL_PATH, os.O_RDWR | os.O_CLOEXEC)
        try:
            buf = bytearray(pack_dm_ioctl())
            fcntl.ioctl(control, DM_VERSION, buf)
            if DM_IOCTL.unpack_from(buf)[0] != DM_VERSION_MAJOR:
                raise OSError(errno.EPROTO, "Unsupported device mapper interface")
        except OSError:
            os.close(control)
            raise
        return cls(control, _dm_major())

    def _table(self, rdev: int, flags: int, size: int) -> bytes | None:
        buf = bytearray(pack_dm_ioctl(encode_dev(rdev), flags, size))
        try:
            fcntl.ioctl(self.control_fd, DM_TABLE_STATUS, buf)
        except OSError as e:
            if e.errno == errno.ENXIO:
                return None
            raise
        return bytes(buf)

    def is_multipath(self, fd: int) -> bool:
        rdev = os.fstat(fd).st_rdev
        if self.major is not None and os.major(rdev) != self.major:
            return False  # the kernel would answer ENXIO (module docstring)
        answer = self._table(rdev, DM_NOFLUSH_FLAG, DM_DATA_SIZE)
        return answer is not None and is_multipath_answer(answer)

    def path_nodes(self, fd: int) -> list[str]:
        """/dev nodes of the map's paths (the kernel's names, from sysfs by device number)."""
        rdev = os.fstat(fd).st_rdev
        answer = self._table(rdev, DM_NOFLUSH_FLAG | DM_STATUS_TABLE_FLAG, DM_TABLE_DATA_SIZE)
        nodes: list[str] = []
        for major, minor in table_devices(answer) if answer is not None else []:
            name = Path(os.readlink(f"/sys/dev/block/{major}:{minor}")).name
            nodes.append(f"/dev/{name}")
        return nodes

    def close(self) -> None:
        os.close(self.control_fd)
