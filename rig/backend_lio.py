"""Backend ``lio``: the real kernel target, reached by SG_IO on each initiator's /dev/sgN.

One LIO rig (``scsi_pr.rig.lio``) serves the whole process: it is built on first use (or reused when
``scsi-pr lio up`` already built one with enough initiators) and torn down at exit if we built
it. Each backend instance starts from an empty PR state: every initiator registers a scratch key
with REGISTER AND IGNORE EXISTING KEY (APTPL off), one CLEARs, and the unit attentions that
CLEAR raises are drained. PRgeneration keeps counting across tests (LIO cannot reset it), so
tests compare generations relative to a first READ KEYS.

Every command runs with an SG_IO timeout and, because a wedged LUN can also block the SCSI
error handler the timeout wakes, in a worker thread the caller stops waiting for: a hang becomes
``CommandTimeout`` instead of a stuck test run.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scsi_pr.helper.executors.sg import SgIoResult, sg_io
from scsi_pr.rig import kmsg, lio
from scsi_pr.rig.backends import Backend, BackendUnavailable, Capability, Initiator, drain
from scsi_pr.rig.command_thread import CallTimeout, CommandThread, call_once
from scsi_pr.rig.errors import RigError
from scsi_pr.rig.watchdog import note_progress
from scsi_pr.sim import cdb as C
from scsi_pr.sim.constants import (
    INVALID_FIELD_IN_CDB,
    Opcode,
    PersistentReserveOutAction,
    SenseKey,
    Status,
)
from scsi_pr.sim.pr_out_data import BIT_SPEC_I_PT, CDB_SERVICE_ACTION, PARAM_FLAGS
from scsi_pr.sim.result import CommandResult
from scsi_pr.sim.transportid import TransportId

#: SG_IO timeout: TCG is slow, but a PR command still answers in well under a second
COMMAND_TIMEOUT_MS = 8_000
#: how long we wait for the ioctl to return after its own timeout (EH abort, LUN reset)
GRACE_SECONDS = 4.0
#: how long the end of a process waits for a rig's removal (about 10 s under TCG, measured)
REMOVAL_WAIT_SECONDS = 120.0
#: The first rig generation of this process (default 0, the rig's). The VM tier's paths and
#: mpath phases run beside the phases that share the rig, mpath and the hang phase leave LUs
#: behind (a broken PR reference count, wedged LUs): with generations of their own they build
#: LUs of their own and neither take over nor record the rig the others share
#: (``lio.current()``). The nested-guest test's LU is generation E2h (rig/guest_e2e/driver.py).
ENV_FIRST_GENERATION = "SCSI_PR_LIO_FIRST_GENERATION"
GENERATIONS = 0x20  # per process: each hang costs one, and a hang phase has about ten
RESET_KEY = 0x5C5150_0000_0000  # scratch key used only while clearing PR state
#: LIO's answer to a REGISTER without ALL_TG_PT on an ALL_TG_PT=1 registration
ALL_TG_PT_REFUSED = (SenseKey.ILLEGAL_REQUEST, INVALID_FIELD_IN_CDB.asc, INVALID_FIELD_IN_CDB.ascq)


class CommandTimeout(RigError, TimeoutError):
    """A command to the real device did not complete: the LUN is (probably) hung."""


class TransportError(RigError):
    """SG_IO failed below the SCSI status (errno, host or driver status): no SCSI answer."""


class ResetFailed(RigError):
    """Clearing the LU's PR state for a new backend got an answer it cannot go on from."""


def execute_with_timeout(
    fd: int,
    cdb: bytes,
    data: bytes,
    what: str,
    timeout_ms: int | None = None,
    thread: CommandThread | None = None,
) -> SgIoResult:
    """sg_io on ``thread`` (a new one when None) with ``timeout_ms`` (``COMMAND_TIMEOUT_MS``
    when None); CommandTimeout if it has not returned in time."""
    ms = COMMAND_TIMEOUT_MS if timeout_ms is None else timeout_ms

    def send() -> SgIoResult:
        return sg_io(fd, cdb, data, C.data_in_length(cdb), ms)

    wait = ms / 1000 + GRACE_SECONDS
    try:
        if thread is None:
            result = call_once(f"sg_io {what}", send, wait)
        else:
            result = thread.call(send, wait)
    except CallTimeout:
        raise CommandTimeout(f"{what}: {cdb.hex()} did not complete in {ms} ms") from None
    note_progress()
    return result


