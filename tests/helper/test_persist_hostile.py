"""``scsi-pr persist`` on inputs found by fuzzing: PR IN answers shorter than the decoders read,
and TransportIDs whose bytes are not UTF-8. Each must end in sg_persist's output and exit
status, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from scsi_pr.helper.persist.cli import execute
from scsi_pr.helper.persist.command import Response, Transport
from scsi_pr.helper.persist.exit_codes import Exit
from scsi_pr.helper.persist.options import Options
from scsi_pr.helper.persist.prin import PRIN_FIXED_LEN, zero_filled
from scsi_pr.sim.device import LogicalUnit
from scsi_pr.sim.nexus import ITNexus

A = ITNexus.named("naa.5001405000000001", 1)
BAD_TID_ERR = (
    "badly formed symbolic iSCSI TransportID: iqn.\\xff\n"
    "build_transportid: error at pos 1\n"
    "bad argument to '--transport-id'\n"
)
BAD_TID_FILE_ERR = (
    "badly formed symbolic iSCSI TransportID: iqn.\\xff\n"
    "decode_file_tids: syntax error at line 1, pos 1\n"
    "bad argument to '--transport-id'\n"
)


@dataclass
class LuTransport(Transport):
    """The device model, trimming data-in to ALLOCATION LENGTH as a device does."""

    lu: LogicalUnit

    def execute(self, cdb: bytes, data: bytes = b"") -> Response:
        result = self.lu.execute(A, cdb, data)
        return Response(int(result.status), result.sense.ljust(96, b"\0"), result.data)


@dataclass
class FixedTransport(Transport):
    """A device that answers every command with GOOD and these bytes, however many."""

    answer: bytes

    def execute(self, cdb: bytes, data: bytes = b"") -> Response:
        return Response(0, b"", self.answer)


@pytest.fixture
def image(tmp_path: Path) -> str:
    path = tmp_path / "lu.img"
    path.write_bytes(bytes(4096))
    return str(path)


@pytest.fixture
def lu() -> LogicalUnit:
    """One registration (key 0x123, PRGENERATION 1): a whole answer would show both."""
    unit = LogicalUnit(target_ports=(1,))
    unit.execute(A, bytes(6))  # the power-on unit attention
    transport = LuTransport(unit)
    outcome = execute(["-n", "-o", "-G", "-S", "123", os.devnull], lambda op, fd: transport)
    assert outcome.code == 0, outcome.stderr
    return unit


def run(transport: Transport, line: str, image: str) -> tuple[str, str, int]:
    def factory(op: Options, fd: int) -> Transport:
        return transport

    outcome = execute([*line.split(), image], factory, env={})
    return "".join(outcome.stdout), "".join(outcome.stderr), outcome.code


# -- short PR IN answers: decoded as zeros, as from sg_persist's zero-filled buffer ---------
@pytest.mark.parametrize(
    ("line", "stdout"),
    [
        # only PRGENERATION arrives: ADDITIONAL LENGTH reads 0, whatever the LU holds
        ("-k -l 4", "  PR generation=0x1, there are NO registered reservation keys\n"),
        ("-r -l 4", "  PR generation=0x1, there is NO reservation held\n"),
        ("-s -l 4", "  PR generation=0x1\n  No full status descriptors\n"),
        ("-k -m 4", "  PR generation=0x1, there are NO registered reservation keys\n"),
        # one byte of 00 00 00 01: the generation itself reads 0
        ("-k -m 1", "  PR generation=0x0, there are NO registered reservation keys\n"),
        ("-k -m 7", "  PR generation=0x1, there are NO registered reservation keys\n"),
        ("-k -l 4 -HH", " 00     00 00 00 01 00 00 00 00\n"),
        # the whole answer, for contrast
        ("-k -l 10", "  PR generation=0x1, 1 registered reservation key follows:\n    0x123\n"),
    ],
)
def test_short_prin_answer_reads_as_zeros(
    lu: LogicalUnit, image: str, line: str, stdout: str
) -> None:
    assert run(LuTransport(lu), line, image) == (stdout, "", Exit.OK)


@pytest.mark.parametrize("action", ["-k", "-r", "-s"])
@pytest.mark.parametrize("length", range(1, 8))
def test_no_prin_length_crashes(lu: LogicalUnit, image: str, action: str, length: int) -> None:
    stdout, stderr, code = run(LuTransport(lu), f"{action} -m {length}", image)
    assert (stderr, code) == ("", Exit.OK)
    assert stdout.startswith("  PR generation=0x")


CAPABILITIES_NO_MASK = (
    "Report capabilities response:\n"
    "  Replace Lost Reservation Capable(RLR_C): 1\n"
    "  Compatible Reservation Handling(CRH): 1\n"
    "  Specify Initiator Ports Capable(SIP_C): 1\n"
    "  All Target Ports Capable(ATP_C): 1\n"
    "  Persist Through Power Loss Capable(PTPL_C): 1\n"
    "  Type Mask Valid(TMV): 1\n"
    "  Allow Commands: 1\n"
    "  Persist Through Power Loss Active(PTPL_A): 0\n"
    "    Support indicated in Type mask:\n"
    "      Write Exclusive, all registrants: 0\n"
    "      Exclusive Access, registrants only: 0\n"
    "      Write Exclusive, registrants only: 0\n"
    "      Exclusive Access: 0\n"
    "      Write Exclusive: 0\n"
    "      Exclusive Access, all registrants: 0\n"
)
CAPABILITIES = bytes.fromhex("00 08 9d 90 ea 01 00 00")


def test_short_capabilities_type_mask_reads_as_zeros(image: str) -> None:
    """TMV set but the mask (bytes 4-5) never sent: every type reads unsupported."""
    transport = FixedTransport(CAPABILITIES)
    assert run(transport, "-c -l 4", image) == (CAPABILITIES_NO_MASK, "", Exit.OK)
    assert run(transport, "-c -l 4 -H", image) == (" 00     00 08 9d 90 00 00 00 00\n", "", 0)
    # the whole answer still shows the mask
    assert "      Exclusive Access: 1\n" in run(transport, "-c -l 8", image)[0]


@pytest.mark.parametrize("length", [2, 3])
def test_capabilities_without_flags_read_as_clear(image: str, length: int) -> None:
    stdout, stderr, code = run(FixedTransport(CAPABILITIES), f"-c -l {length}", image)
    assert (stderr, code) == ("", Exit.OK)
    assert "  Type Mask Valid(TMV): 0\n" in stdout
    assert "Support indicated" not in stdout


def test_capabilities_without_length_byte_is_malformed(image: str) -> None:
    """Byte 1 (the length, 8) missing reads as 0: sg_persist's "unexpected response"."""
    expected = (
        "",
        "Unexpected response for PRIN Report Capabilities\n"
        "sg_persist failed: Malformed SCSI command\n",
        Exit.MALFORMED,
    )
    assert run(FixedTransport(CAPABILITIES), "-c -l 1", image) == expected
    assert run(FixedTransport(CAPABILITIES), "-c -l 1 -H", image) == expected


