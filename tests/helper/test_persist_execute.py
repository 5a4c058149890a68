"""``scsi-pr persist``'s outer layer (``helper.persist.cli``: ``execute``, ``main``) against the
real sg_persist: ``-X -`` read from the process's own stdin, the exit status and streams
``main`` gives the shell (argv from ``sys.argv``, stderr before stdout on a pipe), and DEVICE
closed when the transport cannot be made. Whatever the user sees is compared with sg_persist's
bytes; the rest with the exact values the code must produce."""

from __future__ import annotations

import errno
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from needs import tool

from scsi_pr.helper.persist.cli import execute, main
from scsi_pr.helper.persist.command import Transport
from scsi_pr.helper.persist.exit_codes import Exit
from scsi_pr.helper.persist.options import Options
from scsi_pr.helper.persist.outcome import Done, Outcome
from scsi_pr.helper.persist.transport import SOCKET_ENV

MISSING = "/nonexistent/scsi-pr-execute-device"
#: -X - with every given TransportID decoded back (-vvv), then an open error (exit 52)
STDIN_ARGV = ["-vvv", "-n", "-o", "-G", "-X", "-", MISSING]


@pytest.fixture
def sg_persist() -> str:
    """The real sg_persist: without it the comparisons cannot run (in CI: a failure)."""
    return tool("sg_persist", "sg3-utils")


def run_real(path: str, argv: list[str], stdin: bytes = b"") -> tuple[bytes, bytes, int]:
    """sg_persist's stdout, stderr and exit status, fed ``stdin``'s bytes as they are."""
    real = subprocess.run(
        ["sg_persist", *argv],
        executable=path,
        input=stdin,
        capture_output=True,
        env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"},
        check=False,
    )
    return real.stdout, real.stderr, real.returncode


def as_bytes(outcome: Outcome) -> tuple[bytes, bytes, int]:
    """The outcome as the process writes it: text back to the bytes it was read from."""

    def raw(parts: list[str]) -> bytes:
        return "".join(parts).encode("utf-8", "surrogateescape")

    return raw(outcome.stdout), raw(outcome.stderr), outcome.code


def no_transport(op: Options, fd: int) -> Transport:
    """Every command line here stops before a command: reaching a transport is a failure."""
    raise AssertionError("no command may be sent for this command line")


def binary_stdin(data: bytes) -> io.TextIOWrapper:
    """A real process's stdin under a UTF-8 locale: text over bytes, strict decoding."""
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="strict")


def text_only_stdin(data: bytes) -> io.StringIO:
    """A stand-in with no ``buffer`` (a test harness, an embedding program)."""
    return io.StringIO(data.decode("utf-8", "surrogateescape"))


STDIN_KINDS = {"binary": binary_stdin, "text-only": text_only_stdin}
# What sg_persist's fgets reads and what a line-splitter could get wrong.
STDIN_CASES = {
    "sas": b"sas,5001405000000002\n",
    # comments that are not UTF-8: sg_persist skips their bytes (no traceback, no refusal)
    "latin1-comments": b"# caf\xe9\nsas,5001405000000002  # r\xe9sum\xe9\n",
    "ff-comment": b"0 0 0 0 0 0 0 0 21 0 0 24 ff 31 b5 a8 # \xff\xfe\n",
    # a CR before the newline stays in the line: a syntax error at its position
    "crlf": b"0,0,0,0,0,0,0,0,21,0,0,24,ff,31,b5,a8\r\n",
    "no-final-newline": b"1 2\n3 4",
    "empty": b"",
}


@pytest.mark.parametrize("kind", list(STDIN_KINDS))
@pytest.mark.parametrize("data", list(STDIN_CASES.values()), ids=list(STDIN_CASES))
def test_transport_ids_from_stdin_same_as_sg_persist(
    sg_persist: str, monkeypatch: pytest.MonkeyPatch, kind: str, data: bytes
) -> None:
    """``-X -`` with no reader given reads ``sys.stdin`` itself, bytes first when it can."""
    monkeypatch.setattr(sys, "stdin", STDIN_KINDS[kind](data))
    outcome = execute(STDIN_ARGV, no_transport, env={})
    assert as_bytes(outcome) == run_real(sg_persist, STDIN_ARGV, data)


