"""How the machine reaches a device and reads its PR state back.

The device is one ``execute(initiator_index, cdb, data) -> CommandResult`` callable plus the
initiators' identities (``Target``), so the same rules drive the in-process model or, step by
step, a LIO LUN in a VM. The PR IN readers here are strict on purpose: a malformed answer is a
failure of the device under test, reported as an assertion.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from scsi_pr.sim.result import CommandResult
from scsi_pr.sim.transportid import TransportId


@dataclass
class Target:
    """How the machine reaches a device: one execute call, the initiators' identities, and
    optionally a power cycle. ``deviations`` lists the tags of known deviations to accept."""

    execute: Callable[[int, bytes, bytes], CommandResult]
    transport_ids: Sequence[TransportId]
    relative_target_ports: Sequence[int]
    power_cycle: Callable[[], None] | None = None
    deviations: frozenset[str] = frozenset()
    preempt_and_abort: bool = True
    #: what the way to the device cannot carry (``scsi_pr.helper.executors.limits``)
    path_limits: frozenset[str] = frozenset()

    @classmethod
    def from_initiators(
        cls,
        initiators: Sequence[object],
        power_cycle: Callable[[], None] | None = None,
        deviations: frozenset[str] = frozenset(),
        preempt_and_abort: bool = True,
        path_limits: frozenset[str] = frozenset(),
    ) -> Target:
        """Wrap rig initiators (``.execute(cdb, data)``, ``.transport_id``,
        ``.relative_target_port``)."""
        its = list(initiators)
        return cls(
            execute=lambda i, cdb, data: its[i].execute(cdb, data),  # type: ignore[attr-defined]
            transport_ids=[it.transport_id for it in its],  # type: ignore[attr-defined]
            relative_target_ports=[it.relative_target_port for it in its],  # type: ignore[attr-defined]
            power_cycle=power_cycle,
            deviations=deviations,
            preempt_and_abort=preempt_and_abort,
            path_limits=path_limits,
        )


@dataclass(frozen=True)
class Observed:
    """PR state as the device reports it through PR IN."""

    generation: int
    keys: tuple[int, ...]
    reservation: tuple[int, int] | None  # (key, type)
    #: key, R_HOLDER, type, RTPI, TID; None where the path cannot read READ FULL STATUS
    full_status: frozenset[tuple[int, bool, int, int, bytes]] | None
