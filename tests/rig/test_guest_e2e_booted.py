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
from scsi_pr.rig.guest.initramfs import GuestBuildError, Initramfs, build_initramfs
from scsi_pr.rig.guest_e2e import booted, cli
from scsi_pr.rig.guest_e2e.driver import HELPERS, E2EError, machine_argv
from scsi_pr.rig.guest_e2e.sequence import guest_steps
from scsi_pr.rig.processes import kill
from scsi_pr.rig.qmp import Qmp


def test_a_guest_that_cannot_be_built_leaves_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_busybox(*args: object, **kwargs: object) -> None:
        raise GuestBuildError("busybox not found")

    monkeypatch.setattr(booted, "build_initramfs", no_busybox)
    saved = tmp_path / "share" / "a"  # its parent is made too
    with pytest.raises(GuestBuildError):
        booted.save_booted(saved, list(HELPERS), tmp_path / "work")
    assert [p.name for p in saved.iterdir()] == [snapshot.ERROR]
    assert (saved / snapshot.ERROR).read_text() == "GuestBuildError: busybox not found"
    assert cli.main(["--save-booted", str(tmp_path / "b")]) == 1  # no root needed to get here
    assert "could not save a booted guest" in capsys.readouterr().err
    with pytest.raises(snapshot.SnapshotError):  # what the VM's run then hears
        snapshot.wait_saved(tmp_path / "b", 30.0)


def test_a_6_12_guest_booted_from_its_bzimage_is_not_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Measured: such a guest double-faults when the VM resumes it; by PVH (its zstd kernel
    decompressed) it resumes. The saver says so and what to install, and the VM's run fails
    with that reason instead of a guest's oops."""
    release = "6.12.118+deb12-amd64"
    bzimage = tmp_path / f"vmlinuz-{release}"

    def built(steps: object, out: Path, rel: str, kernel_dir: Path) -> Initramfs:
        assert rel == release and kernel_dir.parent == tmp_path
        return Initramfs(out, kernel, (), ())

    monkeypatch.setattr(booted, "default_kernel_release", lambda: release)
    monkeypatch.setattr(booted, "kernel_image", lambda rel: bzimage)
    monkeypatch.setattr(booted, "build_initramfs", built)
    monkeypatch.setattr(booted, "start_qemu", lambda *a: pytest.fail("booted anyway"))
    kernel = bzimage  # no PVH ELF: refused
    with pytest.raises(E2EError, match="install zstandard"):
        booted.save_booted(tmp_path / "saved", list(HELPERS), tmp_path / "work")
    reason = (tmp_path / "saved" / snapshot.ERROR).read_text()
    assert reason == f"E2EError: {snapshot.BZIMAGE_RESUME_FAILS['6.12']}"
    kernel = tmp_path / "saved" / "k.pvh.elf"  # by PVH: booted (here: the fake QEMU refuses)
    with pytest.raises(pytest.fail.Exception, match="booted anyway"):
        booted.save_booted(tmp_path / "saved2", list(HELPERS), tmp_path / "work")
    monkeypatch.setattr(booted, "default_kernel_release", lambda: "6.1.0-57-amd64")
    monkeypatch.setattr(booted, "build_initramfs", lambda *a, **k: Initramfs(a[1], bzimage, (), ()))
    with pytest.raises(pytest.fail.Exception, match="booted anyway"):  # 6.1's bzImage resumes
        booted.save_booted(tmp_path / "saved3", list(HELPERS), tmp_path / "work")


@pytest.mark.parametrize(
    ("release", "refused"),
    [("6.1.0-57-amd64", False), ("6.12.118+deb12-amd64", True), ("6.12.107+deb12-amd64", True),
     ("6.13.1", False)],
)  # fmt: skip
def test_which_kernels_bzimage_guests_are_not_saved(release: str, refused: bool) -> None:
    assert (snapshot.bzimage_resume_fails(release) is not None) == refused


def test_the_saved_guest_resumes_on_an_initramfs_built_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
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
