"""A booted guest saved and resumed in another QEMU (``scsi_pr.rig.guest.snapshot``): what must
match between the two, the migration's waits, the directory another machine reads, and one real
round trip on the host's TCG with QEMU's scsi-hd as the hot-plugged disk.

The VM tier's use of it (the end-to-end guest booted on the host, resumed in the LIO VM on a
scsi-block disk) is tests/vm/test_guest_e2e.py.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from fake_time import FakeTime
from needs import unavailable
from test_guest import (
    GUEST_STEPS,
    SCSI_HD,
    _release_or_skip,
    check_guest_steps,
    guest_machine,
    start_guest,
)

from scsi_pr.rig.guest import snapshot
from scsi_pr.rig.guest.console import Console
from scsi_pr.rig.guest.init_script import BOOT_PAUSE
from scsi_pr.rig.guest.initramfs import Initramfs, build_initramfs
from scsi_pr.rig.guest.snapshot import (
    ERROR,
    MANIFEST,
    STATE,
    SnapshotError,
    SnapshotMismatch,
    check_identity,
    identity,
    load,
    resume,
    save,
    wait_migration,
    wait_saved,
)
from scsi_pr.rig.processes import kill
from scsi_pr.rig.qmp import Qmp

PID = 4242


class FakeQemu:
    """QMP and ``/proc`` of a QEMU whose migration reports ``statuses`` in turn (the last one
    for ever) while its CPU time grows by ``cpu_step`` per poll (None: it has ended)."""

    def __init__(self, statuses: list[dict[str, Any]], cpu_step: float | None = 0.1) -> None:
        self.statuses, self.cpu_step = statuses, cpu_step
        self.time = FakeTime()
        self.used = 5.0
        self.commands: list[tuple[str, dict[str, Any]]] = []

    def execute(self, command: str, **arguments: Any) -> Any:
        self.commands.append((command, arguments))
        if command == "migrate":  # the source writes its stream where the URI says
            uri = arguments["uri"]
            assert uri.startswith("exec:cat > ")
            Path(uri.removeprefix("exec:cat > ").strip("'")).write_bytes(b"QEVM stream")
        if command == "query-migrate":
            return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return {}

    def cpu(self, pid: int) -> float | None:
        assert pid == PID
        if self.cpu_step is None:
            return None
        self.used += self.cpu_step
        return self.used

    def wait(self, stall_limit: float = 60.0) -> None:
        wait_migration(
            self,  # type: ignore[arg-type]
            PID, stall_limit, cpu=self.cpu, clock=self.time.clock, sleep=self.time.sleep,
        )  # fmt: skip

    def names(self) -> list[str]:
        return [c for c, _ in self.commands]


def _initramfs(tmp_path: Path, content: bytes = b"archive") -> Initramfs:
    (tmp_path / "initramfs.cpio").write_bytes(content)
    (tmp_path / "vmlinuz-x-1-2.pvh.elf").write_bytes(b"ELF")
    return Initramfs(tmp_path / "initramfs.cpio", tmp_path / "vmlinuz-x-1-2.pvh.elf")


# -- identity -------------------------------------------------------------------------------
def test_identity_names_the_files_by_content_and_name_not_place(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    ia, ib = _initramfs(a), _initramfs(b)
    argv = [sys.executable, "-kernel", str(ia.kernel), "-initrd", str(ia.path), "-m", "256"]
    here = identity(argv, ia)
    there = identity([sys.executable, "-kernel", str(ib.kernel), "-initrd", str(ib.path),
                      "-m", "256"], ib)  # fmt: skip
    assert here == there  # the same files elsewhere: the VM's work directory is not the host's
    assert here["argv"][1] == "<kernel vmlinuz-x-1-2.pvh.elf>"
    assert here["argv"][3].startswith("<initramfs sha256:") and "archive" not in here["argv"][3]
    assert here["argv"][4:] == ["-m", "256"]
    real = Path(sys.executable).resolve()
    assert here["qemu"] == [str(real), real.stat().st_size, real.stat().st_mtime_ns]
    other = _initramfs(b, b"another archive")
    assert identity([sys.executable, "-initrd", str(other.path)], other) != identity(
        [sys.executable, "-initrd", str(ia.path)], ia
    )
    assert identity([*argv[:-1], "512"], ia) != here


def test_identity_finds_the_program_on_path(tmp_path: Path) -> None:
    found = shutil.which("sh")
    assert found is not None
    assert identity(["sh"], _initramfs(tmp_path))["qemu"][0] == str(Path(found).resolve())
    # a path that is no program on PATH is taken as it is
    plain = tmp_path / "qemu-copy"
    plain.write_bytes(b"not executable")
    ident = identity([str(plain), "-m", "256"], _initramfs(tmp_path))
    assert ident["qemu"] == [str(plain.resolve()), 14, plain.stat().st_mtime_ns]


def test_check_identity_names_what_differs() -> None:
    ident = {"qemu": ["/usr/bin/q", 1, 2], "argv": ["-m", "256"]}
    check_identity(dict(ident), ident)
    for saved in ({**ident, "qemu": ["/usr/bin/q", 1, 3]}, {**ident, "argv": ["-m", "512"]},
                  {"argv": ["-m", "256"]}, {**ident, "extra": 1}):  # fmt: skip
        with pytest.raises(SnapshotMismatch):
            check_identity(saved, ident)
    # what a person reads: the part, and both values
    with pytest.raises(SnapshotMismatch) as e:
        check_identity({**ident, "argv": ["-m", "512"]}, ident)
    assert str(e.value) == "the saved guest's argv is ['-m', '512'], this one's ['-m', '256']"


# -- the migration's wait -------------------------------------------------------------------
def test_wait_migration_returns_once_completed() -> None:
    q = FakeQemu([{}, {"status": "setup"}, {"status": "active"}, {"status": "completed"}])
    q.wait()
    assert q.names() == ["query-migrate"] * 4


@pytest.mark.parametrize("status", ["failed", "cancelled"])
def test_a_failed_migration_is_an_error(status: str) -> None:
    q = FakeQemu([{"status": "active"}, {"status": status, "error-desc": "no space"}])
    with pytest.raises(SnapshotError) as e:
        q.wait()
    assert type(e.value) is SnapshotError and "no space" in str(e.value)


def test_a_migration_is_waited_for_while_qemu_works() -> None:
    q = FakeQemu([*[{"status": "active"}] * 5000, {"status": "completed"}])
    q.wait(stall_limit=60.0)
    assert q.time.now - 1000.0 > 60.0  # longer than the stall limit, QEMU busy all along


def test_a_migration_with_qemu_idle_is_hung() -> None:
    q = FakeQemu([{"status": "active"}], cpu_step=0.0)
    with pytest.raises(SnapshotError):
        q.wait(stall_limit=60.0)
    assert 60.0 < q.time.now - 1000.0 < 61.0


def test_a_migration_whose_qemu_ended_is_an_error() -> None:
    with pytest.raises(SnapshotError):
        FakeQemu([{"status": "active"}], cpu_step=None).wait()


# -- save and load --------------------------------------------------------------------------
IDENT = {"qemu": ["/usr/bin/q", 1, 2], "argv": ["-m", "256"]}


def test_save_stops_the_guest_and_leaves_state_then_manifest(tmp_path: Path) -> None:
    q = FakeQemu([{"status": "active"}, {"status": "completed"}])
    # this process stands for QEMU: its CPU time is real (one poll, one real 50 ms sleep);
    # the directory is made, its parent too
    state = save(q, os.getpid(), tmp_path / "share" / "saved", IDENT)  # type: ignore[arg-type]
    assert q.names()[:2] == ["stop", "migrate"] and set(q.names()[2:]) == {"query-migrate"}
    saved = tmp_path / "share" / "saved"
    assert state == saved / STATE and state.read_bytes() == b"QEVM stream"
    assert json.loads((saved / MANIFEST).read_text()) == IDENT
    assert sorted(p.name for p in saved.iterdir()) == sorted([MANIFEST, STATE])


def test_a_failed_save_leaves_no_manifest(tmp_path: Path) -> None:
    q = FakeQemu([{"status": "failed"}])
    with pytest.raises(SnapshotError):
        save(q, PID, tmp_path, IDENT)  # type: ignore[arg-type]
    assert not (tmp_path / MANIFEST).exists() and not (tmp_path / STATE).exists()


def test_load_checks_the_identity_before_it_asks_qemu(tmp_path: Path) -> None:
    (tmp_path / MANIFEST).write_text(json.dumps({**IDENT, "argv": ["-m", "512"]}))
    q = FakeQemu([{"status": "completed"}])
    with pytest.raises(SnapshotMismatch):
        load(q, PID, tmp_path, IDENT)  # type: ignore[arg-type]
    assert q.commands == []


def test_load_streams_the_state_in_and_waits(tmp_path: Path) -> None:
    (tmp_path / MANIFEST).write_text(json.dumps(IDENT))
    q = FakeQemu([{}, {"status": "active"}, {"status": "completed"}])
    load(q, os.getpid(), tmp_path, IDENT)  # type: ignore[arg-type]
    assert q.commands[0] == ("migrate-incoming", {"uri": f"exec:cat {tmp_path / STATE}"})
    assert q.names()[1:] == ["query-migrate"] * 3


def test_load_without_a_readable_manifest_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError) as e:
        load(FakeQemu([{}]), PID, tmp_path, IDENT)  # type: ignore[arg-type]
    assert str(tmp_path / MANIFEST) in str(e.value)  # which file, for the person reading
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(SnapshotError):
        load(FakeQemu([{}]), PID, tmp_path, IDENT)  # type: ignore[arg-type]


# -- the directory another machine reads ----------------------------------------------------
def test_wait_saved_returns_once_the_manifest_is_there(tmp_path: Path) -> None:
    def writer(n: int) -> None:
        if n == 3:
            (tmp_path / STATE).write_bytes(b"x" * 10)
        if n == 5:
            (tmp_path / MANIFEST).write_text("{}")

    t = FakeTime(writer)
    wait_saved(tmp_path, 30.0, clock=t.clock, sleep=t.sleep)
    assert t.sleeps == 5


def test_wait_saved_reports_why_the_guest_was_not_saved(tmp_path: Path) -> None:
    snapshot.record_error(tmp_path / "share" / "d", "GuestBuildError: no busybox")
    assert [p.name for p in (tmp_path / "share" / "d").iterdir()] == [ERROR]
    with pytest.raises(SnapshotError, match="no busybox"):
        wait_saved(tmp_path / "share" / "d", 30.0, clock=FakeTime().clock, sleep=FakeTime().sleep)


def test_wait_saved_gives_up_when_nothing_grows(tmp_path: Path) -> None:
    t = FakeTime(lambda n: (tmp_path / "booting").write_bytes(b"x" * n) if n < 20 else None)
    with pytest.raises(SnapshotError) as e:
        wait_saved(tmp_path, 30.0, clock=t.clock, sleep=t.sleep)
    assert str(e.value) == f"no saved guest in {tmp_path}: nothing there grew for 30s"
    assert 19 + 30 <= t.sleeps <= 19 + 32  # waited while it grew, then the quiet limit
    with pytest.raises(SnapshotError):
        wait_saved(tmp_path / "absent", 30.0, clock=t.clock, sleep=t.sleep)


# -- a real round trip ----------------------------------------------------------------------
def test_a_guest_saved_at_its_boot_pause_resumes_in_another_qemu(tmp_path: Path) -> None:
    """QEMU A boots the guest and saves it at its boot pause; QEMU B resumes it, hot-plugs the
    disk and answers the pause: B's guest never boots (its first pause is the next one) and
    runs every step."""
    release = _release_or_skip()
    if shutil.which("qemu-system-x86_64") is None:
        unavailable("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
    built = build_initramfs(GUEST_STEPS, tmp_path / "initramfs.cpio", release)
    ident = identity(guest_machine(built), built)
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    saved = tmp_path / "saved"
    a = start_guest(built, tmp_path / "a")
    try:
        assert a.stdout is not None
        qa = Qmp(tmp_path / "a" / "qmp.sock")
        first = Console()
        for raw in a.stdout:
            if first.feed(raw.decode(errors="replace")) == BOOT_PAUSE:
                save(qa, a.pid, saved, ident)
                break
        qa.close()
    finally:
        kill(a)
    assert first.pauses == [BOOT_PAUSE] and not first.ready
    b = start_guest(built, tmp_path / "b", "-incoming", "defer")
    try:
        assert b.stdout is not None and b.stdin is not None
        qb = Qmp(tmp_path / "b" / "qmp.sock")
        resume(qb, b, saved, ident, SCSI_HD)
        assert qb.execute("query-status")["status"] == "running"  # it was saved stopped
        assert any(blk.get("qdev") for blk in qb.execute("query-block"))  # the disk is plugged
        second = Console().follow(b.stdout, b.stdin)
        b.wait(60)
        qb.close()
    finally:
        kill(b)
    assert second.pauses == ["mid"]
    check_guest_steps(second)
