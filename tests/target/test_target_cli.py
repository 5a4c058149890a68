"""``scsi-pr target serve``: every bad option is a one-line error before anything listens."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from scsi_pr.helper.systemd import ServiceNotifier, notify_address
from scsi_pr.rig.cli import main as scsi_pr
from scsi_pr.rig.processes import NotifySocket, free_port, stop, wait_ready
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
            assert asyncio.run(serve(config, ServiceNotifier(None))) == 1
    (record,) = caplog.records
    assert record.getMessage().startswith("cannot listen: ") and "in use" in record.getMessage()


def test_a_target_run_by_a_service_manager_says_ready_then_stopping(tmp_path: Path) -> None:
    """As a ``Type=notify`` unit (systemd/scsi-pr-target.service): READY=1 once every portal
    listens, its name and portal in STATUS; STOPPING=1 when SIGTERM begins the orderly stop."""
    port = free_port()
    argv = [sys.executable, "-m", "scsi_pr", "target", "serve", "--iqn", IQN, "--portal",
            f"127.0.0.1:{port}", "--state-dir", str(tmp_path), "--size", "1M"]  # fmt: skip
    with NotifySocket() as notify:
        proc = subprocess.Popen(argv, env=notify.env(), stderr=subprocess.DEVNULL)
        try:
            wait_ready(proc, notify.ready, 30, name="target")
            with socket.create_connection(("127.0.0.1", port)):
                pass  # listening when it said so
        finally:
            assert stop(proc) == 0
        status = f"STATUS={IQN} on 127.0.0.1:{port},1"  # the portal as SendTargets names it
        assert notify.poll() == [f"READY=1\n{status}", "STOPPING=1"]


def test_a_notify_socket_the_target_cannot_use_is_refused(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "scsi_pr", "target", "serve", "--iqn", IQN,
            "--state-dir", str(tmp_path), "--size", "1M"]  # fmt: skip
    env = {**os.environ, "NOTIFY_SOCKET": "notify"}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert done.stderr.startswith("scsi-pr target: NOTIFY_SOCKET='notify': not an absolute path")


def test_a_manager_gone_before_ready_stops_the_target_with_exit_1(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """READY=1 cannot be sent: the target says why and stops, rather than serving while its
    manager waits for a word that never comes (and kills it at the start timeout)."""
    manager = NotifySocket()
    notifier = ServiceNotifier(notify_address(manager.name))
    manager.close()
    config = TargetConfig(iqn=IQN, state_dir=tmp_path, size=1 << 20,
                          portals=(("127.0.0.1", 0),))  # fmt: skip
    with caplog.at_level(logging.ERROR, logger="scsi_pr.target"):
        assert asyncio.run(serve(config, notifier)) == 1
    notifier.close()
    (record,) = caplog.records
    assert record.getMessage().startswith("NOTIFY_SOCKET: READY=1 not sent to @scsi-pr-notify-")
