"""What one ``scsi-pr persist`` run prints and returns (``helper/persist/outcome.py``): each
text on its own stream, the order it was produced in, and the exit code that stops a run.

The order matters: on a terminal sg_persist's stdout is line-buffered, so ``main`` replays the
recorded events and the two streams interleave as they were written; on a pipe stdout is
block-buffered and comes out after stderr."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from scsi_pr.helper.errors import HelperError
from scsi_pr.helper.persist.cli import execute, main
from scsi_pr.helper.persist.command import Response, Transport
from scsi_pr.helper.persist.exit_codes import Exit
from scsi_pr.helper.persist.options import Options
from scsi_pr.helper.persist.outcome import Done, Outcome

KEYS_DATA = bytes.fromhex("00000005 00000008 0000000000001a2b")
KEYS_TEXT = "  PR generation=0x5, 1 registered reservation key follows:\n    0x1a2b\n"


class KeysTransport:
    """A device with one registered key (0x1a2b) at generation 5."""

    def execute(self, cdb: bytes, data: bytes = b"") -> Response:
        return Response(0, b"", KEYS_DATA)

    def close(self) -> None:
        """Nothing to release."""


def keys(op: Options, fd: int) -> Transport:
    return KeysTransport()


class Stream(io.StringIO):
    """A terminal (or a pipe) that also logs each write, with its name, to a shared list."""

    def __init__(self, name: str, log: list[tuple[str, str]], tty: bool) -> None:
        super().__init__()
        self.name, self.log, self.tty = name, log, tty

    def isatty(self) -> bool:
        return self.tty

    def write(self, text: str) -> int:
        self.log.append((self.name, text))
        return super().write(text)


@pytest.fixture
def image(tmp_path: Path) -> str:
    path = tmp_path / "lu.img"
    path.write_bytes(bytes(4096))
    return str(path)


def test_out_and_err_record_stream_and_order() -> None:
    """Each text lands in its stream's list and, in order, in the events with its stream."""
    outcome = Outcome()
    outcome.out("a\n")
    outcome.err("b\n")
    outcome.out("c\n")
    assert outcome == Outcome(
        stdout=["a\n", "c\n"],
        stderr=["b\n"],
        code=0,
        events=[(False, "a\n"), (True, "b\n"), (False, "c\n")],
    )


def test_a_run_records_its_events_in_order(image: str) -> None:
    """-vv: the open and the CDB go to stderr before the keys go to stdout."""
    outcome = execute(["-vv", "-n", "-k", image], keys, env={})
    assert outcome.events == [
        (True, f"open {image} with flags=0x802\n"),
        (True, "    Persistent reservation in cdb: [5e 00 00 00 00 00 00 20 00 00]\n"),
        (
            True,
            "    Persistent reservation in: pass-through requested 8192 bytes (data-in), "
            "got  got 16 bytes\n",
        ),
        (False, KEYS_TEXT),
    ]


@pytest.mark.parametrize(
    ("tty", "written"),
    [
        (True, [("err", "open"), ("err", "cdb"), ("err", "got"), ("out", "keys")]),
        # block-buffered stdout: all of stderr first, then all of stdout
        (False, [("err", "open+cdb+got"), ("out", "keys")]),
    ],
)
def test_main_writes_each_text_to_its_stream(
    image: str, tty: bool, written: list[tuple[str, str]]
) -> None:
    """On a terminal, every text to its own stream in the order produced; on a pipe, stderr
    then stdout, each in one write."""
    log: list[tuple[str, str]] = []
    out, err = Stream("out", log, tty), Stream("err", log, tty)
    code = main(["-vv", "-n", "-k", image], keys, stdout=out, stderr=err)
    texts = {
        "open": f"open {image} with flags=0x802\n",
        "cdb": "    Persistent reservation in cdb: [5e 00 00 00 00 00 00 20 00 00]\n",
        "got": "    Persistent reservation in: pass-through requested 8192 bytes (data-in), "
        "got  got 16 bytes\n",
        "keys": KEYS_TEXT,
    }
    expected = [(name, "".join(texts[k] for k in parts.split("+"))) for name, parts in written]
    assert (code, log) == (0, expected)
    assert (out.getvalue(), err.getvalue()) == (
        KEYS_TEXT,
        texts["open"] + texts["cdb"] + texts["got"],
    )


@pytest.mark.parametrize("code", [Exit.OK, Exit.SYNTAX_ERROR, Exit.RES_CONFLICT])
def test_done_carries_its_exit_code(code: Exit) -> None:
    """``Done`` is a HelperError whose code is its only argument: an escaped one (a bug)
    would name the exit status in its traceback rather than ``None``."""
    done = Done(code)
    assert (done.code, done.args, str(done)) == (code, (code,), str(int(code)))
    assert isinstance(done, HelperError) is True


def test_done_stops_a_run_with_its_code(image: str) -> None:
    """``-h`` stops the run after the usage text with exit status 0, no DEVICE with 1 (as
    sg_persist does)."""
    assert execute(["-h", image], keys, env={}).code == Exit.OK
    assert execute(["-n", "-k"], keys, env={}).code == Exit.SYNTAX_ERROR
