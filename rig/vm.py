"""``scsi-pr vm run [--kernel PATH|SERIES] -- CMD…``: run CMD in a virtme-ng TCG VM with LIO ready.

The host kernel of a CI machine has no SCSI target stack, so the real-kernel tier boots Debian's
distribution kernel under QEMU/TCG with virtme-ng: the guest shares the host's root read-only,
``rig/vm_guest.sh`` loads the target modules, mounts configfs and tmpfs where LIO and the tools
write, then runs CMD. Output streams through; the exit status is CMD's (vng forwards it), 124
when ``--timeout`` expires (the VM is killed), 255 when the guest died.

What the VM needs is installed when missing and we are root (Debian packages via apt-get,
``virtme-ng`` into this venv); otherwise the message names what to install.
"""

from __future__ import annotations

import argparse
import compileall
import glob
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from scsi_pr import CHECKOUT
from scsi_pr.rig import hypothesis_cache, processes, vm_kernel
from scsi_pr.rig.errors import RigError
from scsi_pr.rig.processes import lower_priority
from scsi_pr.rig.progress import Tracker
from scsi_pr.rig.watchdog import run_watched

#: package data: the wheel carries it beside this module
GUEST_SCRIPT = Path(__file__).resolve().with_name("vm_guest.sh")
#: what the guest needs from the host besides the stdlib: the checkout (with its .venv) when we run
#: from one, else the environment the package is installed in
ROOT = CHECKOUT or Path(sys.prefix)
VIRTME_NG = "virtme-ng==1.42"
#: Debian package -> a file it installs that the VM tier uses
DEBIAN_PACKAGES: dict[str, str] = {
    "qemu-system-x86": "/usr/bin/qemu-system-x86_64",
    "qemu-system-common": "/usr/bin/qemu-pr-helper",
    "linux-image-amd64": "/boot/vmlinuz-*",
    "sg3-utils": "/usr/bin/sg_persist",
    "targetcli-fb": "/usr/bin/targetcli",
    "python3-rtslib-fb": "/usr/lib/python3/dist-packages/rtslib/__init__.py",
    "busybox-static": "/bin/busybox",
    "multipath-tools": "/sbin/multipath",
    "libiscsi-bin": "/usr/bin/iscsi-test-cu",
    "open-iscsi": "/usr/sbin/iscsiadm",
    "qemu-block-extra": "/usr/lib/x86_64-linux-gnu/qemu/block-iscsi.so",
    "fence-agents": "/usr/sbin/fence_scsi",
    "fio": "/usr/bin/fio",
}
#: environment passed into the guest (the guest starts with a clean environment)
PASSED_ENV_PREFIXES = ("CI", "SCSI_PR_", "PYTEST_ADDOPTS", "HYPOTHESIS_")
DEFAULT_MEMORY = "2G"
#: what rig/vm_guest.sh prints once the guest command ended, with its exit status
GUEST_DONE = re.compile(rb"scsi-pr vm: guest command exited (\d+)")
#: seconds the VM may take to power off after that; measured: a power-off with LUs that LIO
#: wedged (PREEMPT AND ABORT) can block for good, after every result was printed
POWER_OFF_GRACE = 60.0
EXIT_TIMEOUT = 124
IMAGE_DIR = Path("/var/tmp")
#: Kernel argument turning address-space randomisation off in a TCG guest. QEMU 7.2 (Debian
#: 12's) finds translated code by physical *and* virtual address, so a program mapped at new
#: addresses on every exec (ASLR) is translated anew each time: measured on the host's TCG, an
#: ``sg_persist`` step of the nested guest 37.5 -> 9.6 ms, ``sg_turs`` 33.5 -> 8.4 ms (two
#: boots each, 2026-12-05). The VM tier starts thousands of processes; it tests no exploit
#: mitigation.
NO_ASLR = "norandmaps"
#: parts of the interpreter's stdlib no test imports (the image stays small and quick to build)
STDLIB_EXCLUDE = (
    "test",
    "site-packages",
    "idlelib",
    "tkinter",
    "lib2to3",
    "ensurepip",
    "turtledemo",
    "__phello__",
)


KERNEL_HELP = (
    f"a /boot/vmlinuz path, or a kernel series such as 6.12 (default: ${vm_kernel.ENV_KERNEL}, "
    f"else {vm_kernel.DEFAULT_SERIES}, Debian 12's)"
)


