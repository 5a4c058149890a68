"""Read a scenario file (TOML) into a ``Scenario``, or say exactly where and why it is wrong.

TOML because the standard library reads it (``tomllib``), it takes comments, and its ``0x``
integers let keys look as sg_persist prints them. ``tomllib`` reports syntax errors with a line
but forgets where values came from, so ``Locator`` scans the text once for the line of every
table header and key: a bad value's error names the file, the line and the field
(``fence.toml:42: phase[3].step[2].prout-type: a reservation type is one of WE, EA, ...``).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scsi_pr.rig.backends import PER_NEXUS
from scsi_pr.rig.scenarios import fileformat as ff
from scsi_pr.rig.scenarios.model import (
    ALL_REGISTRANTS,
    CONFLICT,
    GOOD,
    ROLES,
    Action,
    Item,
    Outcome,
    Race,
    Scenario,
    ScenarioError,
    Source,
    StateCheck,
    Step,
)

Path_ = tuple[str | int, ...]
#: ``Reader.value``'s default for a field that has none (``...`` is a value: "not checked")
REQUIRED: Any = object()


class ScenarioFileError(ScenarioError):
    """A scenario file is not valid: ``origin:line: field: why``."""

    def __init__(self, origin: str, line: int | None, field: str, why: str) -> None:
        self.origin, self.line, self.field, self.why = origin, line, field, why
        where = f"{origin}:{line}" if line else origin
        super().__init__(f"{where}: {field}: {why}" if field else f"{where}: {why}")


_HEADER = re.compile(r"\s*\[(\[?)\s*([A-Za-z0-9_.-]+)\s*\]\]?\s*(#.*)?")
_KEY = re.compile(r"\s*([A-Za-z0-9_-]+)\s*=")


class Locator:
    """The line of every table and key of a TOML text, by path (``("phase", 2, "step", 0,
    "command")``); a path not found falls back to its nearest located parent."""

    def __init__(self, text: str) -> None:
        self.lines: dict[Path_, int] = {}
        counts: dict[str, int] = {}
        table: Path_ = ()
        in_string = False
        for number, line in enumerate(text.splitlines(), 1):
            quotes = line.count('"""') + line.count("'''")
            if in_string:
                in_string = quotes % 2 == 0
                continue
            if quotes % 2:
                in_string = True
            header = _HEADER.fullmatch(line)
            if header:
                table = self._enter(header.group(2).split("."), bool(header.group(1)), counts)
                self.lines.setdefault(table, number)
                continue
            key = _KEY.match(line)
            if key:
                self.lines.setdefault((*table, key.group(1)), number)

    @staticmethod
    def _enter(parts: list[str], array: bool, counts: dict[str, int]) -> Path_:
        path: list[str | int] = []
        for depth, part in enumerate(parts):
            dotted = ".".join(parts[: depth + 1])
            path.append(part)
            if depth == len(parts) - 1 and array:
                counts[dotted] = counts.get(dotted, 0) + 1
                for other in [k for k in counts if k.startswith(dotted + ".")]:
                    del counts[other]
            if dotted in counts:
                path.append(counts[dotted] - 1)
        return tuple(path)

    def line(self, path: Path_) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None


def field_name(path: Path_) -> str:
    """``phase[2].step[1].command`` (indices counted from 1, as people count tables)."""
    out = ""
    for part in path:
        out += f"[{part + 1}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