class SgInitiator:
    """One initiator port reached by SG_IO on an open /dev/sgN, for every kernel-initiator
    backend (LIO loopback, the iSCSI initiator). Subclasses give ``port`` (with ``.sg``) and
    ``name``; a command that times out marks the initiator hung for good."""

    port: Any
    fd: int
    hung: bool
    #: the thread this initiator's commands run on, made by the first one
    commands: CommandThread | None = None

    @property
    def name(self) -> str:
        raise NotImplementedError

    def open(self) -> None:
        if self.fd < 0:
            self.fd = os.open(self.port.sg, os.O_RDWR | os.O_NONBLOCK)

    def close(self) -> None:
        # After a hang the fd's command is still in flight: leave it to process exit.
        if self.fd >= 0 and not self.hung:
            os.close(self.fd)
        self.fd = -1
        if self.commands is not None:
            self.commands.close()
            self.commands = None

    def on_hang(self) -> None:
        """What else a timed-out command means for this backend (nothing by default)."""

    def execute(self, cdb: bytes, data: bytes = b"") -> CommandResult:
        if self.hung:
            raise CommandTimeout(f"{self.name}: LUN already hung by an earlier command")
        try:
            if self.commands is None:
                self.commands = CommandThread(f"sg_io {self.name}")
            r = execute_with_timeout(self.fd, cdb, data, self.name, thread=self.commands)
        except CommandTimeout:
            self.hung = True
            self.on_hang()
            raise
        if r.errno or r.host_status or (r.driver_status & ~0x08):
            raise TransportError(
                f"{self.name} {self.port.sg}: {cdb.hex()} errno={r.errno} "
                f"host_status={r.host_status:#x} driver_status={r.driver_status:#x}"
            )
        sense = r.sense[: r.sb_len_wr] if r.status == Status.CHECK_CONDITION else b""
        result = CommandResult(r.status, sense, r.data)
        self.on_answer(cdb, data, result)
        return result

    def on_answer(self, cdb: bytes, data: bytes, result: CommandResult) -> None:
        """What an answer means for this backend's device (nothing by default)."""


SCSI_DEVICES = Path("/sys/class/scsi_device")


def in_flight(hctl: str) -> int:
    """Commands the midlayer has dispatched to SCSI device ``hctl`` and not seen completed."""
    try:
        return int((SCSI_DEVICES / hctl / "device" / "device_busy").read_text())
    except (OSError, ValueError):
        return 0  # the device is gone: nothing of it can be in flight


@dataclass
class LioInitiator(SgInitiator):
    """One initiator port: an open /dev/sgN reaching the LU through its own target port."""

    port: lio.InitiatorPort
    fd: int = field(default=-1, repr=False)
    hung: bool = False

    @property
    def name(self) -> str:
        return self.port.wwn

    @property
    def transport_id(self) -> TransportId:
        return TransportId.from_name(self.port.wwn)

    @property
    def relative_target_port(self) -> int:
        return self.port.relative_target_port

    def on_hang(self) -> None:
        mark_hung()  # the next backend builds a new LU generation beside the wedged one

    def on_answer(self, cdb: bytes, data: bytes, result: CommandResult) -> None:
        note_answer(cdb, data, result)


@dataclass
class _Shared:
    """The process-wide rig. ``hung`` is set when any command to it timed out: the next
    backend then builds a new generation (new backstore and targets, same initiator names)
    beside it, because a hung LUN can be neither used nor removed."""

    rig: lio.RigDescription | None = None
    built_here: set[int] = field(default_factory=set)
    #: a dm-multipath map was built over the rig in this process (``backend_paths``)
    multipath_used: bool = False
    hung_generations: set[int] = field(default_factory=set)
    #: generations LIO will not let go of (``spec_i_pt_refused``): left without waiting
    pinned_generations: set[int] = field(default_factory=set)
    hung: bool = False


_shared = _Shared()


def generations() -> range:
    """This process's rig generations: from ``$SCSI_PR_LIO_FIRST_GENERATION`` (default 0) on,
    ``GENERATIONS`` of them."""
    raw = os.environ.get(ENV_FIRST_GENERATION, "0")
    try:
        first = int(raw, 0)
    except ValueError:
        raise RigError(f"{ENV_FIRST_GENERATION}={raw!r}: not a number") from None
    space = range(first, first + GENERATIONS)
    if first < 0 or space.stop > 256:
        raise RigError(f"{ENV_FIRST_GENERATION}={raw}: generations are 0..255")
    return space


