"""The scenario file's vocabulary: which commands a step may name, their fields, and how each
value is spelt — the one table both the reader (``fileread``) and the writer (``filewrite``) use.

Command names and field names are sg_persist's long options where it has one (``register-ignore``,
``preempt-abort``, ``param-rk``, ``param-sark``, ``prout-type``, ``param-aptpl``, ``unreg``), so a
step reads like the sg_persist line fence_scsi or mpathpersist would run. Keys are integers
(TOML's ``0x…`` literals), reservation types their SPC abbreviation (``WE-RO``) or number,
outcomes the text the timeline prints (``RESERVATION CONFLICT``, ``UNIT ATTENTION (RESERVATIONS
PREEMPTED)``). docs/scenarios.md documents the schema for people; this module is its source.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from scsi_pr.rig.backends import ACTIONS, Capability
from scsi_pr.rig.scenarios.commands import (
    ANY_KEY,
    Clear,
    Command,
    Preempt,
    RawCdb,
    Read,
    ReadFullStatus,
    ReadKeys,
    ReadReservation,
    Register,
    RegisterAndMove,
    Release,
    Reserve,
    TestUnitReady,
    Write,
    hexkey,
)
from scsi_pr.rig.scenarios.model import ALL_REGISTRANTS, ROLES, Outcome, ScenarioError
from scsi_pr.sim.constants import (
    ADDITIONAL_SENSE_BY_CODE,
    AdditionalSense,
    ReservationType,
    SenseKey,
    Status,
)
from scsi_pr.sim.transportid import TransportId, TransportIdError

#: The file's version: a file saying another one is refused rather than half understood.
FORMAT = 1
MAX_KEY = (1 << 64) - 1
#: The largest LBA READ(16) and WRITE(16) can carry (an 8-byte CDB field): a bigger one is the
#: file's mistake, refused when it is read rather than when the CDB is packed mid-run.
MAX_LBA = (1 << 64) - 1
#: Who else an action or event may be shown beside (its row's initiator column): the LU, or
#: the PR helper process a fault hits.
ACTION_LANES = ("LUN", "helper")
#: Names an actor may not take: they mean something else where actors are named.
RESERVED_ACTOR_NAMES = frozenset({*ROLES, *ACTION_LANES, "observer", "none", ALL_REGISTRANTS})
NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
ACTOR = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


class ValueProblem(ScenarioError):
    """A value does not say what its field needs (the reader adds the file, line and field)."""


# -- values ---------------------------------------------------------------------------------
def _key(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_KEY:
        raise ValueProblem(f"a reservation key is an integer 0..0x{MAX_KEY:x}, not {value!r}")
    return value


def _keys(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise ValueProblem(f"a list of keys is needed, not {value!r}")
    return tuple(_key(v) for v in value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueProblem(f"true or false is needed, not {value!r}")
    return value


def _lba(value: Any) -> int:
    """A logical block address that fits the 16-byte CDBs' 64-bit LBA field."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_LBA:
        raise ValueProblem(f"an LBA is an integer 0..0x{MAX_LBA:x}, not {value!r}")
    return value


_TYPES = {t.abbreviation: t for t in ReservationType}


def _type(value: Any) -> ReservationType:
    if isinstance(value, str) and value.upper() in _TYPES:
        return _TYPES[value.upper()]
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return ReservationType(value)
        except ValueError:
            pass
    raise ValueProblem(
        f"a reservation type is one of {', '.join(_TYPES)} (or its number), not {value!r}"
    )


def _holder_key(value: Any) -> int | None:
    if value == "none":
        return None
    if value == "any":
        return ANY_KEY
    if isinstance(value, str):
        raise ValueProblem(f'holder-key is a key, "none" or "any", not {value!r}')
    return _key(value)


def _write_holder_key(value: int | None) -> str:
    return '"none"' if value is None else '"any"' if value == ANY_KEY else hexkey(value)


