"""LIO loopback rig: one backstore seen by N initiators through N tcm_loop targets.

Each initiator is one loopback target (one emulated SCSI host) whose TPG carries a fixed I_T
nexus, so LIO sees N distinct I_T nexuses on N distinct target ports, and the kernel gives each a
``/dev/sgN`` and ``/dev/sdX``. Initiator WWNs come from ``rig.backends.initiator_name`` so the
TransportIDs LIO reports equal the model's.

rtslib-fb owns configfs (backstores, targets, LUNs). We add only what it lacks or gets wrong:

- the loopback nexus: ``TPG()`` writes a *random* nexus when none is set, so ``tpgt_1`` and its
  ``nexus`` are written by hand first and rtslib then looks the TPG up;
- the stale APTPL file ``<dbroot>/pr/aptpl_<unit serial>``, which rtslib replays into a new LU
  with the same serial: deleted on ``up`` and ``down``;
- finding the SCSI devices of each target, waiting for their /dev nodes, and clearing the
  start-up unit attentions (which are reported, not hidden).

Everything here needs root and an LIO kernel; nothing is imported or touched at import time.
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from scsi_pr.helper.executors.sg import sg_io
from scsi_pr.rig import udev
from scsi_pr.rig.backends import initiator_name
from scsi_pr.rig.errors import RigError
from scsi_pr.sim import cdb as C
from scsi_pr.sim.commands import relative_target_port_of
from scsi_pr.sim.result import SenseData
from scsi_pr.sim.transportid import TransportId

T = TypeVar("T")

CONFIGFS = Path("/sys/kernel/config")
TARGET_CONFIGFS = CONFIGFS / "target"
LOOPBACK = TARGET_CONFIGFS / "loopback"
# Where rtslib-fb points LIO's dbroot (APTPL files under pr/): upstream uses /etc/target,
# Debian's package /etc/rtslib-fb-target. The kernel's own default is /var/target.
DBROOT_CANDIDATES = (Path("/etc/rtslib-fb-target"), Path("/etc/target"))
KERNEL_MODULES = (
    "configfs",
    "target_core_mod",
    "target_core_file",
    "target_core_iblock",
    "tcm_loop",
    "sg",
    "sd_mod",
)
STATE_FILE = Path("/run/scsi-pr/lio.json")
#: taken by every backstore creation of ours, in any process (``new_storage_object``)
CREATE_LOCK = Path("/run/scsi-pr/backstore.lock")
DEFAULT_NAME = "scsipr0"
DEFAULT_SIZE = 64 << 20
BACKSTORES = ("ramdisk", "fileio", "block")
TUR_TIMEOUT_MS = 10_000
#: how many commands may answer UNIT ATTENTION before a device counts as not settling
MAX_STARTUP_UAS = 8
#: How often a backstore's removal scans configfs again after a removal beside it raced the scan.
SCAN_RACE_RETRIES = 8
DEVICE_WAIT_SECONDS = 60.0


class LioUnavailable(RigError):
    """This machine cannot run LIO (not root, no target modules, no configfs)."""


class BadLunSpec(RigError, ValueError):
    """A ``LunSpec`` the rig cannot build (caught before anything is touched)."""


class DeviceNotReady(RigError):
    """A loopback LUN's SCSI devices did not appear, or did not settle, in time."""


TARGET_WWN_PREFIX = "naa.5001405f"


def target_wwn(index: int, generation: int = 0) -> str:
    """Fixed loopback target WWN for initiator ``index`` of rig ``generation`` (SAS
    ``naa.5001405f…``). A new generation is built beside a hung one, which cannot be removed."""
    return f"{TARGET_WWN_PREFIX}{generation:02x}{index + 1:06x}"


