"""Reading PR state back: parsers for PR IN data and the observer's view of the LU.

The timeline's holder/keys columns must come from the device, not from what the scenario
expected, and must look the same on every backend (the model, LIO, through a helper). So the
engine keeps one extra, never-registered initiator, the *observer*, that sends READ FULL STATUS
after every step. PR IN is allowed under every reservation type (SPC-5 table 66) and its unit
attentions are its own, so observing never changes what the actors see.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from scsi_pr.sim.constants import ReservationType
from scsi_pr.sim.transportid import TransportId, TransportIdError, decode_transport_id

PR_IN_HEADER = 8  # PRGENERATION + ADDITIONAL LENGTH (SPC-5 6.16.2)
FULL_STATUS_DESCRIPTOR = 24  # fixed part before the TransportID (SPC-5 table 171)
RESERVATION_DESCRIPTOR = 16  # SPC-5 6.16.3


def _header(data: bytes, what: str) -> tuple[int, bytes]:
    if len(data) < PR_IN_HEADER:
        raise ValueError(f"{what}: {len(data)} bytes, shorter than the 8-byte header")
    generation, length = struct.unpack_from(">II", data)
    body = data[PR_IN_HEADER : PR_IN_HEADER + length]
    if len(body) < length:
        raise ValueError(f"{what}: ADDITIONAL LENGTH {length} runs past {len(data)} bytes")
    return generation, body


def parse_read_keys(data: bytes) -> tuple[int, list[int]]:
    """(PRGENERATION, keys) of READ KEYS parameter data (SPC-5 6.16.2)."""
    generation, body = _header(data, "READ KEYS")
    if len(body) % 8:
        raise ValueError(f"READ KEYS: key list of {len(body)} bytes is not a multiple of 8")
    return generation, [k for (k,) in struct.iter_unpack(">Q", body)]


def parse_read_reservation(data: bytes) -> tuple[int, tuple[int, ReservationType] | None]:
    """(PRGENERATION, (key, type) or None) of READ RESERVATION data (SPC-5 6.16.3)."""
    generation, body = _header(data, "READ RESERVATION")
    if not body:
        return generation, None
    if len(body) < RESERVATION_DESCRIPTOR:
        raise ValueError(f"READ RESERVATION: descriptor of {len(body)} bytes, need 16")
    key = int.from_bytes(body[:8], "big")
    try:
        return generation, (key, ReservationType(body[13] & 0x0F))
    except ValueError:
        raise ValueError(f"READ RESERVATION: unknown TYPE {body[13] & 0x0F:#x}") from None


@dataclass(frozen=True)
class FullStatusEntry:
    """One READ FULL STATUS descriptor: a registered I_T nexus (SPC-5 table 171)."""

    key: int
    all_tg_pt: bool
    holder: bool
    type_: ReservationType | None
    relative_target_port: int
    transport_id: TransportId


def parse_read_full_status(data: bytes) -> tuple[int, list[FullStatusEntry]]:
    generation, body = _header(data, "READ FULL STATUS")
    entries: list[FullStatusEntry] = []
    offset = 0
    while offset < len(body):
        if offset + FULL_STATUS_DESCRIPTOR > len(body):
            raise ValueError("READ FULL STATUS: truncated descriptor")
        key = int.from_bytes(body[offset : offset + 8], "big")
        flags, scope_type = body[offset + 12], body[offset + 13]
        port = int.from_bytes(body[offset + 18 : offset + 20], "big")
        tid_length = int.from_bytes(body[offset + 20 : offset + 24], "big")
        tid_bytes = body[offset + 24 : offset + 24 + tid_length]
        if len(tid_bytes) < tid_length:
            raise ValueError("READ FULL STATUS: TransportID runs past the data")
        try:
            tid, _ = decode_transport_id(tid_bytes)
        except TransportIdError as e:
            raise ValueError(f"READ FULL STATUS: {e}") from e
        holder = bool(flags & 0x01)
        type_ = None
        if holder:
            try:
                type_ = ReservationType(scope_type & 0x0F)
            except ValueError:
                raise ValueError(f"READ FULL STATUS: unknown TYPE {scope_type:#x}") from None
        entries.append(FullStatusEntry(key, bool(flags & 0x02), holder, type_, port, tid))
        offset += FULL_STATUS_DESCRIPTOR + tid_length
    return generation, entries


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
