"""``--backend ioctl``: PR commands through the block layer's PR ioctls on the passed fd.

The decisions (which ioctl, what cannot be said) are ``block_pr``'s; this is the edge that
issues them. What each service action becomes:

- PR OUT REGISTER, REGISTER AND IGNORE EXISTING KEY, RESERVE, RELEASE, CLEAR, PREEMPT, PREEMPT
  AND ABORT: their ioctl. SPEC_I_PT, ALL_TG_PT, REGISTER AND MOVE and REPLACE LOST RESERVATION:
  CHECK CONDITION, ILLEGAL REQUEST, as a device without them answers. Every REGISTER reaches the
  device with APTPL=1 (sd sets it): the only change of meaning, documented in docs/helper.md.
- PR IN READ KEYS and READ RESERVATION: the 6.19 read ioctls where the kernel has them; else
  SG_IO on the same fd (which the kernel permits only with CAP_SYS_RAWIO); else CHECK
  CONDITION, ILLEGAL REQUEST, INVALID FIELD IN CDB. REPORT CAPABILITIES is the device's (by
  SG_IO where permitted) less what this path cannot carry (SIP_C, ATP_C, RLR_C), else
  synthesised to say what the path supports (PTPL_C, the six types); READ FULL STATUS has no
  ioctl (INVALID FIELD IN CDB).
- A CHECK CONDITION from an ioctl arrives without its sense; like the C helper on multipath,
  a TEST UNIT READY (permitted to anyone who may open the disk) fetches a pending condition;
  with none pending the command is sent once more (6.1's sd returns a unit attention's CHECK
  CONDITION having consumed it; later kernels retry), else the sense is built (0Bh/00h/06h).

Capabilities follow the kernel: CAP_SYS_ADMIN before 6.5 (the block layer demanded it for
every PR ioctl; from 6.5 a writable whole-disk fd suffices), and CAP_SYS_RAWIO before 6.19 for
the PR IN that has no ioctl there and goes by SG_IO. From 6.19 the executor keeps none.
"""

from __future__ import annotations

import ctypes
import errno as E
import fcntl
import platform
from typing import ClassVar

from scsi_pr.helper.executors import block_pr, limits
from scsi_pr.helper.executors.base import Executor, Reply
from scsi_pr.helper.executors.sg import sg_io
from scsi_pr.helper.executors.status import (
    INVALID_FIELD,
    IO_ERROR,
    check_condition,
    from_errno,
    map_sg_io,
)
from scsi_pr.helper.proto import PR_HELPER_DATA_SIZE
from scsi_pr.sim import pr_in
from scsi_pr.sim.constants import Opcode, PersistentReserveInAction, Status
from scsi_pr.sim.profiles import kernel_version

IN = PersistentReserveInAction
#: keys one READ KEYS ioctl asks for: as many as fit the helper's 8,192-byte data buffer
MAX_KEYS = (PR_HELPER_DATA_SIZE - 8) // 8
#: errnos meaning "this kernel has no such ioctl" (6.19's read ioctls on an older kernel)
NO_SUCH_IOCTL = frozenset({E.ENOTTY, E.EINVAL, E.EOPNOTSUPP})
#: a PR OUT refused by a condition the kernel swallowed is sent once more (see ``_issue``)
ATTEMPTS = 2


#: (first kernel that no longer needs it, capability)
CAPABILITY_UNTIL = (((6, 5), "CAP_SYS_ADMIN"), ((6, 19), "CAP_SYS_RAWIO"))


def capabilities_for(release: str) -> frozenset[str]:
    """What the ioctl executor needs on kernel ``release`` (``platform.release()``); an
    unparsable release is treated as old."""
    try:
        version = kernel_version(release)
    except ValueError:
        version = (0, 0)
    return frozenset(cap for until, cap in CAPABILITY_UNTIL if version < until)


def report_capabilities() -> bytes:
    """What this path supports: PTPL_C (sd registers with APTPL=1), TMV and the six types; no
    CRH, SIP_C, ATP_C or REPLACE LOST RESERVATION, ALLOW COMMANDS unknown (0)."""
    return pr_in.capabilities_data(pr_in.PTPL_C, pr_in.TMV)


