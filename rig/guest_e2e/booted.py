"""Boot the end-to-end guest where TCG is cheap and save it, for the VM to resume
(``python -m scsi_pr.rig.guest_e2e --save-booted DIR``).

``scripts/vm-tier`` runs this on the host beside the VM, in the directory the VM shares: the
boot that takes about a minute nested in the VM takes a few seconds here (``rig.guest.snapshot``
says why that is sound). The guest is the one the VM's run would boot (the same steps for the
same helpers, the same kernel and initramfs, built the same way), stopped at its boot pause
before any disk exists; no LIO and no root are needed.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from scsi_pr.rig import processes
from scsi_pr.rig.errors import RigError
from scsi_pr.rig.guest import snapshot
from scsi_pr.rig.guest.console import Console
from scsi_pr.rig.guest.init_script import BOOT_PAUSE
from scsi_pr.rig.guest.initramfs import build_initramfs, default_kernel_release, kernel_image
from scsi_pr.rig.guest_e2e.driver import E2EError, machine_argv, start_qemu, until_finished
from scsi_pr.rig.guest_e2e.sequence import guest_steps
from scsi_pr.rig.qmp import Qmp

#: QEMU CPU seconds the host's boot may take: about 3 s on the host's TCG, so a guest that
#: spends a minute without reaching its pause is spinning
BOOT_CPU_BUDGET = 60.0


def save_booted(directory: Path, helpers: Sequence[str], workdir: Path | None = None) -> Path:
    """Boot the guest for ``helpers`` to its boot pause and save it in ``directory``; on failure
    leave the reason there (``snapshot.ERROR``) for the reader, and raise."""
    try:
        work = workdir or Path(tempfile.mkdtemp(prefix="e2e-boot-"))
        return _save(directory, len(helpers), work)
    except (RigError, OSError) as e:
        snapshot.record_error(directory, f"{type(e).__name__}: {e}")
        raise


def _save(directory: Path, rounds: int, work: Path) -> Path:
    # the boot kernel goes beside the saved guest: extracting it from the bzImage is 1 s of CPU
    # here and about 25 s under the VM's TCG, which finds it there (``vmlinux.boot_kernel``)
    directory.mkdir(parents=True, exist_ok=True)
    release = default_kernel_release()
    initramfs = build_initramfs(
        guest_steps(rounds), work / "initramfs.cpio", release, kernel_dir=directory
    )
    refused = snapshot.bzimage_resume_fails(release)
    if refused is not None and initramfs.kernel == kernel_image(release):
        raise E2EError(refused)  # before a boot the VM would only crash on
    argv = machine_argv(initramfs)
    qemu: subprocess.Popen[bytes] | None = None
    qmp: Qmp | None = None
    try:
        qemu, lines, qmp = start_qemu(argv, work / "qmp.sock")
        console = Console()
        for raw in until_finished(lines, qemu.pid, BOOT_CPU_BUDGET):
            if console.feed(raw.decode(errors="replace")) == BOOT_PAUSE:
                return snapshot.save(qmp, qemu.pid, directory, snapshot.identity(argv, initramfs))
            if console.errors:
                raise E2EError(f"the guest failed before its boot pause: {console.errors}")
        raise E2EError(f"QEMU ended before the guest's boot pause: {console.other[-20:]}")
    finally:
        if qmp is not None:
            qmp.close()
        if qemu is not None:
            processes.kill(qemu)