@dataclass
class Reader:
    origin: str
    locator: Locator

    def error(self, path: Path_, why: str) -> ScenarioFileError:
        return ScenarioFileError(self.origin, self.locator.line(path), field_name(path), why)

    def value(
        self, table: dict[str, Any], path: Path_, name: str, read: Any, default: Any = REQUIRED
    ) -> Any:
        """``read(table[name])``, or ``default`` when the field is absent and has one."""
        if name not in table and default is not REQUIRED:
            return default
        try:
            return read(table[name])
        except ff.ValueProblem as e:
            raise self.error((*path, name), str(e)) from None

    def string(self, table: dict[str, Any], path: Path_, name: str, default: Any = ...) -> Any:
        if name not in table:
            if default is ...:
                raise self.error(path, f"{name!r} is missing")
            return default
        if not isinstance(table[name], str):
            raise self.error((*path, name), f"a string is needed, not {table[name]!r}")
        return table[name]

    def number(self, table: dict[str, Any], path: Path_, name: str) -> float:
        value = table.get(name, 0.0)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise self.error((*path, name), f"seconds (a number >= 0) are needed, not {value!r}")
        return float(value)

    def tables(self, table: dict[str, Any], path: Path_, name: str) -> Iterator[tuple[Path_, dict]]:
        items = table.get(name, [])
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise self.error((*path, name), f"write each {name} as a [[{name}]] table")
        for index, item in enumerate(items):
            yield (*path, name, index), item

    def only(self, table: dict[str, Any], path: Path_, allowed: set[str]) -> None:
        for name in table:
            if name not in allowed:
                raise self.error(
                    (*path, name), f"unknown field; allowed here: {', '.join(sorted(allowed))}"
                )


COMMON_FIELDS = {"state", "wait", "note", "device"}
STEP_FIELDS = {"actor", "command", "expect", "expect-ua", "clear-ua", "stall", *COMMON_FIELDS}
#: the fields of the kinds of step other than a command (whose fields depend on the command)
KIND_FIELDS = {
    "race": {"race", "losers-expect", *COMMON_FIELDS},
    "action": {"action", "label", "actor", *COMMON_FIELDS},
    "event": {"event", "actor", *COMMON_FIELDS},
}


