"""``scsi-pr target serve``: every bad option is a one-line error before anything listens."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import pytest

from scsi_pr.rig.cli import main as scsi_pr
from scsi_pr.target.cli import build_parser, config_from, parse_portal, serve
from scsi_pr.target.server import TargetConfig

IQN = "iqn.2024-01.test.scsi-pr:disk"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--iqn", "disk"], "not an iSCSI name"),
        (["--size", "100"], "multiple of 512"),
        (["--profile", "spc4"], "known profiles: spc5"),
        (["--chap", "user:short"], "12 to 255 bytes"),
        (["--chap", "nosecret"], "USER:SECRET"),
        (["--mutual-chap", "target:target-secret"], "needs --chap"),
        (["--chap", "u:same-secret-1", "--mutual-chap", "t:same-secret-1"], "distinct"),
        (["--discovery-chap"], "needs --chap"),
        (["--portal", "[::1"], "HOST:PORT"),
        (["--portal", "host:70000"], "out of range"),
        (["--luns", "0"], "at least 1"),
        (["--luns", "300"], "at most 256"),
        (["--target-port", "3"], "target port 3"),
        (["--max-data-segment", "100"], "512"),
        (["--allow-initiator", "bob"], "not an iSCSI name"),
        (["--data-out-timeout", "0"], "Data-Out timeouts must be > 0"),
    ],
)
def test_bad_options(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        scsi_pr(["target", "serve", "--iqn", IQN, "--state-dir", str(tmp_path), *args])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing created


def test_options_become_the_config(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["serve", "--iqn", IQN, "--state-dir", str(tmp_path), "--portal", "[::1]:3261",
         "--portal", "192.0.2.1", "--luns", "3", "--size", "8M", "--chap", "host:host-secret-1",
         "--mutual-chap", "disk:disk-secret-1", "--allow-initiator", "iqn.2024-01.test:a",
         "--max-sessions", "5", "--max-commands", "4", "--data-out-timeout", "7.5"]
    )  # fmt: skip
    config = config_from(args)
    assert config.portals == (("::1", 3261), ("192.0.2.1", 3260))
    assert (config.luns, config.size, config.max_sessions, config.command_window) == (
        3, 8 << 20, 5, 4)  # fmt: skip
    assert config.data_out_timeout == 7.5
    assert config.chap is not None and config.chap.target is not None
    assert config.chap.initiator.secret == b"host-secret-1" and config.discovery_chap is None
    assert config.allowed_initiators == frozenset({"iqn.2024-01.test:a"})
    node = config.login_settings().targets[0]
    assert node.admits("iqn.2024-01.test:a") and not node.admits("iqn.2024-01.test:b")


def test_parse_portal() -> None:
    assert parse_portal("0.0.0.0") == ("0.0.0.0", 3260)
    assert parse_portal("[fe80::1%eth0]:3262") == ("fe80::1%eth0", 3262)


def test_a_portal_that_cannot_be_bound_exits_1_saying_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """docs/target.md: exit status 1, the bind error in the log, nothing left listening."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = TargetConfig(iqn="iqn.2024-01.test:disk", state_dir=tmp_path, size=1 << 20,
                              portals=(("127.0.0.1", port),))  # fmt: skip
        with caplog.at_level(logging.ERROR, logger="scsi_pr.target"):
            assert asyncio.run(serve(config)) == 1
    (record,) = caplog.records
    assert record.getMessage().startswith("cannot listen: ") and "in use" in record.getMessage()
