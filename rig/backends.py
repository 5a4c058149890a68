"""Backends: one shared LU seen by N initiators, whatever is behind it.

The conformance tests, the hypothesis machine and the scenarios talk to a device only through
``Initiator.execute(cdb, data)``. A backend is a context manager that yields its initiators;
``BACKENDS`` maps the names used by ``--backend`` to "module:factory" so that heavy modules
(SG_IO, sockets, rtslib) are imported only when chosen. What a backend can do besides commands
(power cycle, helper restart, ...) is declared in its ``capabilities``, never probed for.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, Protocol

from scsi_pr.rig.errors import RigError
from scsi_pr.sim import profiles
from scsi_pr.sim.cdb import test_unit_ready
from scsi_pr.sim.constants import SenseKey, Status
from scsi_pr.sim.device import LogicalUnit
from scsi_pr.sim.faults import Fault, FaultHook, Stall
from scsi_pr.sim.nexus import ITNexus
from scsi_pr.sim.result import CommandResult
from scsi_pr.sim.store import MemoryAptplStore
from scsi_pr.sim.transportid import TransportId


class BackendUnavailable(RigError):
    """The backend cannot run on this machine (no root, no LIO, no VM); says why."""


class CapabilityMissing(RigError):
    """A backend was asked for something its ``capabilities`` do not declare."""


class CommandNeverCompletes(RigError, TimeoutError):
    """The simulated LU took the command but never answers it (a profile reproducing LIO's
    PREEMPT AND ABORT stall): raised at once, as a hang, instead of blocking the caller. A
    TimeoutError, so the pytest plugin and the scenario engine treat it as LIO's hang."""


class Capability(StrEnum):
    """What a backend can do besides carrying commands.

    A ``StrEnum`` so the pytest plugin's ``requires("power_cycle")`` marker and the scenarios'
    messages can keep naming them as plain strings.
    """

    #: power loss + power on of the LU: APTPL state survives, the rest goes (SPC-5 5.14.5)
    POWER_CYCLE = "power_cycle"
    #: SAM-5 LOGICAL UNIT RESET of the LU
    LUN_RESET = "lun_reset"
    #: kill -9 the PR helper process(es) and start them again on the same sockets
    RESTART_HELPER = "restart_helper"
    #: SAM-5 I_T nexus loss of one initiator's nexus (its transport connection dropped)
    NEXUS_LOSS = "nexus_loss"
    #: the LU is LIO in a real kernel (a property, not an action)
    REAL_KERNEL = "real_kernel"
    #: opening the backend again gives another, independent LU (a property): scenarios over
    #: several devices open it once per device
    INDEPENDENT_LUS = "independent_lus"
    #: the LU can be told to hold back its answer to one command for a while (``stall_next``)
    STALL = "stall"
    #: the backend takes the initiators' names (TransportIDs) it is opened with (``names=``)
    NAMED_INITIATORS = "named_initiators"


class Initiator(Protocol):
    name: str
    transport_id: TransportId
    relative_target_port: int

    def execute(self, cdb: bytes, data: bytes = b"") -> CommandResult: ...


class Backend(AbstractContextManager["Backend"]):
    """One LU seen by ``initiators``; what else the backend can do is declared, not probed.

    Callers decide on ``capabilities`` alone. The optional operations below raise
    ``CapabilityMissing`` unless a backend declares the capability and overrides the method,
    so an undeclared call fails loudly instead of finding (or missing) an attribute.
    """

    name: ClassVar[str]
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    #: what this backend's way to the device cannot carry (names of
    #: ``scsi_pr.helper.executors.limits.LIMITS``): the helper answers those itself
    path_limits: ClassVar[frozenset[str]] = frozenset()
    #: False for the in-process model: senders on several threads must serialise commands
    #: themselves (a real device, or a helper process, serialises them on its own).
    thread_safe: ClassVar[bool] = True
    initiators: list[Initiator]

    @property
    def hung(self) -> bool:
        """Did a command time out (the LUN hung) while this backend was in use?"""
        return False

    def wedged(self) -> bool:
        """Is the LU shown to be wedged, not merely one command late? A timeout is counted as
        the known LIO hang only then (``lio_hangs``): otherwise a bug of ours that loses one
        answer (a helper that never replies) would read as LIO's defect. Real-kernel backends
        prove it by the command still being in flight on the I_T nexus that timed out; the
        model's stall is exact (its profile withheld that answer), so ``hung`` is the proof.
        """
        return self.hung

    def device_log(self) -> str:
        """What the device side logged while this backend was in use ("" if it keeps none):
        shown with a failed test, because on a real kernel the test alone cannot see who else
        sent commands on its I_T nexus."""
        return ""

    def power_cycle(self) -> None:
        raise self._missing(Capability.POWER_CYCLE)

    def lun_reset(self) -> None:
        raise self._missing(Capability.LUN_RESET)

    def restart_helper(self) -> None:
        raise self._missing(Capability.RESTART_HELPER)

    def nexus_loss(self, initiator: Initiator) -> None:
        raise self._missing(Capability.NEXUS_LOSS)

    def stall_next(self, initiator: Initiator, opcode: int, seconds: float) -> None:
        """Hold back the answer to ``initiator``'s next command with ``opcode`` for
        ``seconds`` (a storage stall); the command still takes effect."""
        raise CapabilityMissing(f"backend {self.name} does not declare {Capability.STALL}")

    def perform(self, capability: Capability, initiator: Initiator | None = None) -> None:
        """Do the action ``capability`` names (a scenario's ``Action``); ``initiator`` is the
        one it concerns, for actions on one I_T nexus (``NEXUS_LOSS``)."""
        action = ACTIONS.get(capability)
        if action is None or capability not in self.capabilities:
            raise self._missing(capability)
        if capability in PER_NEXUS and initiator is None:
            raise CapabilityMissing(f"{capability} needs the initiator whose nexus it concerns")
        action(self, initiator)

    def _missing(self, capability: Capability) -> CapabilityMissing:
        if capability not in ACTIONS:
            return CapabilityMissing(f"{capability} is a property of a backend, not an action")
        return CapabilityMissing(f"backend {self.name} does not declare {capability}")

    def __exit__(self, *exc: object) -> None:
        return None


