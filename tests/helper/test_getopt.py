"""The one ``getopt_long`` (``scsi_pr.helper.getopt``) on its own, and through
``scsi-pr-helper``'s option handling against the C qemu-pr-helper's glibc.

sg_persist's side is compared line by line in tests/helper/test_persist_cli.py.
"""

from __future__ import annotations

import io
import subprocess

import pytest
from needs import tool

from scsi_pr.helper.daemon import SHUTDOWN_GRACE
from scsi_pr.helper.errors import HelperError
from scsi_pr.helper.getopt import GetoptError, GetoptLong, LongOption, OptionTable, seconds_within
from scsi_pr.helper.options import Exit, InvalidOption, parse

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


def test_permutation_is_the_default_as_in_glibc_without_posixly_correct() -> None:
    getopt = GetoptLong(TABLE, ["x", "-a"])
    assert list(getopt) == [("a", None)] and getopt.operands == ["x"]


def test_a_letter_named_twice_in_the_optstring_is_read_at_its_first_place() -> None:
    """glibc finds a letter with strchr: its first occurrence decides whether it takes an
    argument."""
    table = OptionTable("ab:a:", ())
    assert table.takes_argument("a") is False and table.takes_argument("b") is True


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
        (["-b", "1", "-a", "x"], [("b", "1"), ("a", None)], ["x"]),  # the word after goes on
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


