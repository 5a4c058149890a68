"""Linux's own probes must not take the model's unit attentions behind a test's back.

Measured (the target's DEBUG trace): when a session's disk reports a POWER ON, RESET unit
attention, udev runs blkid on that disk, and blkid's READs reach the model on that session's
I_T nexus seconds later, taking any unit attention pending there (the kernel retries the READ
and nobody sees it). The iSCSI rig installs a udev rule against that
(``scsi_pr.rig.udev.MODEL_DISKS``). This test shows both halves in one VM: without the rule
the probe reads, with it nothing but the test's own command reaches the LU.
"""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
from needs import unavailable

from scsi_pr.helper.lu_identity import identify_path
from scsi_pr.rig import udev
from scsi_pr.sim.device import LogicalUnit

pytestmark = pytest.mark.vm
SETTLE_ROUNDS = 3  # the kernel queues its uevent from a work item: settle, pause, settle again


def _power_cycle(lu: LogicalUnit) -> None:
    lu.power_loss()
    lu.power_on()


def test_udev_probe_reads_only_without_the_rig_rule() -> None:
    from scsi_pr.rig import iscsi_rig

    try:
        rig = iscsi_rig.shared(2)
    except iscsi_rig.IscsiUnavailable as e:
        unavailable(f"needs the VM's kernel initiator: {e}")
    if not udev.running() or shutil.which("sg_turs") is None:
        unavailable("needs udevd running and sg_turs (sg3-utils)")
    rig.lus.forget(identify_path(rig.image)[0])
    port = rig.ports[0]
    session = f"{port.name},i,0x{port.isid}"

    def reads_after_power_on() -> list[str]:
        """POWER ON for every nexus, one TEST UNIT READY on ``port`` to report it, then the
        READs udev sent on that session once it settled."""
        rig.lus.run_on_file(rig.image, _power_cycle)
        start = rig.target_log_size()
        subprocess.run(["sg_turs", port.sg], capture_output=True, timeout=60)
        reads: list[str] = []
        for _ in range(SETTLE_ROUNDS):
            udev.settle()
            trace = rig.target_log_since(start, tail=None)
            reads = [line for line in trace.splitlines() if session in line and " READ(" in line]
            if reads:
                break
            time.sleep(1)
        return reads

    udev.MODEL_DISKS.install(on=False)
    try:
        probed = reads_after_power_on()
    finally:
        udev.MODEL_DISKS.install()
    assert probed, "no udev probe after POWER ON: the rig's udev rule may be moot, see its note"
    assert reads_after_power_on() == []
