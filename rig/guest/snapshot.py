"""A booted guest saved to a directory, and resumed from it in another QEMU.

Why: in the LIO VM the end-to-end guest is TCG inside TCG, and its kernel's boot was about
60 of the run's 90 seconds alone (docs/performance.md); on the host's TCG the same boot takes
2-3 s. QEMU's migration stream carries a guest's RAM and device state, so a guest booted on the
host and saved at its boot pause (``init_script.BOOT_PAUSE``) resumes in the VM where it
stopped, as long as both QEMUs are the same program with the same machine, kernel and
initramfs: the VM runs the host's own root, and ``identity`` records what must match.

The disk is not part of the machine: the host has no SCSI device to give it, so the guest boots
without one and the disk is hot-plugged at the pause, on a fresh boot as on a resumed one.

A saved guest is a directory: ``STATE`` (QEMU's stream), ``MANIFEST`` (its identity; written
last, so its presence means the state is whole) or ``ERROR`` (why it could not be saved).
The QMP work is here; starting QEMU and reading its console are the caller's.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from scsi_pr.rig.errors import RigError
from scsi_pr.rig.guest.console import RESUME
from scsi_pr.rig.guest.initramfs import Initramfs
from scsi_pr.rig.processes import cpu_seconds
from scsi_pr.rig.qmp import Qmp
from scsi_pr.rig.watchdog import Watchdog, wait_for_result
from scsi_pr.sim.profiles import kernel_series

STATE, MANIFEST, ERROR = "guest.state", "manifest.json", "error.txt"
#: seconds a migration may go without QEMU using CPU time before it is taken as hung: saving or
#: loading the stream is QEMU's own work, so its CPU time is the progress, whatever the load
MIGRATION_STALL_LIMIT = 120.0
MIGRATION_POLL = 0.05


#: kernel series whose guest, booted from its bzImage and saved on the host's TCG, does not
#: survive being resumed under the VM's nested TCG (QEMU 7.2). Measured on Debian's 6.12.118
#: (2026-12-06): the bzImage-booted guest double-faulted in the kernel within seconds of the
#: resume, twice; the same kernel booted by its PVH entry (``vmlinux``) resumed and ran every
#: step. Not understood: the CPU model is the same in both places (``query-cpu-model-expansion``).
BZIMAGE_RESUME_FAILS: dict[str, str] = {
    "6.12": "a 6.12 guest booted from its bzImage double-faults when the VM resumes it; "
    "install zstandard (pip install -e '.[vm]') so that its zstd kernel boots by PVH",
}


def bzimage_resume_fails(release: str) -> str | None:
    """Why a guest of kernel ``release`` booted from its bzImage (no PVH ELF could be made) may
    not be saved for the VM to resume; None when it may."""
    return BZIMAGE_RESUME_FAILS.get(kernel_series(release))


class SnapshotError(RigError):
    """A guest could not be saved or resumed (QEMU refused, the migration failed or hung)."""


class SnapshotMismatch(SnapshotError):
    """The saved guest was made by another QEMU, machine, kernel or initramfs than this one."""


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def identity(argv: Sequence[str], initramfs: Initramfs) -> dict[str, Any]:
    """What a saved guest and the QEMU resuming it must share: the QEMU program (its path, size
    and modification time: the VM shares the host's root), and the machine's command line with
    the initramfs named by its digest and the kernel by its name (``vmlinux.boot_kernel`` names
    the ELF it extracts by its source's size and modification time), not by where they lie."""
    program = shutil.which(argv[0]) or argv[0]
    real = Path(program).resolve()
    st = real.stat()
    subst = {
        str(initramfs.path): f"<initramfs sha256:{_digest(initramfs.path)}>",
        str(initramfs.kernel): f"<kernel {initramfs.kernel.name}>",
    }
    return {
        "qemu": [str(real), st.st_size, st.st_mtime_ns],
        "argv": [subst.get(a, a) for a in argv[1:]],
    }


def check_identity(saved: dict[str, Any], expected: dict[str, Any]) -> None:
    """``SnapshotMismatch`` naming the first difference; nothing when they are the same."""
    for key in sorted(expected.keys() | saved.keys()):
        if saved.get(key) != expected.get(key):
            raise SnapshotMismatch(
                f"the saved guest's {key} is {saved.get(key)!r}, this one's {expected.get(key)!r}"
            )


def wait_migration(
    qmp: Qmp,
    pid: int,
    stall_limit: float = MIGRATION_STALL_LIMIT,
    *,
    cpu: Callable[[int], float | None] = cpu_seconds,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Until QEMU ``pid`` reports its migration (either way) completed; ``SnapshotError`` when
    it failed, or used no CPU time for ``stall_limit`` seconds before completing."""
    dog = Watchdog(stall_limit, started=clock())
    used = cpu(pid)
    while True:
        info = qmp.execute("query-migrate")
        status = info.get("status")
        if status == "completed":
            return
        if status in ("failed", "cancelled"):
            raise SnapshotError(f"migration {status}: {info.get('error-desc', info)}")
        now, now_cpu = clock(), cpu(pid)
        if now_cpu is None:
            raise SnapshotError(f"QEMU (pid {pid}) ended during the migration")
        if used is None or now_cpu > used:
            used = now_cpu
            dog.progress(now, f"migration {status}")
        if dog.hung(now):
            raise SnapshotError(f"migration {status} for {stall_limit:.0f}s with no CPU time")
        sleep(MIGRATION_POLL)


def save(qmp: Qmp, pid: int, directory: Path, ident: dict[str, Any]) -> Path:
    """Stop the guest of QEMU ``pid`` and save it in ``directory`` (created); QEMU stays, paused.

    The stream goes to a temporary name and the manifest is written after it, each renamed into
    place: a reader that finds the manifest finds the whole state."""
    directory.mkdir(parents=True, exist_ok=True)
    state, partial = directory / STATE, directory / f".{STATE}.partial"
    qmp.execute("stop")
    qmp.execute("migrate", uri=f"exec:cat > {shlex.quote(str(partial))}")
    wait_migration(qmp, pid)
    os.replace(partial, state)
    _write_whole(directory / MANIFEST, json.dumps(ident))
    return state


def load(qmp: Qmp, pid: int, directory: Path, ident: dict[str, Any]) -> None:
    """Load the guest saved in ``directory`` into QEMU ``pid``, started with ``-incoming defer``
    and the command line ``ident`` describes; the guest stays paused (it was saved stopped)."""
    manifest = directory / MANIFEST
    try:
        saved = json.loads(manifest.read_text())
    except (OSError, ValueError) as e:
        raise SnapshotError(f"{manifest}: {e}") from e
    check_identity(saved, ident)
    qmp.execute("migrate-incoming", uri=f"exec:cat {shlex.quote(str(directory / STATE))}")
    wait_migration(qmp, pid)


def resume(
    qmp: Qmp, qemu: subprocess.Popen[bytes], directory: Path, ident: dict[str, Any],
    disk: dict[str, Any],
) -> None:  # fmt: skip
    """Load the guest saved in ``directory`` into ``qemu`` (``load``), hot-plug its disk
    (``disk``: ``device_add``'s arguments), let it run, and answer the boot pause it was saved
    at (a line on its console, QEMU's stdin), so that it goes on to wait for the disk."""
    assert qemu.stdin is not None
    load(qmp, qemu.pid, directory, ident)
    qmp.execute("device_add", **disk)
    qmp.execute("cont")
    qemu.stdin.write(RESUME)
    qemu.stdin.flush()


def record_error(directory: Path, text: str) -> None:
    """Leave why no guest could be saved, for the reader waiting on ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    _write_whole(directory / ERROR, text)


def _write_whole(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(text)
    os.replace(tmp, path)


def wait_saved(
    directory: Path,
    quiet_limit: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Until another process has saved a guest in ``directory`` (it may still be booting it when
    this starts); ``SnapshotError`` with its reason when it recorded one, or when nothing in the
    directory grew for ``quiet_limit`` seconds."""
    wait_for_result(
        directory, MANIFEST, ERROR, quiet_limit, "saved guest", SnapshotError,
        clock=clock, sleep=sleep,
    )  # fmt: skip
