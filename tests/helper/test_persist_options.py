"""``scsi-pr persist`` option parsing (helper/persist/options.py): what sg_persist's main() does
with its options before it opens the device.

Where the behaviour is user-visible the real sg_persist decides: it parses everything before
opening DEVICE, so a missing device path lets both programs run here and their stdout, stderr
and exit status must be identical. The Options a command line yields are checked directly too:
they are what the rest of the program acts on.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from locales import ascii_locale  # noqa: F401 (a fixture, used by name)
from needs import tool

from scsi_pr.helper.persist.cli import execute
from scsi_pr.helper.persist.exit_codes import Exit
from scsi_pr.helper.persist.options import READONLY_ENV, Options, parse_options
from scsi_pr.helper.persist.outcome import Done, Outcome
from scsi_pr.sim.constants import PersistentReserveInAction as In
from scsi_pr.sim.constants import PersistentReserveOutAction as Out

MISSING = "/nonexistent/scsi-pr-options-device"
SAS_TID = "sas,5001405000000002"
# iqn.café as a TransportID: iSCSI, ADDITIONAL LENGTH 20, the name's UTF-8 bytes, zero padded
CAFE_TID = bytes([5, 0, 0, 20]) + "iqn.café".encode() + bytes(11)


@pytest.fixture
def sg_persist() -> str:
    """The real sg_persist: without it the comparisons cannot run (in CI: a failure)."""
    return tool("sg_persist", "sg3-utils")


def run_real(path: str, argv: list[str]) -> tuple[str, str, int]:
    """sg_persist's stdout, stderr (bytes as UTF-8, raw bytes escaped) and exit status."""
    real = subprocess.run(
        ["sg_persist", *argv],
        executable=path,
        capture_output=True,
        env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"},
        check=False,
    )
    text = (real.stdout + b"\0" + real.stderr).decode("utf-8", "surrogateescape")
    stdout, stderr = text.split("\0", 1)
    return stdout, stderr, real.returncode


def run_mine(argv: list[str]) -> tuple[str, str, int]:
    """scsi-pr persist's stdout, stderr and exit status: nothing may reach a transport."""

    def no_transport(op: object, fd: int) -> None:
        raise AssertionError("no command may be sent for this command line")

    outcome = execute(argv, no_transport, env={})  # type: ignore[arg-type]
    return "".join(outcome.stdout), "".join(outcome.stderr), outcome.code


def no_stdin() -> list[str]:
    raise AssertionError("nothing here reads stdin")


# One line per behaviour a mutation of options.py would change; "@" is the missing device.
CASES = [
    "-n -o -G -R @",  # two PR OUT service actions: one and only one (exit 31)
    "-n -G -L -o @",  # the same when --out comes last
    "-T 100000000 -n -o -R @",  # the type is 32 bits: this is type 0, so the warning
    "-T 100000003 -n -o -R @",  # type 3: no warning
    "-Q zz -n @",  # bad relative target port: message and exit 1
    "--relative-target-port=xyz -n -o -M @",
    "-Q ffff -n -o -M -X sas,5001405000000002 @",  # the largest port is accepted
    "-Q 10000 -n -o -M -X sas,5001405000000002 @",  # one more is refused
    "-Q 100000005 -n -o -M -X sas,5001405000000002 @",  # 32 bits: port 5, accepted
    "--transport-id= -n -o -G @",  # an empty TransportID: the empty text is reported
    "-i -n -o @",  # --in before other flags still contradicts --out
    "-i -o -n @",
    "-V -n @",  # --version still wins after other flags
    "-V -v -H -n @",
    "-vvv -n -o -G -X 1 @",  # a 1-byte TransportID decoded from its zero padding
    "-vvv -n -o -G -X 5 @",
    "-vvv -n -o -G -X 1,2,0,5,0,0,0,7 @",
]


@pytest.mark.parametrize("line", CASES)
def test_same_as_sg_persist(sg_persist: str, line: str) -> None:
    """Each refusal, warning and decode must be sg_persist's, text and exit status."""
    argv = [MISSING if a == "@" else a for a in line.split()]
    assert run_mine(argv) == run_real(sg_persist, argv)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        # sg_persist takes "file=" and "FILE=" (and no other spelling)
        ("FILE=", b"sas,5001405000000002\n"),
        ("file=", b"sas,5001405000000002\n"),
        ("File=", b"sas,5001405000000002\n"),
        # a comment in Latin-1 (not UTF-8) is just a comment to sg_persist
        ("file=", b"# caf\xe9\nsas,5001405000000002  # r\xe9sum\xe9\n"),
        ("file=", b"0 0 0 0 0 0 0 0 21 0 0 24 ff 31 b5 a8 # \xff\xfe\n"),
        ("FILE=", b"sas,5001405000000002\n5,0,0,14,69,71,6e,2e # \x80\n"),
        # a UTF-8 iSCSI name is read as the bytes it is
        ("file=", "iqn.café\n".encode()),
        # lines end at "\n" only (fgets): a "\r" or form feed stays inside the comment
        ("file=", b"# comment\r1 2 zz\nsas,5001405000000002\n"),
        ("file=", b"# comment\x0c1 2 zz\r\nsas,5001405000000002\r\n"),
    ],
)
def test_transport_id_files_same_as_sg_persist(
    sg_persist: str, tmp_path: Path, name: str, content: bytes
) -> None:
    """-X file=NAME / FILE=NAME reads the file's bytes, whatever they are, as sg_persist."""
    tids = tmp_path / "tids.txt"
    tids.write_bytes(content)
    argv = ["-n", "-o", "-G", "-X", f"{name}{tids}", MISSING]
    assert run_mine(argv) == run_real(sg_persist, argv)