def shared_rig(initiators: int) -> lio.RigDescription:
    """The process-wide rig with at least ``initiators`` ports (built once, reused)."""
    s = _shared
    if s.rig is not None and not s.hung and len(s.rig.initiators) >= initiators:
        return s.rig
    space = generations()
    own_space = space.start != 0  # a lane of its own beside the rig's (see ENV_FIRST_GENERATION)
    existing = None if s.rig is not None or own_space else lio.current()
    if existing is not None and len(existing.initiators) >= initiators:
        s.rig = existing  # built by ``scsi-pr lio up``: its owner tears it down
        return s.rig
    generation = space.start if s.rig is None else s.rig.spec.generation + (1 if s.hung else 0)
    present = lio.generations_present()
    if generation in present and (own_space or kmsg.lio_refcount_faults(kmsg.records())):
        # removing the one there would block (or it is not ours to remove): a new one beside
        generation = max([g for g in present if g in space] + [generation]) + 1
    if generation not in space:
        raise RigError(f"no rig generation left in {space.start}..{space.stop - 1}")
    spec = lio.LunSpec(
        initiators=max(initiators, 3),
        name=_name(generation),
        generation=generation,
    )
    if not s.built_here:
        atexit.register(_teardown)
    s.rig, s.hung = lio.up(spec, record=not own_space), False
    s.built_here.add(generation)
    return s.rig


def _name(generation: int) -> str:
    return f"scsipr{generation}"  # generation 0 is lio.DEFAULT_NAME, as ``scsi-pr lio up``


def mark_hung() -> None:
    """A command to the shared rig timed out (called by every backend that uses it)."""
    _shared.hung = True
    if _shared.rig is not None:
        _shared.hung_generations.add(_shared.rig.spec.generation)


def spec_i_pt_refused(cdb: bytes, data: bytes, result: CommandResult) -> bool:
    """A REGISTER with SPEC_I_PT that LIO refused. Measured on 6.1 and 6.12 (2026-12-05): one
    naming an initiator with no ACL (INVALID FIELD IN PARAMETER LIST, the kernel logs "Unable
    to locate dest_tpg") leaves a reference on the issuer's LUN mapping that nothing drops;
    removing the LUN then waits for ever in ``core_disable_device_list_for_node``, even after
    the PR state was cleared. Every refused one counts: leaving an LU in place costs nothing,
    waiting for a removal that never ends costs ``REMOVAL_WAIT_SECONDS``."""
    return (
        len(cdb) > CDB_SERVICE_ACTION
        and cdb[0] == Opcode.PERSISTENT_RESERVE_OUT
        and cdb[CDB_SERVICE_ACTION] & 0x1F == PersistentReserveOutAction.REGISTER
        and len(data) > PARAM_FLAGS
        and bool(data[PARAM_FLAGS] & (1 << BIT_SPEC_I_PT))
        and result.status == Status.CHECK_CONDITION
    )


def note_answer(cdb: bytes, data: bytes, result: CommandResult) -> None:
    """An answer of the shared rig's LU (every backend that sends to it calls this)."""
    if spec_i_pt_refused(cdb, data, result) and _shared.rig is not None:
        _shared.pinned_generations.add(_shared.rig.spec.generation)


def mark_multipath_used() -> None:
    """A dm-multipath map is built over the rig's ports (``backend_paths``): see ``_teardown``."""
    _shared.multipath_used = True


def _teardown() -> None:
    """Remove the rigs this process built, except a hung one (removal would block too), and
    none once a dm-multipath map was built over them: measured on 6.1, removing the LUN then
    waits forever (``core_disable_device_list_for_node``, after LIO's PR reference count broke:
    ``rig/kmsg.py``). Those stay to the VM's end; a later process takes such a rig over as one
    built by ``scsi-pr lio up``, or builds a new generation beside it."""
    s = _shared
    for generation in sorted(s.built_here):
        if generation in s.hung_generations:
            continue
        if generation in s.pinned_generations:
            print(
                f"scsi-pr rig: LIO LU {_name(generation)} left in place: LIO refused a "
                "SPEC_I_PT registration on it, and removing it then blocks",
                file=sys.stderr,
            )
            continue
        if s.multipath_used:
            faults = kmsg.lio_refcount_faults(kmsg.records())
            why = f"; the kernel logged {faults[0]}" if faults else ""
            print(
                f"scsi-pr rig: LIO LU {_name(generation)} left in place: a dm-multipath map "
                f"was built over it, and removing it then blocks{why}",
                file=sys.stderr,
            )
            continue
        _remove(generation)