@pytest.mark.parametrize(
    "data",
    [
        b"# comment\r1 2 zz\n",  # one comment line to fgets
        b"sas,5001405000000002\rjunk\n",  # one SAS TransportID, junk after its 16 digits
        b"1 2\x0c3\n",  # the form feed is in the line sg_persist reports
        b"# note\x1c zz\n",  # one comment line, however Unicode names \x1c
    ],
    ids=["cr-in-comment", "cr-after-sas", "form-feed", "file-separator"],
)
def test_stdin_lines_end_at_newline_only(
    sg_persist: str, monkeypatch: pytest.MonkeyPatch, data: bytes
) -> None:
    """sg_persist reads ``-X -`` with fgets: only a newline ends a line; CR, form feed and
    the other characters Python's str.splitlines splits at belong to the line."""
    monkeypatch.setattr(sys, "stdin", binary_stdin(data))
    outcome = execute(STDIN_ARGV, no_transport, env={})
    assert as_bytes(outcome) == run_real(sg_persist, STDIN_ARGV, data)


# -- main: what the shell gets ---------------------------------------------------------------
def test_main_takes_its_arguments_from_sys_argv(
    sg_persist: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``python -m scsi_pr.helper.persist -V``: argv[0] is the program, the rest its options."""
    monkeypatch.setattr(sys, "argv", ["scsi-pr-persist", "-V"])
    stdout, stderr = io.StringIO(), io.StringIO()
    code = main(stdout=stdout, stderr=stderr)
    mine = (stdout.getvalue().encode(), stderr.getvalue().encode(), code)
    assert mine == run_real(sg_persist, ["-V"])


def test_main_on_a_pipe_writes_stderr_then_stdout_as_sg_persist(
    sg_persist: str, tmp_path: Path
) -> None:
    """``2>&1`` into a pipe: sg_persist's stdout is block-buffered there, so all of it follows
    all of stderr, each stream whole (here stdout is printed in two pieces, one per
    TransportID, and nothing may come between them)."""
    tids = tmp_path / "tids.txt"
    tids.write_bytes(b"sas,5001405000000002\nsas,5001405000000003\n")
    argv = ["-vvv", "-n", "-o", "-G", "-X", f"file={tids}", MISSING]
    both = io.StringIO()
    code = main(argv, no_transport, stdout=both, stderr=both)
    real = subprocess.run(
        ["sg_persist", *argv],
        executable=sg_persist,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"},
        check=False,
    )
    assert (both.getvalue().encode(), code) == (real.stdout, real.returncode)
    assert both.getvalue().endswith(
        "      Transport Id of initiator:\n        SAS address: 0x5001405000000002\n"
        "      Transport Id of initiator:\n        SAS address: 0x5001405000000003\n"
    )


# -- execute: DEVICE is closed whatever the transport does -----------------------------------
def test_a_transport_factory_that_gives_up_leaves_device_closed(image: Path) -> None:
    """A factory may stop the run (``Done``) before any transport exists: its exit status is
    the run's, nothing else is closed, and the device fd opened for it is closed."""
    given: list[int] = []

    def refusing(op: Options, fd: int) -> Transport:
        given.append(fd)
        raise Done(Exit.FILE_ERROR)

    outcome = execute(["-n", "-k", str(image)], refusing, env={})
    assert (outcome.stdout, outcome.stderr, outcome.code) == ([], [], Exit.FILE_ERROR)
    with pytest.raises(OSError) as closed:
        os.fstat(given[0])
    assert closed.value.errno == errno.EBADF


def test_the_socket_comes_from_the_environment_given_to_execute(
    image: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``execute(env=...)`` is the environment the run sees, the helper socket's variable
    included: the default transport connects where it names, not where the process's says."""
    monkeypatch.setenv(SOCKET_ENV, str(tmp_path / "process.sock"))
    given = tmp_path / "given.sock"
    outcome = execute(["-n", "-k", str(image)], env={SOCKET_ENV: str(given)})
    text = "".join(outcome.stderr)
    assert str(given) in text and "process.sock" not in text
