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

import atexit
import contextlib
import os
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

from scsi_pr.helper import executable
from scsi_pr.helper.client import Client
from scsi_pr.helper.executors.base import Reply
from scsi_pr.helper.simserve import SharedLUs
from scsi_pr.rig.backends import (
    Backend,
    BackendUnavailable,
    Capability,
    Initiator,
    NexusIdentity,
    initiator_name,
    nexus_of,
)
from scsi_pr.rig.processes import NotListening, wait_listening
from scsi_pr.rig.watchdog import note_progress
from scsi_pr.sim import profiles
from scsi_pr.sim.constants import Opcode, Status
from scsi_pr.sim.device import LogicalUnit
from scsi_pr.sim.nexus import ITNexus
from scsi_pr.sim.pr_out import never_completes
from scsi_pr.sim.result import CommandResult
from scsi_pr.sim.transportid import TransportId

if TYPE_CHECKING:
    from scsi_pr.rig.backend_lio import LioBackend

START_QUIET = 20.0  # seconds a starting helper may go without using CPU (processes.wait_listening)
KILL_WAIT = 5.0
# A PR command through the helper that takes longer than this is a hung LUN (the lio backend's
# SG_IO timeout plus its grace): the client raises TimeoutError, the plugin's hang signal.
HELPER_COMMAND_TIMEOUT = 12.0
PR_OPCODES = (Opcode.PERSISTENT_RESERVE_IN, Opcode.PERSISTENT_RESERVE_OUT)


def helper_executable() -> str:
    try:
        return executable.helper_executable()
    except executable.HelperNotInstalled as e:
        raise BackendUnavailable(str(e)) from e


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
class HelperProcess:
    """One running ``scsi-pr-helper`` on ``sock``; ``restart()`` is kill -9 + start."""

    argv: list[str]
    sock: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        self.spawn()
        self.wait_listening()

    def spawn(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [*self.argv, "-k", str(self.sock)], stdout=log, stderr=subprocess.STDOUT
            )

    def wait_listening(self) -> None:
        assert self.proc is not None
        try:
            wait_listening(
                self.proc,
                self.sock,
                START_QUIET,
                name="scsi-pr-helper",
                output=lambda: self.log.read_text(errors="replace")[-2000:],
            )
        except NotListening as e:
            self.kill()
            raise BackendUnavailable(str(e)) from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            # A helper stuck in SG_IO on a hung LUN dies only when the I/O ends: don't wait
            # forever for it (its socket is replaced by the next start anyway).
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(KILL_WAIT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> None:
        self.kill()  # leaves the socket file behind, as a crash does; start() replaces it
        self.start()


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
                    and (never_completes(self.profile, cdb[1] & 0x1F))
                )
                raise
            return result_from_reply(reply)
        return self.lus.run_on_file(self.image, lambda lu: lu.execute(self.nexus, cdb, data))


class _HelperPool:
    """The helper processes of a test session, shared by every ``HelperSimBackend``.

    Starting N Python processes per test would dominate the suite's run time. A fresh LU
    per backend needs no fresh helper: every backend makes a new image file, and a new file
    is a new simulated LU. Images stay until the session ends, so no inode (the LU's name) is
    ever reused. ``restart_helper`` kills and restarts the pooled processes themselves.
    """

    def __init__(self) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.helpers: dict[tuple[int, int, str], HelperProcess] = {}
        self.images = 0

    @property
    def root(self) -> Path:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="scsi-pr-helper-sim-")
            atexit.register(self.close)
        return Path(self._tmp.name)

    def state_dir(self, ports: int, profile: str = profiles.DEFAULT_PROFILE) -> Path:
        path = self.root / f"state-{ports}-{profile}"
        path.mkdir(exist_ok=True)
        return path

    def new_image(self) -> Path:
        self.images += 1
        image = self.root / f"lu{self.images}.img"
        image.write_bytes(b"")
        os.truncate(image, 1 << 25)
        return image

    def helpers_for(
        self, initiators: int, ports: int, profile: str = profiles.DEFAULT_PROFILE
    ) -> list[HelperProcess]:
        exe = helper_executable()
        out: list[HelperProcess] = []
        for i in range(initiators):
            helper = self.helpers.get((i, ports, profile))
            if helper is None:
                argv = [exe, "-q", "--backend", "sim", "--initiator", initiator_name(i)]
                argv += ["--state-dir", str(self.state_dir(ports, profile))]
                argv += ["--target-port", str(i + 1), "--target-ports", str(ports)]
                argv += ["--profile", profile]
                name = f"helper{i}-{ports}-{profile}"
                helper = HelperProcess(argv, self.root / f"{name}.sock", self.root / f"{name}.log")
                self.helpers[(i, ports, profile)] = helper
            if helper.proc is None or helper.proc.poll() is not None:
                helper.spawn()  # all start in parallel; waited for below
            out.append(helper)
        for helper in out:
            helper.wait_listening()
        return out

    def close(self) -> None:
        for helper in self.helpers.values():
            if helper.proc is not None and helper.proc.poll() is None:
                helper.proc.terminate()
        for helper in self.helpers.values():
            helper.stop()
        self.helpers.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


