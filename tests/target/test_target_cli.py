"""``scsi-pr target serve``: every bad option is a one-line error before anything listens."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from scsi_pr.helper.systemd import ServiceNotifier, notify_address
from scsi_pr.rig.cli import main as scsi_pr
from scsi_pr.rig.processes import NotifySocket, free_port, stop, wait_ready
from scsi_pr.sim.profiles import PROFILES
from scsi_pr.target.cli import (
    UsageError,
    build_parser,
    config_from,
    main,
    parse_chap,
    parse_name,
    parse_portal,
    serve,
)
from scsi_pr.target.lus import MAX_LUNS
from scsi_pr.target.proto import ChapCredentials
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
        (["--data-out-timeout", "0"], "'0' is not a number of seconds, more than 0"),
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


# -- every option's value, its bounds and its message -------------------------------------------
@pytest.mark.parametrize(
    ("text", "portal"),
    [("[FE80::1]:3262", ("FE80::1", 3262)), ("h:65535", ("h", 65535)), ("h:0", ("h", 0))],
)
def test_portals_up_to_port_65535(text: str, portal: tuple[str, int]) -> None:
    assert parse_portal(text) == portal


def test_a_port_above_65535_is_refused() -> None:
    with pytest.raises(UsageError) as raised:
        parse_portal("h:65536")
    assert str(raised.value) == "--portal 'h:65536': port out of range"


def test_names_up_to_223_bytes() -> None:
    longest = "iqn.2024-01.test:" + "x" * (223 - len("iqn.2024-01.test:"))
    assert parse_name(longest, "--iqn") == longest
    with pytest.raises(UsageError) as raised:
        parse_name(longest + "x", "--allow-initiator")
    assert str(raised.value).startswith(f"--allow-initiator {longest + 'x'!r}: not an iSCSI name")


@pytest.mark.parametrize("secret", ["s" * 12, "s" * 255, "with:a-colon"])
def test_chap_secrets_of_12_to_255_bytes(secret: str) -> None:
    assert parse_chap(f"user:{secret}", "--chap") == ChapCredentials("user", secret.encode())


@pytest.mark.parametrize(
    ("text", "message"),
    [("user:" + "s" * 11, "--chap: the secret must be 12 to 255 bytes (RFC 7143 9.2.1)"),
     ("user:" + "s" * 256, "--chap: the secret must be 12 to 255 bytes (RFC 7143 9.2.1)"),
     ("user:", "--chap: use USER:SECRET"), (":" + "s" * 12, "--chap: use USER:SECRET"),
     ("user", "--chap: use USER:SECRET")],
)  # fmt: skip
def test_chap_credentials_refused(text: str, message: str) -> None:
    with pytest.raises(UsageError) as raised:
        parse_chap(text, "--chap")
    assert str(raised.value) == message


def serve_args(*extra: str) -> list[str]:
    return ["serve", "--iqn", IQN, "--state-dir", "/nonexistent", *extra]


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--mutual-chap", "t:target-secret"], "--mutual-chap needs --chap"),
     (["--discovery-chap"], "--discovery-chap needs --chap"),
     (["--chap", "u:host-secret-1", "--mutual-chap", "t:short"],
      "--mutual-chap: the secret must be 12 to 255 bytes (RFC 7143 9.2.1)"),
     (["--chap", "u:host"], "--chap: the secret must be 12 to 255 bytes (RFC 7143 9.2.1)"),
     (["--allow-initiator", "bob"],
      "--allow-initiator 'bob': not an iSCSI name (iqn.YYYY-MM.domain[:id], eui.…)"),
     (["--profile", "spc4"], f"--profile 'spc4': known profiles: {', '.join(PROFILES)}"),
     (["--luns", str(MAX_LUNS + 1)], f"--luns {MAX_LUNS + 1}: at most {MAX_LUNS}")],
)  # fmt: skip
def test_each_refusal_names_its_option(extra: list[str], message: str) -> None:
    with pytest.raises(UsageError) as raised:
        config_from(build_parser().parse_args(serve_args(*extra)))
    assert str(raised.value) == message


def test_the_iqn_is_checked_as_an_iscsi_name() -> None:
    with pytest.raises(UsageError) as raised:
        config_from(build_parser().parse_args(["serve", "--iqn", "disk", "--state-dir", "/x"]))
    assert str(raised.value).startswith("--iqn 'disk': not an iSCSI name")


def test_every_option_reaches_its_config_field() -> None:
    """Distinct values for every option, so none can land in another's field."""
    args = build_parser().parse_args(serve_args(
        "--luns", str(MAX_LUNS), "--alias", "lab disk", "--chap", "u:host-secret-1",
        "--discovery-chap", "--max-data-segment", "0x1000", "--max-burst", "8192",
        "--max-write", "1048576", "--target-port", "2", "--target-ports", "3",
        "--nop-interval", "4.5", "--nop-timeout", "9.5", "--profile", "lio-6.1",
        "--log-level", "DEBUG"))  # fmt: skip
    config = config_from(args)
    assert config.luns == MAX_LUNS and config.alias == "lab disk"
    assert config.discovery_chap is config.chap and config.chap is not None
    assert (config.max_recv_data_segment_length, config.max_burst_length,
            config.max_write_length) == (4096, 8192, 1 << 20)  # fmt: skip
    assert (config.target_port, config.target_ports) == (2, 3)
    assert (config.nop_interval, config.nop_timeout) == (4.5, 9.5)
    assert config.profile == "lio-6.1" and args.log_level == "DEBUG"
    assert config.state_dir == Path("/nonexistent")


