"""Persistent-reservation state of one logical unit (SPC-5 5.14), as plain data.

Only data and the questions SPC asks of it ("is this I_T nexus a reservation holder?") live
here; the rules that change it are in ``scsi_pr.sim.pr_out``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, NoReturn, TypeVar

from scsi_pr.sim.constants import LU_SCOPE, ProtocolIdentifier, ReservationType
from scsi_pr.sim.errors import SimError
from scsi_pr.sim.nexus import ITNexus
from scsi_pr.sim.transportid import TransportId


class StateFormatError(SimError, ValueError):
    """A snapshot or saved APTPL state that ``to_dict`` did not write (a field missing or of the
    wrong kind); the message names what was being read.

    ``field`` is the path of the offending value inside what was read (``registrations[0].key``)
    when a field check found it, so a caller or test can tell which value without parsing the
    message; None for a structural fault (a list where an object belongs). ``what`` is the
    part of the state being read, set once by the innermost ``reading_state``."""

    def __init__(self, message: str, field: str | None = None, what: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.what = what


@contextmanager
def reading_state(what: str) -> Iterator[None]:
    """Turn the KeyError/TypeError/ValueError of reading a malformed dict into one typed error,
    so a caller restoring a snapshot or an APTPL state has one exception to handle. A field
    check's error gets ``what`` here (the innermost reader knows best what it was reading)."""
    try:
        yield
    except StateFormatError as e:
        if e.what is not None:
            raise
        raise StateFormatError(f"malformed {what}: {e}", e.field, what) from e
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise StateFormatError(f"malformed {what}: {e!r}", what=what) from e


# -- field checks ---------------------------------------------------------------------------
# The state files are JSON that a person may edit, and ``json`` reads Infinity and NaN as
# floats, 1e3 as a float and true as a bool: ``int()`` would overflow, round or accept them,
# and a number where a name belongs would only fail much later (formatting the I_T nexus).
# Every value is checked here for its kind and range as it is restored, one function per kind.

#: the ranges SPC-5 gives the fields: an 8-byte RESERVATION KEY, a 4-byte PRGENERATION, the
#: 4-bit SCOPE and TYPE (LIO files a TYPE as a registration's scope), a 2-byte RELATIVE TARGET
#: PORT IDENTIFIER (0 is reserved; ``LogicalUnit`` refuses it too)
KEY_RANGE = range(1 << 64)
GENERATION_RANGE = range(1 << 32)
SCOPE_RANGE = range(0x10)
TARGET_PORT_RANGE = range(1, 1 << 16)

_MISSING: Any = object()
E = TypeVar("E", bound=IntEnum)


def field_path(where: str, name: str) -> str:
    """``where.name``, or ``name`` at the top of what is read."""
    return f"{where}.{name}" if where else name


def field_value(d: object, name: str, default: Any = _MISSING, *, where: str = "") -> Any:
    """``d[name]`` unchecked (``default`` if absent and one is given): the one place a missing
    field or a non-object becomes an error naming it, for the typed readers below. ``where``:
    the path of ``d`` in what is read (keyword-only, empty at its top: no reader passes an
    argument whose every value names the same place)."""
    if not isinstance(d, dict):
        raise StateFormatError(f"{where or 'the state'}: {d!r} is not an object", where or None)
    if name in d:
        return d[name]
    if default is _MISSING:
        raise StateFormatError(f"{field_path(where, name)}: missing", field_path(where, name))
    return default


def checked_int(value: object, field: str, valid: range) -> int:
    """``value`` if it is an int (not a bool, not a float) in ``valid``; else the error naming
    ``field``."""
    if type(value) is not int or value not in valid:
        bounds = f"{valid.start}..{valid.stop - 1}"
        raise StateFormatError(f"{field}: {value!r} is not an integer in {bounds}", field)
    return value


def int_field(
    d: object, name: str, valid: range, default: int | None = None, *, where: str = ""
) -> int:
    """The int ``d[name]`` in ``valid`` (``default`` if absent and one is given)."""
    value = field_value(d, name, _MISSING if default is None else default, where=where)
    return checked_int(value, field_path(where, name), valid)


def enum_field(d: object, name: str, kind: type[E], *, where: str = "") -> E:
    """The member of ``kind`` whose value the int ``d[name]`` is."""
    value = field_value(d, name, where=where)
    if type(value) is int and value in kind._value2member_map_:
        return kind(value)
    field = field_path(where, name)
    raise StateFormatError(f"{field}: {value!r} is not a {kind.__name__} value", field)


def bool_field(d: object, name: str, default: bool, *, where: str = "") -> bool:
    """The bool ``d[name]`` (``bool()`` would take any number or string as true)."""
    value = field_value(d, name, default, where=where)
    if type(value) is not bool:
        field = field_path(where, name)
        raise StateFormatError(f"{field}: {value!r} is not true or false", field)
    return value


