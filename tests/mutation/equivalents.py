"""The equivalent mutants: changes no test can notice because the program does the same thing,
listed once in ``equivalent.toml`` beside this module, each with its reason.

An entry names the file, the function, and the line before and after the mutation (stripped
of indentation), not mutmut's mutant number: the number moves whenever the function gains or
loses a mutation site, the text does not. An entry that no longer matches any mutant is stale
and the full run says so.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mutation.errors import MutationError

EQUIVALENTS_FILE = Path(__file__).with_name("equivalent.toml")
_FIELDS = ("file", "function", "original", "mutated", "reason")


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


def load(path: Path = EQUIVALENTS_FILE) -> list[Equivalent]:
    try:
        with open(path, "rb") as f:
            entries = tomllib.load(f).get("equivalent", [])
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise EquivalentsError(f"{path}: {e}") from e
    found = []
    for i, entry in enumerate(entries, 1):
        missing = [k for k in _FIELDS if not isinstance(entry.get(k), str)]
        if missing or not entry["reason"].strip():
            raise EquivalentsError(f"{path}: entry {i} lacks {missing or ['a reason']}")
        found.append(Equivalent(*(entry[k].strip() for k in _FIELDS)))
    return found


def find(
    equivalents: Iterable[Equivalent], file: str, function: str, original: str, mutated: str
) -> Equivalent | None:
    return next((e for e in equivalents if e.matches(file, function, original, mutated)), None)