def _hex(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ValueProblem(f"hex bytes are a string, not {value!r}")
    try:
        return bytes.fromhex(value.replace(":", " "))
    except ValueError:
        raise ValueProblem(f"not hex bytes: {value!r}") from None


def read_initiator(value: Any) -> str:
    """An initiator's name as a TransportID text form (``naa.…``, ``iqn.…,i,0x<ISID>``)."""
    if not isinstance(value, str):
        raise ValueProblem(f"an initiator name is a string, not {value!r}")
    try:
        TransportId.from_name(value)
    except TransportIdError as e:
        raise ValueProblem(str(e)) from None
    return value


def _actor(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueProblem(f"an actor name is needed, not {value!r}")
    return value


@dataclass(frozen=True)
class Kind:
    """How one kind of value is read from TOML and written back as TOML text."""

    read: Callable[[Any], Any]
    write: Callable[[Any], str]


def toml_string(text: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, but TOML wants DEL escaped as well."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


KEY = Kind(_key, hexkey)
KEYS = Kind(_keys, lambda v: "[" + ", ".join(hexkey(k) for k in v) + "]")
BOOL = Kind(_bool, lambda v: "true" if v else "false")
LBA_VALUE = Kind(_lba, str)
TYPE = Kind(_type, lambda v: toml_string(v.abbreviation))
HOLDER_KEY = Kind(_holder_key, _write_holder_key)
HEX = Kind(_hex, lambda v: toml_string(v.hex(" ")))
ACTOR_NAME = Kind(_actor, toml_string)


# -- commands -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Field:
    """``name`` in the file is the command's attribute ``attr``."""

    name: str
    attr: str
    kind: Kind


@dataclass(frozen=True)
class CommandSpec:
    """A command a step may name: its class, its fields, and attributes the name fixes."""

    name: str
    cls: type[Command]
    fields: tuple[Field, ...] = ()
    fixed: tuple[tuple[str, Any], ...] = ()
    help: str = ""

    def required(self) -> list[Field]:
        """Fields whose attribute has no default in the command class."""
        missing = dataclasses.MISSING
        no_default = {
            f.name
            for f in dataclasses.fields(self.cls)  # type: ignore[arg-type]
            if f.default is missing and f.default_factory is missing
        }
        return [f for f in self.fields if f.attr in no_default]

    def default(self, field: Field) -> Any:
        for f in dataclasses.fields(self.cls):  # type: ignore[arg-type]
            if f.name == field.attr:
                return f.default
        raise KeyError(field.attr)

    def matches(self, command: Command) -> bool:
        return type(command) is self.cls and all(getattr(command, a) == v for a, v in self.fixed)


RK = Field("param-rk", "key", KEY)
SARK = Field("param-sark", "sa_key", KEY)
PROUT_TYPE = Field("prout-type", "type_", TYPE)
APTPL = Field("param-aptpl", "aptpl", BOOL)
LBA = Field("lba", "lba", LBA_VALUE)

#: Every command a step may send, by its name in the file.
COMMANDS: dict[str, CommandSpec] = {
    s.name: s
    for s in (
        CommandSpec(
            "read-keys",
            ReadKeys,
            (Field("keys-present", "present", KEYS), Field("keys-absent", "absent", KEYS)),
            help="PR IN READ KEYS; the keys listed must be (or not be) registered",
        ),
        CommandSpec(
            "read-reservation",
            ReadReservation,
            (Field("holder-key", "holder_key", HOLDER_KEY),),
            help='PR IN READ RESERVATION; holder-key: the holder\'s key, "none" or "any"',
        ),
        CommandSpec("read-full-status", ReadFullStatus, help="PR IN READ FULL STATUS"),
        CommandSpec(
            "register", Register, (RK, SARK, APTPL), (("ignore", False),), "PR OUT REGISTER"
        ),
        CommandSpec(
            "register-ignore",
            Register,
            (RK, SARK, APTPL),
            (("ignore", True),),
            "PR OUT REGISTER AND IGNORE EXISTING KEY (sg_persist -I, fence_scsi's register)",
        ),
        CommandSpec("reserve", Reserve, (RK, PROUT_TYPE), help="PR OUT RESERVE"),
        CommandSpec("release", Release, (RK, PROUT_TYPE), help="PR OUT RELEASE"),
        CommandSpec("clear", Clear, (RK,), help="PR OUT CLEAR"),
        CommandSpec(
            "preempt", Preempt, (RK, SARK, PROUT_TYPE), (("abort", False),), "PR OUT PREEMPT"
        ),
        CommandSpec(
            "preempt-abort",
            Preempt,
            (RK, SARK, PROUT_TYPE),
            (("abort", True),),
            "PR OUT PREEMPT AND ABORT",
        ),
        CommandSpec(
            "register-move",
            RegisterAndMove,
            (
                RK,
                SARK,
                PROUT_TYPE,
                Field("dest", "destination", ACTOR_NAME),
                Field("unreg", "unreg", BOOL),
            ),
            help="PR OUT REGISTER AND MOVE to actor dest's I_T nexus",
        ),
        CommandSpec("tur", TestUnitReady, help="TEST UNIT READY"),
        CommandSpec("write", Write, (LBA,), help="WRITE(16) of one block naming its writer"),
        CommandSpec("read", Read, (LBA,), help="READ(16); must return the last write's block"),
        CommandSpec(
            "raw",
            RawCdb,
            (Field("cdb", "cdb", HEX), Field("data-out", "data", HEX)),
            help="any CDB as hex bytes, with its data-out",
        ),
    )
}


def spec_of(command: Command) -> CommandSpec:
    for spec in COMMANDS.values():
        if spec.matches(command):
            return spec
    raise ValueProblem(f"no scenario-file command writes {command!r}")


# -- outcomes and unit attentions -----------------------------------------------------------
def _spelt(text: str) -> str:
    """How names compare: case, ``_`` for space and repeated spaces do not matter (SPC's own
    names mix them: "I_T NEXUS LOSS OCCURRED")."""
    return " ".join(text.upper().replace("_", " ").split())


_STATUSES = {_spelt(s.name): s for s in Status}
_SENSE_KEYS = {_spelt(k.name): k for k in SenseKey}
_CODES = {_spelt(c.name): c for c in ADDITIONAL_SENSE_BY_CODE.values()}
_SENSE = re.compile(r"(?P<key>[A-Z ]+?) \((?P<detail>.*)\)")
_ASC = re.compile(r"ASC ([0-9A-F]{2})H(?: ASCQ ([0-9A-F]{2})H)?")
OUTCOME_FORMS = (
    "a status (GOOD, RESERVATION CONFLICT, TASK ABORTED, BUSY, CHECK CONDITION), or "
    'CHECK CONDITION\'s sense as "SENSE KEY (ADDITIONAL SENSE NAME)", "SENSE KEY (ASC xxh)", '
    '"SENSE KEY (ASC xxh ASCQ yyh)" or "SENSE KEY (any)"'
)


def read_outcome(text: Any) -> Outcome:
    """The outcome ``text`` names, in the form ``str(Outcome)`` prints (case-insensitive)."""
    if not isinstance(text, str):
        raise ValueProblem(f"an outcome is a string, not {text!r}")
    spelt = _spelt(text)
    if spelt in _STATUSES:
        return Outcome(_STATUSES[spelt])
    m = _SENSE.fullmatch(spelt)
    key = _SENSE_KEYS.get(m.group("key")) if m else None
    if m is None or key is None:
        raise ValueProblem(f"unknown outcome {text!r}: write {OUTCOME_FORMS}")
    detail = m.group("detail")
    if detail == "ANY":
        return Outcome.sense(key)
    code = _CODES.get(detail)
    if code is not None:
        return Outcome.sense(key, code.asc, code.ascq)
    asc = _ASC.fullmatch(detail)
    if asc is None:
        raise ValueProblem(f"unknown additional sense {m.group('detail')!r} in {text!r}")
    return Outcome.sense(
        key, int(asc.group(1), 16), None if asc.group(2) is None else int(asc.group(2), 16)
    )


def write_outcome(outcome: Outcome) -> str:
    """``outcome`` as the file spells it; refuses one whose text would not read back equal."""
    text = str(outcome)
    if read_outcome(text) != outcome:
        raise ValueProblem(f"outcome {outcome!r} has no file form")
    return text


def read_unit_attention(text: Any) -> AdditionalSense | int:
    """An expected unit attention: an additional sense name, or ``ASC xxh`` for any ASCQ."""
    if not isinstance(text, str):
        raise ValueProblem(f"a unit attention is a string, not {text!r}")
    spelt = _spelt(text)
    if spelt in _CODES:
        return _CODES[spelt]
    asc = _ASC.fullmatch(spelt)
    if asc is None or asc.group(2) is not None:
        raise ValueProblem(
            f"unknown unit attention {text!r}: an additional sense name (e.g. RESERVATIONS "
            'PREEMPTED) or "ASC xxh" for any ASCQ of that ASC'
        )
    return int(asc.group(1), 16)


def write_unit_attention(ua: AdditionalSense | int) -> str:
    return ua.name if isinstance(ua, AdditionalSense) else f"ASC {ua:02X}h"


# -- state checks and actions ---------------------------------------------------------------
def read_holder(value: Any) -> str | None:
    if value == "none":
        return None
    if not isinstance(value, str) or not value:
        raise ValueProblem(f'holder is an actor, "{ALL_REGISTRANTS}" or "none", not {value!r}')
    return value


def write_holder(value: str | None) -> str:
    return toml_string("none" if value is None else value)


#: Backend actions a step may perform, by their name in the file (``power-cycle``, ...).
ACTION_NAMES: dict[str, Capability] = {c.value.replace("_", "-"): c for c in ACTIONS}


def read_action(value: Any) -> Capability:
    """The capability an action's name asks for; TOML may give any value (a list, a table),
    so one that is not a string is refused before it is looked up (it may not be hashable)."""
    if not isinstance(value, str):
        raise ValueProblem(
            f"an action is a name, not {value!r}; choose from {', '.join(ACTION_NAMES)}"
        )
    name = value.replace("_", "-")
    if name not in ACTION_NAMES:
        raise ValueProblem(f"unknown action {value!r}; choose from {', '.join(ACTION_NAMES)}")
    return ACTION_NAMES[name]


def write_action(capability: Capability) -> str:
    return toml_string(capability.value.replace("_", "-"))
