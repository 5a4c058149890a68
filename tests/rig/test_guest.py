"""scsi_pr.rig.guest: the initramfs the end-to-end guest boots, and reading what it prints.

The pure parts run everywhere; one test builds the real initramfs from this machine's busybox,
sg3-utils and kernel modules and boots it under QEMU (TCG, a few seconds) with an emulated
scsi-hd disk, which proves the archive, module order, /init and console protocol work on a real
kernel. The LIO + helper path is covered by tests/vm/test_guest_e2e.py.
"""

from __future__ import annotations

import gzip
import io
import lzma
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from needs import unavailable
from test_vmlinux import zstd_compress

from scsi_pr.rig.guest.console import Console, ConsoleError, parse_hex_dump
from scsi_pr.rig.guest.cpio import S_IFDIR, S_IFLNK, S_IFREG, Entry, newc_archive, read_newc
from scsi_pr.rig.guest.init_script import BOOT_PAUSE, DEVICE_WAIT_SECONDS, render_init
from scsi_pr.rig.guest.initramfs import (
    GUEST_MODULES,
    GuestBuildError,
    Initramfs,
    build_initramfs,
    default_kernel_release,
    kernel_image,
    module_bytes,
    module_load_order,
    qemu_guest_args,
)
from scsi_pr.rig.guest.steps import BadSequence, Command, Pause
from scsi_pr.rig.guest.vmlinux import has_pvh_entry
from scsi_pr.rig.processes import kill
from scsi_pr.rig.qmp import Qmp

MODULES_DEP = """\
kernel/drivers/scsi/sd_mod.ko: kernel/block/t10-pi.ko kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko
kernel/block/t10-pi.ko: kernel/lib/crc-t10dif.ko
kernel/lib/crc-t10dif.ko:
kernel/drivers/scsi/scsi_mod.ko: kernel/drivers/scsi/scsi_common.ko
kernel/drivers/scsi/scsi_common.ko:
kernel/drivers/scsi/sg.ko: kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko
"""  # noqa: E501 - modules.dep lines are long

# What sg_persist --hex printed in the nested guest for READ FULL STATUS on LIO (two
# registrations, the first holding WE-RO), ASCII-free as sg3_utils 1.46 prints it.
FULL_STATUS_DUMP = [
    "  PR generation=0x2, Additional length=96",
    " 00     00 00 00 00 00 00 00 a1  00 00 00 00 01 05 00 00",
    " 10     00 00 00 01 00 00 00 18  06 00 00 00 50 01 40 50",
    " 20     00 00 00 01 00 00 00 00  00 00 00 00 00 00 00 00",
    " 30     00 00 00 00 00 00 00 b2  00 00 00 00 00 00 00 00",
    " 40     00 00 00 02 00 00 00 18  06 00 00 00 50 01 40 50",
    " 50     00 00 00 02 00 00 00 00  00 00 00 00 00 00 00 00",
]


# -- archive --------------------------------------------------------------------------------
def test_newc_round_trip_keeps_every_member() -> None:
    entries = [
        Entry("bin", S_IFDIR | 0o755),
        Entry("bin/busybox", S_IFREG | 0o755, b"\x7fELF" + bytes(range(256)) * 3),
        Entry("bin/sh", S_IFLNK | 0o777, b"busybox"),
        Entry("init", S_IFREG | 0o755, b"#!/bin/sh\n"),
        Entry("odd", S_IFREG | 0o644, b"x" * 5),  # odd sizes exercise the 4-byte padding
    ]
    archive = newc_archive(entries)
    assert len(archive) % 4 == 0
    back = read_newc(archive)
    assert back == {e.path: e for e in entries}


def test_newc_is_reproducible_and_ends_with_trailer() -> None:
    entries = [Entry("init", S_IFREG | 0o755, b"echo hi\n")]
    assert newc_archive(entries) == newc_archive(entries)
    assert b"TRAILER!!!\0" in newc_archive(entries)[-128:]


def test_read_newc_rejects_other_formats() -> None:
    with pytest.raises(ValueError, match="not a newc header"):
        read_newc(b"070707" + bytes(200))  # odc, not newc


# -- modules --------------------------------------------------------------------------------
def test_module_load_order_puts_dependencies_first_once() -> None:
    order = module_load_order(MODULES_DEP, ["sd_mod", "sg"])
    assert order == [
        "kernel/lib/crc-t10dif.ko",
        "kernel/block/t10-pi.ko",
        "kernel/drivers/scsi/scsi_common.ko",
        "kernel/drivers/scsi/scsi_mod.ko",
        "kernel/drivers/scsi/sd_mod.ko",
        "kernel/drivers/scsi/sg.ko",
    ]


