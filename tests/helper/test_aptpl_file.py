"""The helper's crash-safe APTPL state file (``scsi_pr.helper.aptpl_file``): a logical unit's
registrations and reservation survive a restart through it, a crash never leaves a torn file,
and an unusable file is a typed error."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from scsi_pr.helper.aptpl_file import AptplFileError, FileAptplStore
from scsi_pr.helper.errors import HelperError
from scsi_pr.sim import cdb as C
from scsi_pr.sim.constants import PersistentReserveOutAction as SA
from scsi_pr.sim.constants import ReservationType, Status
from scsi_pr.sim.device import LogicalUnit
from scsi_pr.sim.nexus import ITNexus

A, B = 0xA, 0xB
I1 = ITNexus.named("naa.5001405000000001", 1)
I2 = ITNexus.named("naa.5001405000000002", 2)
WE_RO = ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY


def test_aptpl_survives_a_restart_through_the_file(tmp_path: Path) -> None:
    path = tmp_path / "pr" / "aptpl_SCSIPR0000000001"
    lu = LogicalUnit(store=FileAptplStore(path))
    for nexus, cdb_data in (
        (I1, C.prout(SA.REGISTER, 0, A, aptpl=True)),
        (I2, C.prout(SA.REGISTER, 0, B, aptpl=True)),
        (I1, C.prout(SA.RESERVE, A, 0, WE_RO)),
    ):
        assert lu.execute(nexus, *cdb_data).status == Status.GOOD
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    reborn = LogicalUnit(store=FileAptplStore(path))  # a new process, same file
    assert {n: r.key for n, r in reborn.pr.registrations.items()} == {I1: A, I2: B}
    assert reborn.pr.reservation is not None
    assert reborn.pr.reservation.type == WE_RO
    assert reborn.execute(I2, C.write_10(0, 1), bytes(512)).status == Status.GOOD
    other = ITNexus.named("naa.5001405000000009", 1)
    assert reborn.execute(other, C.write_10(0, 1), bytes(512)).status == Status.RESERVATION_CONFLICT


def test_file_round_trip(tmp_path: Path) -> None:
    store = FileAptplStore(tmp_path / "state")
    assert store.load() is None
    store.save({"a": [1, 2]})
    assert store.load() == {"a": [1, 2]}


def test_crash_before_rename_keeps_old_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileAptplStore(tmp_path / "state")
    store.save({"v": 1})

    def crash(*_: object) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        store.save({"v": 2})
    monkeypatch.undo()
    assert (tmp_path / "state.tmp").exists(), "the new state got as far as the temp file"
    assert store.load() == {"v": 1}
    assert not (tmp_path / "state.tmp").exists(), "load removes the leftover temp file"


def test_torn_temp_file_is_never_loaded(tmp_path: Path) -> None:
    store = FileAptplStore(tmp_path / "state")
    (tmp_path / "state.tmp").write_bytes(b'{"format": 1, "state": {"v"')
    assert store.load() is None
    store.save({"v": 3})
    (tmp_path / "state.tmp").write_bytes(b"\x00garbage")
    assert store.load() == {"v": 3}


@pytest.mark.parametrize("content", [b"not json", b'{"format": 99, "state": {}}', b"[]"])
def test_bad_file_is_a_typed_error(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "state").write_bytes(content)
    with pytest.raises(AptplFileError, match="state") as caught:
        FileAptplStore(tmp_path / "state").load()
    assert isinstance(caught.value, HelperError)
