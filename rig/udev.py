"""The udev rules the rigs install for their own disks, and waiting for udev.

Why: udev probes every disk it sees (blkid's READs), and probes it again whenever a process
that opened it for writing closes it (the ``watch`` option of 60-block.rules: sg_persist,
fence_scsi, fio and QEMU all open disks read-write). Measured, that hurts the tests: a probe's
READ reaches the LU on the disk's I_T nexus and takes the unit attention pending there (the
kernel retries the READ and nobody sees it). Not for speed: udevd and its workers use about
240 of a VM tier's ~1,500 CPU-seconds (``rig.guest_cpu``'s report), and with the LIO rule
they used as much (the rest of their work is not these probes).

A rule turns blkid and the watch off for the matched disks only; the INQUIRY-only rules stay,
since multipathd takes a path's WWID from them. Each rule sorts after 60-block.rules (which
sets the watch) and before 60-persistent-storage.rules (which reads the blkid flag). Rules live
in /run: nothing survives a reboot.

Where no test needs udev at all (the VM tier's hang VM), ``stop`` ends udevd: there its probes
of every LU the tests build were all it did, with more CPU than the tests (docs/performance.md).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

RULES_DIR = Path("/run/udev/rules.d")
CONTROL = Path("/run/udev/control")  # udevd's control socket
SETTLE_TIMEOUT = 120  # seconds udevadm settle waits for the queue to empty


@dataclass(frozen=True)
class QuietRule:
    """``ACTION!="remove"`` block devices matching ``match``: no blkid, no watch."""

    file_name: str
    match: str

    @property
    def path(self) -> Path:
        return RULES_DIR / self.file_name

    @property
    def text(self) -> str:
        return (
            f'ACTION!="remove", SUBSYSTEM=="block", {self.match}, '
            'ENV{UDEV_DISABLE_PERSISTENT_STORAGE_BLKID_FLAG}="1", OPTIONS+="nowatch"\n'
        )

    def install(self, on: bool = True) -> None:
        """Install (``on``) or remove the rule and have udev read its rules again; with no
        udev running there is nothing to quiet and the file does no harm."""
        if on:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(self.text)
        else:
            self.path.unlink(missing_ok=True)
        if shutil.which("udevadm") is not None:
            subprocess.run(["udevadm", "control", "--reload"], capture_output=True, timeout=60)


#: the model's disks behind the kernel's iSCSI initiator (``rig.iscsi_rig``)
MODEL_DISKS = QuietRule(
    "60-persistent-storage-scsi-pr-rig.rules",
    'ATTRS{vendor}=="SCSI-PR*", ATTRS{model}=="SIMULATED LU*"',
)
#: LIO's loopback (tcm_loop) disks: the LIO rig's (``rig.lio``); tcm_loop's devices hang under
#: its root device ``tcm_loop_0``
LIO_LOOPBACK_DISKS = QuietRule(
    "60-persistent-storage-scsi-pr-lio.rules", 'DEVPATH=="/devices/tcm_loop_*"'
)


def running() -> bool:
    """Does udevd run here (its control socket exists)?"""
    return CONTROL.exists()


def stop() -> bool:
    """Have udevd exit (``udevadm control --exit``, which waits for it); True once it has.
    For a VM whose tests need none of what udev does: its work there is the probes of every
    LU the tests build, which cost CPU the machine's other VM needs."""
    if not running() or shutil.which("udevadm") is None:
        return False
    done = subprocess.run(["udevadm", "control", "--exit"], capture_output=True, timeout=120)
    return done.returncode == 0


def settle() -> None:
    """Wait until udev has handled every event queued so far (no-op without udev)."""
    if shutil.which("udevadm") is not None:
        subprocess.run(
            ["udevadm", "settle", f"--timeout={SETTLE_TIMEOUT}"],
            capture_output=True,
            timeout=SETTLE_TIMEOUT + 60,
        )