class VmError(RigError):
    """The VM cannot be started here; the message says why and what to do."""


@dataclass(frozen=True)
class Missing:
    packages: list[str]
    virtme_ng: bool

    def __bool__(self) -> bool:
        return bool(self.packages or self.virtme_ng)

    def __str__(self) -> str:
        parts = []
        if self.packages:
            parts.append("apt-get install " + " ".join(self.packages))
        if self.virtme_ng:
            parts.append(f"pip install '{VIRTME_NG}' (into {sys.prefix})")
        return "; ".join(parts)


def _venv_bin() -> Path:
    return Path(sys.executable).parent


def missing() -> Missing:
    if not GUEST_SCRIPT.is_file():
        raise VmError(f"the guest script {GUEST_SCRIPT} is missing from this installation")
    pkgs = [p for p, f in DEBIAN_PACKAGES.items() if not glob.glob(f)]
    return Missing(pkgs, not (_venv_bin() / "vng").exists() and shutil.which("vng") is None)


def ensure_tools() -> None:
    """Install what is missing when root; raise VmError naming it otherwise."""
    need = missing()
    if not need:
        return
    if os.geteuid() != 0:
        raise VmError(f"the VM tier needs root to install: {need}")
    if need.packages:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for cmd in (
            ["apt-get", "update", "-q"],
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *need.packages],
        ):
            if subprocess.run(cmd, env=env, check=False).returncode != 0:
                raise VmError(f"{' '.join(cmd)} failed")
    if need.virtme_ng:
        cmd = [sys.executable, "-m", "pip", "install", "-q", VIRTME_NG]
        if subprocess.run(cmd, check=False).returncode != 0:
            raise VmError(f"{' '.join(cmd)} failed")
    still = missing()
    if still:
        raise VmError(f"still missing after installing: {still}")


#: what ``warm_bytecode`` leaves alone: the venv is compiled by pip, the rest is not ours to run
_NOT_COMPILED = re.compile(r"/(\.venv|\.git|\.dbg|out|\.hypothesis|\.ruff_cache)/")


def warm_bytecode(root: Path) -> None:
    """Compile the checkout's modules here, before the image is built from it.

    The guest writes no bytecode (its checkout is a read-only image; ``vm_guest.sh`` sets
    PYTHONDONTWRITEBYTECODE), so without this every Python process in the VM compiles each
    module of ours it imports again, under TCG (measured: collecting the suite took 88 s cold,
    61 s with this, 30 s with pytest's rewritten test modules cached too, which
    ``scripts/vm-tier`` adds). ``py_compile`` writes whatever PYTHONDONTWRITEBYTECODE says.
    """
    compileall.compile_dir(root, rx=_NOT_COMPILED, quiet=2, workers=0)


def _not_in_image(directory: str, names: list[str]) -> set[str]:
    """What of the checkout the image leaves out: VCS, outputs, caches; of hypothesis's storage
    all but the constants cache the host filled (``hypothesis_cache``)."""
    skipped = {n for n in names if n in (".git", "out", ".ruff_cache")}
    if Path(directory) == ROOT / hypothesis_cache.STORAGE:
        skipped |= {n for n in names if n != hypothesis_cache.CONSTANTS}
    elif Path(directory) != ROOT:
        skipped |= {n for n in names if n == hypothesis_cache.STORAGE}
    return skipped


