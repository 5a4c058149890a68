"""The initramfs itself: what goes in from this machine, and how QEMU boots it.

Busybox, sg3-utils with its shared libraries and the kernel's SCSI modules are copied from the
machine that builds it (the LIO VM shares the host's root), so the guest runs the same programs
and kernel the host tier does. Only ``build_initramfs`` and ``shared_libraries`` touch the file
system or run programs; ``module_load_order`` is pure.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from scsi_pr.rig import vm_kernel
from scsi_pr.rig.errors import RigError
from scsi_pr.rig.guest import vmlinux
from scsi_pr.rig.guest.cpio import S_IFDIR, S_IFLNK, S_IFREG, Entry, newc_archive
from scsi_pr.rig.guest.init_script import GUEST_DEVICE, render_init
from scsi_pr.rig.guest.steps import Step
from scsi_pr.rig.guest.vmlinux import boot_kernel
from scsi_pr.rig.vm import NO_ASLR

#: modules the guest needs for a virtio-scsi disk seen as /dev/sdX and /dev/sgN
GUEST_MODULES: tuple[str, ...] = ("virtio_pci", "virtio_scsi", "sd_mod", "sg")
#: sg3-utils programs copied into the guest, with their shared libraries
GUEST_PROGRAMS: tuple[str, ...] = ("sg_persist", "sg_turs")
BUSYBOX_CANDIDATES: tuple[str, ...] = ("/bin/busybox", "/usr/bin/busybox")


class GuestBuildError(RigError):
    """The initramfs cannot be built on this machine (a program, library or module is missing)."""


def module_load_order(modules_dep: str, wanted: Iterable[str], builtin: str = "") -> list[str]:
    """Paths (relative to /lib/modules/<ver>) of ``wanted`` and their dependencies, each after
    everything it needs, as ``insmod`` requires (it resolves nothing itself).

    ``modules_dep`` is the text of ``modules.dep``, ``builtin`` that of ``modules.builtin``: a
    wanted module built into the kernel has nothing to load (Debian's 6.12 builds virtio_pci
    in, 6.1 as a module). Names compare with '-' and '_' equal, as the kernel does.
    """
    built_in = {_module_name(line) for line in builtin.split()}
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in modules_dep.splitlines():
        if ":" not in line:
            continue
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
        by_name[_module_name(path)] = path
    order: list[str] = []

    def visit(path: str, trail: tuple[str, ...]) -> None:
        if path in order:
            return
        if path in trail:
            raise GuestBuildError(f"module dependency cycle: {' -> '.join((*trail, path))}")
        for dep in deps.get(path, []):
            visit(dep, (*trail, path))
        order.append(path)

    for name in wanted:
        path = by_name.get(_module_name(name))
        if path is None and _module_name(name) in built_in:  # nothing to load
            continue
        if path is None:
            raise GuestBuildError(f"module {name!r} not found in modules.dep or modules.builtin")
        visit(path, ())
    return order


#: how a kernel module file may be compressed (``vmlinux.decompress`` tells them by their magic):
#: busybox ``insmod`` loads only a plain ``.ko``, so the archive holds each module decompressed
#: (Debian's 6.1 ships plain modules, 6.12 xz)
COMPRESSED_MODULE_SUFFIXES = (".xz", ".gz", ".zst")


def module_bytes(path: Path) -> bytes:
    """The plain ELF object of the module file ``path``, decompressed if it is compressed."""
    raw = path.read_bytes() if path.suffix in (".ko", *COMPRESSED_MODULE_SUFFIXES) else None
    if raw is None:
        raise GuestBuildError(f"{path}: a module compressed as {path.suffix!r} cannot be read")
    data = raw if path.suffix == ".ko" else vmlinux.decompress(raw)
    if data is None:
        raise GuestBuildError(f"{path}: not a readable module (a damaged or cut stream, or zstd "
                              "without the zstandard package: pip install -e '.[vm]')")  # fmt: skip
    if not data.startswith(vmlinux.ELF_MAGIC):
        raise GuestBuildError(f"{path}: not a kernel module (no ELF header)")
    return data


def _module_name(path: str) -> str:
    stem = path.rsplit("/", 1)[-1]
    stem = re.sub(r"\.ko(\.(xz|gz|zst))?$", "", stem)  # COMPRESSED_MODULE_SUFFIXES
    return stem.replace("-", "_")


def shared_libraries(program: Path) -> list[Path]:
    """The shared objects ``ldd`` says ``program`` loads (including the dynamic loader)."""
    try:
        text = subprocess.run(
            ["ldd", str(program)], check=True, capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise GuestBuildError(f"ldd {program} failed: {e}") from e
    libs = []
    for line in text.splitlines():
        # "libx.so.2 => /lib/.../libx.so.2 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        m = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
        if m:
            libs.append(Path(m.group(1)))
    return libs


def default_kernel_release() -> str:
    """The release of the kernel the VM tier boots (``scsi_pr.rig.vm_kernel``: the series
    ``SCSI_PR_KERNEL`` names, else Debian 12's), so that the nested guest runs the same one."""
    try:
        return Path(vm_kernel.find()).name.removeprefix("vmlinuz-")
    except vm_kernel.KernelNotFound as e:
        raise GuestBuildError(f"{e}; apt-get install linux-image-amd64") from e


def kernel_image(release: str) -> Path:
    path = Path("/boot") / f"vmlinuz-{release}"
    if not path.exists():
        raise GuestBuildError(f"{path} is missing; apt-get install linux-image-{release}")
    return path


@dataclass(frozen=True)
class Initramfs:
    """What ``build_initramfs`` wrote, for logs and the VM command line."""

    path: Path
    #: what QEMU's ``-kernel`` boots: the ELF inside the bzImage where it can (``vmlinux``)
    kernel: Path
    #: module paths (relative to /lib/modules/<ver>) in load order; archive member paths
    modules: tuple[str, ...] = ()
    files: tuple[str, ...] = ()


def _which(name: str, candidates: Iterable[str] = ()) -> Path:
    for c in candidates:
        if Path(c).exists():
            return Path(c)
    found = shutil.which(name)
    if found is None:
        raise GuestBuildError(
            f"{name} not found; apt-get install "
            + ("busybox-static" if name == "busybox" else "sg3-utils")
        )
    return Path(found)


def _check_static(busybox: Path) -> None:
    text = subprocess.run(["ldd", str(busybox)], capture_output=True, text=True, timeout=30).stdout
    if "=>" in text:
        raise GuestBuildError(f"{busybox} is dynamically linked; apt-get install busybox-static")


def initramfs_entries(
    steps: Sequence[Step],
    release: str,
    modules_root: Path = Path("/lib/modules"),
    modules: Sequence[str] = GUEST_MODULES,
    programs: Sequence[str] = GUEST_PROGRAMS,
    device: str = GUEST_DEVICE,
) -> tuple[list[Entry], list[str]]:
    """Collect the archive members from this machine: (entries, module paths in load order)."""
    moddir = modules_root / release
    dep_file = moddir / "modules.dep"
    if not dep_file.exists():
        raise GuestBuildError(f"{dep_file} is missing; apt-get install linux-image-{release}")
    builtin_file = moddir / "modules.builtin"
    builtin = builtin_file.read_text() if builtin_file.exists() else ""
    order = module_load_order(dep_file.read_text(), modules, builtin)
    stems = [_module_name(p) for p in order]

    dirs = ["bin", "dev", "proc", "sys", "tmp", "lib", "lib/modules"]
    files: dict[str, Entry] = {}
    busybox = _which("busybox", BUSYBOX_CANDIDATES)
    _check_static(busybox)
    files["bin/busybox"] = Entry("bin/busybox", S_IFREG | 0o755, busybox.read_bytes())
    links = [Entry("bin/sh", S_IFLNK | 0o777, b"busybox")]
    for prog in programs:
        path = _which(prog)
        files[f"bin/{prog}"] = Entry(f"bin/{prog}", S_IFREG | 0o755, path.read_bytes())
        for lib in shared_libraries(path):
            member = str(lib).lstrip("/")
            # follow symlinks (/lib64/ld-linux… → /lib/x86_64-linux-gnu/…): store the content
            files[member] = Entry(member, S_IFREG | 0o755, lib.resolve().read_bytes())
    for rel, stem in zip(order, stems, strict=True):
        files[f"lib/modules/{stem}.ko"] = Entry(
            f"lib/modules/{stem}.ko", S_IFREG | 0o644, module_bytes(moddir / rel)
        )
    init = render_init(steps, stems, device)
    files["init"] = Entry("init", S_IFREG | 0o755, init.encode())
    for member in files:
        parent = member.rpartition("/")[0]
        while parent:
            if parent not in dirs:
                dirs.append(parent)
            parent = parent.rpartition("/")[0]
    dir_entries = [Entry(d, S_IFDIR | 0o755) for d in sorted(dirs, key=lambda d: d.count("/"))]
    return [*dir_entries, *links, *files.values()], order


def build_initramfs(
    steps: Sequence[Step],
    out: Path,
    release: str | None = None,
    device: str = GUEST_DEVICE,
    programs: Sequence[str] = GUEST_PROGRAMS,
    kernel_dir: Path | None = None,
) -> Initramfs:
    """Write a newc initramfs running ``steps`` to ``out``; reproducible for equal inputs (zero
    timestamps). ``programs``: the sg3-utils tools it carries. ``kernel_dir``: where the boot
    kernel is extracted, or found already extracted (default: beside ``out``).

    Not compressed: the kernel unpacks a plain archive as well, and under TCG in the LIO VM
    gzip's level 6 cost about 8 s of CPU per build (0.32 s on the host) to save 3 MB of a
    guest's RAM that nothing reads twice."""
    release = release or default_kernel_release()
    entries, order = initramfs_entries(steps, release, device=device, programs=programs)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(newc_archive(entries))
    kernel = boot_kernel(kernel_image(release), kernel_dir or out.parent)
    return Initramfs(out, kernel, tuple(order), tuple(e.path for e in entries))


def qemu_guest_args(initramfs: Initramfs, memory_mb: int = 256) -> list[str]:
    """The guest half of a QEMU command line (no disk): TCG, serial console on stdio.

    ``-no-reboot`` plus ``panic=-1`` makes a guest panic end QEMU instead of hanging it.
    ``cryptomgr.notests``: the kernel's crypto self-tests cost about a ninth of its boot under TCG
    (2.88 -> 2.55 s to the guest's disk on the host's TCG, three boots each, 2026-12-05), and
    nested in the LIO VM that boot is minutes; this guest's kernel does no cryptography.
    ``norandmaps`` (``vm.NO_ASLR``): each ``sg_persist`` step is a new process, translated anew
    under TCG at new addresses; at the same addresses a step costs a quarter.
    """
    return [
        "-machine", "q35,accel=tcg",
        "-cpu", "max",
        "-m", str(memory_mb),
        "-nodefaults", "-no-user-config", "-display", "none",
        "-serial", "stdio",
        "-no-reboot",
        "-kernel", str(initramfs.kernel),
        "-initrd", str(initramfs.path),
        "-append", f"console=ttyS0 quiet panic=-1 rdinit=/init cryptomgr.notests {NO_ASLR}",
    ]  # fmt: skip
