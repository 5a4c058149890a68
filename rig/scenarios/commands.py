"""The commands scenario steps send, built from ``scsi_pr.sim.cdb`` and checked on their answer.

Each command knows its bytes (``build``), a short label in sg_persist's vocabulary for the
timeline, and what its data-in must show when it succeeds (``check``): READ KEYS may require
keys present or absent, READ RESERVATION a holder key, READ the data last written. Payload
checks are what turn "the command returned GOOD" into "the cluster saw what it relies on".
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import EllipsisType
from typing import ClassVar, Protocol

from scsi_pr.rig.scenarios.observe import parse_read_keys, parse_read_reservation
from scsi_pr.sim import cdb as cdbs
from scsi_pr.sim.constants import PersistentReserveInAction as In
from scsi_pr.sim.constants import PersistentReserveOutAction as Out
from scsi_pr.sim.constants import ReservationType
from scsi_pr.sim.result import CommandResult
from scsi_pr.sim.transportid import TransportId

BLOCK_SIZE = 512
#: ``ReadReservation(holder_key=ANY_KEY)``: some reservation must exist (fence_scsi's check).
ANY_KEY = -1


def hexkey(key: int) -> str:
    """Keys as sg_persist prints them (and fence_scsi compares them): 0x + lowercase hex."""
    return f"0x{key:x}"


class Target(Protocol):
    """What a command needs from an initiator to address it in a parameter list."""

    transport_id: TransportId
    relative_target_port: int


class Context(Protocol):
    """The engine's view that commands may read: actors' initiators and the medium so far."""

    medium: dict[int, bytes]

    def target(self, actor: str) -> Target: ...


class Command(ABC):
    @abstractmethod
    def build(self, ctx: Context, actor: str) -> tuple[bytes, bytes]:
        """(CDB, data-out) this command sends from ``actor``."""

    @abstractmethod
    def label(self) -> str: ...

    def check(self, result: CommandResult, ctx: Context, data_out: bytes) -> list[str]:
        """Failures in the data-in of a GOOD answer (none by default)."""
        return []

    def __str__(self) -> str:
        return self.label()


# -- PR IN ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReadKeys(Command):
    present: tuple[int, ...] = ()
    absent: tuple[int, ...] = ()

    def build(self, ctx: Context, actor: str) -> tuple[bytes, bytes]:
        return cdbs.persistent_reserve_in(In.READ_KEYS), b""

    def label(self) -> str:
        return "PR IN READ KEYS"

    def check(self, result: CommandResult, ctx: Context, data_out: bytes) -> list[str]:
        try:
            _, keys = parse_read_keys(result.data)
        except ValueError as e:
            return [str(e)]
        shown = ", ".join(hexkey(k) for k in keys) or "none"
        missing = [
            f"key {hexkey(k)} missing (keys: {shown})" for k in self.present if k not in keys
        ]
        return missing + [
            f"key {hexkey(k)} still registered (keys: {shown})" for k in self.absent if k in keys
        ]


@dataclass(frozen=True)
class ReadReservation(Command):
    """``holder_key``: the key READ RESERVATION must show, ``None`` = no reservation,
    ``ANY_KEY`` = some reservation, omitted = not checked."""

    holder_key: int | EllipsisType | None = ...

    def build(self, ctx: Context, actor: str) -> tuple[bytes, bytes]:
        return cdbs.persistent_reserve_in(In.READ_RESERVATION), b""

    def label(self) -> str:
        return "PR IN READ RESERVATION"

    def check(self, result: CommandResult, ctx: Context, data_out: bytes) -> list[str]:
        if self.holder_key is ...:
            return []
        try:
            _, reservation = parse_read_reservation(result.data)
        except ValueError as e:
            return [str(e)]
        shown = (
            "no reservation"
            if reservation is None
            else (f"key {hexkey(reservation[0])} {reservation[1].abbreviation}")
        )
        if self.holder_key is None:
            return [] if reservation is None else [f"expected no reservation, got {shown}"]
        if reservation is None:
            return ["expected a reservation, got none"]
        if self.holder_key != ANY_KEY and reservation[0] != self.holder_key:
            return [f"expected reservation key {hexkey(self.holder_key)}, got {shown}"]
        return []


@dataclass(frozen=True)
class ReadFullStatus(Command):
    """READ FULL STATUS; its answer is not checked here (the observer reads the same data after
    every step, and a step's ``state`` expectation checks it)."""

    def build(self, ctx: Context, actor: str) -> tuple[bytes, bytes]:
        return cdbs.persistent_reserve_in(In.READ_FULL_STATUS), b""

    def label(self) -> str:
        return "PR IN READ FULL STATUS"


# -- PR OUT ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Register(Command):
    """REGISTER (``ignore=False``) or REGISTER AND IGNORE EXISTING KEY (``ignore=True``,
    what ``sg_persist -I`` and therefore fence_scsi send)."""

    key: int = 0
    sa_key: int = 0
    ignore: bool = False
    aptpl: bool = False

    def build(self, ctx: Context, actor: str) -> tuple[bytes, bytes]:
        action = Out.REGISTER_AND_IGNORE_EXISTING_KEY if self.ignore else Out.REGISTER
        return cdbs.prout(action, self.key, self.sa_key, aptpl=self.aptpl)

    def label(self) -> str:
        aptpl = " APTPL" if self.aptpl else ""
        if self.ignore:
            return f"PR OUT REGISTER AND IGNORE sark={hexkey(self.sa_key)}{aptpl}"
        if self.sa_key == 0:
            return f"PR OUT REGISTER key={hexkey(self.key)} sark=0 (unregister){aptpl}"
        return f"PR OUT REGISTER key={hexkey(self.key)} sark={hexkey(self.sa_key)}{aptpl}"


@dataclass(frozen=True)
class _KeyAndType(Command):
    """A PR OUT service action whose only parameters are the RESERVATION KEY and a TYPE."""

    action: ClassVar[Out]
    key: int
    type_: ReservationType

    def build(self, ctx: Context, actor: str) -> tuple[bytes, bytes]:
        return cdbs.prout(self.action, self.key, 0, self.type_)

    def label(self) -> str:
        return f"PR OUT {self.action.name} {self.type_.abbreviation} key={hexkey(self.key)}"


@dataclass(frozen=True)
class Reserve(_KeyAndType):
    action = Out.RESERVE


@dataclass(frozen=True)
class Release(_KeyAndType):
    action = Out.RELEASE


@dataclass(frozen=True)
class Clear(Command):
    key: int

    def build(self, ctx: Context, actor: str) -> tuple[bytes, bytes]:
        return cdbs.prout(Out.CLEAR, self.key)

    def label(self) -> str:
        return f"PR OUT CLEAR key={hexkey(self.key)}"


@dataclass(frozen=True)
class Preempt(Command):
    key: int
    sa_key: int
    type_: ReservationType
    abort: bool = False

    @property
    def action(self) -> Out:
        return Out.PREEMPT_AND_ABORT if self.abort else Out.PREEMPT

    def build(self, ctx: Context, actor: str) -> tuple[bytes, bytes]:
        return cdbs.prout(self.action, self.key, self.sa_key, self.type_)

    def label(self) -> str:
        name = self.action.name.replace("_", " ")
        return (
            f"PR OUT {name} {self.type_.abbreviation} key={hexkey(self.key)} "
            f"sark={hexkey(self.sa_key)}"
        )


@dataclass(frozen=True)
class RegisterAndMove(Command):
    """Move the reservation to ``destination``'s I_T nexus (its TransportID and target port),
    registering it with ``sa_key``; ``unreg`` drops the sender's own registration."""

    key: int
    sa_key: int
    destination: str
    type_: ReservationType
    unreg: bool = False

    def build(self, ctx: Context, actor: str) -> tuple[bytes, bytes]:
        dest = ctx.target(self.destination)
        return cdbs.register_and_move(
            self.key,
            self.sa_key,
            dest.relative_target_port,
            dest.transport_id,
            self.type_,
            unreg=self.unreg,
        )

    def label(self) -> str:
        unreg = " UNREG" if self.unreg else ""
        return (
            f"PR OUT REGISTER AND MOVE key={hexkey(self.key)} sark={hexkey(self.sa_key)} "
            f"-> {self.destination}{unreg}"
        )


# -- media and housekeeping -----------------------------------------------------------------
@dataclass(frozen=True)
class TestUnitReady(Command):
    __test__ = False  # not a pytest class

    def build(self, ctx: Context, actor: str) -> tuple[bytes, bytes]:
        return cdbs.test_unit_ready(), b""

    def label(self) -> str:
        return "TEST UNIT READY"


@dataclass(frozen=True)
class Write(Command):
    """WRITE(16) of one block whose content names the writer, so a later READ can tell whose
    data reached the medium."""

    lba: int = 0

    def build(self, ctx: Context, actor: str) -> tuple[bytes, bytes]:
        text = f"scsi-pr scenario: block {self.lba} written by {actor}\n".encode()
        return cdbs.write_16(self.lba, 1), text.ljust(BLOCK_SIZE, b"\0")

    def label(self) -> str:
        return f"WRITE(16) lba={self.lba}"

    def check(self, result: CommandResult, ctx: Context, data_out: bytes) -> list[str]:
        ctx.medium[self.lba] = data_out
        return []


@dataclass(frozen=True)
class Read(Command):
    """READ(16) of one block; it must return what the last successful WRITE put there."""

    lba: int = 0

    def build(self, ctx: Context, actor: str) -> tuple[bytes, bytes]:
        return cdbs.read_16(self.lba, 1), b""

    def label(self) -> str:
        return f"READ(16) lba={self.lba}"

    def check(self, result: CommandResult, ctx: Context, data_out: bytes) -> list[str]:
        want = ctx.medium.get(self.lba)
        if want is None or result.data == want:
            return []
        return [f"READ returned {_block_text(result.data)}, not {_block_text(want)}"]


def _block_text(data: bytes) -> str:
    """A block as a reader wants to see it: the writer's text, or what else it holds."""
    if not data:
        return "no data"
    if not any(data):
        return f"{len(data)} zero bytes"
    text = data.split(b"\n", 1)[0].rstrip(b"\0")
    if text.isascii() and text.decode("ascii").isprintable():
        return repr(text.decode("ascii"))
    return f"bytes {data[:16].hex()}…"


@dataclass(frozen=True)
class RawCdb(Command):
    """Any CDB, as bytes, with its data-out: what a scenario file's ``raw`` command sends when
    no named command says it (a reserved field set, a vendor command, an sg_persist -vv trace
    replayed). Only its status and sense are checked."""

    cdb: bytes
    data: bytes = b""

    def build(self, ctx: Context, actor: str) -> tuple[bytes, bytes]:
        return self.cdb, self.data

    def label(self) -> str:
        data = f" +{len(self.data)} bytes" if self.data else ""
        return f"CDB {self.cdb.hex(' ')}{data}"
