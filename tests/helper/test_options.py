"""``scsi-pr-helper``'s command line (``scsi_pr.helper.options``) in-process: every option's
field and default, each refusal's exact text and type, the bounds at and just past each limit,
``--help``/``--version`` and ``-T``'s reading.

Why in-process: the C helper comparisons (tests/helper/test_getopt.py, test_cli_vs_c_helper.py)
check what a user sees, but a daemon started as a subprocess hides the code from mutation
testing. The per-option parsers built at import (``_port_number``, ``_seconds``) are also called
here directly: ``parse`` only ever runs the closures made when the module was first imported.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from types import SimpleNamespace

import pytest

from scsi_pr.helper import options
from scsi_pr.helper.daemon import default_max_clients
from scsi_pr.helper.errors import HelperError
from scsi_pr.helper.options import VERSION, Exit, InvalidOption, Options, parse, parse_trace
from scsi_pr.sim.profiles import PROFILES

MOST = "at most 1e+09"  # MAX_SECONDS, as the messages print it
PROG = "/usr/libexec/scsi-pr-helper"  # a path: messages use argv[0] or its basename


def run(*args: str) -> tuple[int | None, str, str, Options | None]:
    """(exit code or None when parsing went through, stdout, stderr, options)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        opts = parse([PROG, *args], out, err)
    except Exit as e:
        return e.code, out.getvalue(), err.getvalue(), None
    return None, out.getvalue(), err.getvalue(), opts


def taken(*args: str) -> Options:
    code, out, err, opts = run(*args)
    assert (code, out, err) == (None, "", "")
    assert opts is not None
    return opts


def refused(*args: str) -> str:
    """The InvalidOption text; checks stderr carries it after the basename, exit code 1."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(Exit) as caught:
        parse([PROG, *args], out, err)
    cause = caught.value.__cause__
    assert isinstance(cause, InvalidOption) and isinstance(cause, HelperError)
    assert (caught.value.code, out.getvalue()) == (1, "")
    assert err.getvalue() == f"scsi-pr-helper: {cause}\n"
    return str(cause)


# -- defaults and every option's field ---------------------------------------------------------


def test_no_options_give_the_c_helpers_defaults() -> None:
    assert dataclasses.asdict(taken()) == {
        "socket_path": "/var/run/qemu-pr-helper.sock",
        "socket_given": False,
        "pidfile": "/var/run/qemu-pr-helper.pid",
        "pidfile_given": False,
        "daemonize": False,
        "traces": [],
        "uid": None,
        "gid": None,
        "loglevel": 1,
        "quiet": False,
        "backend": "sg",
        "initiator": None,
        "state_dir": None,
        "target_port": 1,
        "target_ports": 2,
        "profile": "spc5",
        "max_clients": None,
        "idle_timeout": None,
        "shutdown_grace": 30.0,
        "cpus": "auto",
    }


def test_every_option_sets_its_field() -> None:
    opts = taken(
        "-k", "/run/pr.sock", "-f", "/run/pr.pid", "-d", "-T", "prh_*", "--trace=file=/t",
        "-u", "0", "-g", "0", "-v", "-v", "--backend=sim", "--initiator=naa.5001405000000002",
        "--state-dir", "/var/lib/x", "--target-port=2", "--target-ports=4", "--profile=lio-6.1",
        "--max-clients=1", "--idle-timeout=0.5", "--shutdown-grace=0", "--cpus=0",
    )  # fmt: skip
    assert dataclasses.asdict(opts) == {
        "socket_path": "/run/pr.sock",
        "socket_given": True,
        "pidfile": "/run/pr.pid",
        "pidfile_given": True,
        "daemonize": True,
        "traces": ["prh_*", "file=/t"],
        "uid": 0,
        "gid": 0,
        "loglevel": 3,
        "quiet": False,
        "backend": "sim",
        "initiator": "naa.5001405000000002",
        "state_dir": "/var/lib/x",
        "target_port": 2,
        "target_ports": 4,
        "profile": "lio-6.1",
        "max_clients": 1,
        "idle_timeout": 0.5,
        "shutdown_grace": 0.0,
        "cpus": frozenset({0}),
    }


def test_verbosity_is_the_c_helpers() -> None:
    """libmpathpersist's verbose = quiet ? 0 : min(loglevel, 3)."""
    assert [taken(*["-v"] * n).verbose for n in range(4)] == [1, 2, 3, 3]
    assert (taken("-v", "-q").verbose, taken("-q").quiet) == (0, True)


@pytest.mark.parametrize("name", ["sg", "sim", "ioctl"])
def test_each_backend_is_taken(name: str) -> None:
    assert taken(f"--backend={name}").backend == name