def str_field(d: object, name: str, default: Any = _MISSING, *, where: str = "") -> str:
    """The string ``d[name]`` (``default`` if absent and one is given)."""
    value = field_value(d, name, default, where=where)
    if not isinstance(value, str):
        _not_a_string(value, field_path(where, name))
    return value


def optional_str_field(d: object, name: str, *, where: str = "") -> str | None:
    """The string ``d[name]``, or None where it is null or absent."""
    value = field_value(d, name, None, where=where)
    if value is not None and not isinstance(value, str):
        _not_a_string(value, field_path(where, name))
    return value


def _not_a_string(value: object, field: str) -> NoReturn:
    raise StateFormatError(f"{field}: {value!r} is not a string", field)


@dataclass(slots=True)
class Registration:
    """One registered I_T nexus and its reservation key (SPC-5 5.14.1, 5.14.7)."""

    nexus: ITNexus
    key: int
    all_tg_pt: bool = False
    #: the scope LIO files on the registration itself (its ``pr_res_scope``): LU_SCOPE, except
    #: after this I_T nexus issued a REGISTER AND MOVE under an LIO profile, which files the
    #: reservation's TYPE there (``deviations.MOVE_FILES_TYPE_AS_SCOPE``); never reported
    lio_scope: int = LU_SCOPE
    #: registration order (``Registrations`` assigns it): READ KEYS and READ FULL STATUS
    #: report in this order, second registrations of an I_T nexus among the others
    seq: int = field(default=0, compare=False)


class Registrations(dict[ITNexus, Registration]):
    """The registrations, by I_T nexus, in registration order.

    A dict of each registered I_T nexus's registration, plus LIO's second registrations of an
    I_T nexus (``seconds``): LIO files one per TransportID of a SPEC_I_PT list without checking
    the list against itself or the issuer (``deviations.SPEC_I_PT_REGISTERS_TWICE``). Only a
    LIO profile makes them. Every rule that looks up "the" registration of an I_T nexus finds
    the first, as LIO's lookup does; removing it makes the next one the first. The dict itself
    stays a plain dict for lookups (``get``, ``in``: the model's hot path); only changes go
    through the methods here, which keep the dict in registration order.
    """

    __slots__ = ("_next_seq", "seconds")

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[Registration] = []
        self._next_seq = 0

    def add(self, reg: Registration) -> None:
        """Register ``reg`` after every registration there is (a second one of its I_T nexus
        when that nexus is registered already)."""
        reg.seq, self._next_seq = self._next_seq, self._next_seq + 1
        if reg.nexus in self:
            self.seconds.append(reg)
        else:
            dict.__setitem__(self, reg.nexus, reg)

    def __setitem__(self, nexus: ITNexus, reg: Registration) -> None:
        """A new I_T nexus's registration goes last; a registered one's keeps its place."""
        old = self.get(nexus)
        if old is None:
            self.add(reg)
        else:
            reg.seq = old.seq
            dict.__setitem__(self, nexus, reg)

    def __delitem__(self, nexus: ITNexus) -> None:
        """Remove the first registration of ``nexus``; its next one (if any) takes its place."""
        dict.__delitem__(self, nexus)
        if not self.seconds:  # the usual case: nothing to promote
            return
        promoted = next((r for r in self.seconds if r.nexus == nexus), None)
        if promoted is not None:
            self.seconds = [r for r in self.seconds if r is not promoted]
            ordered = sorted([*self.values(), promoted], key=_by_seq)
            dict.clear(self)
            dict.update(self, ((r.nexus, r) for r in ordered))

    def remove(self, reg: Registration) -> None:
        """Remove this one registration (a first or a second one)."""
        if self.get(reg.nexus) is reg:
            del self[reg.nexus]
        else:
            self.seconds = [r for r in self.seconds if r is not reg]

    def clear(self) -> None:
        dict.clear(self)
        self.seconds = []

    def entries(self) -> list[Registration]:
        """Every registration, second ones included, in registration order."""
        if not self.seconds:
            return list(self.values())
        return sorted([*self.values(), *self.seconds], key=_by_seq)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Registrations):
            return self.entries() == other.entries()
        return NotImplemented  # a plain dict then compares as dicts do

    __hash__ = None  # type: ignore[assignment]  # mutable, as a dict

    def __reduce__(self) -> tuple[Any, ...]:
        """Copies and pickles are rebuilt in registration order (a dict subclass's default
        would re-add the dict's items after restoring ``seconds``, out of order)."""
        return (_rebuilt, (self.entries(),))

    @property
    def count(self) -> int:
        """How many registrations the LU holds (each second one counts)."""
        return len(self) + len(self.seconds)


