"""The rig's host-side logic: specs, names, the VM command line. The LIO rig's own decisions
are in test_rig_host_lio.py.

What needs LIO itself runs in the VM tier (``--backend lio``); these tests need no root.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from scsi_pr.rig import lio, lio_cli, vm, vm_kernel
from scsi_pr.rig.backends import initiator_name
from scsi_pr.rig.lio_cli import parse_size
from scsi_pr.sim.transportid import decode_transport_id


@pytest.mark.parametrize(
    ("text", "size"),
    [("64M", 64 << 20), ("1G", 1 << 30), ("1048576", 1 << 20), ("512k", 512 << 10),
     ("2MiB", 2 << 20)],
)  # fmt: skip
def test_sizes_are_1024_based_like_targetcli(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "M", "-1M", "lots", "0"])
def test_bad_sizes_say_so(text: str) -> None:
    with pytest.raises(Exception, match="size"):
        parse_size(text)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initiators": 0}, "initiators must be 1..32"),
        ({"initiators": 33}, "initiators must be 1..32"),
        ({"backstore": "pscsi"}, "backstore must be one of"),
        ({"backstore": "block"}, "needs --path"),
        ({"size": 4096}, "too small"),
        ({"name": "a/b"}, "bad backstore name"),
        ({"generation": 256}, "generation must be"),
    ],
)
def test_bad_specs_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(lio.BadLunSpec, match=message):
        lio.LunSpec(**kwargs)


def test_lio_cli_reports_a_bad_spec_without_touching_lio(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lio, "up", lambda spec: pytest.fail("lio.up called"))
    assert lio_cli.main(["up", "--initiators", "0"]) == 2
    assert capsys.readouterr().err == "scsi-pr lio: initiators must be 1..32, not 0\n"


def test_names_are_fixed_and_distinct() -> None:
    """Stable across runs (TransportIDs in PR data stay comparable), distinct per generation."""
    wwns = {lio.target_wwn(i, g) for i in range(32) for g in range(4)}
    assert len(wwns) == 128
    assert all(len(w) == len("naa.") + 16 and w.startswith("naa.5001405f") for w in wwns)
    assert lio.unit_serial("scsipr0") == lio.unit_serial("scsipr0") != lio.unit_serial("x")


def test_description_round_trips_and_carries_sas_transport_ids() -> None:
    port = lio.InitiatorPort(
        index=0, wwn=initiator_name(0), target_wwn=lio.target_wwn(0),
        transport_id="060000005001405000000001000000000000000000000000",
        relative_target_port=1, hctl="6:0:1:0", sg="/dev/sg1", sd="/dev/sda",
        startup_unit_attentions=["UNIT ATTENTION: POWER ON OCCURRED"],
    )  # fmt: skip
    desc = lio.RigDescription(lio.LunSpec(initiators=1), lio.unit_serial("scsipr0"), [port])
    again = lio.RigDescription.from_json(desc.to_json())
    assert again == desc
    tid, used = decode_transport_id(bytes.fromhex(again.initiators[0].transport_id))
    assert (str(tid), used) == (initiator_name(0), 24)


def test_vng_command_boots_tcg_as_root_with_tsc_and_the_image() -> None:
    argv = vm.vng_command(
        ["pytest", "-q"], "/boot/vmlinuz-x", "2G", 2, {"main": "/work/main"}, Path("/var/tmp/i")
    )
    assert argv[argv.index("--run") + 1] == "/boot/vmlinuz-x"
    assert "--disable-kvm" in argv
    assert argv[argv.index("--user") + 1] == "root"
    assert "clocksource=tsc" in argv[argv.index("--append") + 1]
    assert vm.NO_ASLR in argv[argv.index("--append") + 1].split()
    assert "--qemu-opts=-drive file=/var/tmp/i,if=virtio,format=raw,readonly=on" in argv
    tail = argv[argv.index("--") + 1 :]
    assert tail[:2] == ["sh", str(vm.GUEST_SCRIPT)]
    assert "SCSI_PR_IMAGE_BINDS=main:/work/main" in tail
    assert tail[-2:] == ["pytest", "-q"]
    assert not [a for a in argv if a.startswith("--rwdir")]


def test_a_share_is_a_read_write_directory_at_the_same_path_before_the_command() -> None:
    shares = (Path("/var/tmp/a"), Path("/var/tmp/b"))
    argv = vm.vng_command(["true"], "/boot/vmlinuz-x", "2G", 2, shares=shares)
    assert [a for a in argv if a.startswith("--rwdir")] == [
        "--rwdir=/var/tmp/a",
        "--rwdir=/var/tmp/b",
    ]
    assert argv.index("--rwdir=/var/tmp/b") < argv.index("--")


@pytest.mark.parametrize("share", ["relative/dir", "/nonexistent/scsi-pr-share"])
def test_a_share_that_is_no_absolute_directory_is_refused_before_booting(
    share: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    booted: list[object] = []
    monkeypatch.setattr(vm, "ensure_tools", lambda: None)
    monkeypatch.setattr(vm.vm_kernel, "find", lambda kernel: "/boot/vmlinuz-x")
    monkeypatch.setattr(vm, "_boot", lambda *a: booted.append(a) or 0)
    with pytest.raises(vm.VmError, match="not an absolute path to a directory"):
        vm.run(["true"], image=False, shares=(Path(share),))
    assert booted == []


def test_vm_run_reports_the_host_cpu_its_vm_used(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the VM's QEMU (a child waited for, under vng) cost the host: a child that burns
    CPU stands for it."""
    monkeypatch.setattr(vm, "ensure_tools", lambda: None)
    monkeypatch.setattr(vm.vm_kernel, "find", lambda kernel: "/boot/vmlinuz-x")
    monkeypatch.setattr(vm, "CHECKOUT", None)
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"

    def boot(*args: object) -> int:
        return subprocess.run([sys.executable, "-c", burn], check=True).returncode

    monkeypatch.setattr(vm, "_boot", boot)
    assert vm.run(["true"], image=False) == 0
    line = capsys.readouterr().err.strip().splitlines()[-1]
    m = re.fullmatch(r"scsi-pr vm: the VM used (\d+\.\d) s of the host's CPU in (\d+) s "
                     r"\((\d+\.\d\d) cores\)", line)  # fmt: skip
    assert m is not None, line
    assert 0.3 <= float(m.group(1)) < 3.0  # its 0.3 s and a Python start, nothing before it
    assert float(m.group(3)) > 0.2  # busy most of the wall time


