"""dm-multipath devices: PR through libmpathpersist, as qemu-pr-helper's multipath build.

A PR command sent with SG_IO to a dm-multipath node reaches one path only; registrations must
be made on every path (I_T nexus). The C helper therefore detects multipath maps and hands PR
to libmpathpersist, on the fd QEMU passed; so do we (``mpath_lib``: why the library and not
the ``mpathpersist`` program). The C helper's rules around the library are kept:

* detection: ``scsi_pr.helper.executors.dm`` (the first target's type is "multipath");
* PR OUT: parameter list >= 24 bytes (05/1A/00) before the service action check, TransportIDs
  validated as the C helper does (05/26/00 / 05/1A/00);
* result mapping: ``RESULT_TABLE``; sense codes libmpathpersist swallowed are recovered with a
  TEST UNIT READY via SG_IO, as the C helper does;
* PR IN answers are zero-filled to the ALLOCATION LENGTH (sz always equals it on GOOD).

Beyond the C helper, which refuses both on multipath maps:

* READ FULL STATUS: the library reads it on one path (the device reports every path's I_T
  nexus, one descriptor each) and parses it; the parameter data is rebuilt from that.
* REGISTER AND MOVE: only the reservation holder's I_T nexus may move it (SPC-5 5.14.7), and
  the holder is one of the map's paths; the library has no such service action. The command
  goes down the paths in table order until one is not answered RESERVATION CONFLICT: the
  holder's path takes it, every other path refuses without changing anything. A map none of
  whose paths can be opened is answered as the library answers it for the other actions.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from scsi_pr.helper.executors.base import Executor, Reply
from scsi_pr.helper.executors.dm import DeviceMapper
from scsi_pr.helper.executors.mpath_lib import MAX_TRANSPORT_IDS, Library, LibraryUnavailable
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
from scsi_pr.sim.constants import (
    PR_OUT_BASIC_PARAMETER_LIST_LENGTH,
    Opcode,
    PersistentReserveInAction,
    PersistentReserveOutAction,
    Status,
)

#: the PR OUT parameter list without TransportIDs (SPC-5 6.17.3)
PR_OUT_FIXED_PARAM_SIZE = PR_OUT_BASIC_PARAMETER_LIST_LENGTH
IN, OUT = PersistentReserveInAction, PersistentReserveOutAction

# libmpathpersist mpath_persist.h return codes
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


# -- validation, as the C helper does it before calling libmpathpersist ----------------------
#: the C helper's READ KEYS, READ RESERVATION, REPORT CAPABILITIES, and READ FULL STATUS
PR_IN_ALLOWED = frozenset({IN.READ_KEYS, IN.READ_RESERVATION, IN.REPORT_CAPABILITIES,
                           IN.READ_FULL_STATUS})  # fmt: skip
#: REGISTER .. REGISTER AND IGNORE EXISTING KEY go to the library; REGISTER AND MOVE is ours
LIBRARY_PR_OUT = frozenset(range(7))
PR_OUT_ALLOWED = LIBRARY_PR_OUT | {OUT.REGISTER_AND_MOVE}


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
    if action not in LIBRARY_PR_OUT:
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
        if len(parsed) > MAX_TRANSPORT_IDS:  # the library's struct holds no more
            return INVALID_PARAM
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


def reserialise_pr_in(data: bytes, allocation_length: int) -> bytes:
    """PR IN parameter data (rebuilt from libmpathpersist's structs) as a device answers it:
    its own length, cut to the ALLOCATION LENGTH. The C helper zero-fills to the allocation
    length instead, which tells the guest the data runs on where the device's did not (a
    deliberate difference, docs/helper.md)."""
    return data[:allocation_length]


class MultipathExecutor(Executor):
    """Routes dm-multipath fds through libmpathpersist; everything else to ``inner``."""

    name = "multipath"
    capabilities = frozenset({"CAP_SYS_RAWIO", "CAP_SYS_ADMIN"})  # SG_IO; dm ioctls

    def __init__(self, inner: Executor, dm: DeviceMapper, library: Library) -> None:
        self.inner = inner
        self.dm = dm
        self.library = library

    def _tur(self, fd: int) -> TurProbe:
        def probe() -> Reply:
            from scsi_pr.helper.executors.sg import sg_io

            return sg_io(fd, bytes(6), b"", 0, 1).reply()

        return probe

    def execute(self, fd: int, cdb: bytes, data_out: bytes, allocation_length: int) -> Reply:
        if not self.dm.is_multipath(fd):
            return self.inner.execute(fd, cdb, data_out, allocation_length)
        if cdb[0] == Opcode.PERSISTENT_RESERVE_IN:
            bad = validate_pr_in(cdb)
            if bad is not None:
                return check_condition(bad)
            code, data = self.library.pr_in(fd, cdb[1])
            reply = reply_for_result(code, self._tur(fd))
            if reply.status != Status.GOOD:
                return reply
            return Reply(Status.GOOD, data=reserialise_pr_in(data, allocation_length))
        if cdb[1] == OUT.REGISTER_AND_MOVE and len(data_out) >= PR_OUT_FIXED_PARAM_SIZE:
            return self._register_and_move(fd, cdb, data_out)
        params = validate_pr_out(cdb, data_out)
        if isinstance(params, SenseCode):
            return check_condition(params)
        fixed = (params.key, params.sa_key, params.flags)
        code = self.library.pr_out(
            fd, params.service_action, params.scope, params.type, fixed, params.transport_ids
        )
        return reply_for_result(code, self._tur(fd))

    def _register_and_move(self, fd: int, cdb: bytes, data_out: bytes) -> Reply:
        """Down each path until the holder's I_T nexus takes it (see the module docstring)."""
        from scsi_pr.helper.executors.sg import HELPER_TIMEOUT_MS, sg_io

        # No path reached: what the library answers for a map with none (MPATH_PR_OTHER).
        reply = check_condition(RESULT_DEFAULT[1])
        for node in self.dm.path_nodes(fd):
            # Read-only, as libmpathpersist opens paths: closing a disk opened for writing
            # makes udev probe it, and the probe would take unit attentions meant for the
            # guest. SG_IO needs no write access with CAP_SYS_RAWIO, which this executor keeps.
            try:
                path = os.open(node, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:
                continue  # a path gone since the table was read: the others may hold it
            try:
                reply = sg_io(path, cdb, data_out, 0, HELPER_TIMEOUT_MS).reply(0)
            finally:
                os.close(path)
            if reply.status != Status.RESERVATION_CONFLICT:
                return reply
        return reply

    def close(self) -> None:
        self.dm.close()
        self.library.close()
        self.inner.close()


def with_multipath(inner: Executor, verbose: int = 1, quiet: bool = False) -> Executor:
    """``inner`` wrapped with multipath handling when this host can do it (device-mapper
    control node usable, libmpathpersist loadable and initialised); otherwise ``inner``.
    Verbosity as the C helper passes it: noisy = not quiet and level >= 3, verbose = 0 when
    quiet, else min(level, 3)."""
    try:
        dm = DeviceMapper.open()
    except OSError:
        return inner
    try:
        library = Library(noisy=not quiet and verbose >= 3, verbose=0 if quiet else verbose)
    except LibraryUnavailable:
        dm.close()
        return inner
    return MultipathExecutor(inner, dm, library)
