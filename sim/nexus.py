"""I_T nexus: the pair (initiator port, target port) PR state is kept per (SAM-5 4.7)."""

from __future__ import annotations

from typing import NamedTuple

from scsi_pr.sim.transportid import TransportId


class ITNexus(NamedTuple):
    """An initiator port talking to one target port, named by its RELATIVE TARGET PORT
    IDENTIFIER (SPC-5 Device Identification VPD page).

    A NamedTuple of a ``TransportId`` (itself one) and an int: nexuses key every PR table, and
    a tuple's hash and equality run in C (a frozen dataclass's hash was a Python call five
    times a command, and its equality compared the TransportIds field by field in Python)."""

    initiator: TransportId
    target_port: int = 1

    @classmethod
    def named(cls, initiator: str, target_port: int = 1) -> ITNexus:
        """``ITNexus.named("naa.5001405000000001")`` or ``"iqn.x,i,0x23d000000001"``."""
        return cls(TransportId.from_name(initiator), target_port)

    def __str__(self) -> str:
        return f"{self.initiator}@{self.target_port}"