def _remove(generation: int) -> None:
    """``lio.down`` in a child process, waited for ``REMOVAL_WAIT_SECONDS`` at most: a removal
    LIO blocks never returns (a task in D state), and this process must still end: after a
    refused SPEC_I_PT (``spec_i_pt_refused``; those the rig saw are left without waiting) or
    a cause not known yet. The bound decides only whether to wait, never a test's outcome."""
    name = _name(generation)
    code = "import sys; from scsi_pr.rig import lio; lio.down(sys.argv[1], int(sys.argv[2]))"
    child = subprocess.Popen([sys.executable, "-c", code, name, str(generation)])
    try:
        child.wait(REMOVAL_WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        print(
            f"scsi-pr rig: removing LIO LU {name} did not end in {REMOVAL_WAIT_SECONDS:g} s "
            "(LIO blocks it): left to the VM's end",
            file=sys.stderr,
        )


def clear_pr_state(its: list[LioInitiator]) -> None:
    """Leave the LU with no registrations, no reservation, APTPL off and no pending UAs."""
    for it in its:
        drain(it, ResetFailed)
    for it in its:
        # LIO refuses to change an ALL_TG_PT=1 registration without ALL_TG_PT=1
        for all_tg_pt in (False, True):
            cdb, data = C.prout(
                PersistentReserveOutAction.REGISTER_AND_IGNORE_EXISTING_KEY, 0, RESET_KEY,
                all_tg_pt=all_tg_pt,
            )  # fmt: skip
            r = it.execute(cdb, data)
            sense = r.sense_data
            if sense is None or sense.triple != ALL_TG_PT_REFUSED:
                break
        _expect_good(it, r, "REGISTER AND IGNORE EXISTING KEY")
    cdb, data = C.prout(PersistentReserveOutAction.CLEAR, RESET_KEY)
    _expect_good(its[0], its[0].execute(cdb, data), "CLEAR")
    for it in its:
        drain(it, ResetFailed)


def _expect_good(it: LioInitiator, r: CommandResult, what: str) -> None:
    if r.status != Status.GOOD:
        raise ResetFailed(f"resetting PR state: {what} from {it.name} answered {r}")


class LioBackend(Backend):
    """N initiators on one LIO LU (tcm_loop, ramdisk); needs root and an LIO kernel."""

    name = "lio"
    capabilities = frozenset({Capability.REAL_KERNEL})

    def __init__(self, initiators: int = 2) -> None:
        forced = os.environ.get("SCSI_PR_LIO_UNAVAILABLE")
        if forced:  # lets the host tier check the skip/fail path even on a machine with LIO
            raise BackendUnavailable(forced)
        try:
            lio.check_available()
        except lio.LioUnavailable as e:
            raise BackendUnavailable(str(e)) from e
        self.lio_initiators: list[LioInitiator] = []
        for attempt in (1, 2):
            desc = shared_rig(initiators)
            self.lio_initiators = [LioInitiator(p) for p in desc.initiators[:initiators]]
            for it in self.lio_initiators:
                it.open()
            try:
                clear_pr_state(self.lio_initiators)
                break
            except CommandTimeout:
                # An earlier user (e.g. helper-lio, whose helper timed out) left the LU hung
                # without telling us: build the next generation once, then give up.
                mark_hung()
                for it in self.lio_initiators:
                    it.close()
                if attempt == 2:
                    raise
        self.description = desc
        self.initiators: list[Initiator] = list(self.lio_initiators)

    @property
    def hung(self) -> bool:
        """Did a command time out (LIO hung the LUN) while this backend was in use?"""
        return any(it.hung for it in self.lio_initiators)

    def wedged(self) -> bool:
        return self.probe_wedged({it.name for it in self.lio_initiators if it.hung})

    def probe_wedged(self, timed_out: set[str]) -> bool:
        """Is a command still in flight on the I_T nexus of a port in ``timed_out`` (every port
        when it is empty)? The SCSI midlayer counts a command as busy from dispatch until the
        target completes it (``device_busy`` in sysfs), error handling included: LIO's stalled
        PREEMPT AND ABORT stays counted; an answer that LIO gave and something of ours lost is
        not. Measured on 6.1: neither another initiator's nor the same nexus's new commands tell
        it, they usually still complete."""
        ports = [p for p in self.description.initiators if not timed_out or p.wwn in timed_out]
        return any(in_flight(port.hctl) > 0 for port in ports)

    def __exit__(self, *exc: object) -> None:
        for it in self.lio_initiators:
            it.close()
