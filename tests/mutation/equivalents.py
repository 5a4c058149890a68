"""The equivalent mutants: changes no test can notice because the program does the same thing,
listed once in ``equivalent.toml`` beside this module, each with its reason.

An ``[[equivalent]]`` entry names the file, the function, and the line before and after the
mutation (stripped of indentation), not mutmut's mutant number: the number moves whenever the
function gains or loses a mutation site, the text does not. An entry that no longer matches any
mutant is stale and the full run says so. An ``[[equivalent_rule]]`` covers one kind of edit
wherever it happens (``old`` replaced once by ``new`` in the line), for mutations that are
equivalent by the language itself, e.g. dropping ``"big"`` from ``int.from_bytes``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mutation.errors import MutationError

EQUIVALENTS_FILE = Path(__file__).with_name("equivalent.toml")
_FIELDS = ("file", "function", "original", "mutated", "reason")
_RULE_FIELDS = ("old", "new", "reason")


class EquivalentsError(MutationError):
    """``equivalent.toml`` is malformed: an entry lacks a field or has no reason."""


@dataclass(frozen=True)
class Equivalent:
    file: str  # checkout-relative, e.g. sim/pr_out.py
    function: str  # Class.method or function
    original: str
    mutated: str
    reason: str

    def matches(self, file: str, function: str, original: str, mutated: str) -> bool:
        return (self.file, self.function, self.original, self.mutated) == (
            file,
            function,
            original.strip(),
            mutated.strip(),
        )


@dataclass(frozen=True)
class EquivalentRule:
    old: str
    new: str
    reason: str

    def matches(self, file: str, function: str, original: str, mutated: str) -> bool:
        original, mutated = original.strip(), mutated.strip()
        start = original.find(self.old)
        while start >= 0:
            if original[:start] + self.new + original[start + len(self.old) :] == mutated:
                return True
            start = original.find(self.old, start + 1)
        return False


Entry = Equivalent | EquivalentRule


def load(path: Path = EQUIVALENTS_FILE) -> list[Entry]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise EquivalentsError(f"{path}: {e}") from e
    found: list[Entry] = []
    for table, fields, kind in (
        ("equivalent", _FIELDS, Equivalent),
        ("equivalent_rule", _RULE_FIELDS, EquivalentRule),
    ):
        for i, entry in enumerate(data.get(table, []), 1):
            missing = [k for k in fields if not isinstance(entry.get(k), str)]
            if missing or not entry["reason"].strip():
                raise EquivalentsError(f"{path}: {table} {i} lacks {missing or ['a reason']}")
            # a rule's old/new are matched as written (spaces count); entries are stripped
            strip = kind is Equivalent
            found.append(kind(*(entry[k].strip() if strip else entry[k] for k in fields)))
    return found


def find(
    equivalents: Iterable[Entry], file: str, function: str, original: str, mutated: str
) -> Entry | None:
    return next((e for e in equivalents if e.matches(file, function, original, mutated)), None)
