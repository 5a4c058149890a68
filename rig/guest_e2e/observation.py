"""What one step showed its initiator, decoded from what ``sg_persist --hex`` printed.

sg3_utils prints a PR IN header (``PR generation=0x…``) as text and only the descriptors as a
hex dump (READ KEYS, READ RESERVATION, READ FULL STATUS; REPORT CAPABILITIES in full), so the
readers here take descriptors, not whole parameter data. Host steps are logged as JSON lines so
a recorded run can be replayed (tests/rig/test_guest_e2e_checks.py).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from scsi_pr.rig.errors import RigError
from scsi_pr.rig.guest.console import StepResult

_GENERATION = re.compile(r"PR generation=0x([0-9a-fA-F]+)")
HOST_LOG_TAG = "host-result"


class MalformedData(RigError, ValueError):
    """PR IN data whose length does not fit its descriptors."""


@dataclass(frozen=True)
class Observation:
    """One step as the initiator saw it: exit status, PRgeneration and the response bytes that
    ``sg_persist --hex`` printed (descriptors only for READ KEYS/RESERVATION/FULL STATUS)."""

    rc: int | None
    generation: int | None
    data: str  # hex

    @classmethod
    def from_step(cls, result: StepResult | None) -> Observation:
        if result is None:
            return cls(None, None, "")
        gen = next((int(m.group(1), 16) for m in map(_GENERATION.search, result.out) if m), None)
        return cls(result.rc, gen, result.data.hex())


def host_log_line(result: StepResult) -> str:
    """A host step as one JSON log line, so a recorded run can be replayed (tests/rig)."""
    return f"{HOST_LOG_TAG} " + json.dumps(
        {"name": result.name, "rc": result.rc, "out": result.out, "err": result.err}
    )


def parse_host_log_line(line: str) -> StepResult | None:
    """The host step ``host_log_line`` wrote, or None for any other line (guest console)."""
    tag, _, payload = line.partition(" ")
    if tag != HOST_LOG_TAG:
        return None
    d = json.loads(payload)
    return StepResult(d["name"], d["rc"], d["out"], d["err"])


def decode_keys(data: bytes) -> list[int]:
    """The reservation keys of a READ KEYS list."""
    if len(data) % 8:
        raise MalformedData(f"READ KEYS list of {len(data)} bytes is not a multiple of 8")
    return [int.from_bytes(data[i : i + 8], "big") for i in range(0, len(data), 8)]


def decode_reservation(data: bytes) -> tuple[int, int] | None:
    """(key, type) of the READ RESERVATION descriptor (SPC-5 table 163), None if no holder."""
    if not data:
        return None
    if len(data) != 16:
        raise MalformedData(f"READ RESERVATION descriptor of {len(data)} bytes, expected 16")
    return int.from_bytes(data[:8], "big"), data[13] & 0x0F


@dataclass(frozen=True)
class FullStatusDescriptor:
    """SPC-5 table 166."""

    key: int
    all_tg_pt: bool
    holder: bool
    type: int
    relative_target_port: int
    transport_id: str  # hex


def decode_full_status(data: bytes) -> list[FullStatusDescriptor]:
    """The descriptors of READ FULL STATUS, each with its TransportID."""
    out = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 24:
            raise MalformedData(f"truncated full status descriptor at {pos}")
        tid_len = int.from_bytes(data[pos + 20 : pos + 24], "big")
        out.append(
            FullStatusDescriptor(
                key=int.from_bytes(data[pos : pos + 8], "big"),
                all_tg_pt=bool(data[pos + 12] & 0x02),
                holder=bool(data[pos + 12] & 0x01),
                type=data[pos + 13] & 0x0F,
                relative_target_port=int.from_bytes(data[pos + 18 : pos + 20], "big"),
                transport_id=data[pos + 24 : pos + 24 + tid_len].hex(),
            )
        )
        pos += 24 + tid_len
    return out
