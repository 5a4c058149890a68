"""Which kernel the VM boots: a path, or a kernel series such as ``6.1`` or ``6.12``.

The VM tier is measured against Debian 12's own kernel (``linux-image-amd64``, 6.1: the
``lio-6.1`` profile); Debian also ships 6.12 (``linux-image-6.12.*+deb12-amd64``), whose LIO
the ``lio-6.12`` profile stands for. The series is chosen by ``--kernel`` or ``SCSI_PR_KERNEL``
(``scripts/test --kernel 6.12``), never by whatever happens to be newest in /boot: installing a
second kernel must not change what an unchanged command measures.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
from pathlib import Path

from scsi_pr.rig.errors import RigError
from scsi_pr.sim.profiles import kernel_series

#: Debian 12's default kernel, the one CI installs (``linux-image-amd64``)
DEFAULT_SERIES = "6.1"
ENV_KERNEL = "SCSI_PR_KERNEL"
BOOT_GLOB = "/boot/vmlinuz-*"


class KernelNotFound(RigError):
    """No installed kernel matches; the message says what to install."""


def natural(text: str) -> list[tuple[int, int, str]]:
    """Sort key that orders 6.12 after 6.1 and -56 after -9."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text)]


def installed() -> list[str]:
    """/boot/vmlinuz-* whose modules are installed (the guest loads LIO from them)."""
    return [
        k
        for k in glob.glob(BOOT_GLOB)
        if Path("/lib/modules", k.removeprefix("/boot/vmlinuz-"), "kernel").is_dir()
    ]


def choose(spec: str, kernels: list[str]) -> str | None:
    """The newest of ``kernels`` (/boot/vmlinuz-RELEASE paths) in series ``spec``."""
    releases = {k: Path(k).name.removeprefix("vmlinuz-") for k in kernels}
    matching = [k for k in kernels if kernel_series(releases[k]) == spec]
    return max(matching, key=natural) if matching else None


def find(spec: str | None = None) -> str:
    """The kernel to boot: ``spec`` (a path, or a series), else ``SCSI_PR_KERNEL``, else
    ``DEFAULT_SERIES``."""
    spec = spec or os.environ.get(ENV_KERNEL) or DEFAULT_SERIES
    if "/" in spec:
        if not Path(spec).is_file():
            raise KernelNotFound(f"kernel {spec} not found")
        return spec
    found = choose(spec, installed())
    if found is None:
        raise KernelNotFound(
            f"no {spec} kernel with modules in /boot: scsi-pr vm install --kernel {spec}"
        )
    return found


#: Debian's flavours other than the plain one (they lack modules the rig loads, or add latency)
OTHER_FLAVOURS = ("-cloud-", "-rt-")


def package(spec: str, apt_names: list[str]) -> str | None:
    """The newest plain amd64 image package of series ``spec`` among ``apt_names`` (one name per
    line of ``apt-cache pkgnames linux-image-``): signed, not -dbg, -unsigned, cloud or rt."""
    pattern = re.compile(rf"^linux-image-{re.escape(spec)}[.][0-9][^ ]*-amd64$")
    names = [n for n in apt_names if pattern.match(n) and not any(f in n for f in OTHER_FLAVOURS)]
    return max(names, key=natural) if names else None


def install(spec: str) -> str:
    """Install series ``spec`` when no kernel of it is there (root: apt-get); its path."""
    if "/" not in spec and choose(spec, installed()) is None:
        names = subprocess.run(
            ["apt-cache", "pkgnames", "linux-image-"], capture_output=True, text=True, check=False
        ).stdout.split()
        name = package(spec, names)
        if name is None:
            raise KernelNotFound(f"no Debian package for kernel {spec} (apt-cache pkgnames)")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", name]
        if subprocess.run(cmd, env=env, check=False).returncode != 0:
            raise KernelNotFound(f"{' '.join(cmd)} failed")
    return find(spec)