def test_decoded_utf8_iscsi_name_same_as_sg_persist(sg_persist: str, tmp_path: Path) -> None:
    """-vvv prints the given TransportIDs; sg_persist prints an iSCSI name's bytes as they are,
    so a UTF-8 name reads back as typed (from the command line or from a file)."""
    tids = tmp_path / "tids.txt"
    tids.write_bytes("iqn.café\n".encode())
    for tid in ("iqn.café", f"file={tids}"):
        argv = ["-vvv", "-n", "-o", "-G", "-X", tid, MISSING]
        assert run_mine(argv) == run_real(sg_persist, argv)


@pytest.mark.usefixtures("ascii_locale")
def test_transport_id_file_is_utf8_whatever_the_locale(tmp_path: Path) -> None:
    """sg_persist copies the file's bytes; a file is read as UTF-8 (as argv and stdin are), so
    an iSCSI name's bytes reach the TransportID unchanged under an ASCII locale too."""
    tids = tmp_path / "tids.txt"
    tids.write_bytes("iqn.café\n".encode())
    out = Outcome()
    op = parse_options(["-n", "-o", "-G", "-X", f"file={tids}", "d"], out, {}, no_stdin)
    assert (op.transport_ids, out.stderr) == ([CAFE_TID], [])


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        # no service action: Read Keys, a PR IN
        (["-n", "d"], {}, Options(inquiry=False, prin_sa=In.READ_KEYS, device="d")),
        (
            ["-r", "d"],
            {READONLY_ENV: "1"},
            Options(readonly=True, prin_sa=In.READ_RESERVATION, device="d"),
        ),
        # -yy: read-write forced, even with SG_PERSIST_IN_RDONLY set
        (
            ["-n", "-yy", "-k", "d"],
            {},
            Options(inquiry=False, readwrite_force=True, prin_sa=In.READ_KEYS, device="d"),
        ),
        (
            ["-yyy", "-c", "d"],
            {READONLY_ENV: ""},
            Options(readwrite_force=True, prin_sa=In.REPORT_CAPABILITIES, device="d"),
        ),
        (["-y", "-s", "d"], {}, Options(readonly=True, prin_sa=In.READ_FULL_STATUS, device="d")),
        # PR OUT: pr_in off, the numbers as given (the type in 32 bits)
        (
            ["-o", "-G", "-K", "1", "-S", "-1", "-T", "100000005", "d"],
            {READONLY_ENV: "1"},
            Options(
                pr_in=False,
                prout_sa=Out.REGISTER,
                param_rk=1,
                param_sark=(1 << 64) - 1,
                prout_type=5,
                device="d",
            ),
        ),
        (
            ["-o", "-M", "-U", "-Q", "100000005", "-X", SAS_TID, "-l", "100000010", "d"],
            {},
            Options(
                pr_in=False,
                prout_sa=Out.REGISTER_AND_MOVE,
                param_unreg=True,
                param_rtp=5,
                alloc_len=0x10,
                transport_ids=[bytes.fromhex("06000000 5001405000000002") + bytes(12)],
                device="d",
            ),
        ),
        (
            ["--out", "--reserve", "-T", "3", "-Y", "-Z", "-HH", "--socket=/s", "-vd", "d"],
            {},
            Options(
                pr_in=False,
                param_alltgpt=True,
                param_aptpl=True,
                hex=2,
                prout_sa=Out.RESERVE,
                prout_type=3,
                verbose=1,
                device="d",
                socket="/s",
            ),
        ),
    ],
)
def test_options_of_a_command_line(argv: list[str], env: dict[str, str], expected: Options) -> None:
    """The exact Options sg_persist's main() would hold when it opens the device."""
    assert parse_options(argv, Outcome(), env, no_stdin) == expected


@pytest.mark.parametrize(
    ("argv", "code", "stderr"),
    [
        (["-Q", "zz", "d"], Exit.SYNTAX_ERROR, "bad argument to '--relative-target-port'\n"),
        (
            ["-o", "-M", "-Q", "ffff", "-Q", "10000", "d"],
            Exit.SYNTAX_ERROR,
            "argument to '--relative-target-port' 0 to ffff inclusive\n",
        ),
        (["-m", "zz", "d"], Exit.SYNTAX_ERROR, "bad argument to '--maxlen'\n"),
        (["-l", "", "d"], Exit.SYNTAX_ERROR, "bad argument to '--alloc-length'\n"),
        (["-V", "-n", "-i", "d"], Exit.OK, "version: 0.67 20190913\n"),
    ],
)
def test_stops_with(argv: list[str], code: int, stderr: str) -> None:
    """Where parsing stops: the exit status (not just its truth) and the one message."""
    out = Outcome()
    with pytest.raises(Done) as stop:
        parse_options(argv, out, {}, no_stdin)
    assert (stop.value.code, "".join(out.stderr)) == (code, stderr)
