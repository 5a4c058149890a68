"""The model behind the Linux iSCSI initiator: ``scsi-pr target serve`` plus open-iscsi sessions.

For the VM tier (root, a kernel with ``iscsi_tcp``, open-iscsi installed): the rig starts the
target on 127.0.0.1 with a state dir of its own, and logs in once per initiator, each through
an open-iscsi interface (``iscsiadm -m iface``) with its own initiator name, so each session is
its own I_T nexus and its own SCSI host with a /dev/sgN for LUN 0. The guest shares the host's
root read-only: /etc/iscsi (node records, the default initiator name) gets a tmpfs first.

``up()`` builds it once per process (``shared()``), ``down()`` logs out and stops what it
started. The model's state is reachable beside the sessions through ``lus`` (the shared state
dir), which is how backends reset it and power-cycle the LU.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from scsi_pr.helper.simserve import SharedLUs
from scsi_pr.rig import udev
from scsi_pr.rig.errors import RigError
from scsi_pr.rig.processes import NotListening, start_target, wait_ready
from scsi_pr.sim.transportid import TransportId

TARGET = "iqn.2024-01.org.scsi-pr:rig"
PORT = 3260
INITIATOR_PREFIX = "iqn.2024-01.org.scsi-pr:initiator"
ISCSI_ETC = Path("/etc/iscsi")
SESSIONS = Path("/sys/class/iscsi_session")
ISCSID_SOCKET = "\0ISCSIADM_ABSTRACT_NAMESPACE"  # open-iscsi's iscsiadm <-> iscsid socket
START_QUIET = 60.0  # seconds a starting iscsid or target may go without using CPU
DEVICE_TIMEOUT = 30.0  # seconds for a session's /dev/sgN to appear
LU_SIZE = "64M"
# No pings on either side: the sessions are on loopback, and a ping that a starved TCG guest
# answers late drops the session; the kernel's recovery may then retry the next command past
# its unit attention. ``check_sessions`` says so outright if a session is ever re-established.
ISCSID_CONF = """node.startup = manual
node.session.timeo.replacement_timeout = 120
node.conn[0].timeo.noop_out_interval = 0
node.conn[0].timeo.noop_out_timeout = 0
node.session.initial_login_retry_max = 4
"""
#: the target's pings of idle initiators: far beyond any test's pause
TARGET_NOP = ("--nop-interval", "600", "--nop-timeout", "600")
#: Measured in the VM (the trace of ``target serve --log-level DEBUG``): a unit attention with
#: ASC 29h (POWER ON, RESET) that reaches Linux, even by SG_IO, makes the kernel send a "change"
#: uevent for the SCSI device (``SDEV_UA=POWER_ON_RESET_OCCURRED``); udev's 60-block.rules
#: forwards it to the disk and 60-persistent-storage.rules runs blkid, whose READs on that
#: session take whatever unit attention waits for the I_T nexus, seconds later under load: a
#: REGISTRATIONS PREEMPTED a test waits for. Every fresh LU, power cycle and LUN reset starts
#: such a probe on every session: the rig installs ``udev.MODEL_DISKS`` while it runs.


NORMAL_LOGIN = re.compile(r"login: .* \(Normal session")


class IscsiUnavailable(RigError):
    """The kernel initiator rig cannot run here (no root, no iscsi_tcp, no open-iscsi)."""


class IscsiRigError(RigError):
    """Building the rig failed: a command, a login or a device that did not appear."""


@dataclass(frozen=True)
class IscsiPort:
    """One session: its initiator port (name and ISID), the /dev/sgN and /dev/sdX of its LUN 0
    (the block device is what fence_scsi and fio take)."""

    name: str
    isid: str
    sg: str
    block: str

    @property
    def transport_id(self) -> TransportId:
        return TransportId.iscsi(self.name, self.isid)


def check_available() -> None:
    if os.geteuid() != 0:
        raise IscsiUnavailable("the iSCSI rig needs root (iscsid, logins, SG_IO)")
    for tool in ("iscsiadm", "iscsid"):
        if shutil.which(tool) is None:
            raise IscsiUnavailable(f"{tool} is missing: apt-get install open-iscsi")
    if subprocess.run(["modprobe", "iscsi_tcp"], capture_output=True).returncode != 0:
        raise IscsiUnavailable("the kernel has no iscsi_tcp module")


def _run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise IscsiRigError(f"{' '.join(argv)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def _iscsid_listening() -> bool:
    """Does iscsid take iscsiadm's requests (its abstract Unix socket)?"""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(ISCSID_SOCKET)
        except OSError:
            return False
    return True


