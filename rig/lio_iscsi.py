"""LIO's own iSCSI target on a ramdisk: the reference ``scsi-pr target serve`` is compared with.

The libiscsi reference count (``tests/vm/test_iscsi_initiators.py``) reaches it with libiscsi;
the iSCSI benchmark (``benchmarks/iscsi.py``) through the Linux kernel's initiator, so this
module also logs open-iscsi in to it and finds the session's /dev/sdX.

Demo mode (any initiator, no CHAP, writable), built with rtslib-fb as ``scsi_pr.rig.lio``
builds its loopback rig. Needs root and the VM's kernel; nothing runs at import time. The
kernel session needs ``iscsid`` running with a writable /etc/iscsi, which
``scsi_pr.rig.iscsi_rig.IscsiRig`` provides: build that one first.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from scsi_pr.rig import lio
from scsi_pr.rig.errors import RigError

IQN = "iqn.2003-01.org.linux-iscsi.scsi-pr:reference"
STORAGE_NAME = "scsipr_iscsi_ref"
SIZE = 64 << 20
#: TPG attributes: any initiator logs in (an ACL made on the fly), no CHAP, LUNs writable
DEMO_MODE = {
    "authentication": "0",
    "demo_mode_write_protect": "0",
    "generate_node_acls": "1",
    "cache_dynamic_acls": "1",
}
SESSIONS = Path("/sys/class/iscsi_session")
DEVICE_TIMEOUT = 30.0  # seconds for a session's /dev/sdX to appear (TCG under load is slow)
#: open-iscsi's built-in interface: with no ``-I``, discovery would bind the target to every
#: interface iscsi_rig created, and the login would open one session per interface
IFACE = "default"


class LioIscsiError(RigError):
    """An iscsiadm command failed, or a session's block device did not appear."""


class LioIscsiTarget:
    """LIO's iSCSI target on 127.0.0.1:``port`` with one ramdisk LUN 0 of ``size`` bytes."""

    def __init__(self, port: int, iqn: str = IQN, size: int = SIZE) -> None:
        lio.check_available()
        subprocess.run(["modprobe", "iscsi_target_mod"], check=True)
        rts = lio._rtslib()
        self.iqn, self.port = iqn, port
        self.target: Any = None
        self.storage = lio.new_storage_object(
            lambda: rts.RDMCPStorageObject(STORAGE_NAME, size=size)
        )
        try:
            self.target = rts.Target(rts.FabricModule("iscsi"), iqn)
            tpg = rts.TPG(self.target, 1)
            for name, value in DEMO_MODE.items():
                tpg.set_attribute(name, value)
            rts.LUN(tpg, 0, self.storage)
            rts.NetworkPortal(tpg, "127.0.0.1", port)
            tpg.enable = True
        except BaseException:
            self.delete()  # nothing half-built stays in configfs
            raise

    def delete(self) -> None:
        if self.target is not None:
            self.target.delete()
        lio.delete_storage_object(self.storage)


def _iscsiadm(*args: str) -> None:
    done = subprocess.run(["iscsiadm", *args], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        why = done.stderr.strip() or done.stdout.strip()
        raise LioIscsiError(f"iscsiadm {' '.join(args)}: {why}")


def session_block(iqn: str, timeout: float = DEVICE_TIMEOUT) -> str:
    """The /dev/sdX of LUN 0 of the (one) kernel session to target ``iqn``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for session in SESSIONS.glob("session*"):
            if (session / "targetname").read_text().strip() != iqn:
                continue
            for block in (session / "device").glob("target*/*:0/block/sd*"):
                if Path("/dev", block.name).exists():
                    return f"/dev/{block.name}"
        time.sleep(0.2)
    raise LioIscsiError(f"no /dev/sdX for a session to {iqn} within {timeout:.0f} s")


class KernelSession:
    """open-iscsi's session to ``iqn`` at 127.0.0.1:``port`` through the ``default`` interface;
    ``block`` is LUN 0's /dev/sdX. ``logout()`` ends it and forgets the node record."""

    def __init__(self, iqn: str, port: int) -> None:
        self.iqn, self.portal = iqn, f"127.0.0.1:{port}"
        _iscsiadm("-m", "discovery", "-t", "sendtargets", "-p", self.portal, "-I", IFACE)
        try:
            _iscsiadm("-m", "node", "-T", iqn, "-p", self.portal, "-I", IFACE, "--login")
            self.block = session_block(iqn)
        except BaseException:
            self.logout()
            raise

    def logout(self) -> None:
        """Best effort: a failed login leaves nothing to log out of, and that is fine."""
        node = ("-m", "node", "-T", self.iqn, "-p", self.portal, "-I", IFACE)
        for action in (("--logout",), ("-o", "delete")):
            subprocess.run(["iscsiadm", *node, *action], capture_output=True, timeout=120)
