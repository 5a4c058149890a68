"""``run_command``: how one PR command's status, sense and data-in are reported.

Most cases run the real sg_persist on the same device answers (``sg_persist_oracle``): statuses
other than GOOD and CHECK CONDITION, the obsolete COMMAND TERMINATED that sg3_utils reads as a
CHECK CONDITION, the ``-vvv``/``-vvvv`` traces of the response around sg3_utils' 256-byte cut,
and the residual line after a CHECK CONDITION. The rest has no sg_persist counterpart to
compare with: the duration trace (a wall clock, faked here), and what ``run_command`` returns
to its callers when the command failed.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from sg_persist_oracle import answering, fixed_sense

from scsi_pr.helper.persist import command
from scsi_pr.helper.persist.command import Response, Transport, _resid_line, run_command
from scsi_pr.helper.persist.exit_codes import Exit
from scsi_pr.helper.persist.outcome import Outcome
from scsi_pr.sim.cdb import persistent_reserve_in, persistent_reserve_out
from scsi_pr.sim.constants import Status
from scsi_pr.sim.result import CommandResult

UNIT_ATTENTION = fixed_sense(0x06, 0x29, 0x00)
INVALID_FIELD = fixed_sense(0x05, 0x24, 0x00)
RECOVERED = fixed_sense(0x01, 0x24, 0x00)
LEADIN = "Persistent reservation in"
# What libsgutils prints at -vvvv about the local device node, before and after the CDB trace:
# probes of a node the helper's client never opens as a SCSI device.
HOST_PROBES = ("found sg_bsg_major=", "check_file_type: ")


def keys_answer(size: int) -> bytes:
    """A READ KEYS answer of exactly ``size`` bytes (ADDITIONAL LENGTH says the rest)."""
    return struct.pack(">II", 5, size - 8) + bytes((i * 7) & 0xFF for i in range(size - 8))


@pytest.mark.parametrize(
    "result",
    [
        CommandResult(0x01, b"", keys_answer(24)),  # reserved bit 0 of the status: still GOOD
        CommandResult(0x03, UNIT_ATTENTION),  # CHECK CONDITION with bit 0 set
        CommandResult(0x22, UNIT_ATTENTION),  # COMMAND TERMINATED: read as CHECK CONDITION
        CommandResult(0x22, INVALID_FIELD),
        CommandResult(0x22),
        CommandResult(0x06),  # statuses sg3_utils has no name for
        CommandResult(0x3E),
        CommandResult(0x14),  # named but obsolete: no exit category
        CommandResult(Status.CHECK_CONDITION, UNIT_ATTENTION),
        CommandResult(Status.CHECK_CONDITION, INVALID_FIELD),
        CommandResult(Status.CHECK_CONDITION, RECOVERED, keys_answer(16)),
    ],
    ids=lambda r: f"{int(r.status):02x}-{r.sense.hex()[:6]}-{len(r.data)}",
)
@pytest.mark.parametrize(
    "argv",
    [["-n", "-k"], ["-n", "-k", "-v"], ["-n", "-k", "-vvv"], ["-n", "-o", "-G", "-S", "1"]],
    ids=" ".join,
)
def test_statuses_as_sg_persist_reports_them(
    shim: Path, tmp_path: Path, result: CommandResult, argv: list[str]
) -> None:
    """Exit status, messages and residual lines (-vvv) are sg_persist's for every status."""
    answering(shim, tmp_path, result).check(argv)


@pytest.mark.parametrize("status", [0x19, 0x09, 0x29])
def test_reserved_status_bit_keeps_the_status_uncategorised(
    shim: Path, tmp_path: Path, status: int
) -> None:
    """sg3_utils names a status by its masked value but picks its exit category from the
    byte as received: RESERVATION CONFLICT with bit 0 set is only a 'scsi status' line."""
    answering(shim, tmp_path, CommandResult(status)).check(["-n", "-k"], code=0)


@pytest.mark.parametrize("size", [8, 255, 256, 257, 300])
def test_response_trace_at_vvv(shim: Path, tmp_path: Path, size: int) -> None:
    """-vvv dumps at most 256 bytes of the response, without offsets or ASCII, and says so
    only when it cut something."""
    result = CommandResult(Status.GOOD, b"", keys_answer(size))
    answering(shim, tmp_path, result).check(["-n", "-k", "-vvv"], code=0)