def unit_serial(name: str) -> str:
    """A stable T10 unit serial per backstore name, so APTPL files and VPD are reproducible."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"scsi-pr:{name}"))


@dataclass(frozen=True)
class LunSpec:
    """What to build. ``path`` is the file (fileio) or block device (block); ramdisk needs none."""

    initiators: int = 3
    size: int = DEFAULT_SIZE
    backstore: str = "ramdisk"
    name: str = DEFAULT_NAME
    path: str | None = None
    generation: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.generation < 256:
            raise BadLunSpec(f"generation must be 0..255, not {self.generation}")
        if not 1 <= self.initiators <= 32:
            raise BadLunSpec(f"initiators must be 1..32, not {self.initiators}")
        if self.backstore not in BACKSTORES:
            raise BadLunSpec(f"backstore must be one of {', '.join(BACKSTORES)}")
        if self.backstore == "block" and not self.path:
            raise BadLunSpec("a block backstore needs --path /dev/<disk>")
        if self.backstore != "block" and self.size < 1 << 20:
            raise BadLunSpec(f"size {self.size} too small (at least 1 MiB)")
        if not self.name or any(c in self.name for c in "/ \t\n"):
            raise BadLunSpec(f"bad backstore name {self.name!r}")


@dataclass(frozen=True)
class InitiatorPort:
    """One initiator's view of the LU: what tests and the helper need to reach it."""

    index: int
    wwn: str  # the initiator port (nexus) name
    transport_id: str  # hex of the SPC-5 TransportID LIO reports for this initiator
    target_wwn: str
    relative_target_port: int
    hctl: str
    sg: str
    sd: str
    startup_unit_attentions: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RigDescription:
    spec: LunSpec
    unit_serial: str
    initiators: list[InitiatorPort]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> RigDescription:
        raw = json.loads(text)
        return cls(
            LunSpec(**raw["spec"]),
            raw["unit_serial"],
            [InitiatorPort(**p) for p in raw["initiators"]],
        )


# -- kernel preconditions -------------------------------------------------------------------
def check_available() -> None:
    """Raise LioUnavailable with the reason unless LIO with tcm_loop can be driven here."""
    if os.geteuid() != 0:
        raise LioUnavailable("LIO needs root (configfs and /dev/sg*)")
    if not TARGET_CONFIGFS.is_dir():
        _load_kernel()
    if not TARGET_CONFIGFS.is_dir():
        raise LioUnavailable(
            f"{TARGET_CONFIGFS} missing: this kernel has no LIO (target_core_mod); "
            "run inside the VM: scsi-pr vm run -- …"
        )


def _load_kernel() -> None:
    """modprobe the target stack and mount configfs (rtslib-fb can only detect the mount)."""
    for module in KERNEL_MODULES:
        subprocess.run(["modprobe", "-q", module], check=False, capture_output=True)
    if CONFIGFS.is_dir() and not os.path.ismount(CONFIGFS):
        subprocess.run(["mount", "-t", "configfs", "none", str(CONFIGFS)], check=False)
    if TARGET_CONFIGFS.is_dir():
        return
    # Loading target_core_mod creates target/ only once configfs is mounted; retry once.
    subprocess.run(["modprobe", "-q", "target_core_mod"], check=False)


def _rtslib() -> ModuleType:
    """Import rtslib-fb; Debian's python3-rtslib-fb lives outside the venv, so fall back to
    the system site directory (rtslib-fb and pyudev are pure Python)."""
    try:
        import rtslib  # type: ignore[import-not-found]
    except ImportError:
        sys.path.append("/usr/lib/python3/dist-packages")
        try:
            import rtslib  # type: ignore[import-not-found]
        except ImportError as e:
            raise LioUnavailable(
                "rtslib-fb missing: apt-get install python3-rtslib-fb (or pip install rtslib-fb)"
            ) from e
    return rtslib