#: The capabilities that are actions, and the operation each one runs.
ACTIONS: dict[Capability, Callable[[Backend, Initiator | None], None]] = {
    Capability.POWER_CYCLE: lambda b, _: b.power_cycle(),
    Capability.LUN_RESET: lambda b, _: b.lun_reset(),
    Capability.RESTART_HELPER: lambda b, _: b.restart_helper(),
    Capability.NEXUS_LOSS: lambda b, it: b.nexus_loss(it),  # type: ignore[arg-type]
}
#: actions that concern one initiator's I_T nexus rather than the whole LU
PER_NEXUS = frozenset({Capability.NEXUS_LOSS})


#: TEST UNIT READYs a fresh start may take: a reset, a power on and a few PR changes queue
#: far fewer unit attentions than this on any LU
MAX_UAS = 16


def drain(initiator: Initiator, error: Callable[[str], Exception]) -> list[tuple[int, int]]:
    """TEST UNIT READY until GOOD, so that no unit attention an earlier user left is pending;
    returns the unit attentions (ASC, ASCQ) reported on the way, in order. ``error(why)`` is
    raised (each caller's own type) when the LU never answers GOOD."""
    seen: list[tuple[int, int]] = []
    for _ in range(MAX_UAS):
        r = initiator.execute(test_unit_ready())
        if r.status == Status.GOOD:
            return seen
        sense = r.sense_data
        if sense is None or sense.key != SenseKey.UNIT_ATTENTION:
            raise error(f"{initiator.name}: TEST UNIT READY answered {r}")
        seen.append((sense.asc, sense.ascq))
    raise error(f"{initiator.name}: unit attentions do not stop: {seen}")


def initiator_name(index: int) -> str:
    """Stable SAS initiator names, shared by every backend so TransportIDs are comparable."""
    return f"naa.50014050000000{index + 1:02x}"


def initiator_names(count: int, names: Sequence[str] = ()) -> list[str]:
    """``count`` initiator names: those given first (a scenario's own TransportIDs, in the
    forms ``TransportId.from_name`` reads), the stable defaults for the rest."""
    return [names[i] if i < len(names) else initiator_name(i) for i in range(count)]


class NexusIdentity:
    """The Initiator protocol's identity, read off an I_T nexus (sim and helper-sim)."""

    nexus: ITNexus

    @property
    def name(self) -> str:
        return str(self.nexus.initiator)

    @property
    def transport_id(self) -> TransportId:
        return self.nexus.initiator

    @property
    def relative_target_port(self) -> int:
        return self.nexus.target_port


@dataclass
class SimInitiator(NexusIdentity):
    lu: LogicalUnit
    nexus: ITNexus
    #: a command never completed (the LU's profile withheld its answer)
    stalled: bool = False

    def execute(self, cdb: bytes, data: bytes = b"") -> CommandResult:
        result = self.lu.execute(self.nexus, cdb, data)
        if not result.completes:
            self.stalled = True
            raise CommandNeverCompletes(
                f"{self.name}: the LU (profile {self.lu.profile.name}) never completes this command"
            )
        return result


