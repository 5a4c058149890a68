"""The target's sessions: TSIHs, the I_T nexus each session is, and session reinstatement.

A normal iSCSI session is one I_T nexus (SAM-5 4.7; RFC 7143 4.4.3): its initiator port is
named by the iSCSI TransportID format 01h, ``<initiator name>,i,0x<ISID>`` (SPC-5 7.6.4), its
target port by a RELATIVE TARGET PORT IDENTIFIER of the LUs. A new login with the initiator
name and ISID of a live session reinstates that session (RFC 7143 6.3.5): the old one ends
first, as an I_T nexus loss. Discovery sessions are no nexus.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from scsi_pr.sim.nexus import ITNexus
from scsi_pr.sim.transportid import TransportId
from scsi_pr.target.errors import TargetError
from scsi_pr.target.proto import SessionParameters

MAX_TSIH = 0xFFFF


class NoTsihLeft(TargetError):
    """Every TSIH is in use (65535 connections): the new connection cannot log in."""


class SessionOwner(Protocol):
    """What ends a session from outside: its connection's handler."""

    def end(self, reason: str, *, loss: bool = True) -> None: ...


@dataclass
class Session:
    """One logged-in session on one connection (MaxConnections=1)."""

    params: SessionParameters
    nexus: ITNexus | None  # None: a discovery session
    owner: SessionOwner
    peer: str
    ended: bool = field(default=False)

    @property
    def key(self) -> tuple[str, int]:
        """What identifies the session for reinstatement: initiator name and ISID."""
        return (self.params.initiator_name.lower(), self.params.isid)

    def __str__(self) -> str:
        kind = "discovery" if self.nexus is None else str(self.nexus.initiator)
        return f"{kind} TSIH {self.params.tsih} from {self.peer}"


def nexus_of(params: SessionParameters, target_port: int) -> ITNexus | None:
    """The I_T nexus of a session (None for discovery); TransportIdError for a name the
    TransportID cannot carry (the login refuses those: ``proto.login``)."""
    if params.discovery:
        return None
    return ITNexus(TransportId.iscsi(params.initiator_name, params.isid), target_port)


class SessionTable:
    """TSIHs of connections (reserved at accept) and the logged-in sessions by TSIH."""

    def __init__(self) -> None:
        self.live: dict[int, Session] = {}  # the codec's ``existing_sessions`` (by TSIH)
        self._reserved: set[int] = set()
        self._next = 1

    def reserve_tsih(self) -> int:
        """A TSIH no connection holds (RFC 7143 11.12.6: unique among live sessions)."""
        if len(self._reserved) >= MAX_TSIH:
            raise NoTsihLeft("every TSIH is in use")
        while self._next in self._reserved:
            self._next = self._next % MAX_TSIH + 1
        tsih, self._next = self._next, self._next % MAX_TSIH + 1
        self._reserved.add(tsih)
        return tsih

    def release_tsih(self, tsih: int) -> None:
        self._reserved.discard(tsih)
        self.live.pop(tsih, None)

    def add(self, session: Session) -> Session | None:
        """Register ``session``; returns the live session it reinstates, if any."""
        old = next((s for s in self.live.values() if s.key == session.key and s.nexus), None)
        self.live[session.params.tsih] = session
        return old if session.nexus is not None else None

    def remove(self, session: Session) -> None:
        if self.live.get(session.params.tsih) is session:
            del self.live[session.params.tsih]

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self.live.values()))

    def __len__(self) -> int:
        return len(self.live)