def test_scsi_pr_vm_run_nice_reaches_the_boot(monkeypatch: pytest.MonkeyPatch) -> None:
    booted: list[tuple[object, ...]] = []
    monkeypatch.setattr(vm, "ensure_tools", lambda: None)
    monkeypatch.setattr(vm.vm_kernel, "find", lambda kernel: "/boot/vmlinuz-x")
    monkeypatch.setattr(vm, "CHECKOUT", None)
    monkeypatch.setattr(vm, "_boot_watched", lambda *a: booted.append(a) or 0)
    monkeypatch.setattr(vm.signal, "signal", lambda *a: None)  # not this process's SIGTERM
    images: list[Path] = []
    monkeypatch.setattr(vm, "build_image", lambda path: images.append(path) or {})
    assert vm.main(["run", "--no-image", "--quiet-timeout", "9", "--nice", "10", "--", "x"]) == 0
    assert booted[0][2] == 9 and booted[0][-1] == 10 and images == []  # --no-image: 9p only
    assert vm.main(["run", "--quiet-timeout", "9", "--", "x"]) == 0
    assert booted[1][-1] == 0 and len(images) == 1


KERNELS = [
    "/boot/vmlinuz-6.1.0-9-amd64",
    "/boot/vmlinuz-6.12.107+deb12-amd64",
    "/boot/vmlinuz-6.1.0-56-amd64",
]


def test_kernel_versions_sort_naturally() -> None:
    assert max(KERNELS, key=vm_kernel.natural) == "/boot/vmlinuz-6.12.107+deb12-amd64"
    assert sorted(KERNELS, key=vm_kernel.natural)[0] == "/boot/vmlinuz-6.1.0-9-amd64"


def test_a_kernel_is_chosen_by_series_not_by_being_newest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Installing 6.12 beside 6.1 must not change what an unchanged command boots."""
    assert vm_kernel.kernel_series("6.12.107+deb12-amd64") == "6.12"
    assert vm_kernel.kernel_series("6.1.0-57-amd64") == "6.1"
    assert vm_kernel.choose("6.1", KERNELS) == "/boot/vmlinuz-6.1.0-56-amd64"
    assert vm_kernel.choose("6.12", KERNELS) == "/boot/vmlinuz-6.12.107+deb12-amd64"
    assert vm_kernel.choose("6.6", KERNELS) is None
    monkeypatch.setattr(vm_kernel, "installed", lambda: KERNELS)
    monkeypatch.delenv(vm_kernel.ENV_KERNEL, raising=False)
    assert vm_kernel.find() == "/boot/vmlinuz-6.1.0-56-amd64"
    monkeypatch.setenv(vm_kernel.ENV_KERNEL, "6.12")
    assert vm_kernel.find() == "/boot/vmlinuz-6.12.107+deb12-amd64"
    assert vm_kernel.find("6.1") == "/boot/vmlinuz-6.1.0-56-amd64"  # --kernel wins
    with pytest.raises(vm_kernel.KernelNotFound, match=r"scsi-pr vm install --kernel 6\.6"):
        vm_kernel.find("6.6")
    with pytest.raises(vm_kernel.KernelNotFound, match="not found"):
        vm_kernel.find("/boot/vmlinuz-none")


def test_the_kernel_package_is_the_newest_plain_signed_image() -> None:
    names = [
        "linux-image-6.12.100+deb12-amd64",
        "linux-image-6.12.117+deb12-amd64",
        "linux-image-6.12.117+deb12-amd64-dbg",
        "linux-image-6.12.117+deb12-amd64-unsigned",
        "linux-image-6.12.117+deb12-cloud-amd64",
        "linux-image-6.12.117+deb12-rt-amd64",
        "linux-image-6.12-amd64",
        "linux-image-6.1.0-57-amd64",
        "linux-image-6.1.0-9-amd64",
        "linux-image-amd64",
    ]
    assert vm_kernel.package("6.12", names) == "linux-image-6.12.117+deb12-amd64"
    assert vm_kernel.package("6.1", names) == "linux-image-6.1.0-57-amd64"
    assert vm_kernel.package("6.6", names) is None


def test_bytecode_is_warmed_for_the_read_only_guest_but_not_in_the_venv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.dont_write_bytecode", True)  # as the guest and often the host
    sources = [tmp_path / "sim" / "a.py", tmp_path / ".venv" / "b.py", tmp_path / "out" / "c.py"]
    for source in sources:
        source.parent.mkdir()
        source.write_text("X = 1\n")
    vm.warm_bytecode(tmp_path)
    compiled = [Path(importlib.util.cache_from_source(str(s))).exists() for s in sources]
    assert compiled == [True, False, False]


def test_vm_run_needs_a_command() -> None:
    with pytest.raises(vm.VmError, match="no command"):
        vm.run([])
