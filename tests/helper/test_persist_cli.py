"""``scsi-pr persist`` option handling against the real sg_persist (no device needed).

Every command line below stops before a SCSI command is sent (a syntax error, help, version,
or an open error on a missing device), so both programs can run here as they are; their
stdout, stderr and exit status must be identical.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from needs import tool

from scsi_pr.helper.getopt import GetoptError, GetoptLong
from scsi_pr.helper.persist.cli import execute
from scsi_pr.helper.persist.exit_codes import Exit, convert_errno
from scsi_pr.helper.persist.numbers import get_num, scan_hex
from scsi_pr.helper.persist.options import OPTIONS

SG_PERSIST = shutil.which("sg_persist")
MISSING = "/nonexistent/scsi-pr-test-device"


@pytest.fixture
def oracle() -> str:
    """sg_persist itself: without it these comparisons cannot run (in CI: a failure)."""
    return tool("sg_persist", "sg3-utils")


CASES = [
    # getopt_long errors: message, then the main usage, exit 0 (sg_persist's own quirk)
    "-x", "--foo", "--foo=3", "-K", "--param-rk", "--in=3 d", "--param d", "--param=4 d",
    "--read_ d", "--read-f=1 d", "-hx",
    # help and version
    "-h", "-hh", "-hhh", "-h -V", "-V", "-vV", "--version", "--help d",
    # hex arguments and their limits
    "-o -G -S xyz d", "-o -G -S 0x12 -n @", "-K 123456789abcdef01 -n -o -G @", "-K -1 -n -o -G @",
    "-T zz d", "-T 0x5 -o -R -n @", "-T 100000005 -o -R -n @", "-Q 10000 d", "-Q 5 -n d",
    "-l 3000 d", "-l 2000 -n @", "-l zz d", "-m 8k -n @", "-m 8193 d", "-m 9k d", "-m 0x2001 d",
    "-m 2001h d", "-m zz d", "-m 8kb -n @", "-m 2kib -n @", "-m 1b -n @",
    # service-action consistency (exit 31)
    "-o -G -k d", "-o -i -k d", "-G d", "-k -r d", "-o -M -n d", "-U -n d", "-o d", "-s -c -n x",
    "-o -R -n @", "-o -P -n @", "-o -A -K 1 -S 2 -n @",
    # TransportIDs
    "-X zz d", "-X 1,2,300 d", "-X sas,123 d", "-X fcp,12 d", "-X sop,12 d", "-X spi,1 d",
    "-o -M -X sas,5000c50005b32001 -n @", "-vvv -o -G -X sas,5000c50005b32001 -n @",
    "-vvv -o -G -X iqn.1994-05.com.redhat:abc,i,0x123456 -n @",
    "-vvv -o -G -X 0,0,0,0,0,0,0,0,21,0,0,24,ff,31,b5,a8 -n @",
    "-vvv -o -G -X fcp,10000000C9F3A571 -n @", "-vvv -o -G -X SAS,5000C50005B32001 -n @",
    "-vvv -o -G -X sbp,0123456789abcdef -n @", "-vvv -o -G -X spi,3,4 -n @",
    # operands, clustering, permutation, long-option abbreviations
    "a b c", "-- -n d", "-n @ -- x", "-n", "-nik", "-nik @", "-nikd @", "-nKz d", "@ -n -k",
    "-n -y -k @", "-n -yy -k @", "-n -yyy -k @", "-o -y -G -n @", "--device=@ -n", "--dev @ -n",
    "--no @", "--re @", "--rep @", "--read-k --no-i @", "-vv -n @", "-v -o -G -n @",
    "-d @ -d @ -n", "-d @ extra",
    # options act in getopt's order: the first problem on the line is the one reported
    "-K zz -x d", "-x -K zz d", "--param-rk=zz -v -d", "-X sop,1 -x d", "-o -G -X zz --foo @",
    "-V --foo", "--foo -V", "-Q 10000 -h d",
]  # fmt: skip


def run_real(argv: list[str], env: dict[str, str]) -> tuple[str, str, int]:
    # argv[0] "sg_persist": glibc's getopt names the program by argv[0]
    real = subprocess.run(
        ["sg_persist", *argv],
        executable=SG_PERSIST,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "LC_ALL": "C", **env},
        check=False,
    )
    return real.stdout, real.stderr, real.returncode


def run_mine(argv: list[str], env: dict[str, str]) -> tuple[str, str, int]:
    def no_transport(op: object, fd: int) -> None:
        raise AssertionError("no command may be sent for this command line")

    outcome = execute(argv, no_transport, env=env)  # type: ignore[arg-type]
    return "".join(outcome.stdout), "".join(outcome.stderr), outcome.code


@pytest.mark.usefixtures("oracle")
@pytest.mark.parametrize("line", CASES)
def test_same_as_sg_persist(line: str) -> None:
    argv = [MISSING if a == "@" else a for a in line.split()]
    assert run_mine(argv, {}) == run_real(argv, {})


@pytest.mark.usefixtures("oracle")
@pytest.mark.parametrize(
    ("line", "env"),
    [
        ("-k @", {"SG_PERSIST_IN_RDONLY": "1"}),
        ("-n -k @", {"SG_PERSIST_IN_RDONLY": "1"}),
        ("-n -yy -k @", {"SG_PERSIST_IN_RDONLY": "1"}),
        ("-n -o -G @", {"SG_PERSIST_IN_RDONLY": "1"}),
        ("-n @ -k", {"POSIXLY_CORRECT": "1"}),
        ("-n @ extra -k", {"POSIXLY_CORRECT": "1"}),
    ],
)
def test_environment_same_as_sg_persist(line: str, env: dict[str, str]) -> None:
    argv = [MISSING if a == "@" else a for a in line.split()]
    mine, real = run_mine(argv, env), run_real(argv, env)
    if not line.startswith("-n") and mine != real:
        # without -n sg_persist opens read-only for its INQUIRY first; we send none
        assert (
            real[1] == f"sg_persist: error opening file (ro): {MISSING}: "
            "No such file or directory\n"
        )
        assert (
            mine[1] == f"sg_persist: error opening file {MISSING} (ro): No such file or directory\n"
        )
        assert mine[2] == real[2] == 52
    else:
        assert mine == real


@pytest.mark.usefixtures("oracle")
def test_transport_ids_from_a_file_and_stdin(tmp_path: Path) -> None:
    tids = tmp_path / "tids.txt"
    tids.write_text(
        "# two initiators\n"
        "sas,5001405000000002\n"
        "   iqn.2003-01.org.example:host1,i,0x23d000000001   # with an ISID\n"
        "\n"
        "0 0 0 0 0 0 0 0 21 0 0 24 ff 31 b5 a8\n"
        "6,0,0,0,5,0,c5,0,5,b3,20,1 # comment\n"
    )
    argv = ["-vvv", "-n", "-o", "-G", "-S", "1", f"--transport-id=file={tids}", MISSING]
    assert run_mine(argv, {}) == run_real(argv, {})
    bad = tmp_path / "bad.txt"
    bad.write_text("sas,5001405000000002\n1 2 zz\n")
    argv = ["-n", "-o", "-G", "-X", f"file={bad}", MISSING]
    assert run_mine(argv, {}) == run_real(argv, {})
    argv = ["-n", "-o", "-G", "-X", f"file={tmp_path / 'absent'}", MISSING]
    assert run_mine(argv, {}) == run_real(argv, {})
    stdin_argv = ["-vvv", "-n", "-o", "-G", "-X", "-", MISSING]
    text = tids.read_text()
    real = subprocess.run(
        ["sg_persist", *stdin_argv],
        executable=SG_PERSIST,
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )
    mine = execute(
        stdin_argv,
        lambda op, fd: None,  # type: ignore[arg-type,return-value]
        env={},
        read_stdin=lambda: text.splitlines(keepends=True),
    )
    assert ("".join(mine.stdout), "".join(mine.stderr), mine.code) == (
        real.stdout,
        real.stderr,
        real.returncode,
    )


# -- the pieces, checked on their own ------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "bits", "value"),
    [
        ("123abc", 64, 0x123ABC),
        ("0x123ABC", 64, 0x123ABC),
        ("  ff", 64, 0xFF),
        ("12zz", 64, 0x12),
        ("0x", 64, 0),
        ("-1", 64, (1 << 64) - 1),
        ("1" * 17, 64, (1 << 64) - 1),
        ("100000005", 32, 5),
        ("+a", 32, 10),
        ("zz", 64, None),
        ("", 64, None),
        ("-", 64, None),
    ],
)
def test_scan_hex_is_scanf_x(text: str, bits: int, value: int | None) -> None:
    assert scan_hex(text, bits) == value


@pytest.mark.parametrize(
    ("text", "value"),
    [("8192", 8192), ("8k", 8192), ("8K", 8192), ("2kb", 2000), ("2kib", 2048), ("1b", 512),
     ("3w", 6), ("0x20", 32), ("20h", 32), ("zz", -1), ("", -1), ("5q", -1), ("1m", 1 << 20)],
)  # fmt: skip
def test_get_num(text: str, value: int) -> None:
    assert get_num(text) == value


def test_getopt_permutes_clusters_and_abbreviates() -> None:
    getopt = GetoptLong(OPTIONS, ["dev", "-nikK5", "--param-s=7", "--prout", "3", "--", "-x"])
    expected = [("n", None), ("i", None), ("k", None), ("K", "5"), ("S", "7"), ("T", "3")]
    assert list(getopt) == expected
    assert getopt.operands == ["dev", "-x"]
    with pytest.raises(GetoptError, match="ambiguous"):
        list(GetoptLong(OPTIONS, ["--re"]))
    # --read-k: two spellings of one option are no ambiguity
    assert list(GetoptLong(OPTIONS, ["--read-k"])) == [("k", None)]
    opts = list(GetoptLong(OPTIONS, ["--socket", "/run/x.sock", "--so=/y"]))
    assert opts == [("socket", "/run/x.sock"), ("socket", "/y")]


def test_exit_codes_follow_sg3_utils() -> None:
    import errno

    assert convert_errno(errno.ENOENT) == 52
    assert convert_errno(errno.ECONNREFUSED) == Exit.OS_BASE_ERR  # errno > 46
    assert (Exit.RES_CONFLICT, Exit.UNIT_ATTENTION, Exit.ILLEGAL_REQ) == (24, 6, 5)
