"""Reading the guest's serial console: the marker protocol ``/init`` prints in, and answering
its pauses.

One line each, ``NAME`` is a step name, never containing spaces:

``@@READY DEV``                 the disk node exists; steps start
``@@OUT NAME <line>``           one line of the step's standard output
``@@ERR NAME <line>``           one line of its standard error
``@@RC NAME <n>``               its exit status (sg_persist: 0 good, 24 reservation conflict, ...)
``@@PAUSE NAME``                the guest waits for one line on the console (the host acts now)
``@@DONE``                      all steps ran; the guest powers off next
``@@ERROR <text>``              the guest could not run the sequence

PR IN data comes from ``sg_persist --hex``, whose header is text and whose descriptors are a
hex dump; ``StepResult.data`` reads the dump back into bytes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO

from scsi_pr.rig.errors import RigError

MARK = "@@"
#: what the host sends to end a pause (the guest's ``read`` takes any one line)
RESUME = b"go\n"


class ConsoleError(RigError, ValueError):
    """The guest's console output does not follow the marker protocol."""


@dataclass
class StepResult:
    name: str
    rc: int | None = None
    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)

    @property
    def data(self) -> bytes:
        """The PR IN response bytes from ``sg_persist --hex`` output."""
        return parse_hex_dump(self.out)


@dataclass
class Console:
    """Everything the guest reported, in order; ``other`` keeps unmarked lines for logs."""

    ready: bool = False
    done: bool = False
    errors: list[str] = field(default_factory=list)
    pauses: list[str] = field(default_factory=list)
    steps: dict[str, StepResult] = field(default_factory=dict)
    other: list[str] = field(default_factory=list)

    def feed(self, line: str) -> str | None:
        """Take one console line; return the pause name if the guest is now waiting."""
        line = line.rstrip("\r\n")
        idx = line.find(MARK)
        if idx < 0:
            self.other.append(line)
            return None
        # kernel messages may share the line; the marker starts our part
        tag, _, rest = line[idx + len(MARK) :].partition(" ")
        if tag == "READY":
            self.ready = True
        elif tag == "DONE":
            self.done = True
        elif tag == "ERROR":
            self.errors.append(rest)
        elif tag == "PAUSE":
            self.pauses.append(rest.strip())
            return rest.strip()
        elif tag in ("OUT", "ERR", "RC"):
            self._step_line(tag, rest, line)
        else:
            self.other.append(line)
        return None

    def _step_line(self, tag: str, rest: str, line: str) -> None:
        name, _, text = rest.partition(" ")
        result = self.steps.setdefault(name, StepResult(name))
        if tag == "OUT":
            result.out.append(text)
        elif tag == "ERR":
            result.err.append(text)
        else:
            try:
                result.rc = int(text)
            except ValueError as e:
                raise ConsoleError(f"bad exit status line: {line!r}") from e

    def feed_all(self, lines: Iterable[str]) -> Console:
        for line in lines:
            self.feed(line)
        return self

    def follow(
        self,
        lines: Iterable[bytes],
        reply: IO[bytes],
        on_pause: Callable[[str], None] = lambda name: None,
        on_line: Callable[[str], None] = lambda line: None,
    ) -> Console:
        """Read a running guest's console (``lines``, raw from QEMU's stdout) to its end. At
        each pause the host acts first (``on_pause``), then ``reply`` (QEMU's stdin) carries
        the line that lets the guest go on."""
        for raw in lines:
            line = raw.decode(errors="replace").rstrip("\r\n")
            on_line(line)
            pause = self.feed(line)
            if pause is not None:
                on_pause(pause)
                reply.write(RESUME)
                reply.flush()
        return self


_HEX_LINE = re.compile(r"^\s*([0-9a-fA-F]+)\s{2,}([0-9a-fA-F]{2}(?:\s{1,2}[0-9a-fA-F]{2}){0,15})")


def parse_hex_dump(lines: Iterable[str]) -> bytes:
    """Bytes from sg3_utils' hex dump (``sg_persist --hex``): `` 00     00 00 00 04 ...``.

    Each line is an offset then up to 16 two-digit bytes (an 8/8 split has two spaces); an
    optional ASCII column after a wider gap is ignored. Offsets must be contiguous.
    """
    out = bytearray()
    for line in lines:
        m = _HEX_LINE.match(line)
        if not m:
            continue
        offset = int(m.group(1), 16)
        if offset != len(out):
            raise ConsoleError(f"hex dump offset {offset:#x} where {len(out):#x} was expected")
        out += bytes.fromhex("".join(m.group(2).split()))
    return bytes(out)