class IscsiRig:
    """The target process, iscsid, one interface and session per initiator."""

    def __init__(self, initiators: int) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="scsi-pr-iscsi-"))
        self.state_dir = self.root / "state"
        self.image = self.state_dir / "lun0.img"
        self.lus = SharedLUs(self.state_dir)
        self.ports: list[IscsiPort] = []
        self._target: subprocess.Popen[bytes] | None = None
        self._iscsid: subprocess.Popen[bytes] | None = None
        self._ifaces: list[str] = []
        try:
            self._prepare()
            self._start_target()
            for index in range(initiators):
                self.ports.append(self._login(index))
        except BaseException:
            self.down()
            raise

    # -- building --------------------------------------------------------------------------
    def _prepare(self) -> None:
        subprocess.run(["ip", "link", "set", "lo", "up"], capture_output=True)
        if not os.access(ISCSI_ETC, os.W_OK):
            _run("mount", "-t", "tmpfs", "-o", "mode=0755", "scsi-pr-iscsi", str(ISCSI_ETC))
        (ISCSI_ETC / "initiatorname.iscsi").write_text(f"InitiatorName={INITIATOR_PREFIX}0\n")
        (ISCSI_ETC / "iscsid.conf").write_text(ISCSID_CONF)
        Path("/run/lock/iscsi").mkdir(parents=True, exist_ok=True)
        udev.MODEL_DISKS.install()
        if _iscsid_listening():
            return
        log = (self.root / "iscsid.log").open("wb")
        # A session of its own: iscsid signals its whole process group when it stops.
        self._iscsid = subprocess.Popen(["iscsid", "-f"], stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)  # fmt: skip
        iscsid_log = self.root / "iscsid.log"
        try:
            wait_ready(self._iscsid, _iscsid_listening, START_QUIET, name="iscsid",
                       output=lambda: iscsid_log.read_text(errors="replace")[-2000:])  # fmt: skip
        except NotListening as e:
            raise IscsiRigError(str(e)) from e

    def _start_target(self) -> None:
        try:
            self._target = start_target(
                ("127.0.0.1", PORT), TARGET, self.state_dir, LU_SIZE, self.target_log_path,
                START_QUIET, extra=(*TARGET_NOP, "--log-level", "DEBUG"), new_session=True,
            )  # fmt: skip
        except NotListening as e:
            raise IscsiRigError(str(e)) from e

    def _login(self, index: int) -> IscsiPort:
        iface, name = f"scsipr{index}", f"{INITIATOR_PREFIX}{index}"
        _run("iscsiadm", "-m", "iface", "-I", iface, "-o", "new")
        self._ifaces.append(iface)
        _run("iscsiadm", "-m", "iface", "-I", iface, "-o", "update",
             "-n", "iface.initiatorname", "-v", name)  # fmt: skip
        _run("iscsiadm", "-m", "discovery", "-t", "sendtargets", "-p", f"127.0.0.1:{PORT}",
             "-I", iface)  # fmt: skip
        _run("iscsiadm", "-m", "node", "-T", TARGET, "-p", f"127.0.0.1:{PORT}", "-I", iface,
             "--login")  # fmt: skip
        return self._port_of(name)

    def _port_of(self, name: str) -> IscsiPort:
        """The session's ISID is not in sysfs: the target's login line names it."""
        login = re.compile(rf"login: {re.escape(name.lower())},i,0x([0-9a-f]{{12}}) ")
        deadline = time.monotonic() + DEVICE_TIMEOUT
        while time.monotonic() < deadline:
            isids = login.findall(self.target_log(None))
            for session in SESSIONS.glob("session*"):
                if isids and (session / "initiatorname").read_text().strip() == name:
                    lun0 = session / "device"
                    sgs = [p.name for p in lun0.glob("target*/*:0/scsi_generic/sg*")]
                    blocks = [p.name for p in lun0.glob("target*/*:0/block/sd*")]
                    if sgs and blocks and all(Path("/dev", n).exists() for n in sgs + blocks):
                        return IscsiPort(name, isids[-1], f"/dev/{sgs[0]}", f"/dev/{blocks[0]}")
            time.sleep(0.2)
        raise IscsiRigError(f"no /dev/sgN and /dev/sdX for the session of {name}: "
                            f"{self.target_log()}")  # fmt: skip

    def check_sessions(self) -> None:
        """Raise IscsiRigError if any session logged in again since the rig was built: the
        kernel re-established it after a drop, and its recovery may have consumed unit
        attentions a test is about to look for."""
        logins = len(NORMAL_LOGIN.findall(self.target_log(None)))
        if logins != len(self.ports):
            raise IscsiRigError(
                f"{logins} session logins for {len(self.ports)} sessions: a session was "
                f"dropped and re-established (see the target log): {self.target_log(1500)}"
            )

    # -- taking down ------------------------------------------------------------------------
    @property
    def target_log_path(self) -> Path:
        return self.root / "target.log"

    def target_log(self, tail: int | None = 3000) -> str:
        return self.target_log_since(0, tail)

    def target_log_size(self) -> int:
        """Where the target log ends now: ``target_log_since`` reads what comes after."""
        path = self.target_log_path
        return path.stat().st_size if path.exists() else 0

    def target_log_since(self, offset: int, tail: int | None = 20_000) -> str:
        """The target's log from byte ``offset`` on (its last ``tail`` characters; None: all)."""
        path = self.target_log_path
        if not path.exists():
            return ""
        with path.open("rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
        return text if tail is None else text[-tail:]

    def down(self) -> None:
        for iface in self._ifaces:
            subprocess.run(["iscsiadm", "-m", "node", "-T", TARGET, "-I", iface, "--logout"],
                           capture_output=True, timeout=60)  # fmt: skip
            subprocess.run(["iscsiadm", "-m", "iface", "-I", iface, "-o", "delete"],
                           capture_output=True, timeout=60)  # fmt: skip
        self._ifaces.clear()
        for proc in (self._target, self._iscsid):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        self._target = self._iscsid = None
        udev.MODEL_DISKS.install(on=False)


_shared: IscsiRig | None = None
_failed: IscsiRigError | None = None  # a rig that could not be built is not tried again


def shared(initiators: int) -> IscsiRig:
    """The process-wide rig with at least ``initiators`` sessions (built once)."""
    global _shared, _failed
    if _shared is not None and len(_shared.ports) >= initiators:
        return _shared
    if _failed is not None:
        raise _failed
    check_available()
    if _shared is not None:
        _shared.down()
    else:
        atexit.register(lambda: _shared.down() if _shared is not None else None)
    try:
        _shared = IscsiRig(max(initiators, 3))
    except IscsiRigError as e:
        _shared, _failed = None, e
        raise
    return _shared