class ScenarioReader(Reader):
    actors: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    raced = False
    #: the actors of the latest race: who a role (winner, loser) can turn out to be
    racers: tuple[str, ...] = ()
    #: each actor's ``key``, as far as the file has given them
    keys: dict[str, int]

    def scenario(self, doc: dict[str, Any]) -> Scenario:
        top: Path_ = ()
        self.only(
            doc, top, {"format", "name", "title", "summary", "source", "actor", "phase", "devices"}
        )
        if doc.get("format", ff.FORMAT) != ff.FORMAT:
            raise self.error(("format",), f"this scsi-pr reads format {ff.FORMAT} only")
        name = self.string(doc, top, "name")
        if not ff.NAME.fullmatch(name):
            raise self.error(("name",), "lower-case letters, digits and '-' only")
        keys: dict[str, int] = {}
        initiators: dict[str, str] = {}
        actors: list[str] = []
        for path, actor in self.tables(doc, top, "actor"):
            self.only(actor, path, {"name", "key", "initiator"})
            who = self.string(actor, path, "name")
            if not ff.ACTOR.fullmatch(who) or who in ff.RESERVED_ACTOR_NAMES or who in actors:
                raise self.error(
                    (*path, "name"),
                    f"{who!r}: a new name made of letters, digits,"
                    f" '-', '_' that is not one of {sorted(ff.RESERVED_ACTOR_NAMES)}",
                )
            actors.append(who)
            if "key" in actor:
                keys[who] = self.value(actor, path, "key", ff.KEY.read)
            if "initiator" in actor:
                initiators[who] = self.value(actor, path, "initiator", ff.read_initiator)
        if not actors:
            raise self.error(top, "a scenario needs at least one [[actor]]")
        self.actors = tuple(actors)
        self.keys = keys
        self.devices = self.device_names(doc)
        items: list[Item] = []
        for path, phase in self.tables(doc, top, "phase"):
            self.only(phase, path, {"name", "step"})
            label = self.string(phase, path, "name", "")
            items += [self.item(p, s, label) for p, s in self.tables(phase, path, "step")]
        if not items:
            raise self.error(top, "a scenario needs at least one [[phase]] with a [[phase.step]]")
        return Scenario(
            name,
            self.string(doc, top, "title"),
            self.string(doc, top, "summary"),
            self.actors,
            tuple(items),
            self.source(doc),
            keys,
            self.devices,
            initiators,
        )

    def device_names(self, doc: dict[str, Any]) -> tuple[str, ...]:
        names = doc.get("devices", [])
        if (
            not isinstance(names, list)
            or len(names) == 1
            or not all(isinstance(n, str) and ff.ACTOR.fullmatch(n) for n in names)
            or len(set(names)) != len(names)
        ):
            raise self.error(("devices",), "two or more distinct names (letters, digits, '-', '_')")
        return tuple(names)

    def device(self, table: dict[str, Any], path: Path_) -> str:
        name = self.string(table, path, "device", "")
        if name and name not in self.devices:
            raise self.error(
                (*path, "device"),
                f"unknown device {name!r}; devices: "
                f"{', '.join(self.devices) or 'none declared (devices = [...])'}",
            )
        return name

    def source(self, doc: dict[str, Any]) -> Source:
        path: Path_ = ("source",)
        table = doc.get("source", {})
        if not isinstance(table, dict):
            raise self.error(path, "write it as a [source] table")
        self.only(table, path, {"software", "files", "assumed"})
        files = table.get("files", [])
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise self.error((*path, "files"), "a list of strings is needed")
        return Source(
            self.string(table, path, "software", ""),
            tuple(files),
            self.string(table, path, "assumed", ""),
        )

    def actor(self, table: dict[str, Any], path: Path_, name: str = "actor") -> str:
        return self.known_actor(self.string(table, path, name), (*path, name))

    def known_actor(self, who: Any, where: Path_) -> str:
        """``who`` if it names an actor, or a role once a race has decided it."""
        if who in ROLES and not self.raced:
            raise self.error(where, f"role {who!r} is only known after a race")
        if who not in self.actors and who not in ROLES:
            raise self.error(where, f"unknown actor {who!r}; actors: {', '.join(self.actors)}")
        return who

    def keyed_actor(self, who: Any, where: Path_) -> str:
        """``who`` for a ``registered`` check, which compares each actor's registration with
        its ``key``: an actor without one (the key is optional) would leave nothing to compare,
        so the file is refused here rather than the run failing at that step. A role may turn
        out to be any actor of the race that decided it, so each of those needs a key."""
        who = self.known_actor(who, where)
        keyless = [a for a in (self.racers if who in ROLES else (who,)) if a not in self.keys]
        if keyless:
            named = " or ".join(repr(a) for a in keyless)
            raise self.error(
                where,
                f"{who!r} may be {named}, without key = ... under [[actor]] to check"
                if who in ROLES
                else f"actor {who!r} has no key = ... under [[actor]] to check",
            )
        return who

    def item(self, path: Path_, table: dict[str, Any], phase: str) -> Item:
        kinds = [k for k in ("race", "action", "event", "command") if k in table]
        if len(kinds) != 1:
            raise self.error(
                path,
                "a step has exactly one of: command (with actor), race, "
                f"action, event; this one has {', '.join(kinds) or 'none'}",
            )
        kind = kinds[0]
        allowed = KIND_FIELDS.get(kind)
        if allowed is None:
            allowed = STEP_FIELDS | {f.name for f in self.command_spec(table, path).fields}
        self.only(table, path, allowed)
        common = {
            "device": self.device(table, path),
            "wait": self.number(table, path, "wait"),
            "phase": phase,
            "note": self.string(table, path, "note", ""),
        }
        if kind == "race":
            return self.race(path, table, common)
        common["state"] = self.state(table, path)
        if kind == "command":
            return self.step(path, table, **common)
        lane = self.lun_or_actor(table, path)
        if kind == "event":
            return Action(self.string(table, path, "event"), None, lane, **common)
        capability = self.value(table, path, "action", ff.read_action)
        if capability in PER_NEXUS and lane in ff.ACTION_LANES:
            raise self.error(path, f"{capability.value}: say whose nexus with actor = ...")
        label = self.string(table, path, "label", capability.value.replace("_", " "))
        return Action(label, capability, lane, **common)

    def race(self, path: Path_, table: dict[str, Any], common: dict[str, Any]) -> Race:
        steps = [
            self.step(p, s, racing=True, phase=common["phase"])
            for p, s in self.tables(table, path, "race")
        ]
        if len(steps) < 2 or len({s.actor for s in steps}) != len(steps):
            raise self.error((*path, "race"), "a race needs two or more distinct actors")
        losers = self.outcomes(table, path, "losers-expect", (CONFLICT,))
        self.raced = True  # its own state check may name the winner
        # a racer may itself be a role of the race before: it can be any of that race's actors
        self.racers = tuple(
            dict.fromkeys(
                a for s in steps for a in (self.racers if s.actor in ROLES else (s.actor,))
            )
        )
        return Race(tuple(steps), losers, state=self.state(table, path), **common)

    def lun_or_actor(self, table: dict[str, Any], path: Path_) -> str:
        lane = table.get("actor", "LUN")
        return lane if lane in ff.ACTION_LANES else self.actor(table, path)

    def step(self, path: Path_, table: dict[str, Any], racing: bool = False, **common: Any) -> Step:
        spec = self.command_spec(table, path)
        if racing:  # a racer's answer is judged by the race (winner / losers-expect)
            self.only(table, path, {"actor", "command"} | {f.name for f in spec.fields})
        for f in spec.required():
            if f.name not in table:
                raise self.error(path, f"{spec.name} needs {f.name!r}")
        args = {
            f.attr: self.value(table, path, f.name, f.kind.read)
            for f in spec.fields
            if f.name in table
        }
        if "dest" in table:
            args["destination"] = self.actor(table, path, "dest")
        expect_ua = self.value(
            table,
            path,
            "expect-ua",
            lambda v: tuple(ff.read_unit_attention(u) for u in self._list(v)),
            (),
        )
        if "stall" in table:
            common["stall"] = self.number(table, path, "stall")
        return Step(
            self.actor(table, path),
            spec.cls(**args, **dict(spec.fixed)),
            self.outcomes(table, path, "expect", (GOOD,)),
            expect_ua=expect_ua,
            clear_ua=self.value(table, path, "clear-ua", ff.BOOL.read, True),
            **common,
        )

    def command_spec(self, table: dict[str, Any], path: Path_) -> ff.CommandSpec:
        name = self.string(table, path, "command")
        if name not in ff.COMMANDS:
            raise self.error(
                (*path, "command"),
                f"unknown command {name!r}; choose from {', '.join(ff.COMMANDS)}",
            )
        return ff.COMMANDS[name]

    @staticmethod
    def _list(value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise ff.ValueProblem(f"a list is needed, not {value!r}")
        return value

    def outcomes(
        self, table: dict[str, Any], path: Path_, name: str, default: tuple[Outcome, ...]
    ) -> tuple[Outcome, ...]:
        got = self.value(
            table, path, name, lambda v: tuple(ff.read_outcome(o) for o in self._list(v)), default
        )
        if not got:
            raise self.error((*path, name), "at least one outcome is needed")
        return got

    def state(self, table: dict[str, Any], path: Path_) -> StateCheck | None:
        if "state" not in table:
            return None
        where = (*path, "state")
        check = table["state"]
        if not isinstance(check, dict):
            raise self.error(where, "write it as an inline table: state = { holder = ... }")
        self.only(check, where, {"holder", "registered", "unchanged"})
        holder = self.value(check, where, "holder", ff.read_holder, ...)
        if isinstance(holder, str) and holder != ALL_REGISTRANTS:
            holder = self.known_actor(holder, (*where, "holder"))
        registered = None
        if "registered" in check:
            names = check["registered"]
            if not isinstance(names, list):
                raise self.error((*where, "registered"), "a list of actors is needed")
            registered = tuple(self.keyed_actor(n, (*where, "registered")) for n in names)
        unchanged = self.value(check, where, "unchanged", ff.BOOL.read, False)
        return StateCheck(holder, registered, unchanged)


def loads(text: str, origin: str = "<scenario>") -> Scenario:
    """The scenario ``text`` defines; ``origin`` names it in errors (a file name)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        # Python 3.11's error has no line attribute (3.14 adds one): its message carries it
        line = re.search(r"line (\d+)", str(e))
        raise ScenarioFileError(
            origin, int(line.group(1)) if line else None, "", f"not valid TOML: {e}"
        ) from None
    return ScenarioReader(origin, Locator(text)).scenario(doc)


def read_text(path: Path) -> str:
    """A scenario file's text; one that cannot be read is a ``ScenarioFileError``."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioFileError(str(path), None, "", f"cannot read it: {e}") from None


def load(path: Path) -> Scenario:
    return loads(read_text(path), str(path))