def test_empty_answer_with_default_length(image: str) -> None:
    """A device that sends nothing at all, with sg_persist's default ALLOCATION LENGTH."""
    assert run(FixedTransport(b""), "-k", image) == (
        "  PR generation=0x0, there are NO registered reservation keys\n",
        "",
        Exit.OK,
    )


def test_zero_filled_pads_to_what_the_decoders_read() -> None:
    assert zero_filled(b"\1\2", 4) == b"\1\2".ljust(PRIN_FIXED_LEN, b"\0")
    assert zero_filled(b"\1", 16) == b"\1".ljust(16, b"\0")
    assert zero_filled(bytes(range(10)), 8) == bytes(range(10))


# -- TransportIDs that are not UTF-8: the malformed-TransportID error, exit 1 --------------
def test_undecodable_iscsi_name_is_a_bad_transport_id(image: str) -> None:
    argv = ["-n", "-o", "-G", "-X", "iqn.\udcff", image]  # how Python hands argv's 0xff over
    outcome = execute(argv, lambda op, fd: pytest.fail("nothing may be sent"), env={})
    assert ("".join(outcome.stdout), "".join(outcome.stderr), outcome.code) == (
        "",
        BAD_TID_ERR,
        Exit.SYNTAX_ERROR,
    )


def test_undecodable_iscsi_name_in_a_list_is_a_bad_transport_id(image: str) -> None:
    outcome = execute(
        ["-n", "-o", "-G", "-X", "-", image],
        lambda op, fd: pytest.fail("nothing may be sent"),
        env={},
        read_stdin=lambda: ["iqn.\udcff\n"],
    )
    assert ("".join(outcome.stderr), outcome.code) == (BAD_TID_FILE_ERR, Exit.SYNTAX_ERROR)


def _persist(args: list[bytes], stdin: bytes = b"", **env: str) -> tuple[bytes, bytes, int]:
    proc = subprocess.run(
        [sys.executable.encode(), b"-m", b"scsi_pr.helper.persist", *args],
        input=stdin,
        capture_output=True,
        env={**os.environ, **env},
        timeout=60,
        check=False,
    )
    return proc.stdout, proc.stderr, proc.returncode


@pytest.mark.parametrize("io_encoding", ["", "utf-8:strict"])
def test_undecodable_transport_id_bytes_from_the_command_line(
    tmp_path: Path, io_encoding: str
) -> None:
    """The real process: argv, stdin (even under a strict locale) and file= all refuse it."""
    env = {"PYTHONIOENCODING": io_encoding} if io_encoding else {}
    assert _persist([b"-X", b"iqn.\xff", os.devnull.encode()], **env) == (
        b"",
        BAD_TID_ERR.encode(),
        1,
    )
    assert _persist([b"-X", b"-", os.devnull.encode()], b"iqn.\xff\n", **env) == (
        b"",
        BAD_TID_FILE_ERR.encode(),
        1,
    )
    tids = tmp_path / "tids"
    tids.write_bytes(b"iqn.\xff\n")
    assert _persist([b"-X", f"file={tids}".encode(), os.devnull.encode()], **env) == (
        b"",
        BAD_TID_FILE_ERR.encode(),
        1,
    )


def test_utf8_iscsi_name_from_a_file_is_sent_as_its_bytes(tmp_path: Path, image: str) -> None:
    """file= reads the name as argv and stdin do: UTF-8 once, not decoded as Latin-1 first."""
    tids = tmp_path / "tids"
    tids.write_bytes("iqn.é\n".encode())
    sent: list[bytes] = []

    def factory(op: Options, fd: int) -> Transport:
        sent.extend(op.transport_ids)
        return FixedTransport(b"")

    execute(["-n", "-o", "-G", "-X", f"file={tids}", image], factory, env={})
    assert sent and sent[0][4:11] == "iqn.é".encode() + b"\0"