def ours(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        parse(["qemu-pr-helper", *args], out, err)
        code = -1  # parsing went through: the C helper would go on to start
    except Exit as e:
        code = e.code
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    "line",
    ["--foo=3", "--foo -V", "-V --foo", "-V -x", "--he=3", "--version=1", "-k", "-q -T", "-u"],
)
def test_helper_options_act_in_order_like_the_c_helper(line: str) -> None:
    """argv[0] is the C helper's name in both, so messages compare byte for byte; -V prints a
    different version text, so only its status and stderr are compared."""
    c_helper = tool("qemu-pr-helper", "qemu-system-common")
    real = subprocess.run(
        ["qemu-pr-helper", *line.split()],
        executable=c_helper,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    code, _, err = ours(line.split())
    assert (code, err) == (real.returncode, real.stderr)


# -- the limit options (extensions) -----------------------------------------------------------
def test_limit_options_default_to_the_c_helper_behaviour() -> None:
    opts = parse(["scsi-pr-helper"], io.StringIO(), io.StringIO())
    assert opts.max_clients is None  # HelperServer computes it from RLIMIT_NOFILE
    assert opts.idle_timeout is None  # off: QEMU keeps its connection idle for hours
    assert opts.shutdown_grace == SHUTDOWN_GRACE == 30.0


def test_limit_options_are_taken() -> None:
    argv = ["x", "--max-clients", "7", "--idle-timeout=2.5", "--shutdown-grace", "0"]
    opts = parse(argv, io.StringIO(), io.StringIO())
    assert (opts.max_clients, opts.idle_timeout, opts.shutdown_grace) == (7, 2.5, 0.0)
    opts = parse(["x", "--max-c=65536", "--idle-t", "600"], io.StringIO(), io.StringIO())
    assert (opts.max_clients, opts.idle_timeout) == (65536, 600.0)
    opts = parse(["x", "--idle-timeout=1e9", "--shutdown-grace=1e9"], io.StringIO(), io.StringIO())
    assert (opts.idle_timeout, opts.shutdown_grace) == (1e9, 1e9)  # the longest allowed


POSITIVE, NON_NEGATIVE = "more than 0", "0 or more"
CANNOT_TELL = (
    "cannot tell the protocol of initiator '{}': "
    "use naa.<16 hex> (SAS), fc.<16 hex> (FC) or iqn.… (iSCSI)"
)


def seconds(option: str, value: str, bound: str) -> str:
    return f"invalid {option} '{value}' (seconds, {bound}, at most 1e+09)"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-clients", "0"], "invalid max-clients '0' (a whole number, 1..65536)"),
        (["--max-clients", "65537"], "invalid max-clients '65537' (a whole number, 1..65536)"),
        (["--max-clients", "-1"], "invalid max-clients '-1' (a whole number, 1..65536)"),
        (["--max-clients", "2.5"], "invalid max-clients '2.5' (a whole number, 1..65536)"),
        (["--idle-timeout", "0"], seconds("idle-timeout", "0", POSITIVE)),
        (["--idle-timeout", "-3"], seconds("idle-timeout", "-3", POSITIVE)),
        (["--idle-timeout", "nan"], seconds("idle-timeout", "nan", POSITIVE)),
        (["--idle-timeout", "inf"], seconds("idle-timeout", "inf", POSITIVE)),
        (["--idle-timeout", "1e400"], seconds("idle-timeout", "1e400", POSITIVE)),
        (["--idle-timeout", "soon"], seconds("idle-timeout", "soon", POSITIVE)),
        (["--idle-timeout", "1e18"], seconds("idle-timeout", "1e18", POSITIVE)),
        (["--shutdown-grace", "1000000001"], seconds("shutdown-grace", "1000000001", NON_NEGATIVE)),
        (["--shutdown-grace", "-0.1"], seconds("shutdown-grace", "-0.1", NON_NEGATIVE)),
        (["--shutdown-grace", ""], seconds("shutdown-grace", "", NON_NEGATIVE)),
        # digits str.isdigit accepts and int refuses: a message, not a traceback
        (["--max-clients", "²"], "invalid max-clients '²' (a whole number, 1..65536)"),
        (["--target-port", "³"], "invalid target-port '³' (1..65535)"),
        (["--target-ports", "٣"], "invalid target-ports '٣' (1..65535)"),
        (["-u", "²"], "invalid user '²'"),
        (["-g", "²"], "invalid group '²'"),
        (["--cpus", "²"], "invalid cpus: '²' is not auto, all or a CPU list such as 0,2-3"),
        # an empty name was taken as "not given" (the default initiator)
        (["--initiator", ""], f"invalid initiator: {CANNOT_TELL.format('')}"),
        (["--initiator=bogus"], f"invalid initiator: {CANNOT_TELL.format('bogus')}"),
        (["--initiator", "iqn.2024-01.x,i,0xzz"], "invalid initiator: bad ISID: 'zz'"),
    ],
)
def test_bad_limit_values_are_clear_errors(args: list[str], message: str) -> None:
    code, out, err = ours(args)
    assert (code, out, err) == (1, "", f"qemu-pr-helper: {message}\n")
    with pytest.raises(Exit) as caught:  # decided on the type: InvalidOption, a HelperError
        parse(["x", *args], io.StringIO(), io.StringIO())
    assert isinstance(caught.value.__cause__, InvalidOption)
    assert str(caught.value.__cause__) == message


def test_help_describes_the_limit_options() -> None:
    out = io.StringIO()
    with pytest.raises(Exit):
        parse(["scsi-pr-helper", "--help"], out, io.StringIO())
    text = out.getvalue()
    for option in ("--max-clients=N", "--idle-timeout=SECONDS", "--shutdown-grace=SECONDS"):
        assert option in text
    assert "(default 30)" in text and "(default off" in text


@pytest.mark.parametrize(
    ("text", "zero_allowed", "expected"),
    [
        ("2.5", False, 2.5),
        ("10", False, 10.0),  # the bound itself
        ("0", True, 0.0),
        ("0", False, None),
        ("10.5", True, None),
        ("-1", True, None),
        ("nan", True, None),
        ("inf", True, None),
        ("soon", True, None),
        ("", True, None),
    ],
)
def test_seconds_are_finite_and_within_the_bound(
    text: str, zero_allowed: bool, expected: float | None
) -> None:
    """The one reading of a number of seconds that the helper's, sim's and target's options
    share; each words its own refusal."""
    assert seconds_within(text, 10, zero_allowed=zero_allowed) == expected