def test_socket_and_pidfile_are_marked_given_even_at_their_defaults() -> None:
    opts = taken("--socket=/var/run/qemu-pr-helper.sock", "--pidfile", "rel.pid")
    assert (opts.socket_path, opts.socket_given) == ("/var/run/qemu-pr-helper.sock", True)
    assert (opts.pidfile, opts.pidfile_given) == ("rel.pid", True)  # no check, as in C


# -- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-k", "relative.sock"], "socket path must be absolute"),
        (["--socket="], "socket path must be absolute"),
        (["--backend", "SG"], "invalid backend 'SG' (choose from sg, sim, ioctl)"),
        (["--backend="], "invalid backend '' (choose from sg, sim, ioctl)"),
        (["--target-port", "0"], "invalid target-port '0' (1..65535)"),
        (["--target-port", "65536"], "invalid target-port '65536' (1..65535)"),
        (["--target-ports", "x"], "invalid target-ports 'x' (1..65535)"),
        (["--max-clients", "0"], "invalid max-clients '0' (a whole number, 1..65536)"),
        (["--idle-timeout", "0"], f"invalid idle-timeout '0' (seconds, more than 0, {MOST})"),
        (["--shutdown-grace", "-1"], f"invalid shutdown-grace '-1' (seconds, 0 or more, {MOST})"),
        (["--profile", "spc4"], f"invalid profile 'spc4' (choose from {', '.join(PROFILES)})"),
        (["-u", "4294967295"], "invalid user '4294967295'"),
        (["-g", "4294967295"], "invalid group '4294967295'"),
    ],
)  # fmt: skip
def test_bad_values_are_refused_in_the_c_helpers_words(args: list[str], message: str) -> None:
    assert refused(*args) == message


def test_a_refusal_stops_at_the_first_bad_option() -> None:
    """Options act in order: a bad value before -V fails, -V before it prints the version."""
    assert refused("--backend=x", "-V").startswith("invalid backend 'x'")
    code, out, err, _ = run("-V", "--backend=x")
    assert (code, err) == (0, "") and out.startswith(f"{PROG} {VERSION}\n")


def test_getopt_errors_name_argv0_then_its_basename() -> None:
    assert run("--bogus")[:3] == (
        1,
        "",
        f"{PROG}: unrecognized option '--bogus'\n"
        f"scsi-pr-helper: Try `{PROG} --help' for more information.\n",
    )


def test_exit_carries_its_code() -> None:
    assert (Exit(1).code, str(Exit(1)), Exit(0).args) == (1, "1", (0,))


# -- users and groups: a name first, else a number below UINT32_MAX (qemu_strtoul's check) ---


@pytest.fixture
def accounts(monkeypatch: pytest.MonkeyPatch) -> None:
    """A user "alice" (uid 1234) that is no group and a group "staff" (gid 5678) that is no
    user, so that looking in the wrong database fails."""

    def getpwnam(name: str) -> SimpleNamespace:
        if name != "alice":
            raise KeyError(name)
        return SimpleNamespace(pw_uid=1234)

    def getgrnam(name: str) -> SimpleNamespace:
        if name != "staff":
            raise KeyError(name)
        return SimpleNamespace(gr_gid=5678)

    monkeypatch.setattr(options.pwd, "getpwnam", getpwnam)
    monkeypatch.setattr(options.grp, "getgrnam", getgrnam)


@pytest.mark.usefixtures("accounts")
def test_users_and_groups_are_looked_up_in_their_own_database() -> None:
    assert (taken("-u", "alice").uid, taken("--group=staff").gid) == (1234, 5678)
    assert refused("-u", "staff") == "invalid user 'staff'"
    assert refused("-g", "alice") == "invalid group 'alice'"


@pytest.mark.usefixtures("accounts")
@pytest.mark.parametrize("option", ["-u", "-g"])
def test_numeric_ids_stop_just_below_uint32_max(option: str) -> None:
    kind, attr = ("user", "uid") if option == "-u" else ("group", "gid")
    assert getattr(taken(option, "4294967294"), attr) == 4294967294
    assert getattr(taken(option, "0"), attr) == 0
    assert getattr(taken(option, "64"), attr) == 64
    for bad in ("4294967295", "8589934591", "-1", "1x", ""):
        assert refused(option, bad) == f"invalid {kind} '{bad}'"


# -- numbers with bounds: at and just past each limit ------------------------------------------


def test_max_clients_takes_one_and_the_cap() -> None:
    assert taken("--max-clients=1").max_clients == 1
    assert taken("--max-clients=65536").max_clients == 65536
    message = "invalid max-clients '65537' (a whole number, 1..65536)"
    assert refused("--max-clients=65537") == message


@pytest.mark.parametrize(("attr", "option"), [("target_port", "target-port"),
                                              ("target_ports", "target-ports")])  # fmt: skip
