"""dm-multipath devices: PR through multipath-tools, as qemu-pr-helper's CONFIG_MPATH build.

A PR command sent with SG_IO to a dm-multipath node reaches one path only; registrations must
be made on every path (I_T nexus). The C helper therefore detects multipath maps and hands
PR to libmpathpersist. We drive the same library through its CLI, ``mpathpersist`` (its exit
status is the library's MPATH_PR_* result), and keep the C helper's own rules around it:

* detection: ``DM_TABLE_STATUS`` on /dev/mapper/control for the fd's st_rdev; ENXIO = not a dm
  device; multipath iff the first target's type is "multipath" (not a dm-uuid check);
* PR IN: only READ KEYS, READ RESERVATION, REPORT CAPABILITIES (else 05/24/00); the answer is
  re-serialised and zero-filled, so sz always equals the ALLOCATION LENGTH on GOOD;
* PR OUT: parameter list >= 24 bytes (05/1A/00) before the service action check (0-6 only,
  else 05/24/00); TransportIDs validated as the C helper does (05/26/00 / 05/1A/00);
* result mapping: ``RESULT_TABLE``; sense codes libmpathpersist swallowed are recovered with a
  TEST UNIT READY via SG_IO, as the C helper does.

The pure parts (ioctl buffer packing/parsing, validation, result mapping, re-serialisation) are
functions at the top; only ``MultipathExecutor`` touches devices.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import struct
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field

from scsi_pr.helper.executors.base import Executor, Reply
from scsi_pr.helper.executors.status import (
    INVALID_FIELD,
    INVALID_OPCODE,
    INVALID_PARAM,
    INVALID_PARAM_LEN,
    IO_ERROR,
    LUN_COMM_FAILURE,
    NO_SENSE,
    NOT_READY,
    READ_ERROR,
    SCSI_BUS_RESET,
    TARGET_FAILURE,
    SenseCode,
    check_condition,
)
from scsi_pr.sim.constants import PR_HELPER_DATA_SIZE, Opcode, Status

# linux/dm-ioctl.h
DM_VERSION_MAJOR = 4
DM_NAME_LEN, DM_UUID_LEN, DM_MAX_TYPE_NAME = 128, 129, 16
DM_IOCTL = struct.Struct("=3IIIIiIIIQ128s129s7s")  # struct dm_ioctl, 312 bytes
DM_TARGET_SPEC = struct.Struct("=QQiI16s")  # struct dm_target_spec
DM_DATA_SIZE = 1024  # qemu-pr-helper's DMData data area
DM_NOFLUSH_FLAG = 1 << 11
_IOC_READ_WRITE = 3


def _iowr(nr: int, size: int) -> int:
    return (_IOC_READ_WRITE << 30) | (size << 16) | (0xFD << 8) | nr


DM_VERSION = _iowr(0, DM_IOCTL.size)
DM_TABLE_STATUS = _iowr(12, DM_IOCTL.size)
CONTROL_PATH = "/dev/mapper/control"

PR_OUT_FIXED_PARAM_SIZE = 24

# libmpathpersist mpath_persist.h return codes (= mpathpersist's exit status)
MPATH_PR_SUCCESS = 0
MPATH_PR_SYNTAX_ERROR = 1
MPATH_PR_SENSE_NOT_READY = 2
MPATH_PR_SENSE_MEDIUM_ERROR = 3
MPATH_PR_SENSE_HARDWARE_ERROR = 4
MPATH_PR_ILLEGAL_REQ = 5
MPATH_PR_SENSE_UNIT_ATTENTION = 6
MPATH_PR_SENSE_INVALID_OP = 7
MPATH_PR_SENSE_ABORTED_COMMAND = 8
MPATH_PR_NO_SENSE = 9
MPATH_PR_RESERV_CONFLICT = 11
MPATH_PR_OTHER = 15


def pack_dm_ioctl(dev: int = 0, flags: int = 0) -> bytes:
    """A ``struct dm_ioctl`` header plus qemu-pr-helper's 1024-byte data area."""
    header = DM_IOCTL.pack(
        DM_VERSION_MAJOR, 0, 0,
        DM_IOCTL.size + DM_DATA_SIZE, DM_IOCTL.size,
        0, 0, flags, 0, 0, dev, b"", b"", b"",
    )  # fmt: skip
    return header + bytes(DM_DATA_SIZE)


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


def encode_dev(rdev: int) -> int:
    """The kernel's huge_encode_dev, which dm_ioctl.dev expects."""
    major, minor = os.major(rdev), os.minor(rdev)
    return (minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12)


# -- validation, as the C helper does it before calling libmpathpersist ----------------------
PR_IN_ALLOWED = frozenset({0, 1, 2})  # READ KEYS, READ RESERVATION, REPORT CAPABILITIES
PR_OUT_ALLOWED = frozenset(range(7))  # REGISTER .. REGISTER AND IGNORE EXISTING KEY


@dataclass(frozen=True)
class ProutParams:
    """What ``struct prout_param_descriptor`` carries, plus scope/type from the CDB."""

    service_action: int
    scope: int
    type: int
    key: bytes
    sa_key: bytes
    flags: int
    transport_ids: list[bytes] = field(default_factory=list)