def test_module_names_treat_dash_and_underscore_alike() -> None:
    assert module_load_order(MODULES_DEP, ["crc_t10dif"]) == ["kernel/lib/crc-t10dif.ko"]


def test_missing_module_and_cycles_are_errors() -> None:
    with pytest.raises(GuestBuildError, match="'virtio_scsi' not found"):
        module_load_order(MODULES_DEP, ["virtio_scsi"])
    with pytest.raises(GuestBuildError, match="cycle"):
        module_load_order("a.ko: b.ko\nb.ko: a.ko\n", ["a"])


def test_a_module_built_into_the_kernel_has_nothing_to_load() -> None:
    """Debian's 6.12 builds virtio_pci in (``modules.builtin``); 6.1 ships it as a module. The
    saved guest of the end-to-end test failed to build on 6.12 ("not found in modules.dep")."""
    builtin = "kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio_pci.ko\n"
    order = module_load_order(MODULES_DEP, ["virtio_pci", "sg"], builtin)
    assert order == ["kernel/drivers/scsi/scsi_common.ko", "kernel/drivers/scsi/scsi_mod.ko",
                     "kernel/drivers/scsi/sg.ko"]  # fmt: skip
    with pytest.raises(
        GuestBuildError, match=r"'virtio_pci' not found in modules\.dep or modules\.builtin"
    ):
        module_load_order(MODULES_DEP, ["virtio_pci"], "kernel/drivers/virtio/virtio.ko\n")
    # a loadable module is loaded even when a built-in one bears its name's other spelling
    assert module_load_order(MODULES_DEP, ["crc_t10dif"], "kernel/lib/crc_t10dif.ko") == [
        "kernel/lib/crc-t10dif.ko"
    ]


def test_every_installed_kernel_provides_the_guests_modules() -> None:
    """Each kernel this machine can boot has every module the nested guest needs, loadable or
    built in (the VM tier boots the same release inside: ``scsi-pr vm run --kernel``)."""
    moddirs = sorted(d for d in Path("/lib/modules").glob("*") if (d / "modules.dep").exists())
    if not moddirs:
        unavailable("no kernel modules installed (scsi-pr vm install)")
    for moddir in moddirs:
        builtin = moddir / "modules.builtin"
        text = builtin.read_text() if builtin.exists() else ""
        order = module_load_order((moddir / "modules.dep").read_text(), GUEST_MODULES, text)
        assert any(re.search(r"/sg\.ko(\.xz|\.gz)?$", p) for p in order), (moddir, order)
        for rel in order:  # each loadable as busybox insmod needs it: a plain ELF object
            assert module_bytes(moddir / rel).startswith(b"\x7fELF"), rel


