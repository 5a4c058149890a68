"""I_T nexus: the pair (initiator port, target port) PR state is kept per (SAM-5 4.7)."""

from __future__ import annotations

from dataclasses import dataclass

from scsi_pr.sim.transportid import TransportId


@dataclass(frozen=True, order=True)
class ITNexus:
    """An initiator port talking to one target port, named by its RELATIVE TARGET PORT
    IDENTIFIER (SPC-5 Device Identification VPD page)."""

    initiator: TransportId
    target_port: int = 1

    def __post_init__(self) -> None:
        # Nexuses key every PR table; hashing the nested dataclasses each time is the model's
        # hottest path, so the hash is computed once.
        object.__setattr__(self, "_hash", hash((self.initiator, self.target_port)))

    def __hash__(self) -> int:
        return self._hash  # type: ignore[attr-defined]

    @classmethod
    def named(cls, initiator: str, target_port: int = 1) -> ITNexus:
        """``ITNexus.named("naa.5001405000000001")`` or ``"iqn.x,i,0x23d000000001"``."""
        return cls(TransportId.from_name(initiator), target_port)

    def __str__(self) -> str:
        return f"{self.initiator}@{self.target_port}"