def validate_pr_in(cdb: bytes) -> SenseCode | None:
    # The C helper compares the whole byte 1, so reserved bits 5-7 set are refused too.
    return None if cdb[1] in PR_IN_ALLOWED else INVALID_FIELD


def _transport_ids(param: bytes, end: int) -> list[bytes] | SenseCode:
    out: list[bytes] = []
    i = PR_OUT_FIXED_PARAM_SIZE + 4
    while i < end:
        code = param[i] & 0xCF
        if code in (0x00, 0x06):  # Fibre Channel / SAS: 24 bytes
            if i + 24 > end:
                return INVALID_PARAM
            out.append(param[i : i + 24])
            i += 24
        elif code in (0x05, 0x45):  # iSCSI: 4-byte header + ADDITIONAL LENGTH
            if i + 4 > end:
                return INVALID_PARAM
            length = int.from_bytes(param[i + 2 : i + 4], "big")
            if length > 252 or length & 3 or i + length + 4 > end:
                return INVALID_PARAM
            if b"\0" not in param[i + 4 : i + 4 + length]:
                return INVALID_PARAM
            out.append(param[i : i + 4 + length])
            i += length + 4
        else:
            return INVALID_PARAM
    return out


def validate_pr_out(cdb: bytes, param: bytes) -> ProutParams | SenseCode:
    """The C helper's checks, in its order; a SenseCode is answered as CHECK CONDITION."""
    size = len(param)
    if size < PR_OUT_FIXED_PARAM_SIZE:
        return INVALID_PARAM_LEN
    action = cdb[1]  # the C helper compares the whole byte 1 (reserved bits 5-7 included)
    if action not in PR_OUT_ALLOWED:
        return INVALID_FIELD
    tids: list[bytes] = []
    if size > PR_OUT_FIXED_PARAM_SIZE:
        if size < PR_OUT_FIXED_PARAM_SIZE + 4:
            return INVALID_PARAM_LEN
        end = int.from_bytes(param[24:28], "big") + PR_OUT_FIXED_PARAM_SIZE + 4
        if end > size:
            return INVALID_PARAM
        parsed = _transport_ids(param, end)
        if isinstance(parsed, SenseCode):
            return parsed
        tids = parsed
    return ProutParams(action, cdb[2] >> 4, cdb[2] & 0x0F, param[0:8], param[8:16], param[20], tids)


# libmpathpersist result -> answer. "tur" rows: the library ate the sense; ask the device.
RESULT_TABLE: dict[int, tuple[str, SenseCode | None]] = {
    MPATH_PR_SUCCESS: ("good", None),
    MPATH_PR_SENSE_NOT_READY: ("tur", NOT_READY),
    MPATH_PR_SENSE_MEDIUM_ERROR: ("tur", READ_ERROR),
    MPATH_PR_SENSE_HARDWARE_ERROR: ("tur", TARGET_FAILURE),
    MPATH_PR_SENSE_ABORTED_COMMAND: ("tur", IO_ERROR),
    MPATH_PR_SENSE_UNIT_ATTENTION: ("check", SCSI_BUS_RESET),
    MPATH_PR_SENSE_INVALID_OP: ("check", INVALID_OPCODE),
    MPATH_PR_ILLEGAL_REQ: ("check", INVALID_PARAM),
    MPATH_PR_NO_SENSE: ("check", NO_SENSE),
    MPATH_PR_RESERV_CONFLICT: ("conflict", None),
}
RESULT_DEFAULT = ("check", LUN_COMM_FAILURE)  # MPATH_PR_OTHER and anything unknown

TurProbe = Callable[[], Reply]


def reply_for_result(code: int, tur: TurProbe) -> Reply:
    """Map a libmpathpersist result; ``tur`` runs TEST UNIT READY for the swallowed senses."""
    kind, sense = RESULT_TABLE.get(code, RESULT_DEFAULT)
    if kind == "good":
        return Reply(Status.GOOD)
    if kind == "conflict":
        return Reply(Status.RESERVATION_CONFLICT)
    if kind == "tur":
        probe = tur()
        if probe.status != Status.GOOD:
            return Reply(probe.status, probe.sense)
    assert sense is not None
    return check_condition(sense)


def reserialise_pr_in(action: int, raw: bytes, allocation_length: int) -> bytes:
    """Rebuild a PR IN answer as the C helper does from libmpathpersist's structs, zero-filled
    to the ALLOCATION LENGTH. ``raw`` is the device's parameter data."""
    out = bytearray(allocation_length)
    if action in (0, 1):
        generation = raw[0:4].ljust(4, b"\0")
        additional = int.from_bytes(raw[4:8].ljust(4, b"\0"), "big")
        body = generation + additional.to_bytes(4, "big") + raw[8 : 8 + additional]
        written = min(additional + 8, allocation_length)
    else:  # REPORT CAPABILITIES: length, two flag bytes, type mask
        body = raw[0:6].ljust(6, b"\0")
        written = min(6, allocation_length)
    out[:written] = body[:written]
    return bytes(out)