@pytest.mark.parametrize(
    ("name", "pack"),
    [
        ("m.ko", lambda b: b),
        ("m.ko.xz", lzma.compress),
        ("m.ko.gz", gzip.compress),
        ("m.ko.zst", zstd_compress),
    ],
)
def test_a_module_is_stored_decompressed(
    tmp_path: Path, name: str, pack: Callable[[bytes], bytes]
) -> None:
    """Debian's 6.12 ships its modules xz-compressed, which busybox ``insmod`` cannot load (the
    saved guest's build refused them: "compressed modules are not supported")."""
    elf = b"\x7fELF" + bytes(range(64))
    (tmp_path / name).write_bytes(pack(elf))
    assert module_bytes(tmp_path / name) == elf


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("m.ko.bz2", b"BZh9", "compressed as '.bz2' cannot be read"),
        ("m.ko.zst", b"\x28\xb5\x2f\xfd", "not a readable module"),
        ("m.ko.xz", b"not xz", "not a readable module"),
        ("m.ko.gz", b"not gzip", "not a readable module"),
        ("m.ko", b"#!/bin/sh\n", "not a kernel module (no ELF header)"),
        ("m.ko.xz", lzma.compress(b"text"), "not a kernel module (no ELF header)"),
    ],
)
def test_a_module_that_cannot_be_read_is_a_build_error(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(GuestBuildError, match=re.escape(message)):
        module_bytes(tmp_path / name)


# -- /init ----------------------------------------------------------------------------------
def test_init_runs_steps_in_order_with_device_and_quoting() -> None:
    steps = [
        Command("keys", ("sg_persist", "-n", "-k", "{dev}")),
        Pause("host"),
        Command("odd", ("sh", "-c", "echo 'a b'; exit 3")),
    ]
    init = render_init(steps, ["scsi_mod", "sd_mod"], device="/dev/sdb")
    body = init[init.index("step keys") :]
    assert body.index("step keys sg_persist -n -k /dev/sdb") < body.index("pause host")
    assert body.index("pause host") < body.index("step odd sh -c '")
    assert "for m in scsi_mod sd_mod; do" in init
    assert init.rstrip().endswith("halt_guest")


def test_init_pauses_for_its_disk_once_its_drivers_are_loaded() -> None:
    """The host attaches the disk at the boot pause (a guest saved there has none yet): after
    every module, before the wait for the disk node and any step."""
    init = render_init([Command("tur", ("sg_turs", "{dev}"))], ["scsi_mod", "sg"])
    main = init[init.index("for m in scsi_mod sg; do") :]
    pause = main.index(f"pause {BOOT_PAUSE}\n")
    assert main.index("insmod") < pause < main.index("while [ ! -b /dev/sda ]")
    assert main.index('echo "@@READY /dev/sda"') < main.index("step tur sg_turs /dev/sda")
    # the node is polled every 0.1 s for DEVICE_WAIT_SECONDS in all
    assert f'[ "$i" -gt {DEVICE_WAIT_SECONDS * 10} ]' in main and "sleep 0.1" in main
    with pytest.raises(BadSequence):
        render_init([Pause(BOOT_PAUSE)], [])
    with pytest.raises(BadSequence):
        render_init([Command(BOOT_PAUSE, ("true",))], [])


def test_bad_sequences_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate step name 'a'"):
        render_init([Command("a", ("true",)), Pause("a")], [])
    with pytest.raises(ValueError, match="bad step name"):
        Command("has space", ("true",))
    with pytest.raises(ValueError, match="empty command"):
        Command("x", ())


# -- console --------------------------------------------------------------------------------
def test_console_collects_steps_pauses_and_errors() -> None:
    con = Console()
    lines = [
        "[    2.1] sd 0:0:0:0: [sda] Attached SCSI disk",
        "@@READY /dev/sda",
        "@@OUT keys   PR generation=0x1, Additional length=8",
        "@@OUT keys  00     00 00 00 00 00 00 00 a1",
        "@@RC keys 0",
        "@@ERR bad PR out (Register): Reservation conflict",
        "[   3.0] random kernel line @@RC bad 24",  # a kernel message sharing our line
    ]
    con.feed_all(lines)
    assert con.feed("@@PAUSE host\r\n") == "host"
    con.feed("@@DONE")
    assert con.ready and con.done and con.pauses == ["host"]
    assert con.steps["keys"].rc == 0 and con.steps["keys"].data == bytes(7) + b"\xa1"
    assert con.steps["bad"].rc == 24
    assert con.steps["bad"].err == ["PR out (Register): Reservation conflict"]
    assert con.other == ["[    2.1] sd 0:0:0:0: [sda] Attached SCSI disk"]


def test_follow_lets_the_host_act_before_the_guest_goes_on() -> None:
    """Each pause is answered with one line on QEMU's stdin, only after the host has acted."""
    reply = io.BytesIO()
    acted: list[tuple[str, bytes]] = []
    seen: list[str] = []
    lines = [b"@@PAUSE a\r\n", b"@@RC x 0\n", b"@@PAUSE b\n", b"@@DONE\n"]
    con = Console().follow(
        lines, reply, on_pause=lambda name: acted.append((name, reply.getvalue())),
        on_line=seen.append,
    )  # fmt: skip
    assert acted == [("a", b""), ("b", b"go\n")]
    assert reply.getvalue() == b"go\ngo\n"
    assert seen == ["@@PAUSE a", "@@RC x 0", "@@PAUSE b", "@@DONE"]
    assert con.done and con.steps["x"].rc == 0


def test_console_rejects_garbled_exit_status() -> None:
    with pytest.raises(ConsoleError, match="bad exit status"):
        Console().feed("@@RC keys zero")


def test_hex_dump_of_full_status() -> None:
    data = parse_hex_dump(FULL_STATUS_DUMP)
    assert len(data) == 96
    assert data[:8] == bytes(7) + b"\xa1" and data[12:14] == b"\x01\x05"
    assert data[0x18:0x20].hex() == "0600000050014050"


def test_hex_dump_ignores_ascii_column_and_checks_offsets() -> None:
    line = " 00     41 42 43 44 00 00 00 00  00 00 00 00 00 00 00 01    ABCD............"
    assert parse_hex_dump([line]) == b"ABCD" + bytes(11) + b"\x01"
    with pytest.raises(ConsoleError, match="offset 0x10"):
        parse_hex_dump([" 10     00 01"])


# -- the real thing -------------------------------------------------------------------------
def _release_or_skip() -> str:
    try:
        release = default_kernel_release()
    except GuestBuildError as e:
        unavailable(str(e))
    for tool in ("busybox", "sg_persist", "sg_turs", "ldd"):
        if shutil.which(tool) is None:
            unavailable(f"{tool} not installed (apt-get install busybox-static sg3-utils)")
    return release


def test_build_initramfs_from_this_machine(tmp_path: Path) -> None:
    release = _release_or_skip()
    steps = [Command("tur", ("sg_turs", "{dev}"))]
    built = build_initramfs(steps, tmp_path / "a.gz", release)
    again = build_initramfs(steps, tmp_path / "b.gz", release)
    assert built.path.read_bytes() == again.path.read_bytes()  # reproducible
    # Debian builds with CONFIG_PVH: QEMU boots the ELF inside the bzImage, undecompressed
    assert built.kernel != kernel_image(release) and has_pvh_entry(built.kernel.read_bytes())
    members = read_newc(built.path.read_bytes())
    for path in ("init", "bin/busybox", "bin/sg_persist", "bin/sg_turs", "bin/sh"):
        assert path in members, path
    assert members["bin/sh"].mode & 0o170000 == S_IFLNK
    assert any("libsgutils2" in p for p in members)  # sg_persist's shared library came along
    # each module stored plain (6.12 ships them xz-compressed) under its name, sg.ko last;
    # virtio_pci is a module on 6.1 and built in on 6.12
    stems = [
        re.sub(r"\.ko(\.\w+)?$", "", m.rsplit("/", 1)[-1]).replace("-", "_") for m in built.modules
    ]
    assert stems[-1] == "sg" and {"virtio_scsi", "sd_mod", "scsi_mod"} <= set(stems), stems
    for stem in stems:
        assert members[f"lib/modules/{stem}.ko"].data.startswith(b"\x7fELF"), stem


def test_guest_boots_and_reports_through_the_console(tmp_path: Path) -> None:
    """Boot the real initramfs and hot-plug an emulated (non-PR) scsi-hd disk at its boot pause:
    QEMU's own disk model rejects PERSISTENT RESERVE IN as an invalid opcode, which must come
    back as sg_persist's exit status 9 through the whole console protocol, pauses included."""
    release = _release_or_skip()
    if shutil.which("qemu-system-x86_64") is None:
        unavailable("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
    built = build_initramfs(GUEST_STEPS, tmp_path / "initramfs.cpio", release)
    proc = start_guest(built, tmp_path)
    host_acted: list[str] = []
    try:
        assert proc.stdout is not None and proc.stdin is not None
        qmp = Qmp(tmp_path / "qmp.sock")

        def on_pause(name: str) -> None:
            host_acted.append(name)
            if name == BOOT_PAUSE:
                qmp.execute("device_add", **SCSI_HD)

        con = Console().follow(proc.stdout, proc.stdin, on_pause=on_pause)
        proc.wait(60)
        qmp.close()
    finally:
        kill(proc)
    assert con.pauses == host_acted == [BOOT_PAUSE, "mid"]
    check_guest_steps(con)


# What a guest on QEMU's scsi-hd runs (tests/rig/test_guest_snapshot.py resumes the same guest).
GUEST_STEPS = [
    Command("tur", ("sg_turs", "{dev}")),
    Pause("mid"),
    Command("keys", ("sg_persist", "-n", "-H", "-k", "{dev}")),
    Command("exit3", ("sh", "-c", "echo 'two words'; exit 3")),
    Command("aslr", ("cat", "/proc/sys/kernel/randomize_va_space")),
]
SCSI_HD = {"driver": "scsi-hd", "drive": "d0", "bus": "scsi0.0"}


def guest_machine(built: Initramfs) -> list[str]:
    """The guest's machine: a virtio-scsi controller, no disk (it is hot-plugged)."""
    return ["qemu-system-x86_64", *qemu_guest_args(built), "-device", "virtio-scsi-pci,id=scsi0"]


def start_guest(built: Initramfs, work: Path, *extra: str) -> subprocess.Popen[bytes]:
    """The guest's QEMU with a 1 MiB raw image as drive ``d0`` and QMP on ``work/qmp.sock``."""
    disk = work / "disk.img"
    disk.write_bytes(bytes(1 << 20))
    argv = [
        *guest_machine(built),
        "-drive", f"if=none,id=d0,file={disk},format=raw",
        "-qmp", f"unix:{work / 'qmp.sock'},server=on,wait=off", *extra,
    ]  # fmt: skip
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def check_guest_steps(con: Console) -> None:
    assert con.errors == [] and con.ready and con.done, con.other[-20:]
    assert con.steps["tur"].rc == 0
    assert con.steps["keys"].rc == 9  # SG_LIB_CAT_INVALID_OP
    assert con.steps["exit3"].rc == 3 and con.steps["exit3"].out == ["two words"]
    assert con.steps["aslr"].out == ["0"]  # norandmaps: each step's program at the same place
