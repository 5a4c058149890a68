"""What the guest runs: a sequence of named commands and pauses.

Names key the results the console parser collects and appear bare in console lines, so they
are unique and never contain spaces.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from scsi_pr.rig.errors import RigError

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class BadSequence(RigError, ValueError):
    """A step name the console protocol cannot carry, a duplicate name, or an empty command."""


@dataclass(frozen=True)
class Command:
    """Run ``argv`` in the guest; ``{dev}`` in an argument becomes the guest's disk node."""

    name: str
    argv: tuple[str, ...]

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not self.argv:
            raise BadSequence(f"step {self.name!r}: empty command")


@dataclass(frozen=True)
class Pause:
    """Stop and wait for the host: it reads ``@@PAUSE name``, acts, then sends a line."""

    name: str

    def __post_init__(self) -> None:
        _check_name(self.name)


Step = Command | Pause


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise BadSequence(f"bad step name {name!r}: use letters, digits, '_', '.', '-'")


def check_sequence(steps: Sequence[Step]) -> None:
    """Names must be unique: the console parser keys results by name."""
    seen: set[str] = set()
    for step in steps:
        if step.name in seen:
            raise BadSequence(f"duplicate step name {step.name!r}")
        seen.add(step.name)