class IoctlExecutor(Executor):
    """PR through ``<linux/pr.h>`` ioctls on the fd QEMU passed."""

    name = "ioctl"
    capabilities: ClassVar[frozenset[str]] = capabilities_for(platform.release())

    def execute(self, fd: int, cdb: bytes, data_out: bytes, allocation_length: int) -> Reply:
        if cdb[0] == Opcode.PERSISTENT_RESERVE_IN:
            reply = self._pr_in(fd, cdb, allocation_length)
            return Reply(reply.status, reply.sense, reply.data[:allocation_length])
        # (a read-only fd never gets here: the session answers INVALID OPCODE, as the C helper)
        decided = block_pr.pr_out(cdb, data_out)
        if isinstance(decided, block_pr.Refusal):
            return check_condition(decided.code)
        return self._issue(fd, decided)

    # -- PR OUT ----------------------------------------------------------------------------
    def _issue(self, fd: int, call: block_pr.Ioctl) -> Reply:
        for _ in range(ATTEMPTS):
            try:
                returned = fcntl.ioctl(fd, call.request, bytearray(call.argument), True)
            except OSError as e:
                status, sense = from_errno(e.errno or E.EIO)
                return Reply(status, sense)
            got = block_pr.outcome(returned)
            if got.host:
                status, sense = map_sg_io(host_status=got.host)
                return Reply(status, sense)
            if got.status != Status.CHECK_CONDITION:
                return Reply(got.status)
            # The sense stayed in the kernel. A condition still pending is the answer (a unit
            # attention the guest must see); none pending means the one that refused the
            # command was taken with it, as 6.1's sd does with a unit attention (later kernels
            # retry those themselves): once more, as they do. A refused PR OUT changed nothing.
            pending = _pending_condition(fd)
            if pending is not None:
                return pending
        return check_condition(IO_ERROR)  # limits.IOCTL_SENSE_LOST

    # -- PR IN -----------------------------------------------------------------------------
    def _pr_in(self, fd: int, cdb: bytes, allocation_length: int) -> Reply:
        action = cdb[1] & 0x1F
        if action == IN.REPORT_CAPABILITIES:
            return _capabilities(fd, cdb, allocation_length)
        if action not in block_pr.READ_IOCTLS:
            return check_condition(limits.IOCTL_NO_READ_FULL_STATUS.refusal)
        try:
            data = _read_keys(fd) if action == IN.READ_KEYS else _read_reservation(fd)
        except OSError as e:
            if e.errno not in NO_SUCH_IOCTL:
                status, sense = from_errno(e.errno or E.EIO)
                return Reply(status, sense)
            by_sg_io = _pr_in_by_sg_io(fd, cdb, allocation_length)
            # not permitted: this path cannot read the PR state
            return by_sg_io or check_condition(INVALID_FIELD)
        return Reply(Status.GOOD, b"", data)


def _read_keys(fd: int) -> bytes:
    keys = (ctypes.c_uint64 * MAX_KEYS)()
    argument = bytearray(block_pr.READ_KEYS.pack(0, MAX_KEYS, ctypes.addressof(keys)))
    fcntl.ioctl(fd, block_pr.IOC_PR_READ_KEYS, argument, True)
    generation, count, _ = block_pr.READ_KEYS.unpack(argument)
    return block_pr.read_keys_data(generation, count, list(keys[: min(count, MAX_KEYS)]))


def _read_reservation(fd: int) -> bytes:
    argument = bytearray(block_pr.READ_RESERVATION.size)
    fcntl.ioctl(fd, block_pr.IOC_PR_READ_RESERVATION, argument, True)
    key, generation, pr_type = block_pr.READ_RESERVATION.unpack(argument)
    return block_pr.read_reservation_data(key, generation, pr_type)


def _pr_in_by_sg_io(fd: int, cdb: bytes, allocation_length: int) -> Reply | None:
    """The PR IN by SG_IO on the same fd; None when the kernel does not let this process send
    it (no CAP_SYS_RAWIO)."""
    r = sg_io(fd, cdb, b"", PR_HELPER_DATA_SIZE)
    if r.errno in (E.EPERM, E.EACCES):
        return None
    return r.reply(allocation_length)


def _capabilities(fd: int, cdb: bytes, allocation_length: int) -> Reply:
    """The device's REPORT CAPABILITIES less what this path cannot carry, where SG_IO may ask
    the device; else what the path supports, synthesised."""
    reply = _pr_in_by_sg_io(fd, cdb, allocation_length)
    if reply is None:
        return Reply(Status.GOOD, b"", report_capabilities())
    if reply.status != Status.GOOD:
        return reply
    return Reply(Status.GOOD, b"", block_pr.capabilities_of_path(reply.data))


def _pending_condition(fd: int) -> Reply | None:
    """TEST UNIT READY (allowed to anyone who may open the disk): the CHECK CONDITION the device
    reports now, or None."""
    tur = sg_io(fd, bytes(6))
    if not tur.errno and tur.status == Status.CHECK_CONDITION and tur.sb_len_wr:
        return Reply(Status.CHECK_CONDITION, tur.sense)
    return None
