"""``scsi-pr target serve --profile``: the LUs answer as the profile says, and a LUN whose state
was saved under another profile (by a helper sharing the state dir) is refused at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from scsi_pr.sim import cdb as C
from scsi_pr.sim.constants import PersistentReserveOutAction as SA
from scsi_pr.sim.constants import ReservationType as T
from scsi_pr.sim.constants import SenseKey, Status
from scsi_pr.sim.nexus import ITNexus
from scsi_pr.target.cli import build_parser, config_from, main
from scsi_pr.target.lus import LunConfigError, ServedLUs

IQN = "iqn.2024-01.test.scsi-pr:disk"
NEXUS = ITNexus.named("iqn.2024-01.test:host", 1)


def test_profile_becomes_the_config(tmp_path: Path) -> None:
    args = build_parser().parse_args(["serve", "--iqn", IQN, "--state-dir", str(tmp_path)])
    assert config_from(args).profile == "spc5"
    args = build_parser().parse_args(
        ["serve", "--iqn", IQN, "--state-dir", str(tmp_path), "--profile", "lio-6.1"]
    )
    assert config_from(args).profile == "lio-6.1"


def test_served_lus_answer_as_the_profile_says(tmp_path: Path) -> None:
    cdb, data = C.prout(SA.RESERVE, 0, 0, T.WRITE_EXCLUSIVE)  # unregistered, no reservation
    lio = ServedLUs(tmp_path / "lio", 1, 1 << 20, profile="lio-6.1").execute(0, NEXUS, cdb, data)
    assert lio.result.status == Status.CHECK_CONDITION
    assert lio.result.sense_data is not None and lio.result.sense_data.key == SenseKey.NOT_READY
    spc = ServedLUs(tmp_path / "spc", 1, 1 << 20).execute(0, NEXUS, cdb, data)
    assert spc.result.status == Status.RESERVATION_CONFLICT


def test_a_lun_saved_under_another_profile_is_refused_at_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lus = ServedLUs(tmp_path, 2, 1 << 20, profile="lio-6.1")
    assert lus.execute(1, NEXUS, *C.prout(SA.REGISTER, 0, 0xA)).result.status == Status.GOOD
    with pytest.raises(LunConfigError, match=r"LUN 1: .*'lio-6\.1'.*'spc5'"):
        ServedLUs(tmp_path, 2, 1 << 20)
    ServedLUs(tmp_path, 2, 1 << 20, profile="lio-6.1")  # the same profile goes on
    argv = ["serve", "--iqn", IQN, "--state-dir", str(tmp_path), "--luns", "2"]
    assert main([*argv, "--portal", "127.0.0.1:0"]) == 1  # refused before it listens
    assert "LUN 1" in capsys.readouterr().err
