"""Scenario file texts the file tests build on, and where in them a fragment is."""

from __future__ import annotations

from pathlib import Path

from scsi_pr.rig.scenarios import cli

#: where the built-in scenario files are shipped
BUILTIN_DIR = Path(cli.__file__).parent / "builtin"


def file_head(actors: dict[str, int | None], extra: str = "") -> str:
    """A scenario file up to its first phase (named "p", no step yet): an [[actor]] table per
    actor, with ``key`` where one is given; ``extra`` lines go under the first actor."""
    tables = []
    for i, (name, key) in enumerate(actors.items()):
        lines = ["[[actor]]", f'name = "{name}"', *([f"key = {key:#x}"] if key is not None else [])]
        tables.append("\n".join(lines + ([extra] if extra and i == 0 else [])))
    return (
        'name = "t"\ntitle = "t"\nsummary = "s"\n\n'
        + "\n\n".join(tables)
        + '\n\n[[phase]]\nname = "p"\n'
    )


def line_of(text: str, fragment: str) -> int:
    """The 1-based line of ``fragment``'s first occurrence in ``text``."""
    return text[: text.index(fragment)].count("\n") + 1
