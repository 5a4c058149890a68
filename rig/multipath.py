"""dm-multipath over the LIO rig's loopback ports: the map a multipath host sees.

Every tcm_loop port of the rig leads to the one backstore, so their sd disks carry the same
WWID, and multipathd joins the ports it is allowed to see into one map, as it joins an array's
paths. The rig lets it see exactly the ports it names (a blacklist of everything with those
disks excepted), so the other ports stay single-path initiators of the same LU: one multipath
host beside plain ones, which is what a fence_mpath cluster node meets.

Configuration goes to ``/etc/multipath/conf.d`` (read besides multipath.conf): ``reservation_key
file``, as fence_mpath and QEMU's pr-manager documentation ask, so a REGISTER through
libmpathpersist hands the key to multipathd (``/etc/multipath/prkeys``), which registers it on
paths that come back. Measured in the VM (multipath-tools 0.9.4): udevd runs there, the map is
named by its WWID (``user_friendly_names no``), and a keyword block must span lines (a
one-line ``blacklist { ... }`` is not parsed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from scsi_pr.rig.errors import RigError

CONF_DIR = Path("/etc/multipath/conf.d")
CONF_FILE = CONF_DIR / "scsi-pr.conf"
PRKEYS = Path("/etc/multipath/prkeys")
#: how long multipathd may take to build the map once it runs (under TCG: seconds)
MAP_WAIT_SECONDS = 60.0
COMMAND_TIMEOUT = 60.0


class MultipathUnavailable(RigError):
    """multipath-tools or the dm-multipath module is missing."""


class MapNotReady(RigError):
    """multipathd did not build the map over the named paths in time."""


@dataclass(frozen=True)
class MultipathMap:
    """One map: its device-mapper name, /dev node and path disks (``sdX``)."""

    name: str
    node: str
    paths: tuple[str, ...]


def config_text(paths: Sequence[str]) -> str:
    """multipath.conf text that lets multipathd see only ``paths`` (disk names, ``sdb``)."""
    names = "|".join(sorted(paths))
    return (
        "# written by scsi-pr (rig/multipath.py); removed by its down()\n"
        "defaults {\n"
        "    user_friendly_names no\n"
        "    find_multipaths no\n"
        "    reservation_key file\n"
        "}\n"
        # No path checker and no ALUA priority: their TEST UNIT READY and REPORT TARGET PORT
        # GROUPS go down the paths every few seconds and would take the unit attentions the
        # tests expect on those I_T nexuses (overrides win over LIO-ORG's built-in entry)
        "overrides {\n"
        "    path_checker none\n"
        "    detect_checker no\n"
        "    prio const\n"
        "    detect_prio no\n"
        "}\n"
        "blacklist {\n"
        '    devnode ".*"\n'
        "}\n"
        "blacklist_exceptions {\n"
        f'    devnode "^({names})$"\n'
        "}\n"
    )


def check_available() -> None:
    for tool in ("multipathd", "multipath"):
        if shutil.which(tool) is None:
            raise MultipathUnavailable(f"{tool} missing: apt-get install multipath-tools")
    done = subprocess.run(["modprobe", "dm_multipath"], capture_output=True, text=True)
    if done.returncode != 0:
        raise MultipathUnavailable(f"modprobe dm_multipath: {done.stderr.strip()}")


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, check=False, timeout=COMMAND_TIMEOUT
    )


def _daemon_running() -> bool:
    return _run("multipathd", "show", "daemon").returncode == 0


def find_map(paths: Sequence[str]) -> MultipathMap | None:
    """The dm map whose slaves are exactly ``paths``, if one exists."""
    for dm in sorted(Path("/sys/block").glob("dm-*")):
        slaves = tuple(sorted(p.name for p in (dm / "slaves").iterdir()))
        if slaves == tuple(sorted(paths)):
            name = (dm / "dm" / "name").read_text().strip()
            return MultipathMap(name, f"/dev/{dm.name}", slaves)
    return None


def up(paths: Sequence[str]) -> MultipathMap:
    """Configure multipathd for ``paths`` (start it, or make a running one reread its
    configuration) and wait for the map."""
    if len(paths) < 2:
        raise RigError(f"a multipath map needs two paths or more, not {list(paths)}")
    check_available()
    CONF_DIR.mkdir(parents=True, exist_ok=True)
    CONF_FILE.write_text(config_text([Path(p).name for p in paths]))
    PRKEYS.unlink(missing_ok=True)  # a key left by an earlier rig is not this host's
    if _daemon_running():
        _run("multipathd", "reconfigure")
    else:
        started = _run("multipathd")  # forks into the background once its socket listens
        if started.returncode != 0:
            raise MultipathUnavailable(f"multipathd: {started.stderr.strip()}")
    names = [Path(p).name for p in paths]
    deadline = time.monotonic() + MAP_WAIT_SECONDS
    while (found := find_map(names)) is None:
        if time.monotonic() > deadline:
            shown = _run("multipath", "-ll").stdout
            raise MapNotReady(f"no map over {names} after {MAP_WAIT_SECONDS:.0f}s:\n{shown}")
        time.sleep(0.2)
    shown = _run("multipathd", "show", "paths", "raw", "format", "%d %c").stdout
    unchecked = checkers(shown)
    if any(unchecked.get(name) != "none" for name in names):
        raise RigError(f"multipathd checks the paths despite the overrides: {unchecked}")
    return found


def checkers(shown: str) -> dict[str, str]:
    """``multipathd show paths raw format "%d %c"`` -> path disk name: its checker."""
    return dict(line.split(None, 1) for line in shown.splitlines() if len(line.split()) == 2)


def forget_key(found: MultipathMap) -> None:
    """Make multipathd forget the map's reservation key, as after a CLEAR: a new owner of the
    LU starts without one (libmpathpersist refuses a REGISTER whose keys match neither zero
    nor the key multipathd holds: ``configured reservation key doesn't match``)."""
    done = _run("multipathd", "unsetprkey", "map", found.name)
    if done.returncode != 0:
        raise RigError(f"multipathd unsetprkey map {found.name}: {done.stdout}{done.stderr}")


def down(found: MultipathMap | None) -> list[str]:
    """Stop multipathd, remove the map and the configuration; what was removed."""
    removed = []
    if _daemon_running():
        _run("multipathd", "shutdown")
        removed.append("multipathd")
    if found is not None and os.path.exists(found.node):
        done = _run("multipath", "-f", found.name)
        if done.returncode == 0:
            removed.append(found.name)
    for path in (CONF_FILE, PRKEYS):
        if path.exists():
            path.unlink()
            removed.append(str(path))
    return removed
