"""How the machine reaches a device and reads its PR state back.

The device is one ``execute(initiator_index, cdb, data) -> CommandResult`` callable plus the
initiators' identities (``Target``), so the same rules drive the in-process model or, step by
step, a LIO LUN in a VM. The PR IN readers here are strict on purpose: a malformed answer is a
failure of the device under test, reported as an assertion.
"""

from __future__ import annotations

import struct
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

    @classmethod
    def from_initiators(
        cls,
        initiators: Sequence[object],
        power_cycle: Callable[[], None] | None = None,
        deviations: frozenset[str] = frozenset(),
        preempt_and_abort: bool = True,
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
        )


@dataclass(frozen=True)
class Observed:
    """PR state as the device reports it through PR IN."""

    generation: int
    keys: tuple[int, ...]
    reservation: tuple[int, int] | None  # (key, type)
    full_status: frozenset[tuple[int, bool, int, int, bytes]]  # key, R_HOLDER, type, RTPI, TID


def parse_read_keys(data: bytes) -> tuple[int, list[int]]:
    generation, length = struct.unpack_from(">II", data)
    assert length % 8 == 0, f"READ KEYS ADDITIONAL LENGTH {length} not a multiple of 8"
    assert len(data) == 8 + length, "READ KEYS data shorter than its ADDITIONAL LENGTH"
    return generation, [int.from_bytes(data[o : o + 8], "big") for o in range(8, 8 + length, 8)]


def parse_read_reservation(data: bytes) -> tuple[int, tuple[int, int] | None]:
    generation, length = struct.unpack_from(">II", data)
    if length == 0:
        assert len(data) == 8
        return generation, None
    assert length == 16 and len(data) == 24, f"READ RESERVATION length {length}"
    assert data[21] >> 4 == 0, "SCOPE must be LU_SCOPE"
    return generation, (int.from_bytes(data[8:16], "big"), data[21] & 0x0F)


def parse_read_full_status(
    data: bytes,
) -> tuple[int, list[tuple[int, bool, bool, int, int, bytes]]]:
    """(generation, [(key, ALL_TG_PT, R_HOLDER, type, RTPI, TransportID)])."""
    generation, length = struct.unpack_from(">II", data)
    assert len(data) == 8 + length, "READ FULL STATUS data shorter than its ADDITIONAL LENGTH"
    out = []
    offset = 8
    while offset < 8 + length:
        key = int.from_bytes(data[offset : offset + 8], "big")
        flags, scope_type = data[offset + 12], data[offset + 13]
        rtpi = int.from_bytes(data[offset + 18 : offset + 20], "big")
        tid_len = int.from_bytes(data[offset + 20 : offset + 24], "big")
        tid = data[offset + 24 : offset + 24 + tid_len]
        out.append((key, bool(flags & 2), bool(flags & 1), scope_type & 0x0F, rtpi, tid))
        offset += 24 + tid_len
    assert offset == 8 + length, "descriptors overrun ADDITIONAL LENGTH"
    return generation, out
