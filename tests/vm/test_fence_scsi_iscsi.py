"""Real ``fence_scsi`` (Debian fence-agents) against the model behind the kernel's iSCSI initiator.

Two cluster nodes are two iSCSI sessions of the VM (``scsi_pr.rig.iscsi_rig``: own initiator
names, so own I_T nexuses), each with its own /dev/sdX of the one LU. Node A unfences itself
(``on``: register, reserve WRITE EXCLUSIVE - REGISTRANTS ONLY), node B joins, then B fences A
(``off``: PREEMPT AND ABORT of A's key) and ``status`` tells who is still on. On LIO the same
``off`` wedges the LUN (docs/lio.md: PREEMPT AND ABORT on tcm_loop); the model must complete it.

fence_scsi keeps "its own key" in one file per machine (``/var/run/cluster.key``); both nodes
live in this one VM, so the order matters: the node that fences runs ``on`` last.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
from needs import unavailable
from sg3 import sg_persist

from scsi_pr.helper.lu_identity import identify_path
from scsi_pr.sim import cdb as C
from scsi_pr.sim.constants import Status

pytestmark = pytest.mark.vm
FENCE_SCSI = "fence_scsi"
KEY_A, KEY_B = "a1", "b2"
TIMEOUT = 300  # seconds per fence_scsi call: it runs sg_turs and sg_persist several times
OFF = 2  # fence_scsi's exit status for "status: off" (fencing library EC_STATUS)


def fence(action: str, key: str, device: str) -> subprocess.CompletedProcess[str]:
    argv = [FENCE_SCSI, f"--action={action}", f"--key={key}", f"--devices={device}"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT)


def ok(done: subprocess.CompletedProcess[str], expected: int = 0) -> None:
    assert done.returncode == expected, (
        f"{' '.join(done.args)} exited {done.returncode}, not {expected}: "
        f"{done.stdout}{done.stderr}"
    )


def test_fence_scsi_on_off_status_through_two_sessions() -> None:
    from scsi_pr.rig import iscsi_rig
    from scsi_pr.rig.backend_iscsi import IscsiInitiator
    from scsi_pr.rig.backends import drain

    try:
        rig = iscsi_rig.shared(2)
    except iscsi_rig.IscsiUnavailable as e:
        unavailable(f"needs the VM's kernel initiator: {e}")
    for tool in (FENCE_SCSI, "sg_persist", "sg_turs"):
        if shutil.which(tool) is None:
            unavailable(f"{tool} is missing: apt-get install fence-agents sg3-utils")
    rig.lus.forget(identify_path(rig.image)[0])  # a fresh LU: no keys, no reservation
    a, b = rig.ports[:2]

    ok(fence("on", KEY_A, a.block))
    assert f"key=0x{KEY_A}" in sg_persist("-n", "-i", "-r", a.block)
    ok(fence("on", KEY_B, b.block))  # B joins; A keeps the reservation; the key file says B
    keys = sg_persist("-n", "-i", "-k", b.block)
    assert f"0x{KEY_A}" in keys and f"0x{KEY_B}" in keys
    ok(fence("status", KEY_A, b.block))  # A is on

    ok(fence("off", KEY_A, b.block))  # B fences A: PREEMPT AND ABORT
    ok(fence("status", KEY_A, b.block), OFF)
    ok(fence("status", KEY_B, b.block))
    keys = sg_persist("-n", "-i", "-k", b.block)
    assert f"0x{KEY_A}" not in keys and f"0x{KEY_B}" in keys
    reservation = sg_persist("-n", "-i", "-r", b.block)
    assert f"key=0x{KEY_B}" in reservation and "write exclusive, registrants only" in reservation

    # The fenced node can no longer write; the survivor can.
    fenced, survivor = IscsiInitiator(a), IscsiInitiator(b)
    for it in (fenced, survivor):
        it.open()
    try:
        drain(fenced, iscsi_rig.IscsiRigError)  # REGISTRATIONS PREEMPTED waits for A
        block = bytes(512)
        assert fenced.execute(C.write_10(0, 1), block).status == Status.RESERVATION_CONFLICT
        assert survivor.execute(C.write_10(0, 1), block).status == Status.GOOD
    finally:
        for it in (fenced, survivor):
            it.close()
    ok(fence("off", KEY_B, b.block), 1)  # "You can not fence yourself"
