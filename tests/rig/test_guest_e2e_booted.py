"""The end-to-end guest booted and saved where TCG is not nested (``scsi_pr.rig.guest_e2e.booted``,
``python -m scsi_pr.rig.guest_e2e --save-booted DIR``), as ``scripts/vm-tier`` does on the host.

The real run resumes the saved guest the way the VM's run does: in a QEMU whose initramfs it
built itself (the two builds must agree byte for byte, or ``snapshot.identity`` refuses), with a
disk hot-plugged at the boot pause. Here the disk is QEMU's scsi-hd, which has no persistent
reservations, so every PR step ends in sg_persist's "invalid opcode"; LIO behind the helpers is
tests/vm/test_guest_e2e.py.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from needs import unavailable
from test_guest import SCSI_HD, _release_or_skip

from scsi_pr.rig.guest import snapshot
from scsi_pr.rig.guest.console import Console
from scsi_pr.rig.guest.initramfs import GuestBuildError, build_initramfs
from scsi_pr.rig.guest_e2e import booted, cli
from scsi_pr.rig.guest_e2e.driver import (
    ENV_SAVED_GUEST,
    HELPERS,
    machine_argv,
    saved_guest_from_env,
)
from scsi_pr.rig.guest_e2e.sequence import guest_steps
from scsi_pr.rig.processes import kill
from scsi_pr.rig.qmp import Qmp


def test_a_guest_that_cannot_be_built_leaves_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_busybox(*args: object, **kwargs: object) -> None:
        raise GuestBuildError("busybox not found")

    monkeypatch.setattr(booted, "build_initramfs", no_busybox)
    monkeypatch.setattr(snapshot, "NESTED_RESUME_FAILS", {})  # whatever kernel this host boots
    saved = tmp_path / "share" / "a"  # its parent is made too
    with pytest.raises(GuestBuildError):
        booted.save_booted(saved, list(HELPERS), tmp_path / "work")
    assert [p.name for p in saved.iterdir()] == [snapshot.ERROR]
    assert (saved / snapshot.ERROR).read_text() == "GuestBuildError: busybox not found"
    assert cli.main(["--save-booted", str(tmp_path / "b")]) == 1  # no root needed to get here
    assert "could not save a booted guest" in capsys.readouterr().err
    with pytest.raises(snapshot.SnapshotError):  # what the VM's run then hears
        snapshot.wait_saved(tmp_path / "b", 30.0)


def test_a_kernel_whose_saved_guest_the_vm_cannot_resume_is_not_booted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """On 6.12 the saver declines (the VM boots its own guest), and says why; the VM's run on
    the same kernel does not wait for a saved guest."""
    monkeypatch.setattr(booted, "default_kernel_release", lambda: "6.12.118+deb12-amd64")
    monkeypatch.setattr(booted, "build_initramfs", lambda *a, **k: pytest.fail("booted"))
    saved = tmp_path / "saved"
    saved.mkdir()
    declined = booted.save_booted(saved, list(HELPERS), tmp_path / "work")
    assert declined == booted.NotResumable(snapshot.NESTED_RESUME_FAILS["6.12"])
    assert not list(saved.iterdir())
    assert cli.main(["--save-booted", str(saved)]) == 0
    out = capsys.readouterr().out
    assert out == f"guest e2e: no guest saved (the VM boots its own): {declined.reason}\n"
    monkeypatch.setenv(ENV_SAVED_GUEST, str(saved))
    assert saved_guest_from_env("6.12.118+deb12-amd64") is None
    assert "booting the guest here, not resuming one: Debian's 6.12" in capsys.readouterr().err
    assert saved_guest_from_env("6.1.0-57-amd64") == saved
    monkeypatch.delenv(ENV_SAVED_GUEST)
    assert saved_guest_from_env("6.1.0-57-amd64") is None


@pytest.mark.parametrize(
    ("release", "resumable"),
    [("6.1.0-57-amd64", True), ("6.12.118+deb12-amd64", False), ("6.12.107+deb12-amd64", False),
     ("6.13.1", True), ("6.1.170", True)],
)  # fmt: skip
def test_which_kernels_saved_guests_resume_in_the_vm(release: str, resumable: bool) -> None:
    assert (snapshot.not_resumable(release) is None) == resumable


def test_the_saved_guest_resumes_on_an_initramfs_built_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # here both QEMUs run on the host, where a guest of every kernel resumes (6.12's too)
    monkeypatch.setattr(snapshot, "NESTED_RESUME_FAILS", {})
    release = _release_or_skip()
    if shutil.which("qemu-system-x86_64") is None:
        unavailable("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
    saved = tmp_path / "saved"
    saved.mkdir()  # as scripts/vm-tier makes it, before the saver starts
    assert cli.main(["--save-booted", str(saved), "--workdir", str(tmp_path / "host")]) == 0
    assert f"saved in {saved / snapshot.STATE}" in capsys.readouterr().out
    snapshot.wait_saved(saved, 30.0)
    # the boot kernel was extracted beside the saved guest, where the VM's run takes it
    elf = {p.name for p in saved.iterdir()} - {snapshot.STATE, snapshot.MANIFEST}
    assert len(elf) == 1 and elf.pop().endswith(".pvh.elf")
    mtimes = {p: p.stat().st_mtime_ns for p in saved.iterdir()}
    # the resuming side builds its own initramfs, elsewhere, as the VM does
    built = build_initramfs(
        guest_steps(len(HELPERS)), tmp_path / "vm" / "initramfs.cpio", release, kernel_dir=saved
    )
    assert built.kernel.parent == saved
    assert {p: p.stat().st_mtime_ns for p in saved.iterdir()} == mtimes  # found, not rewritten
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(1 << 20))
    qmp_path = tmp_path / "vm" / "qmp.sock"
    argv = [
        *machine_argv(built),
        "-drive", f"if=none,id=d0,file={disk},format=raw",
        "-qmp", f"unix:{qmp_path},server=on,wait=off", "-incoming", "defer",
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        qmp = Qmp(qmp_path)
        ident = snapshot.identity(machine_argv(built), built)
        snapshot.resume(qmp, proc, saved, ident, SCSI_HD)
        con = Console().follow(proc.stdout, proc.stdin)
        proc.wait(60)
        qmp.close()
    finally:
        kill(proc)
    assert con.errors == [] and con.ready and con.done, con.other[-20:]
    assert con.pauses == [  # every round's pauses, none of a boot
        "r0.host_conflict", "r0.host_after_preempt", "r0.stop_helper", "r1.start",
        "r1.host_conflict", "r1.host_after_preempt", "r1.stop_helper",
    ]  # fmt: skip
    assert con.steps["r0.tur"].rc == 0 and con.steps["r1.tur"].rc == 0
    assert con.steps["r1.keys0"].rc == 9  # scsi-hd: PERSISTENT RESERVE IN is an invalid opcode
