"""The observer's view of the LU: PR IN data read back into actor terms.

The timeline's holder/keys columns must come from the device, not from what the scenario
expected, and must look the same on every backend (the model, LIO, through a helper). So the
engine keeps one extra, never-registered initiator, the *observer*, that sends READ FULL STATUS
after every step. PERSISTENT RESERVE IN is allowed under every reservation type (SPC-5 5.14.1)
and its unit attentions are its own, so observing never changes what the actors see.

The bytes are read by the model's strict readers (``scsi_pr.sim.pr_in_data``); the functions
here only give their results the shapes the scenario engine and commands use.
"""

from __future__ import annotations

from dataclasses import dataclass

from scsi_pr.sim import pr_in_data
from scsi_pr.sim.constants import ReservationType
from scsi_pr.sim.transportid import TransportId


def parse_read_keys(data: bytes) -> tuple[int, list[int]]:
    """(PRGENERATION, keys) of READ KEYS parameter data; PrInDataError (a ValueError) if
    malformed."""
    got = pr_in_data.parse_read_keys(data)
    return got.generation, list(got.keys)


def parse_read_reservation(data: bytes) -> tuple[int, tuple[int, ReservationType] | None]:
    """(PRGENERATION, (key, type) or None) of READ RESERVATION parameter data."""
    got = pr_in_data.parse_read_reservation(data)
    res = got.reservation
    return got.generation, None if res is None else (res.key, res.type)


@dataclass(frozen=True)
class FullStatusEntry:
    """One READ FULL STATUS descriptor with its TransportID decoded: a registered I_T nexus."""

    key: int
    all_tg_pt: bool
    holder: bool
    type_: ReservationType | None
    relative_target_port: int
    transport_id: TransportId


def parse_read_full_status(data: bytes) -> tuple[int, list[FullStatusEntry]]:
    """(PRGENERATION, entries) of READ FULL STATUS parameter data; PrInDataError if malformed,
    including a TransportID the model cannot decode."""
    got = pr_in_data.parse_read_full_status(data)
    entries = [
        FullStatusEntry(
            d.key, d.all_tg_pt, d.r_holder, d.type, d.relative_target_port, d.initiator()
        )
        for d in got.descriptors
    ]
    return got.generation, entries


@dataclass(frozen=True)
class PrState:
    """The LU's PR state in actor terms: who is registered with which key, who holds.

    ``holder`` is an actor name, ``"all registrants"``, or None; registrations the scenario
    cannot attribute to an actor keep their ``TransportID@port`` text as the name.
    """

    generation: int
    keys: dict[str, int]
    holder: str | None
    type_: ReservationType | None

    def same_as(self, other: PrState) -> bool:
        return (self.generation, self.keys, self.holder, self.type_) == (
            other.generation,
            other.keys,
            other.holder,
            other.type_,
        )

    def to_json(self) -> dict[str, object]:
        return {
            "generation": self.generation,
            "keys": {a: f"0x{k:x}" for a, k in self.keys.items()},
            "holder": self.holder,
            "type": self.type_.abbreviation if self.type_ else None,
        }


def actor_state(
    generation: int,
    entries: list[FullStatusEntry],
    actors: dict[str, tuple[TransportId, int]],
) -> PrState:
    """Name each descriptor by the actor whose initiator port and target port it shows."""

    def name(e: FullStatusEntry) -> str:
        for actor, (tid, port) in actors.items():
            if tid.matches(e.transport_id) and (port == e.relative_target_port or e.all_tg_pt):
                return actor
        return f"{e.transport_id}@{e.relative_target_port}"

    keys = {name(e): e.key for e in entries}
    holders = [e for e in entries if e.holder]
    holder = None
    type_ = holders[0].type_ if holders else None
    if type_ is not None and type_.all_registrants:
        holder = "all registrants"
    elif holders:
        holder = name(holders[0])
    return PrState(generation, dict(sorted(keys.items())), holder, type_)