def test_the_defaults_are_the_config_s() -> None:
    args = build_parser().parse_args(serve_args())
    assert config_from(args) == TargetConfig(iqn=IQN, state_dir=Path("/nonexistent"),
                                             size=1 << 30)  # fmt: skip
    assert args.log_level == "INFO" and args.action == "serve"


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["serve", "--iqn", IQN], "the following arguments are required: --state-dir"),
     (["serve", "--state-dir", "/x"], "the following arguments are required: --iqn"),
     ([], "the following arguments are required: action"),
     (serve_args("--log-level", "debug"), "invalid choice: 'debug'"),
     (serve_args("--max-sessions", "0"), "'0' must be at least 1"),
     (serve_args("--max-sessions", "x"), "'x' is not a number"),
     (serve_args("--nop-interval", "soon"), "'soon' is not a number of seconds")],
)  # fmt: skip
def test_the_parser_refuses(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: scsi-pr target") and message in err


def test_one_is_the_least_positive_number() -> None:
    args = build_parser().parse_args(serve_args("--max-sessions", "1", "--max-commands", "0x2"))
    assert (args.max_sessions, args.max_commands) == (1, 2)


# -- serve and main in this process (what a mutation run can see) ------------------------------
def test_serve_says_ready_then_stops_cleanly_on_sigterm(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ports = free_port(), free_port()
    config = TargetConfig(iqn=IQN, state_dir=tmp_path, size=1 << 20,
                          portals=tuple(("127.0.0.1", port) for port in ports))  # fmt: skip
    with NotifySocket() as manager:
        notifier = ServiceNotifier(notify_address(manager.name))

        async def run() -> int:
            task = asyncio.create_task(serve(config, notifier))
            while not manager.ready():  # the task fails the test if serve() ends first
                assert not task.done(), task.result()
                await asyncio.sleep(0.01)
            os.kill(os.getpid(), signal.SIGTERM)  # the loop's handler takes it
            return await task

        with caplog.at_level(logging.INFO, logger="scsi_pr.target"):
            assert asyncio.run(run()) == 0
        notifier.close()
        ready, stopping = manager.poll()
    assert stopping == "STOPPING=1"
    assert ready == f"READY=1\nSTATUS={IQN} on 127.0.0.1:{ports[0]},1, 127.0.0.1:{ports[1]},1"
    messages = [r.getMessage() for r in caplog.records]
    assert "stopping on a signal" in messages
    assert messages[-1] == f"target {IQN} stopped"


def test_main_refuses_a_notify_socket_it_cannot_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "relative/notify")
    assert main(["serve", "--iqn", IQN, "--state-dir", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (
        "scsi-pr target: NOTIFY_SOCKET='relative/notify': not an absolute path or an "
        "@abstract name\n"
    )
    assert not list(tmp_path.iterdir())  # refused before anything was made


def test_main_serves_until_sigterm_and_exits_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``main`` in this process, as a service manager runs it: READY=1, then SIGTERM."""
    with NotifySocket() as manager:
        monkeypatch.setenv("NOTIFY_SOCKET", manager.name)
        returned = threading.Event()

        def stop_when_ready() -> None:
            while not returned.is_set():
                if manager.ready():
                    os.kill(os.getpid(), signal.SIGTERM)  # main's loop handles it
                    return
                time.sleep(0.01)

        stopper = threading.Thread(target=stop_when_ready)
        stopper.start()
        try:
            code = main(["serve", "--iqn", IQN, "--state-dir", str(tmp_path), "--size", "1M",
                         "--portal", f"127.0.0.1:{free_port()}"])  # fmt: skip
        finally:
            returned.set()
            stopper.join()
        assert code == 0
        assert manager.poll()[-1] == "STOPPING=1"
    assert (tmp_path / "lun0.img").stat().st_size == 1 << 20
