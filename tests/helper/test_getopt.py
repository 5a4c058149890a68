"""The one ``getopt_long`` (``scsi_pr.helper.getopt``) on its own, and through
``scsi-pr-helper``'s option handling against the C qemu-pr-helper's glibc.

sg_persist's side is compared line by line in tests/helper/test_persist_cli.py.
"""

from __future__ import annotations

import io
import shutil
import subprocess

import pytest

from scsi_pr.helper.errors import HelperError
from scsi_pr.helper.getopt import GetoptError, GetoptLong, LongOption, OptionTable
from scsi_pr.helper.options import Exit, parse

TABLE = OptionTable(
    "ab:c",
    (
        LongOption("alpha", False, "a"),
        LongOption("bravo", True, "b"),
        LongOption("brave", True, "b"),  # a second spelling: abbreviations may match both
        LongOption("charlie", False, "c"),
        LongOption("chart", True, "chart"),
    ),
)


def parse_all(args: list[str], posixly_correct: bool = False) -> tuple[list, list[str]]:
    getopt = GetoptLong(TABLE, args, posixly_correct=posixly_correct)
    return list(getopt), getopt.operands


@pytest.mark.parametrize(
    ("args", "options", "operands"),
    [
        (["-ac", "x"], [("a", None), ("c", None)], ["x"]),
        (["-abX", "y"], [("a", None), ("b", "X")], ["y"]),  # attached argument ends the cluster
        (["-b", "-a"], [("b", "-a")], []),  # a required argument may look like an option
        (["x", "-a", "y", "--", "-c"], [("a", None)], ["x", "y", "-c"]),
        (["--alpha", "--bravo=1", "--bravo", "2"], [("a", None), ("b", "1"), ("b", "2")], []),
        (["--al", "--brav=3"], [("a", None), ("b", "3")], []),  # same option: no ambiguity
        (["--chart="], [("chart", "")], []),
        (["-", "-a"], [("a", None)], ["-"]),
    ],
)
def test_glibc_semantics(args: list[str], options: list, operands: list[str]) -> None:
    assert parse_all(args) == (options, operands)


def test_posixly_correct_stops_at_the_first_operand() -> None:
    assert parse_all(["-a", "x", "-c"], posixly_correct=True) == ([("a", None)], ["x", "-c"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-x"], "invalid option -- 'x'"),
        (["-:"], "invalid option -- ':'"),
        (["-ab"], "option requires an argument -- 'b'"),
        (["--delta=1"], "unrecognized option '--delta=1'"),
        (["--alpha=1"], "option '--alpha' doesn't allow an argument"),
        (["--bra"], "option '--bravo' requires an argument"),
        (["--c=1"], "option '--c=1' is ambiguous; possibilities: '--charlie' '--chart'"),
    ],
)
def test_errors_in_glibc_words(args: list[str], message: str) -> None:
    with pytest.raises(GetoptError) as caught:
        parse_all(args)
    assert str(caught.value) == message
    assert isinstance(caught.value, HelperError)


def test_lazy_options_before_an_error_are_returned_first() -> None:
    seen = []
    with pytest.raises(GetoptError):
        for option in GetoptLong(TABLE, ["-a", "--bravo", "1", "-x", "-c"]):
            seen.append(option)
    assert seen == [("a", None), ("b", "1")]


# -- scsi-pr-helper's options against the C helper's ------------------------------------------
C_HELPER = shutil.which("qemu-pr-helper")


def ours(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        parse(["qemu-pr-helper", *args], out, err)
        code = -1  # parsing went through: the C helper would go on to start
    except Exit as e:
        code = e.code
    return code, out.getvalue(), err.getvalue()


@pytest.mark.skipif(C_HELPER is None, reason="qemu-pr-helper (qemu-system-common) not installed")
@pytest.mark.parametrize(
    "line",
    ["--foo=3", "--foo -V", "-V --foo", "-V -x", "--he=3", "--version=1", "-k", "-q -T", "-u"],
)
def test_helper_options_act_in_order_like_the_c_helper(line: str) -> None:
    """argv[0] is the C helper's name in both, so messages compare byte for byte; -V prints a
    different version text, so only its status and stderr are compared."""
    assert C_HELPER is not None
    real = subprocess.run(
        ["qemu-pr-helper", *line.split()],
        executable=C_HELPER,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    code, _, err = ours(line.split())
    assert (code, err) == (real.returncode, real.stderr)