_pool = _HelperPool()


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
        }
    )

    def __init__(self, initiators: int = 2, profile: str = profiles.DEFAULT_PROFILE) -> None:
        ports = max(initiators, 2)
        self.helpers = _pool.helpers_for(initiators, ports, profile)
        self.image = _pool.new_image()
        self.state_dir = _pool.state_dir(ports, profile)
        self.lus = SharedLUs(self.state_dir, ports, profile=profile)
        self.fd = os.open(self.image, os.O_RDWR)
        # A profile that never completes some command (LIO's PREEMPT AND ABORT) makes the helper
        # withhold its answer: the client gives up as on a hung LIO LUN, a TimeoutError.
        stalls = profiles.PREEMPT_AND_ABORT_STALLS in profiles.get(profile)
        timeout = HELPER_COMMAND_TIMEOUT if stalls else None
        self.helper_initiators = [
            HelperSimInitiator(
                ITNexus.named(initiator_name(i), i + 1),
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
            helper.wait_listening()

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
        return result_from_reply(reply)


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


class _SharedHelpers:
    """One ``scsi-pr-helper`` per executor for the whole process, as one serves a host's many
    VMs: it keeps no state between commands (only connections, each backend its own), and
    starting one costs seconds of interpreter start-up under TCG, which every test of the
    helper-lio backends paid. A helper that a hung LUN left stuck is killed and replaced."""

    helpers: ClassVar[dict[str, tuple[HelperProcess, tempfile.TemporaryDirectory[str]]]] = {}

    @classmethod
    def running(cls, exe: str, executor: str, kind: str) -> HelperProcess:
        """The helper of ``kind`` (its executor, or a name for one whose start-up must see
        something the others need not), started on first use."""
        found = cls.helpers.get(kind)
        if found is not None and found[0].proc is not None and found[0].proc.poll() is None:
            return found[0]
        cls.discard(kind)
        tmp = tempfile.TemporaryDirectory(prefix=f"scsi-pr-helper-{executor}-")
        root = Path(tmp.name)
        helper = HelperProcess([exe, "-q", "--backend", executor], root / "h.sock", root / "h.log")
        try:
            helper.start()
        except BaseException:
            tmp.cleanup()
            raise
        if not cls.helpers:
            atexit.register(cls.stop_all)
        cls.helpers[kind] = (helper, tmp)
        return helper

    @classmethod
    def discard(cls, kind: str) -> None:
        found = cls.helpers.pop(kind, None)
        if found is not None:
            found[0].kill()
            found[1].cleanup()

    @classmethod
    def stop_all(cls) -> None:
        for helper, tmp in cls.helpers.values():
            helper.stop()
            tmp.cleanup()
        cls.helpers.clear()


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
        """Which shared helper serves this backend (``_SharedHelpers``)."""
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
            self.helper = _SharedHelpers.running(exe, self.executor, self.helper_kind)
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
            _SharedHelpers.discard(self.helper_kind)  # its SG_IO thread is stuck: kill it
        for d in self._directs:
            if isinstance(d, _SgPath):
                d.close()
        if self._lio is not None:
            self._lio.__exit__(*exc)
