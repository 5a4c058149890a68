"""The record of a libiscsi run that the host leaves for the VM (``scsi_pr.rig.libiscsi``): what
``record`` writes, and how ``wait_record`` waits for it, on a fake clock.

The run itself (iscsi-test-cu against ``scsi-pr target serve``) is the host test
tests/target/test_libiscsi.py; here ``run_ours`` is replaced so that only the record's handling
is under test.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_time import FakeTime

from scsi_pr.rig import libiscsi
from scsi_pr.rig.libiscsi import LibiscsiError, OursRun, record, wait_record

RUN = OursRun({"ALL.ProutRegister.Simple": [], "ALL.Inquiry.Standard": ["x.c:1 v"]}, 0, "log")


def _ran(monkeypatch: pytest.MonkeyPatch, outcome: OursRun | Exception) -> list[Path]:
    calls: list[Path] = []

    def fake_run_ours(workdir: Path, quiet_limit: float) -> OursRun:
        calls.append(workdir)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(libiscsi, "run_ours", fake_run_ours)
    monkeypatch.setattr(libiscsi, "ISCSI_TEST_CU", Path("/bin/true"))
    return calls


def test_record_then_wait_gives_the_run_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _ran(monkeypatch, RUN)
    assert record(tmp_path / "rec", 60.0) == 0
    assert calls == [tmp_path / "rec" / "work"]
    assert sorted(p.name for p in (tmp_path / "rec").iterdir()) == ["outcomes.json"]
    fake = FakeTime()
    assert wait_record(tmp_path / "rec", 60.0, clock=fake.clock, sleep=fake.sleep) == RUN
    assert fake.sleeps == 0


def test_a_failed_run_leaves_its_reason_and_the_reader_raises_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ran(monkeypatch, LibiscsiError("iscsi-test-cu hung: no progress for 120s"))
    assert record(tmp_path, 60.0) == 1
    assert not (tmp_path / "outcomes.json").exists()
    with pytest.raises(LibiscsiError, match="failed: LibiscsiError: iscsi-test-cu hung"):
        wait_record(tmp_path, 60.0, clock=FakeTime().clock, sleep=FakeTime().sleep)


def test_a_missing_iscsi_test_cu_is_a_record_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _ran(monkeypatch, RUN)
    monkeypatch.setattr(libiscsi, "ISCSI_TEST_CU", tmp_path / "no-such-tool")
    assert libiscsi.main(["record", str(tmp_path / "rec")]) == 1
    assert calls == []
    assert "apt-get install libiscsi-bin" in (tmp_path / "rec" / "error.txt").read_text()


def test_the_reader_waits_while_the_host_makes_progress(tmp_path: Path) -> None:
    """200 s of waiting with a 60 s quiet limit: the report grows every 30 s, then the record
    lands; a deadline of its own would have given up."""

    def host(sleeps: int) -> None:
        if sleeps % 30 == 0:
            with (tmp_path / "work.xml").open("a") as f:
                f.write("<test/>")
        if sleeps == 200:
            (tmp_path / "outcomes.json").write_text(
                '{"outcomes": {}, "target_exit": 0, "target_log": ""}'
            )

    fake = FakeTime(host)
    assert wait_record(tmp_path, 60.0, clock=fake.clock, sleep=fake.sleep) == OursRun({}, 0, "")
    assert fake.sleeps == 200


def test_the_reader_gives_up_once_nothing_grows_for_the_quiet_limit(tmp_path: Path) -> None:
    def host(sleeps: int) -> None:
        if sleeps <= 40:  # the host makes progress for 40 s, then dies
            with (tmp_path / "work.xml").open("a") as f:
                f.write("x")

    fake = FakeTime(host)
    with pytest.raises(LibiscsiError, match="nothing there grew for 60s"):
        wait_record(tmp_path, 60.0, clock=fake.clock, sleep=fake.sleep)
    assert 100 <= fake.sleeps <= 102  # the last growth at 40 s, then 60 s of quiet


def test_the_reader_refuses_a_directory_that_is_not_there(tmp_path: Path) -> None:
    fake = FakeTime()
    with pytest.raises(LibiscsiError, match="no such directory"):
        wait_record(tmp_path / "absent", 60.0, clock=fake.clock, sleep=fake.sleep)
    assert fake.sleeps == 0