def _by_seq(reg: Registration) -> int:
    return reg.seq


def _rebuilt(entries: list[Registration]) -> Registrations:
    regs = Registrations()
    for reg in entries:
        regs.add(reg)
    return regs


@dataclass(slots=True)
class Reservation:
    """The persistent reservation. ``holder`` is None for all-registrants types, where every
    registered I_T nexus is a holder (SPC-5 5.14.10); the LIO profiles keep the registrant LIO
    files as "the" holder there (``deviations.AR_PREEMPT_TAKES_OVER``)."""

    holder: ITNexus | None
    type: ReservationType
    scope: int = LU_SCOPE


@dataclass
class PersistentReservations:
    generation: int = 0
    #: insertion order = registration order, which READ KEYS and READ FULL STATUS report
    registrations: Registrations = field(default_factory=Registrations)
    reservation: Reservation | None = None
    #: PTPL_A: the APTPL bit of the last successful register-type command (SPC-5 5.14.5)
    aptpl: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.registrations, Registrations):  # built from a plain dict
            regs = Registrations()
            for reg in self.registrations.values():
                regs.add(reg)
            self.registrations = regs

    def key_of(self, nexus: ITNexus) -> int | None:
        reg = self.registrations.get(nexus)
        return None if reg is None else reg.key

    def is_holder(self, nexus: ITNexus) -> bool:
        """SPC-5 5.14.10: the holder, or any registrant under an all-registrants type."""
        res = self.reservation
        if res is None:
            return False
        if res.type.all_registrants:
            return nexus in self.registrations
        return res.holder == nexus

    def holder_key(self) -> int:
        """RESERVATION KEY reported by READ RESERVATION: zero for all-registrants types."""
        res = self.reservation
        if res is None or res.holder is None or res.type.all_registrants:
            return 0
        return self.registrations[res.holder].key

    def bump_generation(self, by: int) -> None:
        self.generation = (self.generation + by) & 0xFFFFFFFF

    # -- serialisation (APTPL store, shared simulated LUs) --------------------------------
    def to_dict(self) -> dict[str, Any]:
        res = self.reservation
        return {
            "generation": self.generation,
            "aptpl": self.aptpl,
            "registrations": [
                {
                    **nexus_to_dict(r.nexus),
                    "key": r.key,
                    "all_tg_pt": r.all_tg_pt,
                    **({"lio_scope": r.lio_scope} if r.lio_scope != LU_SCOPE else {}),
                }
                for r in self.registrations.entries()
            ],
            "reservation": None
            if res is None
            else {
                "holder": None if res.holder is None else nexus_to_dict(res.holder),
                "type": int(res.type),
                "scope": res.scope,
            },
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PersistentReservations:
        """Inverse of ``to_dict``; StateFormatError for anything it did not write."""
        with reading_state("PR state"):
            regs = Registrations()
            for i, r in enumerate(field_value(d, "registrations", [])):
                where = f"registrations[{i}]"
                regs.add(
                    Registration(
                        nexus_from_dict(r, where),
                        int_field(r, "key", KEY_RANGE, where=where),
                        bool_field(r, "all_tg_pt", False, where=where),
                        int_field(r, "lio_scope", SCOPE_RANGE, LU_SCOPE, where=where),
                    )
                )
            res = field_value(d, "reservation", None)
            reservation = None
            if res is not None:
                holder = field_value(res, "holder", where="reservation")
                reservation = Reservation(
                    None if holder is None else nexus_from_dict(holder, "reservation.holder"),
                    enum_field(res, "type", ReservationType, where="reservation"),
                    int_field(res, "scope", SCOPE_RANGE, where="reservation"),
                )
            return cls(
                int_field(d, "generation", GENERATION_RANGE, 0),
                regs,
                reservation,
                bool_field(d, "aptpl", False),
            )


def nexus_to_dict(nexus: ITNexus) -> dict[str, Any]:
    tid = nexus.initiator
    return {
        "protocol": int(tid.protocol),
        "name": tid.name,
        "isid": tid.isid,
        "target_port": nexus.target_port,
    }


def nexus_from_dict(d: dict[str, Any], where: str = "") -> ITNexus:
    """Inverse of ``nexus_to_dict``; ``where`` is the path of ``d`` in the state that is read,
    so an error names the field (``registrations[0].name``)."""
    with reading_state("I_T nexus"):
        tid = TransportId(
            enum_field(d, "protocol", ProtocolIdentifier, where=where),
            str_field(d, "name", where=where),
            optional_str_field(d, "isid", where=where),
        )
        return ITNexus(tid, int_field(d, "target_port", TARGET_PORT_RANGE, where=where))