@pytest.mark.parametrize("size", [8, 40, 300])
def test_response_trace_at_vvvv(shim: Path, tmp_path: Path, size: int) -> None:
    """-vvvv dumps the whole response with offsets and ASCII; sg_persist's stderr is ours
    once libsgutils' own probes of the local device node are left out."""
    result = CommandResult(Status.GOOD, b"", keys_answer(size))
    mine, real = answering(shim, tmp_path, result).both(["-n", "-k", "-vvvv"])
    real_err = "".join(
        line for line in real.stderr.splitlines(keepends=True) if not line.startswith(HOST_PROBES)
    )
    assert (mine.stdout, mine.stderr, mine.code) == (real.stdout, real_err, real.code)
    assert f"    {LEADIN}: response:\n 00     00 00 00 05" in mine.stderr


@dataclass
class Answer(Transport):
    """A device that answers every command with one response."""

    response: Response

    def execute(self, cdb: bytes, data: bytes = b"") -> Response:
        return self.response


@dataclass
class Broken(Transport):
    """A transport that cannot send the command at all."""

    err: int

    def execute(self, cdb: bytes, data: bytes = b"") -> Response:
        raise OSError(self.err, "gone")


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """``command``'s monotonic clock reads 100.0 s then 102.5 s: 2500 ms a command."""
    readings = [100.0, 102.5]
    monkeypatch.setattr(command, "time", SimpleNamespace(monotonic=lambda: readings.pop(0)))
    yield readings


@pytest.mark.parametrize(
    ("duration_ms", "shown", "unread"),
    [(None, 2500, []), (7, 7, [102.5]), (0, 0, [102.5])],
)
def test_duration_trace(
    clock: list[float], duration_ms: int | None, shown: int, unread: list[float]
) -> None:
    """-vvv shows the transport's own duration when it has one, else the wall clock's
    milliseconds around the exchange."""
    out = Outcome()
    cdb = persistent_reserve_in(0, 0)
    transport = Answer(Response(Status.GOOD, duration_ms=duration_ms))
    assert run_command(transport, LEADIN, cdb, b"", 0, 3, out) == (Exit.OK, b"")
    assert out.stderr == [
        f"    {LEADIN} cdb: [5e 00 00 00 00 00 00 00 00 00]\n",
        f"      duration={shown} ms\n",
    ]
    assert clock == unread


@pytest.mark.parametrize(
    ("transport", "cdb", "allocation", "expected"),
    [
        (Broken(errno.ENXIO), persistent_reserve_in(0, 8), 8, (Exit.NOT_READY, b"")),
        (Broken(errno.EIO), persistent_reserve_in(0, 8), 8, (55, b"")),  # 50 + EIO
        (Answer(Response(Status.BUSY, data=bytes(8))), persistent_reserve_in(0, 8), 8,
         (Exit.BUSY, b"")),
        (Answer(Response(Status.GOOD, data=bytes(8))), persistent_reserve_out(0, 24, 0), 0,
         (Exit.OK, b"")),
        (Answer(Response(Status.GOOD, data=bytes(range(12)))), persistent_reserve_in(0, 8), 8,
         (Exit.OK, bytes(range(8)))),
    ],
    ids=["enxio", "eio", "busy", "prout", "prin"],
)  # fmt: skip
def test_returned_data_in(
    transport: Transport, cdb: bytes, allocation: int, expected: tuple[int, bytes]
) -> None:
    """Data-in comes back only from a PR IN the device completed, cut to the allocation
    length: a failed command or a PR OUT hands its caller nothing to decode."""
    assert run_command(transport, LEADIN, cdb, bytes(24), allocation, 0, Outcome()) == expected


def test_resid_line_wording() -> None:
    """libsgutils' data-in format ("%s: %s requested %d bytes (data-%s  got %d bytes%s")."""
    assert (
        _resid_line("L", 24, 8)
        == "    L: pass-through requested 24 bytes (data-in), got  got 8 bytes\n"
    )