# -- build ----------------------------------------------------------------------------------
def up(spec: LunSpec, *, record: bool = True) -> RigDescription:
    """Build the rig from scratch (tearing down an earlier one first) and describe it; with
    ``record`` the description goes to STATE_FILE for ``scsi-pr lio status`` and the backends."""
    check_available()
    down(spec.name, spec.generation)
    rts = _rtslib()
    for d in DBROOT_CANDIDATES:
        d.mkdir(parents=True, exist_ok=True)
    rts.RTSRoot()  # sets dbroot (before any device exists: the kernel refuses it later)
    # LIO rewrites <dbroot>/pr/aptpl_<serial> on every registration change, APTPL or not, and
    # fails the PR OUT (LOGICAL UNIT COMMUNICATION FAILURE) when it cannot: pr/ must exist.
    (dbroot() / "pr").mkdir(parents=True, exist_ok=True)
    serial = unit_serial(spec.name)
    _remove_aptpl(serial)
    udev.LIO_LOOPBACK_DISKS.install()  # before the disks appear: rig.udev says why
    try:
        so = _storage_object(rts, spec, serial)
        fabric = rts.FabricModule("loopback")
        for i in range(spec.initiators):
            target = rts.Target(fabric, target_wwn(i, spec.generation), "create")
            tpg_dir = Path(target.path) / "tpgt_1"
            tpg_dir.mkdir()
            # The nexus must exist before the LUN is linked (else the disk never probes), and
            # rtslib's TPG() would invent a random one: write ours first, then look it up.
            (tpg_dir / "nexus").write_text(initiator_name(i))
            _number_target_port(tpg_dir, i + 1)
            tpg = rts.TPG(target, 1, "lookup")
            rts.LUN(tpg, 0, so)
        ports = [_describe_port(i, spec.generation) for i in range(spec.initiators)]
    except Exception:
        # Roll back exactly what this call built: its backstore and its generation's targets.
        # Without the generation, down() would also delete a hung generation's targets, and
        # removing a LUN that LIO has hung blocks for good.
        with suppress(Exception):
            down(spec.name, spec.generation)
        raise
    desc = RigDescription(spec, serial, ports)
    if record:
        STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
        STATE_FILE.write_text(desc.to_json())
    return desc


def _storage_object(rts: ModuleType, spec: LunSpec, serial: str) -> Any:
    if spec.backstore == "ramdisk":
        return new_storage_object(
            lambda: rts.RDMCPStorageObject(spec.name, size=spec.size, wwn=serial)
        )
    if spec.backstore == "fileio":
        path = spec.path or f"/var/tmp/{spec.name}.img"
        return new_storage_object(
            lambda: rts.FileIOStorageObject(spec.name, dev=path, size=spec.size, wwn=serial)
        )
    return new_storage_object(lambda: rts.BlockStorageObject(spec.name, dev=spec.path, wwn=serial))


def new_storage_object(make: Callable[[], T]) -> T:
    """``make()`` an rtslib storage object safely beside other processes doing the same.

    rtslib numbers each backstore's directory (``core/rd_mcp_N``) from a cache of the numbers
    in use that it reads once per process, so a process that read it earlier does not see a
    backstore another process created since, and picks its number again. Measured in the VM
    tier, main phase beside the nested-guest phase: RTSLibError "This _Backstore already
    exists in configFS". Here every creation of ours holds one lock across processes and has
    rtslib read the numbers afresh under it."""
    CREATE_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with CREATE_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        _rtslib().RTSRoot().invalidate_caches()
        return make()


def delete_storage_object(so: Any) -> None:
    """``so.delete()``, scanning again when configfs changed under rtslib's scan.

    rtslib finds a backstore's LUNs by listing every fabric's targets, TPGs and LUN directories
    one after another, across all of configfs; a LUN removed meanwhile (another lane of the VM
    tier tearing its rig down, or a removal of ours the kernel is still finishing) makes a
    listing raise FileNotFoundError. Measured in CI, 6.1, guest-e2e phase: the scan listed
    ``tpgt_1/lun/lun_0`` and found it gone. The scan only reads, so it is run again, a moment
    later each time; a removal that keeps failing is raised."""
    for attempt in range(SCAN_RACE_RETRIES):
        try:
            so.delete()
            return
        except FileNotFoundError:
            if attempt == SCAN_RACE_RETRIES - 1:
                raise
            time.sleep(0.05 * (attempt + 1))  # the removal beside ours finishing