def build_image(path: Path) -> dict[str, str]:
    """An ext4 image with this checkout (venv included) and the interpreter's stdlib.

    Why: the guest reads the host's root over 9p, and under TCG every file open is a slow
    round trip (measured: ~1 MB/s for a tree of small files, 13 s to import the rig, ~70 s to
    start pytest). The same files read from a virtio-blk disk are fast, so the guest script
    bind-mounts the image's copies over the 9p paths. Returns {image dir: guest path}.
    """
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    binds = {"main": str(ROOT), "stdlib": str(stdlib)}
    stage = path.with_suffix(".stage")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    shutil.copytree(ROOT, stage / "main", symlinks=True, ignore=_not_in_image)
    shutil.copytree(
        stdlib,
        stage / "stdlib",
        symlinks=True,
        ignore=lambda d, names: STDLIB_EXCLUDE if d == str(stdlib) else [],
    )
    size_mb = 64 + sum(f.stat().st_size for f in stage.rglob("*") if f.is_file()) * 13 // 10 >> 20
    path.unlink(missing_ok=True)
    cmd = ["mkfs.ext4", "-q", "-F", "-L", "scsi-pr", "-d", str(stage), str(path), f"{size_mb}M"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    shutil.rmtree(stage, ignore_errors=True)
    if done.returncode != 0:
        raise VmError(f"mkfs.ext4 failed: {done.stderr.strip()}")
    return binds


def vng_command(
    cmd: list[str],
    kernel: str,
    memory: str,
    cpus: int,
    binds: dict[str, str] | None = None,
    image: Path | None = None,
    shares: tuple[Path, ...] = (),
) -> list[str]:
    env = [f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith(PASSED_ENV_PREFIXES)]
    # The guest starts where the host command was started, with this environment's tools first.
    env += [f"SCSI_PR_GUEST_CWD={Path.cwd()}", f"SCSI_PR_GUEST_BIN={_venv_bin()}"]
    extra: list[str] = []
    if binds and image is not None:
        env.append("SCSI_PR_IMAGE_BINDS=" + ",".join(f"{k}:{v}" for k, v in binds.items()))
        if "HYPOTHESIS_STORAGE_DIRECTORY" not in os.environ:  # the image's constants cache
            env.append(f"HYPOTHESIS_STORAGE_DIRECTORY={ROOT / hypothesis_cache.STORAGE}")
        drive = f"file={image},if=virtio,format=raw,readonly=on"
        extra = [f"--qemu-opts=-drive {drive}"]
    # read-write at the same path in the guest: where host processes and the guest exchange files
    extra += [f"--rwdir={share}" for share in shares]
    return [
        str(_venv_bin() / "vng") if (_venv_bin() / "vng").exists() else "vng",
        "--run", kernel,
        "--disable-kvm",  # CI machines have no /dev/kvm; TCG everywhere keeps timings comparable
        "--memory", memory,
        "--cpus", str(cpus),
        "--user", "root",  # LIO, configfs and /dev/sg* need root in the guest
        # Under TCG the default clocksource (hpet) makes every clock read an emulated MMIO
        # access; the TSC is read in the vDSO without leaving the guest. ``norandmaps``: see
        # ``NO_ASLR``.
        "--append", f"clocksource=tsc tsc=reliable {NO_ASLR}",
        *extra,
        "--", "sh", str(GUEST_SCRIPT), *env, *cmd,
    ]  # fmt: skip


def run(
    cmd: list[str],
    *,
    kernel: str | None = None,
    memory: str = DEFAULT_MEMORY,
    cpus: int = 2,
    timeout: float | None = None,
    quiet_timeout: float | None = None,
    image: bool = True,
    out: BinaryIO | None = None,
    shares: tuple[Path, ...] = (),
    nice: int = 0,
) -> int:
    """Boot, run ``cmd`` in the guest, stream its output (to ``out`` when a quiet timeout
    watches it, else our stdout), return its exit status. ``nice``: the VM's scheduling
    priority on the host (``processes.lower_priority``), for a VM beside one that matters more."""
    if not cmd:
        raise VmError("no command: scsi-pr vm run -- CMD [ARGS…]")
    for share in shares:
        if not share.is_dir() or not share.is_absolute():
            raise VmError(f"--share {share}: not an absolute path to a directory")
    ensure_tools()
    kernel = vm_kernel.find(kernel)
    # The guest mounts its tmpfs dbroot here; the read-only 9p root needs the mount point.
    Path("/etc/target").mkdir(parents=True, exist_ok=True)
    Path("/etc/multipath").mkdir(parents=True, exist_ok=True)  # the multipath rig's, likewise
    if CHECKOUT is not None:
        warm_bytecode(CHECKOUT)  # before the image copies it
        if image:
            hypothesis_cache.warm(CHECKOUT)
    # One image per run: several VMs may run side by side (each needs its own copy).
    path = IMAGE_DIR / f"scsi-pr-vm-{os.getpid()}.ext4"
    binds = build_image(path) if image else None
    argv = vng_command(cmd, kernel, memory, cpus, binds, path, shares)
    env = dict(os.environ, PATH=f"{_venv_bin()}:{os.environ.get('PATH', '')}")
    before, started = _children_cpu(), time.monotonic()
    try:
        if quiet_timeout is not None:
            return _boot_watched(argv, env, quiet_timeout, out, nice)
        return _boot(argv, env, timeout, nice)
    finally:
        path.unlink(missing_ok=True)
        used, wall = _children_cpu() - before, time.monotonic() - started
        print(f"scsi-pr vm: the VM used {used:.1f} s of the host's CPU in {wall:.0f} s "
              f"({used / max(wall, 1e-9):.2f} cores)", file=sys.stderr)  # fmt: skip


def _children_cpu() -> float:
    """CPU seconds of the children this process has waited for, theirs included: the VM's
    QEMU under vng. Under TCG this is the VM's work, which its wall time on a shared machine
    is not, and which the guest's own accounting inflates (TCG has no steal time)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _boot(argv: list[str], env: dict[str, str], timeout: float | None, nice: int = 0) -> int:
    proc = subprocess.Popen(argv, env=env, start_new_session=True)
    if nice:
        lower_priority(proc.pid, nice)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # vng and its qemu: a hung guest cannot clean up
        proc.wait()
        print(f"scsi-pr vm: timed out after {timeout:.0f}s, VM killed", file=sys.stderr)
        return EXIT_TIMEOUT
    except KeyboardInterrupt:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise


def _boot_watched(
    argv: list[str], env: dict[str, str], quiet: float, out: BinaryIO | None = None, nice: int = 0
) -> int:
    """Boot with a deadline that follows progress: the VM is killed only when the guest prints
    nothing for ``quiet`` seconds (a busy machine makes a run slow, not hung)."""
    # A spinner until the guest's first line: under TCG the boot alone takes a minute or more.
    with Tracker("booting the VM (TCG)") as boot:
        run = run_watched(
            argv,
            quiet_limit=quiet,
            env=env,
            out=out,
            exit_marker=GUEST_DONE,
            exit_grace=POWER_OFF_GRACE,
            on_progress=lambda _: boot.stop(),
            nice=nice,
        )
    if run.hung:
        print(f"scsi-pr vm: {run.verdict}, VM killed after {run.seconds:.0f}s", file=sys.stderr)
        return EXIT_TIMEOUT
    assert run.rc is not None
    return run.rc


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="scsi-pr vm", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="action", required=True)
    r = sub.add_parser("run", help="run CMD in a TCG VM with LIO ready")
    r.add_argument("--kernel", help=KERNEL_HELP)
    r.add_argument("--memory", default=DEFAULT_MEMORY)
    r.add_argument("--cpus", type=int, default=2)
    r.add_argument("--timeout", type=float, help="kill the VM after this many seconds")
    r.add_argument(
        "--quiet-timeout",
        type=float,
        help="kill the VM once it prints nothing for this many seconds (instead of --timeout)",
    )
    r.add_argument(
        "--no-image",
        action="store_true",
        help="read everything over 9p (slow under TCG) instead of a disk image",
    )
    r.add_argument(
        "--share",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="a host directory the guest sees read-write at the same path (repeatable)",
    )
    r.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run the VM at this nice value on the host (its session's scheduling group too): "
        "for a VM beside another whose run is the critical path",
    )
    r.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [ARGS…]")
    c = sub.add_parser("check", help="say what the VM tier lacks on this machine")
    c.add_argument("--kernel", help=KERNEL_HELP)
    i = sub.add_parser("install", help="install what the VM tier lacks (root: apt-get, pip)")
    i.add_argument("--kernel", help=KERNEL_HELP)
    args = p.parse_args(argv)
    try:
        if args.action == "install":
            ensure_tools()
            kernel = args.kernel or os.environ.get(vm_kernel.ENV_KERNEL)
            print(f"ready; kernel {vm_kernel.install(kernel or vm_kernel.DEFAULT_SERIES)}")
            return 0
        if args.action == "check":
            need = missing()
            print(f"missing: {need}" if need else f"ready; kernel {vm_kernel.find(args.kernel)}")
            return 1 if need else 0
        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        # scripts/vm-tier stops a VM it booted beside another with SIGTERM; as an exception it
        # takes the `finally` that kills the VM's process group (the default would leave QEMU).
        processes.exit_on_sigterm()
        return run(
            cmd,
            kernel=args.kernel,
            memory=args.memory,
            cpus=args.cpus,
            timeout=args.timeout,
            quiet_timeout=args.quiet_timeout,
            image=not args.no_image,
            shares=tuple(args.share),
            nice=args.nice,
        )
    except (VmError, vm_kernel.KernelNotFound) as e:
        print(f"scsi-pr vm: {e}", file=sys.stderr)
        return 2
