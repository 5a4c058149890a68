"""Backends that reach the LU the way a guest does under QEMU: PR commands through real
``scsi-pr-helper`` processes over their sockets, everything else straight to the device.

* ``helper-sim``: one helper per initiator (``--backend sim --initiator NAME --target-port
  i+1 --profile P``), all sharing one state dir, so N helper processes play N hosts sharing a
  LUN. The
  image file's fd is what each initiator passes. Non-PR commands (TEST UNIT READY, READ,
  WRITE ...) go to the same shared LU directly, as QEMU sends them to the disk, not the helper.
* ``helper-lio``: one ``--backend sg`` helper in front of the LIO rig's /dev/sgN nodes (root, LIO
  kernel); non-PR commands use SG_IO directly, as the ``lio`` backend does.

Both offer ``restart_helper()``: kill -9 the helpers and start them again on the same sockets;
the initiators' clients reconnect on their next command, as QEMU's do.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from scsi_pr.helper.client import Client
from scsi_pr.helper.executors.base import Reply
from scsi_pr.helper.simserve import SharedLUs
from scsi_pr.rig.backends import (
    Backend,
    BackendUnavailable,
    Capability,
    Initiator,
    NexusIdentity,
    initiator_names,
    nexus_of,
)
from scsi_pr.rig.helper_processes import SharedHelpers, helper_executable, pool
from scsi_pr.rig.watchdog import note_progress
from scsi_pr.sim import profiles
from scsi_pr.sim.constants import Opcode, Status
from scsi_pr.sim.deviations import PREEMPT_AND_ABORT_STALLS
from scsi_pr.sim.device import LogicalUnit
from scsi_pr.sim.nexus import ITNexus
from scsi_pr.sim.pr_out import never_completing
from scsi_pr.sim.result import CommandResult
from scsi_pr.sim.transportid import TransportId

if TYPE_CHECKING:
    from scsi_pr.rig.backend_lio import LioBackend

# A PR command through the helper that takes longer than this is a hung LUN (the lio backend's
# SG_IO timeout plus its grace): the client raises TimeoutError, the plugin's hang signal.
HELPER_COMMAND_TIMEOUT = 12.0
PR_OPCODES = (Opcode.PERSISTENT_RESERVE_IN, Opcode.PERSISTENT_RESERVE_OUT)


def sense_length(sense: bytes) -> int:
    """Bytes of sense the device actually returned: fixed format says so in byte 7."""
    if sense and (sense[0] & 0x7F) in (0x70, 0x71) and len(sense) >= 8:
        return min(8 + sense[7], len(sense))
    if sense and (sense[0] & 0x7F) in (0x72, 0x73) and len(sense) >= 8:
        return min(8 + sense[7], len(sense))
    return len(sense)


def result_from_reply(reply: Reply) -> CommandResult:
    checked = reply.status == Status.CHECK_CONDITION
    sense = reply.sense[: sense_length(reply.sense)] if checked else b""
    return CommandResult(reply.status, sense, reply.data)


def allocation_length(cdb: bytes) -> int | None:
    return int.from_bytes(cdb[7:9], "big") if cdb[0] == Opcode.PERSISTENT_RESERVE_IN else None


@dataclass
class HelperSimInitiator(NexusIdentity):
    """An initiator port whose PR commands go through its own helper process."""

    nexus: ITNexus
    client: Client
    fd: int
    lus: SharedLUs
    image: Path
    profile: profiles.Profile = profiles.SPC5
    #: the helper never answered a command, and it was one the profile never completes
    stalled: bool = False
    #: the helper never answered some command
    timed_out: bool = False

    def execute(self, cdb: bytes, data: bytes = b"") -> CommandResult:
        if cdb and cdb[0] in PR_OPCODES:
            try:
                reply = self.client.execute(self.fd, cdb, data, allocation_length(cdb))
            except TimeoutError:
                self.timed_out = True
                self.stalled |= (
                    len(cdb) > 1
                    and cdb[0] == Opcode.PERSISTENT_RESERVE_OUT
                    and cdb[1] & 0x1F in never_completing(self.profile)
                )
                raise
            return result_from_reply(reply)
        return self.lus.run_on_file(self.image, lambda lu: lu.execute(self.nexus, cdb, data))


class HelperSimBackend(Backend):
    name = "helper-sim"
    # every instance serves a new image file: a new LU
    capabilities = frozenset(
        {
            Capability.RESTART_HELPER,
            Capability.POWER_CYCLE,
            Capability.LUN_RESET,
            Capability.NEXUS_LOSS,
            Capability.INDEPENDENT_LUS,
            Capability.NAMED_INITIATORS,
        }
    )

    def __init__(
        self,
        initiators: int = 2,
        profile: str = profiles.DEFAULT_PROFILE,
        names: Sequence[str] = (),
    ) -> None:
        ports = max(initiators, 2)
        initiator_list = initiator_names(initiators, names)
        self.helpers = pool.helpers_for(initiator_list, ports, profile)
        self.image = pool.new_image()
        self.state_dir = pool.state_dir(ports, profile)
        self.lus = SharedLUs(self.state_dir, ports, profile=profile)
        self.fd = os.open(self.image, os.O_RDWR)
        # A profile that never completes some command (LIO's PREEMPT AND ABORT) makes the helper
        # withhold its answer: the client gives up as on a hung LIO LUN, a TimeoutError.
        stalls = PREEMPT_AND_ABORT_STALLS in profiles.get(profile)
        timeout = HELPER_COMMAND_TIMEOUT if stalls else None
        self.helper_initiators = [
            HelperSimInitiator(
                ITNexus.named(initiator_list[i], i + 1),
                Client(str(helper.sock), timeout=timeout),
                self.fd,
                self.lus,
                self.image,
                profiles.get(profile),
            )
            for i, helper in enumerate(self.helpers)
        ]
        self.initiators: list[Initiator] = list(self.helper_initiators)

    @property
    def hung(self) -> bool:
        return any(it.timed_out for it in self.helper_initiators)

    def wedged(self) -> bool:
        """The model's stall is exact: a timeout is the profile's only when the helper withheld
        the answer to a command the profile never completes; any other is a helper fault."""
        return any(it.stalled for it in self.helper_initiators)

    def power_cycle(self) -> None:
        """Power loss + power on of the shared LU. The helpers see it on their next command
        (the state file changed); APTPL state comes back from the state dir's APTPL file."""

        def cycle(lu: LogicalUnit) -> None:
            lu.power_loss()
            lu.power_on()

        self.lus.run_on_file(self.image, cycle)

    def lun_reset(self) -> None:
        """LOGICAL UNIT RESET of the shared LU, seen by the helpers like a power cycle."""
        self.lus.run_on_file(self.image, lambda lu: lu.lun_reset())

    def nexus_loss(self, initiator: Initiator) -> None:
        nexus = nexus_of(self.helper_initiators, initiator)
        self.lus.run_on_file(self.image, lambda lu: lu.nexus_loss(nexus))

    def restart_helper(self) -> None:
        for helper in self.helpers:
            helper.kill()  # leaves the socket files behind, as a crash does
        for helper in self.helpers:
            helper.spawn()
        for helper in self.helpers:
            helper.wait_ready()

    def __exit__(self, *exc: object) -> None:
        for it in self.helper_initiators:
            it.client.close()
        os.close(self.fd)