def parse_hex_dump(text: str) -> bytes:
    """Bytes from ``mpathpersist --hex`` output (sg3_utils-style "offset  hh hh ..." lines)."""
    out = bytearray()
    for line in text.splitlines():
        words = line.split()
        if len(words) < 2 or not all(len(w) <= 4 for w in words[:1]):
            continue
        try:
            int(words[0], 16)
        except ValueError:
            continue
        for word in words[1:]:
            if len(word) != 2:
                break
            try:
                out.append(int(word, 16))
            except ValueError:
                break
    return bytes(out)


PR_IN_FLAGS = {0: "--read-keys", 1: "--read-reservation", 2: "--report-capabilities"}
PR_OUT_FLAGS = {
    0: "--register",
    1: "--reserve",
    2: "--release",
    3: "--clear",
    4: "--preempt",
    5: "--preempt-abort",
    6: "--register-ignore",
}


def mpathpersist_out_argv(params: ProutParams, device: str) -> list[str]:
    argv = ["mpathpersist", "--out", PR_OUT_FLAGS[params.service_action]]
    argv += ["--param-rk", params.key.hex(), "--param-sark", params.sa_key.hex()]
    if params.type:
        argv += ["--prout-type", str(params.type)]
    if params.flags & 0x01:
        argv.append("--param-aptpl")
    if params.flags & 0x04:
        argv.append("--param-alltgpt")
    for tid in params.transport_ids:
        argv += ["--transport-id", tid.hex()]  # sg3_utils accepts a TransportID in hex
    return [*argv, device]


class MultipathExecutor(Executor):
    """Routes dm-multipath fds through ``mpathpersist``; everything else to ``inner``."""

    name = "multipath"
    capabilities = frozenset({"CAP_SYS_RAWIO", "CAP_SYS_ADMIN"})  # SG_IO; dm ioctls
    capabilities_for_children = True  # mpathpersist

    def __init__(self, inner: Executor, control_fd: int, verbose: int = 1) -> None:
        self.inner = inner
        self.control_fd = control_fd
        self.verbose = verbose

    def is_multipath(self, fd: int) -> bool:
        st = os.fstat(fd)
        buf = bytearray(pack_dm_ioctl(encode_dev(st.st_rdev), DM_NOFLUSH_FLAG))
        try:
            fcntl.ioctl(self.control_fd, DM_TABLE_STATUS, buf)
        except OSError as e:
            if e.errno == errno.ENXIO:
                return False
            raise
        return is_multipath_answer(bytes(buf))

    @staticmethod
    def device(fd: int) -> str:
        return f"/dev/dm-{os.minor(os.fstat(fd).st_rdev)}"

    def _tur(self, fd: int) -> TurProbe:
        def probe() -> Reply:
            from scsi_pr.helper.executors.sg import sg_io

            return sg_io(fd, bytes(6), b"", 0, 1).reply()

        return probe

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*argv[:1], "--verbose", str(min(self.verbose, 3)), *argv[1:]],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )

    def execute(self, fd: int, cdb: bytes, data_out: bytes, allocation_length: int) -> Reply:
        if not self.is_multipath(fd):
            return self.inner.execute(fd, cdb, data_out, allocation_length)
        device = self.device(fd)
        if cdb[0] == Opcode.PERSISTENT_RESERVE_IN:
            bad = validate_pr_in(cdb)
            if bad is not None:
                return check_condition(bad)
            action = cdb[1]
            # qemu-pr-helper sets libmpathpersist's mpath_mx_alloc_len to its data buffer size.
            argv = ["mpathpersist", "--in", PR_IN_FLAGS[action], "--hex"]
            done = self._run([*argv, "--alloc-length", str(PR_HELPER_DATA_SIZE), device])
            reply = reply_for_result(done.returncode, self._tur(fd))
            if reply.status != Status.GOOD:
                return reply
            raw = parse_hex_dump(done.stdout)
            return Reply(Status.GOOD, data=reserialise_pr_in(action, raw, allocation_length))
        params = validate_pr_out(cdb, data_out)
        if isinstance(params, SenseCode):
            return check_condition(params)
        done = self._run(mpathpersist_out_argv(params, device))
        return reply_for_result(done.returncode, self._tur(fd))

    def close(self) -> None:
        os.close(self.control_fd)
        self.inner.close()


def with_multipath(inner: Executor, verbose: int = 1) -> Executor:
    """``inner`` wrapped with multipath handling when this host can do it (device-mapper
    control node usable and mpathpersist installed); otherwise ``inner`` itself."""
    if shutil.which("mpathpersist") is None:
        return inner
    try:
        control = os.open(CONTROL_PATH, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return inner
    try:
        buf = bytearray(pack_dm_ioctl())
        fcntl.ioctl(control, DM_VERSION, buf)
        if DM_IOCTL.unpack_from(buf)[0] != DM_VERSION_MAJOR:
            raise OSError(errno.EPROTO, "Unsupported device mapper interface")
    except OSError:
        os.close(control)
        return inner
    return MultipathExecutor(inner, control, verbose)