def _describe_port(index: int, generation: int) -> InitiatorPort:
    tpg_dir = LOOPBACK / target_wwn(index, generation) / "tpgt_1"
    hctl = _wait_for_hctl(tpg_dir)
    sg, sd = _wait_for_nodes(hctl)
    uas = clear_unit_attentions(sg)
    return InitiatorPort(
        index=index,
        wwn=initiator_name(index),
        transport_id=TransportId.from_name(initiator_name(index)).encode().hex(),
        target_wwn=target_wwn(index, generation),
        relative_target_port=_relative_target_port(sg, tpg_dir),
        hctl=hctl,
        sg=sg,
        sd=sd,
        startup_unit_attentions=uas,
    )


def _wait_for_hctl(tpg_dir: Path) -> str:
    """H:C:T:L of LUN 0 behind this TPG: ``tpgt_1/address`` gives ``H:0:T`` on kernels that
    have it; otherwise the tcm_loop adapter's host under /sys/devices/tcm_loop_0."""
    address = tpg_dir / "address"
    if address.exists():
        return address.read_text().strip() + ":0"
    raise LioUnavailable(f"{address} missing: kernel too old for this rig (tcm_loop 'address')")


def _wait_for_nodes(hctl: str) -> tuple[str, str]:
    """/dev/sgN and /dev/sdX once sysfs and devtmpfs show both (sd probes asynchronously)."""
    base = Path("/sys/class/scsi_device") / hctl / "device"
    deadline = time.monotonic() + DEVICE_WAIT_SECONDS
    while True:
        sg = glob.glob(str(base / "scsi_generic" / "sg*"))
        sd = glob.glob(str(base / "block" / "sd*"))
        if sg and sd:
            nodes = (f"/dev/{Path(sg[0]).name}", f"/dev/{Path(sd[0]).name}")
            if all(os.path.exists(n) for n in nodes):
                return nodes
        if time.monotonic() > deadline:
            raise DeviceNotReady(
                f"no /dev/sg* and /dev/sd* for {hctl} after {DEVICE_WAIT_SECONDS}s"
            )
        time.sleep(0.1)


def _number_target_port(tpg_dir: Path, rtpi: int) -> None:
    """Give the port RELATIVE TARGET PORT IDENTIFIER ``rtpi`` where the kernel lets us choose
    (``tpgt_1/rtpi``, 6.12). Measured on 6.12: a tcm_loop port is otherwise left at 0, every
    port of the LU the same 0, so READ FULL STATUS cannot tell them apart and REGISTER AND MOVE
    finds no destination port. On 6.1 there is no such file, and LIO numbers the LU's ports
    1, 2, 3 in creation order, the same layout."""
    attribute = tpg_dir / "rtpi"
    if attribute.exists():  # configfs refuses to create files: never open one that is absent
        attribute.write_text(str(rtpi))


def _relative_target_port(sg: str, tpg_dir: Path) -> int:
    """The RELATIVE TARGET PORT IDENTIFIER this port's commands arrive through, as the device
    itself names it (INQUIRY, Device Identification VPD page). Measured: configfs
    ``statistics/scsi_port/indx`` holds it on 6.1 but reads 0 for every port on 6.12 (the
    rig then told moves an RTPI no port has); configfs stays the fallback."""
    fd = os.open(sg, os.O_RDWR | os.O_NONBLOCK)
    try:
        r = sg_io(fd, C.inquiry(evpd=True, page=0x83, allocation_length=252), b"", 252,
                  timeout_ms=TUR_TIMEOUT_MS)  # fmt: skip
    finally:
        os.close(fd)
    found = relative_target_port_of(r.data) if r.ok else None
    if found is not None:
        return found
    return int((tpg_dir / "lun" / "lun_0" / "statistics" / "scsi_port" / "indx").read_text())