class DirectPath(Protocol):
    """An open /dev/sgN that non-PR commands take, and whose fd the helper is passed
    (``scsi_pr.rig.backend_lio.LioInitiator``, or ``_SgPath`` for devices given explicitly)."""

    fd: int
    #: a command on it timed out: the LUN is (probably) hung
    hung: bool

    def execute(self, cdb: bytes, data: bytes = b"") -> CommandResult: ...


@dataclass
class HelperLioInitiator:
    """An LIO initiator port: PR through the helper, everything else SG_IO on /dev/sgN."""

    direct: DirectPath
    transport_id: TransportId
    relative_target_port: int
    client: Client
    hung: bool = False
    #: the fd the helper gets (-1: the direct path's /dev/sgN; ``helper-lio-ioctl``: /dev/sdX)
    pr_fd: int = -1
    #: a multipath host's I_T nexuses, one per path in table order (TransportID, RELATIVE
    #: TARGET PORT IDENTIFIER); empty for a single-path initiator
    paths: tuple[tuple[TransportId, int], ...] = ()

    @property
    def name(self) -> str:
        return str(self.transport_id)

    def execute(self, cdb: bytes, data: bytes = b"") -> CommandResult:
        if not (cdb and cdb[0] in PR_OPCODES):
            return self.direct.execute(cdb, data)
        if self.hung:
            raise TimeoutError(f"{self.name}: LUN already hung by an earlier command")
        try:
            fd = self.direct.fd if self.pr_fd < 0 else self.pr_fd
            reply = self.client.execute(fd, cdb, data, allocation_length(cdb))
        except TimeoutError:
            self.hung = True
            from scsi_pr.rig.backend_lio import mark_hung

            mark_hung()
            raise
        note_progress()
        result = result_from_reply(reply)
        if self.pr_fd < 0:  # the helper sent it to LIO (its ioctl path refuses SPEC_I_PT)
            from scsi_pr.rig.backend_lio import note_answer

            note_answer(cdb, data, result)
        return result