def test_port_numbers_at_and_past_their_limits(attr: str, option: str) -> None:
    """The parser ``parse`` uses was made at import: make one here too, so the code that
    makes it runs under test."""
    take = options._port_number(attr)
    for text, number in (("1", 1), ("2", 2), ("65535", 65535), ("0001", 1)):
        opts = Options()
        take(opts, text)
        assert getattr(opts, attr) == number
    for bad in ("0", "65536", "-1", "1.0", "x", "", "²"):
        opts = Options()
        with pytest.raises(InvalidOption) as caught:
            take(opts, bad)
        assert str(caught.value) == f"invalid {option} '{bad}' (1..65535)"
        assert getattr(opts, attr) == getattr(Options(), attr)
    assert getattr(taken(f"--{option}=65535"), attr) == 65535


@pytest.mark.parametrize(
    ("attr", "zero_allowed", "bound"),
    [("idle_timeout", False, "more than 0"), ("shutdown_grace", True, "0 or more")],
)
def test_seconds_at_and_past_their_limits(attr: str, zero_allowed: bool, bound: str) -> None:
    """As the port numbers: the parser is made here, as at import."""
    take = options._seconds(attr, zero_allowed=zero_allowed)
    good = ["1e-9", "2.5", "1e9", "1000000000"] + (["0", "-0"] if zero_allowed else [])
    for text in good:
        opts = Options()
        take(opts, text)
        assert getattr(opts, attr) == float(text)
    bad = ["1000000001", "1e10", "-1", "nan", "inf", "x", ""] + ([] if zero_allowed else ["0"])
    name = attr.replace("_", "-")
    for text in bad:
        opts = Options()
        with pytest.raises(InvalidOption) as caught:
            take(opts, text)
        assert str(caught.value) == f"invalid {name} '{text}' (seconds, {bound}, at most 1e+09)"
        assert getattr(opts, attr) == getattr(Options(), attr)


def test_an_initiator_is_kept_as_given() -> None:
    assert taken("--initiator", "iqn.2024-01.com.example:h1").initiator == (
        "iqn.2024-01.com.example:h1"
    )


# -- --help and --version ----------------------------------------------------------------------


def test_help_names_every_option_and_its_computed_defaults() -> None:
    code, out, err, _ = run("--help")
    assert (code, err) == (0, "")
    assert out.startswith(f"Usage: {PROG} [OPTIONS] FILE\nPersistent Reservation helper ")
    for line in (
        "(default '/var/run/qemu-pr-helper.pid')",
        "(default '/var/run/qemu-pr-helper.sock')",
        "(default 'naa.5001405000000001')",
        f"(default {default_max_clients()}, from the open files limit)",
        "(default 30)",
        f"how the simulated LUs answer: {', '.join(PROFILES)}",
        "(default 'spc5'; the same",
    ):
        assert line in out
    for option in options.OPTIONS.long:
        assert f"--{option.name}" in out
    assert run("-h")[:3] == (0, out, "")


def test_version_names_argv0_as_given() -> None:
    code, out, err, _ = run("--version")
    assert (code, err) == (0, "")
    assert out == (
        f"{PROG} scsi-pr 0.1.0 (qemu-pr-helper protocol of QEMU 2.11-10.x)\n"
        "Written by Paolo Bonzini.\n"
        "\n"
        "Copyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers\n"
        "This is free software; see the source for copying conditions.  There is NO\n"
        "warranty; not even for MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.\n"
    )


# -- -T: QEMU's trace option, read once the options are parsed ---------------------------------


def test_trace_specs_give_patterns_and_the_last_output_file(tmp_path: Path) -> None:
    events = tmp_path / "events"
    events.write_text("# a comment\nprh_command\n\n   \n  prh_error  \nprh_*\n")
    specs = [
        "prh_connect,enable=prh_refused",
        f",,events={events},file=/tmp/one",
        "enable=a=b,file=/tmp/two,",
        "",
    ]
    assert parse_trace(specs) == (
        ["prh_connect", "prh_refused", "prh_command", "prh_error", "prh_*", "a=b"],
        "/tmp/two",
    )


def test_trace_without_a_file_writes_nowhere_of_its_own() -> None:
    assert parse_trace([]) == ([], None)
    assert parse_trace(["p q,r"]) == (["p q", "r"], None)


@pytest.mark.parametrize("spec", ["bogus=1", "a,Enable=x", "FILE=/x"])
def test_trace_refuses_unknown_parameters(spec: str) -> None:
    key = spec.split(",")[-1].partition("=")[0]
    with pytest.raises(ValueError) as caught:
        parse_trace([spec])
    assert str(caught.value) == f"Invalid parameter '{key}'"
