"""``scsi-pr target serve`` with arguments found by fuzzing: bytes that are not UTF-8 (kept by
Python as surrogate escapes) and hosts the resolver cannot encode end in a one-line error and a
non-zero exit status, never a traceback."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from scsi_pr.helper.systemd import ServiceNotifier
from scsi_pr.rig.cli import main as scsi_pr
from scsi_pr.target.cli import (
    UsageError,
    build_parser,
    is_utf8,
    main,
    parse_chap,
    parse_name,
    serve,
)
from scsi_pr.target.errors import TargetError
from scsi_pr.target.server import PortalUnusable, TargetConfig

IQN = "iqn.2024-01.test.scsi-pr:disk"
NOT_UTF8 = b"\xff".decode("utf-8", "surrogateescape")  # how argv holds a byte that is not UTF-8


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--iqn", f"iqn.2020-01.x{NOT_UTF8}"], "--iqn 'iqn.2020-01.x\\udcff': not an iSCSI name"),
        (["--allow-initiator", f"iqn.2020-01.y{NOT_UTF8}"], "--allow-initiator 'iqn"),
        (["--chap", f"u:{NOT_UTF8}secret-secret"], "--chap: USER and SECRET must be UTF-8"),
        (["--chap", f"{NOT_UTF8}:secret-secret"], "--chap: USER and SECRET must be UTF-8"),
        (
            ["--chap", "u:secret-secret", "--mutual-chap", f"t:{NOT_UTF8}other-secret"],
            "--mutual-chap: USER and SECRET must be UTF-8",
        ),
        (["--alias", f"disk{NOT_UTF8}"], "--alias 'disk\\udcff': not UTF-8 text"),
        # an empty value was taken as "not given": a target without CHAP, or without mutual CHAP
        (["--chap", ""], "--chap: use USER:SECRET"),
        (["--chap", "u:secret-secret", "--mutual-chap", ""], "--mutual-chap: use USER:SECRET"),
        (["--mutual-chap", ""], "--mutual-chap needs --chap"),
    ],
)
def test_text_that_is_not_utf8_is_a_usage_error(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["target", "serve", "--iqn", IQN, "--state-dir", str(tmp_path), *args]
    with pytest.raises(SystemExit) as exit_:
        scsi_pr(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())  # refused before anything was made


def test_the_refusal_never_repeats_the_secret() -> None:
    with pytest.raises(UsageError) as e:
        parse_chap(f"user:{NOT_UTF8}very-secret-words", "--chap")
    assert "very-secret" not in str(e.value)


def test_names_and_secrets_in_utf8_stay_accepted() -> None:
    """Non-ASCII is not the fault: UTF-8 names and secrets are valid iSCSI text."""
    assert parse_name("iqn.2024-01.tëst:dïsk", "--iqn") == "iqn.2024-01.tëst:dïsk"
    assert parse_chap("üser:sécret-sécret", "--chap").secret == "sécret-sécret".encode()
    assert is_utf8("ü") and not is_utf8(NOT_UTF8)


@pytest.mark.parametrize(
    ("host", "says"),
    [
        (NOT_UTF8, "host '\\udcff': not a host name"),
        ("a" * 10000, "'… (10000 chars): not a host name"),  # IDNA: label too long
    ],
)
def test_a_host_the_resolver_cannot_encode_cannot_be_listened_on(
    host: str, says: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The path of every other unusable portal: "cannot listen", exit status 1."""
    config = TargetConfig(iqn=IQN, state_dir=tmp_path, size=1 << 20, portals=((host, 0),))
    with caplog.at_level(logging.ERROR, logger="scsi_pr.target"):
        assert asyncio.run(serve(config, ServiceNotifier(None))) == 1
    (record,) = caplog.records
    message = record.getMessage()
    assert message.startswith("cannot listen: ") and says in message
    assert len(message) < 300  # a 10000-character host is not repeated whole


def test_portal_unusable_is_an_os_error_and_a_target_error() -> None:
    """An OSError for ``serve``'s one "cannot listen" path; a TargetError for the house root."""
    assert issubclass(PortalUnusable, OSError) and issubclass(PortalUnusable, TargetError)


def test_main_exits_1_on_a_host_it_cannot_encode(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    argv = ["serve", "--iqn", IQN, "--state-dir", str(tmp_path), "--size", "1M",
            "--portal", f"{NOT_UTF8}:0"]  # fmt: skip
    with caplog.at_level(logging.ERROR, logger="scsi_pr.target"):
        assert main(argv) == 1
    assert any(r.getMessage().startswith("cannot listen: host ") for r in caplog.records)


SERVE = ["serve", "--iqn", "iqn.2026-12.org.example:t", "--state-dir", "/nonexistent"]


@pytest.mark.parametrize("option", ["--nop-interval", "--nop-timeout", "--data-out-timeout"])
@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1", "86401", "soon"])
def test_connection_timers_are_seconds_up_to_a_day(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args([*SERVE, option, value])
    assert caught.value.code == 2
    expected = f"{value!r} is not a number of seconds, more than 0 and at most 86400"
    assert expected in capsys.readouterr().err
    taken = build_parser().parse_args([*SERVE, option, "86400"])  # a day is the longest
    assert getattr(taken, option[2:].replace("-", "_")) == 86400.0