class _SgPath:
    """A /dev/sgN opened for SG_IO, for devices given explicitly (not from the LIO rig)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        self.hung = False  # never set: its own SG_IO timeout answers the caller

    def execute(self, cdb: bytes, data: bytes = b"") -> CommandResult:
        from scsi_pr.helper.executors.sg import sg_io

        r = sg_io(self.fd, cdb, data, 0 if data else 8192, 8000)
        sense = r.sense[: r.sb_len_wr] if r.status == Status.CHECK_CONDITION else b""
        return CommandResult(r.status, sense, r.data)

    def close(self) -> None:
        os.close(self.fd)


class HelperLioBackend(Backend):
    """PR through one ``scsi-pr-helper --backend sg`` in front of LIO devices.

    ``devices``: (/dev/sgN path, TransportId, relative target port) per initiator; default: the
    LIO rig's, via ``scsi_pr.rig.backend_lio`` (root and an LIO kernel, else BackendUnavailable).
    """

    name = "helper-lio"
    capabilities = frozenset({Capability.RESTART_HELPER, Capability.REAL_KERNEL})
    #: the helper's ``--backend``
    executor = "sg"

    @property
    def helper_kind(self) -> str:
        """Which shared helper serves this backend (``SharedHelpers``)."""
        return self.executor

    def prepare(self) -> None:
        """What must exist before the helper starts (nothing here)."""

    def __init__(
        self,
        initiators: int = 2,
        devices: Sequence[tuple[str, TransportId, int]] | None = None,
    ) -> None:
        exe = helper_executable()
        if os.geteuid() != 0:
            raise BackendUnavailable("helper-lio needs root (SG_IO on LIO devices)")
        self._lio: LioBackend | None = None
        self.helper_initiators: list[HelperLioInitiator] = []
        self.initiators: list[Initiator] = []
        ports: list[tuple[DirectPath, TransportId, int]]
        if devices is None:
            from scsi_pr.rig.backend_lio import LioBackend

            self._lio = LioBackend(initiators)  # raises BackendUnavailable without LIO
            ports = [
                (it, it.transport_id, it.relative_target_port) for it in self._lio.lio_initiators
            ]
        else:
            ports = [(_SgPath(path), tid, rtp) for path, tid, rtp in devices]
        self._directs = [direct for direct, _, _ in ports]
        try:
            self.prepare()
            self.helper = SharedHelpers.running(exe, self.executor, self.helper_kind)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        self.helper_initiators = [
            HelperLioInitiator(
                direct, tid, rtp, Client(str(self.helper.sock), timeout=HELPER_COMMAND_TIMEOUT)
            )
            for direct, tid, rtp in ports
        ]
        self.initiators = list(self.helper_initiators)

    @property
    def hung(self) -> bool:
        """Did a command time out (LIO hung the LUN) while this backend was in use?"""
        return any(d.hung for d in self._directs) or any(it.hung for it in self.helper_initiators)

    def wedged(self) -> bool:
        """The device, not the helper, must still hold the command on the I_T nexus that timed
        out (``LioBackend.probe_wedged``), so a helper that lost an answer is not taken for
        LIO's hang. Devices given explicitly have no rig to look at: a timeout is the evidence."""
        if self._lio is None:
            return self.hung
        timed_out = {it.name for it in self.helper_initiators if it.hung or it.direct.hung}
        return self._lio.probe_wedged(timed_out)

    def restart_helper(self) -> None:
        self.helper.restart()

    def __exit__(self, *exc: object) -> None:
        for it in self.helper_initiators:
            it.client.close()  # a pr_fd is its opener's to close (backend_paths keeps them)
        if self.hung:
            SharedHelpers.discard(self.helper_kind)  # its SG_IO thread is stuck: kill it
        for d in self._directs:
            if isinstance(d, _SgPath):
                d.close()
        if self._lio is not None:
            self._lio.__exit__(*exc)