def clear_unit_attentions(sg: str) -> list[str]:
    """TEST UNIT READY until GOOD; return the unit attentions consumed (power on, LUN data
    changed…) so callers can report them. DeviceNotReady if the device does not settle."""
    seen: list[str] = []
    fd = os.open(sg, os.O_RDWR | os.O_NONBLOCK)
    try:
        for _ in range(MAX_STARTUP_UAS):
            r = sg_io(fd, C.test_unit_ready(), timeout_ms=TUR_TIMEOUT_MS)
            if r.ok:
                return seen
            sense = SenseData.parse(r.sense[: r.sb_len_wr]) if r.sb_len_wr else None
            if r.errno or r.host_status or sense is None or sense.key != 0x6:
                raise DeviceNotReady(f"{sg}: TEST UNIT READY failed: {r} ({sense})")
            seen.append(str(sense))
    finally:
        os.close(fd)
    raise DeviceNotReady(f"{sg}: still UNIT ATTENTION after {MAX_STARTUP_UAS} commands: {seen}")


# -- tear down ------------------------------------------------------------------------------
def down(name: str = DEFAULT_NAME, generation: int | None = None) -> list[str]:
    """Remove our loopback targets (of one generation, or all), the backstore and its APTPL
    file; idempotent. Returns what went. Removing a LUN that LIO has hung blocks: leave a hung
    generation to the VM's end."""
    removed: list[str] = []
    prefix = TARGET_WWN_PREFIX + ("" if generation is None else f"{generation:02x}")
    if TARGET_CONFIGFS.is_dir():
        rts = _rtslib()
        root = rts.RTSRoot()
        for target in list(root.targets):
            if target.wwn.startswith(prefix) and target.fabric_module.name == "loopback":
                target.delete()
                removed.append(f"loopback/{target.wwn}")
        for so in list(root.storage_objects):
            if so.name == name:
                delete_storage_object(so)
                removed.append(f"{so.plugin}/{name}")
    if _remove_aptpl(unit_serial(name)):
        removed.append(f"aptpl_{unit_serial(name)}")
    recorded = _recorded()
    if recorded is not None and recorded.spec.name == name:
        STATE_FILE.unlink(missing_ok=True)
    return removed


def generations_present() -> set[int]:
    """The rig generations whose loopback targets exist (left ones included)."""
    if not TARGET_CONFIGFS.is_dir():
        return set()
    found = set()
    for target in _rtslib().RTSRoot().targets:
        head = target.wwn[len(TARGET_WWN_PREFIX) : len(TARGET_WWN_PREFIX) + 2]
        if target.wwn.startswith(TARGET_WWN_PREFIX) and len(head) == 2:
            found.add(int(head, 16))
    return found


def dbroot() -> Path:
    """LIO's current dbroot (read from configfs; the kernel default when LIO is not loaded)."""
    try:
        return Path((TARGET_CONFIGFS / "dbroot").read_text().strip())
    except OSError:
        return Path("/var/target")


def _remove_aptpl(serial: str) -> bool:
    """Delete a stale APTPL file wherever an earlier run may have left it."""
    removed = False
    for d in {dbroot(), *DBROOT_CANDIDATES}:
        with suppress(FileNotFoundError, NotADirectoryError):
            (d / "pr" / f"aptpl_{serial}").unlink()
            removed = True
    return removed


# -- inspection -----------------------------------------------------------------------------
def _recorded() -> RigDescription | None:
    try:
        return RigDescription.from_json(STATE_FILE.read_text())
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def current() -> RigDescription | None:
    """The rig ``up`` recorded last (STATE_FILE), if its devices are still there."""
    desc = _recorded()
    if desc is None or not all(os.path.exists(p.sg) for p in desc.initiators):
        return None
    return desc


def pr_state(name: str = DEFAULT_NAME) -> dict[str, str]:
    """The ``pr/res_*`` files of the backstore (LIO's own view of PR state), for reports."""
    out: dict[str, str] = {}
    for d in glob.glob(str(TARGET_CONFIGFS / "core" / "*" / name / "pr")):
        for f in sorted(Path(d).glob("res_*")):
            with suppress(OSError):
                out[f.name] = f.read_text().strip()
    return out
