"""GNU ``getopt_long``, as glibc 2.36 parses: the one option parser of ``scsi-pr-helper``
(qemu-pr-helper's options) and ``scsi-pr persist`` (sg_persist's).

Why our own: both programs reproduce a C program's command line byte for byte, including
glibc's error texts and the order in which options and errors are seen. ``argparse`` words
errors its own way and reads the whole line before acting; the C programs act on each option
as ``getopt_long`` returns it, so an option before a bad one still wins (``-V --foo`` prints
the version, ``-K zz -x`` complains about ``zz``). ``GetoptLong`` is therefore lazy: iterating
yields one option at a time and raises ``GetoptError`` where glibc would print its message.

Semantics kept: operands are permuted to the end (unless POSIXLY_CORRECT: then the first
operand ends the options), ``--`` ends the options, long names may be abbreviated when the
abbreviation is unambiguous (candidates with the same argument and key are one option, as in
glibc), ``--name=value`` or ``--name value``, short flags cluster (``-nik``) and take attached
arguments (``-K5``).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass

from scsi_pr.helper.errors import HelperError

#: What iterating a GetoptLong yields: (key, argument or None).
Option = tuple[str, str | None]


def seconds_within(text: str, most: float, *, zero_allowed: bool) -> float | None:
    """An option's argument as a number of seconds more than 0 (or also 0 when
    ``zero_allowed``) and at most ``most``; None for anything else, nan, inf and garbage
    included (``float`` takes "nan" and "inf", which no timer can wait). Callers word the
    refusal as their command line does."""
    try:
        seconds = float(text)
    except ValueError:
        return None
    if not 0 <= seconds <= most or (seconds == 0 and not zero_allowed):  # nan fails too
        return None
    return seconds


def is_decimal(text: str) -> bool:
    """Whether an option's argument is a plain number, ASCII digits only: ``str.isdigit`` also
    accepts superscripts and other digits that ``int`` then refuses with a traceback."""
    return text.isascii() and text.isdigit()


class GetoptError(HelperError):
    """glibc's complaint, worded as it prints it but without the ``PROGRAM: `` prefix."""


@dataclass(frozen=True)
class LongOption:
    """One row of ``struct option longopts[]``."""

    name: str
    has_arg: bool
    #: what the parser reports: the short letter it stands for, or a name of its own
    key: str


@dataclass(frozen=True)
class OptionTable:
    """``optstring`` and ``longopts`` of one program."""

    #: short letters, each followed by ``:`` when it takes an argument
    short: str
    #: in the C table's order: the order glibc lists an ambiguity's possibilities in
    long: tuple[LongOption, ...]

    def takes_argument(self, letter: str) -> bool | None:
        """None for a letter that is no option (``:`` is never one)."""
        pos = self.short.find(letter)
        if pos < 0 or letter == ":":
            return None
        return self.short[pos + 1 : pos + 2] == ":"

    def lookup(self, arg: str, name: str) -> LongOption:
        """The long option ``name`` (exact, else an unambiguous prefix) stands for."""
        exact = [o for o in self.long if o.name == name]
        matches = exact or [o for o in self.long if o.name.startswith(name)]
        if not matches:
            raise GetoptError(f"unrecognized option '{arg}'")
        found = matches[0]
        others = [o for o in matches[1:] if (o.has_arg, o.key) != (found.has_arg, found.key)]
        if others:
            listed = " ".join(f"'--{o.name}'" for o in self.long if o is found or o in others)
            raise GetoptError(f"option '{arg}' is ambiguous; possibilities: {listed}")
        return found


class GetoptLong:
    """``for key, value in GetoptLong(table, argv[1:])``; then ``.operands`` holds the
    non-option arguments in order (glibc's ``argv[optind:]`` after permutation)."""

    def __init__(
        self, table: OptionTable, args: Sequence[str], *, posixly_correct: bool = False
    ) -> None:
        self.table = table
        self.args = list(args)
        self.posixly_correct = posixly_correct
        self.operands: list[str] = []

    def __iter__(self) -> Iterator[Option]:
        args, i = self.args, 0
        while i < len(args):
            arg = args[i]
            i += 1
            if arg == "--":
                self.operands += args[i:]
                return
            if arg.startswith("--"):
                name, eq, value = arg[2:].partition("=")
                option = self.table.lookup(arg, name)
                if not option.has_arg:
                    if eq:
                        raise GetoptError(f"option '--{option.name}' doesn't allow an argument")
                    yield option.key, None
                elif eq:
                    yield option.key, value
                elif i < len(args):
                    yield option.key, args[i]
                    i += 1
                else:
                    raise GetoptError(f"option '--{option.name}' requires an argument")
            elif arg.startswith("-") and arg != "-":
                i = yield from self._cluster(arg, i)
            elif self.posixly_correct:
                self.operands += args[i - 1 :]
                return
            else:
                self.operands.append(arg)

    def _cluster(self, arg: str, i: int) -> Generator[Option, None, int]:
        """Short options in one word (``-nikK5``); returns the index of the next word."""
        for j, letter in enumerate(arg[1:], start=2):
            takes = self.table.takes_argument(letter)
            if takes is None:
                raise GetoptError(f"invalid option -- '{letter}'")
            if not takes:
                yield letter, None
            elif j < len(arg):
                yield letter, arg[j:]
                return i
            elif i < len(self.args):
                yield letter, self.args[i]
                return i + 1
            else:
                raise GetoptError(f"option requires an argument -- '{letter}'")
        return i