class SimBackend(Backend):
    """The model in-process: initiator i reaches the LU through target port i+1, like one
    tcm_loop target per initiator on LIO."""

    name = "sim"
    capabilities = frozenset(
        {
            Capability.POWER_CYCLE,
            Capability.LUN_RESET,
            Capability.NEXUS_LOSS,
            Capability.INDEPENDENT_LUS,
            Capability.STALL,
            Capability.NAMED_INITIATORS,
        }
    )
    thread_safe = False  # the model is plain Python objects, with no lock of its own

    def __init__(
        self,
        initiators: int = 2,
        lu: LogicalUnit | None = None,
        profile: str = profiles.DEFAULT_PROFILE,
        names: Sequence[str] = (),
    ) -> None:
        self.lu = lu or LogicalUnit(
            target_ports=tuple(range(1, initiators + 1)),
            store=MemoryAptplStore(),
            profile=profile,
        )
        self.sim_initiators = [
            SimInitiator(self.lu, ITNexus.named(name, i + 1))
            for i, name in enumerate(initiator_names(initiators, names))
        ]
        for it in self.sim_initiators:  # their I_T nexuses exist from the start, as on LIO
            self.lu.attach(it.nexus)
        self.initiators: list[Initiator] = list(self.sim_initiators)

    @property
    def hung(self) -> bool:
        """A command never completed (the profile reproduces LIO's PREEMPT AND ABORT stall)."""
        return any(it.stalled for it in self.sim_initiators)

    def power_cycle(self) -> None:
        self.lu.power_loss()
        self.lu.power_on()

    def lun_reset(self) -> None:
        self.lu.lun_reset()

    def nexus_loss(self, initiator: Initiator) -> None:
        self.lu.nexus_loss(nexus_of(self.sim_initiators, initiator))

    def stall_next(self, initiator: Initiator, opcode: int, seconds: float) -> None:
        nexus = nexus_of(self.sim_initiators, initiator)
        self.lu.fault = OneShot(Stall(seconds), nexus, opcode, self.lu.fault)


@dataclass
class OneShot:
    """A fault hook that hits one command (``nexus``, ``opcode``) once, then hands every later
    command to the hook it replaced."""

    fault: Fault
    nexus: ITNexus
    opcode: int
    then: FaultHook | None
    spent: bool = False

    def __call__(self, nexus: ITNexus, cdb: bytes) -> Fault | None:
        if not self.spent and nexus == self.nexus and cdb[:1] == bytes([self.opcode]):
            self.spent = True
            return self.fault
        return self.then(nexus, cdb) if self.then is not None else None


def nexus_of(initiators: Sequence[NexusIdentity], initiator: Initiator) -> ITNexus:
    """The I_T nexus of one of this backend's own initiators (by identity, not by name)."""
    for it in initiators:
        if it is initiator:
            return it.nexus
    raise CapabilityMissing(f"{initiator.name} is not an initiator of this backend")


BACKENDS: dict[str, str] = {
    "sim": "scsi_pr.rig.backends:SimBackend",
    "helper-sim": "scsi_pr.rig.backend_helper:HelperSimBackend",
    "lio": "scsi_pr.rig.backend_lio:LioBackend",
    "helper-lio": "scsi_pr.rig.backend_helper:HelperLioBackend",
    "helper-lio-ioctl": "scsi_pr.rig.backend_paths:HelperLioIoctlBackend",
    "helper-lio-mpath": "scsi_pr.rig.backend_paths:HelperLioMpathBackend",
    "iscsi": "scsi_pr.rig.backend_iscsi:IscsiBackend",
    "helper-iscsi": "scsi_pr.rig.backend_iscsi:HelperIscsiBackend",
}


def backend_factory(name: str) -> Callable[..., Backend]:
    try:
        target = BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}") from None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


#: backends built on the model, which take a device profile (``scsi_pr.sim.profiles``)
PROFILED_BACKENDS = frozenset({"sim", "helper-sim"})


class ProfileNotApplicable(RigError, ValueError):
    """A profile was asked of a backend that is not the model (LIO answers as LIO does)."""


def takes_profile(name: str) -> None:
    """Raise ProfileNotApplicable unless the backend ``name`` is the model (takes a profile)."""
    if name not in PROFILED_BACKENDS:
        raise ProfileNotApplicable(
            f"backend {name} takes no profile (only {', '.join(sorted(PROFILED_BACKENDS))})"
        )


def open_backend(
    name: str, initiators: int = 2, profile: str | None = None, names: Sequence[str] = ()
) -> Backend:
    """Build a backend (raises BackendUnavailable with the reason when it cannot run here);
    ``profile`` (sim and helper-sim only) is how the simulated LU answers; ``names``, the first
    initiators' names, only for backends that declare ``NAMED_INITIATORS``."""
    factory = backend_factory(name)
    if names and Capability.NAMED_INITIATORS not in factory.capabilities:
        raise CapabilityMissing(f"backend {name} does not take initiator names")
    extra = {"names": list(names)} if names else {}
    if profile is None:
        return factory(initiators=initiators, **extra)
    takes_profile(name)
    profiles.get(profile)  # UnknownProfile before anything starts
    return factory(initiators=initiators, profile=profile, **extra)
