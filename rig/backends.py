"""Backends: one shared LU seen by N initiators, whatever is behind it.

The conformance tests, the hypothesis machine and the scenarios talk to a device only through
``Initiator.execute(cdb, data)``. A backend is a context manager that yields its initiators;
``BACKENDS`` maps the names used by ``--backend`` to "module:factory" so that heavy modules
(SG_IO, sockets, rtslib) are imported only when chosen.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from scsi_pr.rig.errors import RigError
from scsi_pr.sim.device import LogicalUnit
from scsi_pr.sim.nexus import ITNexus
from scsi_pr.sim.result import CommandResult
from scsi_pr.sim.store import MemoryAptplStore
from scsi_pr.sim.transportid import TransportId


class BackendUnavailable(RigError):
    """The backend cannot run on this machine (no root, no LIO, no VM); says why."""


class Initiator(Protocol):
    name: str
    transport_id: TransportId
    relative_target_port: int

    def execute(self, cdb: bytes, data: bytes = b"") -> CommandResult: ...


class Backend(Protocol):
    name: str
    initiators: list[Initiator]
    #: what the backend can do besides commands, e.g. {"power_cycle", "restart_helper"}
    capabilities: frozenset[str]

    def __enter__(self) -> Backend: ...

    def __exit__(self, *exc: object) -> None: ...


def initiator_name(index: int) -> str:
    """Stable SAS initiator names, shared by every backend so TransportIDs are comparable."""
    return f"naa.50014050000000{index + 1:02x}"


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

    def execute(self, cdb: bytes, data: bytes = b"") -> CommandResult:
        return self.lu.execute(self.nexus, cdb, data)


class SimBackend(AbstractContextManager["SimBackend"]):
    """The model in-process: initiator i reaches the LU through target port i+1, like one
    tcm_loop target per initiator on LIO."""

    name = "sim"
    capabilities = frozenset({"power_cycle", "nexus_loss", "lun_reset"})

    def __init__(self, initiators: int = 2, lu: LogicalUnit | None = None) -> None:
        self.lu = lu or LogicalUnit(
            target_ports=tuple(range(1, initiators + 1)), store=MemoryAptplStore()
        )
        self.initiators: list[Initiator] = [
            SimInitiator(self.lu, ITNexus.named(initiator_name(i), i + 1))
            for i in range(initiators)
        ]

    def power_cycle(self) -> None:
        self.lu.power_loss()
        self.lu.power_on()

    def __exit__(self, *exc: object) -> None:
        return None


BACKENDS: dict[str, str] = {
    "sim": "scsi_pr.rig.backends:SimBackend",
    "helper-sim": "scsi_pr.rig.backend_helper:HelperSimBackend",
    "lio": "scsi_pr.rig.backend_lio:LioBackend",
    "helper-lio": "scsi_pr.rig.backend_helper:HelperLioBackend",
}


def backend_factory(name: str) -> Callable[..., Backend]:
    try:
        target = BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}") from None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def open_backend(name: str, initiators: int = 2) -> Backend:
    """Build a backend (raises BackendUnavailable with the reason when it cannot run here)."""
    return backend_factory(name)(initiators=initiators)
