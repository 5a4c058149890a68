"""A shared LU's state document (``scsi_pr.helper.lu_state_file``): the APTPL image travels with
the LU state, so registrations and the reservation APTPL preserved survive a helper restart and
come back at a power cycle; the document round-trips; an unusable file is a typed error naming
it. The commit under kills is in ``test_simserve_commit.py``."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from scsi_pr.helper.errors import HelperError
from scsi_pr.helper.lu_identity import identify_path
from scsi_pr.helper.lu_state_file import (
    LuDocument,
    StateFileError,
    _sync_directory,
    commit,
    read_document,
)
from scsi_pr.helper.simserve import SharedLUs
from scsi_pr.sim import cdb as C
from scsi_pr.sim.constants import PersistentReserveOutAction as SA
from scsi_pr.sim.constants import ReservationType, Status
from scsi_pr.sim.device import LogicalUnit
from scsi_pr.sim.nexus import ITNexus

A, B = 0xA, 0xB
I1 = ITNexus.named("naa.5001405000000001", 1)
I2 = ITNexus.named("naa.5001405000000002", 2)
WE_RO = ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY


def power_cycle(lu: LogicalUnit) -> None:
    lu.power_loss()
    lu.power_on()


def test_aptpl_survives_a_restart_and_a_power_cycle_through_the_document(tmp_path: Path) -> None:
    image = tmp_path / "lu.img"
    image.write_bytes(bytes(4096))
    lus = SharedLUs(tmp_path / "state")
    for nexus, (cdb, data) in (
        (I1, C.prout(SA.REGISTER, 0, A, aptpl=True)),
        (I2, C.prout(SA.REGISTER, 0, B, aptpl=True)),
        (I1, C.prout(SA.RESERVE, A, 0, WE_RO)),
    ):
        assert (
            lus.run_on_file(image, lambda lu, n=nexus, c=cdb, d=data: lu.execute(n, c, d)).status
            == 0
        )
    state = SharedLUs(tmp_path / "state").files(identify_path(image)[0]).state
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert sorted(p.name for p in state.parent.iterdir()) == sorted(
        [state.name, state.name.replace(".json", ".lock")]
    ), "one document per LU: no APTPL file of its own"
    reborn = SharedLUs(tmp_path / "state")  # a new process, same state dir
    reborn.run_on_file(image, power_cycle)
    lu = reborn.run_on_file(image, lambda lu: lu)
    assert {n: r.key for n, r in lu.pr.registrations.items()} == {I1: A, I2: B}
    assert lu.pr.reservation is not None and lu.pr.reservation.type == WE_RO
    assert lu.pr.generation == 0  # PRGENERATION is not preserved (SPC-5 6.16.2)
    other = ITNexus.named("naa.5001405000000009", 1)
    write = C.write_10(0, 1), bytes(512)
    lu.execute(other, C.test_unit_ready())  # POWER ON OCCURRED first
    assert lu.execute(other, *write).status == Status.RESERVATION_CONFLICT
    # without APTPL, the registrations are gone after a power cycle
    lus.run_on_file(image, lambda lu: lu.execute(I1, *C.prout(SA.REGISTER, A, A)))
    lus.run_on_file(image, lambda lu: lu.execute(I1, *C.prout(SA.REGISTER, A, A)))
    lus.run_on_file(image, power_cycle)
    assert not SharedLUs(tmp_path / "state").run_on_file(image, lambda lu: lu.pr.registrations)


def test_document_round_trip(tmp_path: Path) -> None:
    path, temp = tmp_path / "lu.json", tmp_path / "lu.json.tmp"
    assert read_document(path) is None
    doc = LuDocument({"pr": {"a": [1, 2]}}, {"aptpl": True})
    commit(path, temp, doc, None, lambda: None)
    assert read_document(path) == doc
    assert not temp.exists()


def test_announce_runs_between_the_temp_file_and_the_rename(tmp_path: Path) -> None:
    path, temp = tmp_path / "lu.json", tmp_path / "lu.json.tmp"
    old = LuDocument({"v": 1}, None)
    commit(path, temp, old, None, lambda: None)
    seen: list[tuple[bool, LuDocument | None]] = []
    new = LuDocument({"v": 2}, None)
    commit(path, temp, new, old, lambda: seen.append((temp.exists(), read_document(path))))
    assert seen == [(True, old)]
    assert read_document(path) == new


@pytest.mark.parametrize(
    "content",
    [b"not json", b'{"format": 99, "state": {}}', b"[]", b'{"format": 2, "state": 3}',
     b'{"format": 2, "state": {}, "aptpl": "x"}', b"\xff"],
)  # fmt: skip
def test_bad_file_is_a_typed_error_naming_it(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "lu.json").write_bytes(content)
    with pytest.raises(StateFileError, match=r"lu\.json") as caught:
        read_document(tmp_path / "lu.json")
    assert isinstance(caught.value, HelperError)


def test_the_document_is_encoded_canonically() -> None:
    """Keys sorted at every level: the same document is the same bytes in every helper."""
    doc = LuDocument({"pr": {"b": 1, "a": [2, 1]}, "lba": 0}, {"z": None, "aptpl": True})
    assert doc.encode() == (
        b'{"aptpl": {"aptpl": true, "z": null}, "format": 2, '
        b'"state": {"lba": 0, "pr": {"a": [2, 1], "b": 1}}}'
    )


def test_an_unreadable_file_is_a_typed_error_naming_it_and_why(tmp_path: Path) -> None:
    path = tmp_path / "lu.json"
    path.mkdir()
    with pytest.raises(StateFileError) as caught:
        read_document(path)
    assert str(caught.value) == f"{path}: cannot read the simulated LU state (Is a directory)"
    assert isinstance(caught.value.__cause__, IsADirectoryError)


def test_a_killed_writers_longer_temp_file_is_overwritten(tmp_path: Path) -> None:
    """The temporary file has a fixed name: the next commit truncates what a killed writer
    left there, so no tail of the older, longer document follows the new one."""
    path, temp = tmp_path / "lu.json", tmp_path / "lu.json.tmp"
    temp.write_bytes(LuDocument({"v": "x" * 100}, None).encode())
    new = LuDocument({"v": 1}, None)
    commit(path, temp, new, None, lambda: None)
    assert path.read_bytes() == new.encode()


def test_only_a_directory_is_synced_as_the_directory(tmp_path: Path) -> None:
    """``_sync_directory`` opens with O_DIRECTORY: syncing a file instead of the directory
    holding the renamed name would leave the rename unsynced, so it is refused."""
    (tmp_path / "f").write_bytes(b"")
    _sync_directory(tmp_path)
    with pytest.raises(NotADirectoryError):
        _sync_directory(tmp_path / "f")


HOLDS_APTPL = {"aptpl": True}  # an APTPL image a power cycle restores
NO_APTPL = {"aptpl": False}  # an image, but nothing for a power cycle to restore


@pytest.mark.parametrize(
    ("old", "new", "synced"),
    [(None, None, []),  # no document before, none of the image now
     (NO_APTPL, NO_APTPL, []),  # unchanged, restores nothing
     (None, NO_APTPL, ["lu.json.tmp", "dir"]),  # a new image
     (NO_APTPL, HOLDS_APTPL, ["lu.json.tmp", "dir"]),  # a changed image
     (HOLDS_APTPL, None, ["lu.json.tmp", "dir"]),  # the image dropped
     (HOLDS_APTPL, HOLDS_APTPL, ["lu.json.tmp"])],  # unchanged APTPL state: the file only
)  # fmt: skip
def test_only_the_aptpl_image_pays_for_fsync(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    old: dict[str, bool] | None,
    new: dict[str, bool] | None,
    synced: list[str],
) -> None:
    """The module's durability rules: a changed image syncs the file before the rename and the
    directory after it; an unchanged image holding APTPL state syncs the file only (no empty
    file after a power loss); no APTPL state, no fsync."""
    path, temp = tmp_path / "lu.json", tmp_path / "lu.json.tmp"
    before = None if old is None else LuDocument({"v": 1}, old)
    if before is not None:
        commit(path, temp, before, None, lambda: None)
    seen: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
        seen.append("dir" if is_dir else Path(os.readlink(f"/proc/self/fd/{fd}")).name)
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    commit(path, temp, LuDocument({"v": 2}, new), before, lambda: None)
    assert seen == synced
    assert read_document(path) == LuDocument({"v": 2}, new)
