"""The rig's host-side logic: specs, names, the VM command line, the LIO rig's own decisions.

What needs LIO itself runs in the VM tier (``--backend lio``); these tests need no root.
"""

from __future__ import annotations

import fcntl
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from scsi_pr.rig import lio, lio_cli, vm, vm_kernel
from scsi_pr.rig.backends import initiator_name
from scsi_pr.rig.lio_cli import parse_size
from scsi_pr.sim.constants import INVALID_FIELD_IN_PARAMETER_LIST, SenseKey
from scsi_pr.sim.constants import PersistentReserveOutAction as Out
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


class FakeObject:
    """A loopback target or a backstore; ``delete()`` removes it and records its name."""

    def __init__(self, rts: FakeRtslib, name: str, home: list[FakeObject], path: str = "") -> None:
        self.rts, self.home, self.name, self.wwn, self.path = rts, home, name, name, path
        self.plugin = "rd_mcp"
        self.fabric_module = SimpleNamespace(name="loopback")
        home.append(self)

    def delete(self) -> None:
        self.home.remove(self)
        self.rts.deleted.append(self.name)


class FakeRtslib:
    """Just enough of rtslib-fb for ``lio.up`` and ``lio.down``, with the rtslib names they call:
    configfs objects as records, so a test sees what was created and what was deleted."""

    def __init__(self, configfs: Path) -> None:
        self.configfs = configfs
        self.targets: list[FakeObject] = []
        self.storage_objects: list[FakeObject] = []
        self.deleted: list[str] = []
        self.calls: list[str] = []

    def RTSRoot(self) -> FakeRtslib:
        return self

    def invalidate_caches(self) -> None:
        self.calls.append("invalidate_caches")

    def RDMCPStorageObject(self, name: str, size: int, wwn: str) -> FakeObject:
        self.calls.append(f"create {name}")
        return FakeObject(self, name, self.storage_objects)

    def FabricModule(self, name: str) -> str:
        return name

    def Target(self, fabric: str, wwn: str, mode: str) -> FakeObject:
        path = self.configfs / fabric / wwn
        path.mkdir(parents=True)
        return FakeObject(self, wwn, self.targets, str(path))

    def TPG(self, target: FakeObject, tag: int, mode: str) -> FakeObject:
        return target

    def LUN(self, tpg: FakeObject, lun: int, so: FakeObject) -> None:
        pass


def test_a_failed_up_removes_its_own_generation_and_never_touches_a_hung_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Generation 1 is built beside a hung generation 0, whose removal would block forever;
    when building generation 1 fails, only generation 1's targets and backstore go."""
    configfs = tmp_path / "target"
    rts = FakeRtslib(configfs)
    hung = rts.Target("loopback", lio.target_wwn(0, generation=0), "create")
    hung_so = rts.RDMCPStorageObject("scsipr0", size=1 << 20, wwn="")
    monkeypatch.setattr(lio, "TARGET_CONFIGFS", configfs)
    monkeypatch.setattr(lio, "LOOPBACK", configfs / "loopback")
    monkeypatch.setattr(lio, "DBROOT_CANDIDATES", (tmp_path / "dbroot",))
    monkeypatch.setattr(lio, "STATE_FILE", tmp_path / "lio.json")
    monkeypatch.setattr(lio, "check_available", lambda: None)
    monkeypatch.setattr(lio, "_rtslib", lambda: rts)

    def no_devices(index: int, generation: int) -> lio.InitiatorPort:
        raise lio.DeviceNotReady(f"no /dev/sg* for initiator {index}")

    monkeypatch.setattr(lio, "_describe_port", no_devices)
    spec = lio.LunSpec(initiators=2, name="scsipr1", generation=1)
    with pytest.raises(lio.DeviceNotReady, match="no /dev/sg"):
        lio.up(spec)
    assert rts.targets == [hung] and rts.storage_objects == [hung_so]
    assert sorted(rts.deleted) == sorted([lio.target_wwn(0, 1), lio.target_wwn(1, 1), "scsipr1"])


def test_a_backstore_is_created_under_the_cross_process_lock_with_rtslibs_numbers_reread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rtslib reads the backstore numbers in use once per process: a process beside ours (the
    VM tier's lanes) may have taken one since. So the creation holds the lock every creation
    takes (another open file cannot have it meanwhile) and rtslib re-reads first."""
    rts = FakeRtslib(tmp_path / "target")
    monkeypatch.setattr(lio, "_rtslib", lambda: rts)
    monkeypatch.setattr(lio, "CREATE_LOCK", tmp_path / "run" / "backstore.lock")

    def make() -> FakeObject:
        lock = tmp_path / "run" / "backstore.lock"
        with lock.open("a") as other, pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return rts.RDMCPStorageObject("scsipr0", size=1 << 20, wwn="")

    so = lio.new_storage_object(make)
    assert rts.storage_objects == [so]
    assert rts.calls == ["invalidate_caches", "create scsipr0"]
    with (tmp_path / "run" / "backstore.lock").open("a") as after:
        fcntl.flock(after, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released once created


def _fake_lio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: bool) -> FakeRtslib:
    from scsi_pr.rig import kmsg

    configfs = tmp_path / "target"
    rts = FakeRtslib(configfs)
    monkeypatch.setattr(lio, "TARGET_CONFIGFS", configfs)
    monkeypatch.setattr(lio, "STATE_FILE", tmp_path / "lio.json")
    monkeypatch.setattr(lio, "_rtslib", lambda: rts)
    trace = ["refcount_t: addition on 0; use-after-free.", " f+0x1/0x2 [target_core_mod]"]
    log = trace if fault else []
    monkeypatch.setattr(kmsg, "records", lambda path=kmsg.KMSG: iter(log))
    return rts


@pytest.mark.parametrize("multipath", [False, True], ids=["single-path", "multipath"])
def test_a_rig_a_multipath_map_was_built_over_is_left_at_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, multipath: bool, capsys: pytest.CaptureFixture
) -> None:
    """Removing it then blocks forever (measured on 6.1): the exit hook leaves it and says
    why, with the kernel's warning; otherwise it removes what this process built."""
    from scsi_pr.rig import backend_lio

    _fake_lio(tmp_path, monkeypatch, fault=True)
    removed: list[tuple[str, int | None]] = []
    monkeypatch.setattr(
        backend_lio,
        "_remove",
        lambda generation: removed.append((f"scsipr{generation}", generation)),
    )
    monkeypatch.setattr(backend_lio, "_shared", backend_lio._Shared(built_here={0, 1}))
    if multipath:
        backend_lio.mark_multipath_used()
    backend_lio._teardown()
    if multipath:
        assert removed == []
        err = capsys.readouterr().err
        assert "scsipr0 left in place" in err and "addition on 0" in err
    else:
        assert removed == [("scsipr0", 0), ("scsipr1", 1)]


def test_a_rig_lio_refused_a_spec_i_pt_on_is_left_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """A refused SPEC_I_PT leaves a reference LIO never drops (measured on 6.1 and 6.12): its
    LU is left at once, not waited for; the others are removed."""
    from scsi_pr.rig import backend_lio
    from scsi_pr.sim import cdb as C
    from scsi_pr.sim.result import CommandResult

    _fake_lio(tmp_path, monkeypatch, fault=False)
    removed: list[int] = []
    monkeypatch.setattr(backend_lio, "_remove", removed.append)
    shared = backend_lio._Shared(built_here={0, 1})
    shared.rig = SimpleNamespace(spec=SimpleNamespace(generation=1))  # type: ignore[assignment]
    monkeypatch.setattr(backend_lio, "_shared", shared)
    refused = CommandResult.check_condition(
        SenseKey.ILLEGAL_REQUEST, INVALID_FIELD_IN_PARAMETER_LIST
    )
    cdb, data = C.prout(Out.REGISTER, 0, 0xC3, spec_i_pt=True, transport_ids=[b"\x00" * 24])
    backend_lio.note_answer(cdb, data, CommandResult.good())
    assert shared.pinned_generations == set()
    backend_lio.note_answer(cdb, data, refused)
    backend_lio._teardown()
    assert removed == [0]
    assert "scsipr1 left in place: LIO refused a SPEC_I_PT" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("action", "spec_i_pt", "status", "refused"),
    [(0, True, 2, True), (0, True, 0, False), (0, False, 2, False), (6, True, 2, False),
     (1, True, 2, False)],
)  # fmt: skip
def test_which_answers_count_as_a_refused_spec_i_pt(
    action: int, spec_i_pt: bool, status: int, refused: bool
) -> None:
    from scsi_pr.rig.backend_lio import spec_i_pt_refused
    from scsi_pr.sim import cdb as C
    from scsi_pr.sim.result import CommandResult

    cdb, data = C.prout(action, 0, 0xC3, spec_i_pt=spec_i_pt)
    assert spec_i_pt_refused(cdb, data, CommandResult(status, b"", b"")) is refused
    assert not spec_i_pt_refused(C.test_unit_ready(), data, CommandResult(2, b"", b""))


@pytest.mark.parametrize("fault", [False, True], ids=["healthy", "refcount-broken"])
def test_a_rig_too_small_is_rebuilt_beside_a_left_one_once_lio_broke_a_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: bool
) -> None:
    """A process that needs more ports than the rig an earlier one left: normally it rebuilds
    generation 0 (removing that rig); after the fault, a new generation beside it."""
    from scsi_pr.rig import backend_lio

    rts = _fake_lio(tmp_path, monkeypatch, fault)
    rts.Target("loopback", lio.target_wwn(0, generation=0), "create")
    rts.Target("loopback", lio.target_wwn(0, generation=3), "create")
    assert lio.generations_present() == {0, 3}
    built: list[lio.LunSpec] = []
    monkeypatch.setattr(backend_lio, "_shared", backend_lio._Shared())
    monkeypatch.setattr(lio, "current", lambda: None)
    monkeypatch.setattr(lio, "up", lambda spec, record=True: built.append(spec) or "rig")
    monkeypatch.setattr(backend_lio.atexit, "register", lambda f: None)
    backend_lio.shared_rig(4)
    assert [(s.generation, s.name) for s in built] == [(4, "scsipr4") if fault else (0, "scsipr0")]


@pytest.mark.parametrize(("busy", "timed_out", "wedged"), [
    ({"a": "1", "b": "0"}, {"a"}, True),  # the device still holds that nexus's command
    ({"a": "0", "b": "1"}, {"a"}, False),  # it answered (what lost it was not LIO), and
    # another nexus's state is no evidence either way
    ({"a": "0", "b": "2"}, {"a", "b"}, True),  # one held command suffices
    ({"a": "0", "b": "0"}, set(), False),  # no timeout known: every port is looked at
    ({"a": "junk", "b": "0"}, set(), False),  # unreadable: nothing is known to be in flight
])  # fmt: skip
def test_lio_is_wedged_while_the_device_holds_the_command(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    busy: dict[str, str],
    timed_out: set[str],
    wedged: bool,
) -> None:
    from scsi_pr.rig import backend_lio

    for name, hctl in (("a", "1:0:1:0"), ("b", "2:0:1:0")):
        (tmp_path / hctl / "device").mkdir(parents=True)
        (tmp_path / hctl / "device" / "device_busy").write_text(busy[name] + "\n")
    monkeypatch.setattr(backend_lio, "SCSI_DEVICES", tmp_path)
    backend = object.__new__(backend_lio.LioBackend)
    ports = [SimpleNamespace(wwn="a", hctl="1:0:1:0"), SimpleNamespace(wwn="b", hctl="2:0:1:0")]
    backend.description = SimpleNamespace(initiators=ports)
    assert backend.probe_wedged(timed_out) is wedged
    assert backend_lio.in_flight("9:9:9:9") == 0, "a device that is gone holds nothing"


class RacedStorageObject(FakeObject):
    """A backstore whose rtslib scan finds a LUN directory gone ``races`` times before it
    completes, as when another rig's LUN is removed during the scan."""

    def __init__(self, rts: FakeRtslib, races: int) -> None:
        super().__init__(rts, "scsipr3", rts.storage_objects)
        self.races = races

    def delete(self) -> None:
        if self.races:
            self.races -= 1
            raise FileNotFoundError(2, "No such file or directory", "lun/lun_0")
        super().delete()


@pytest.mark.parametrize("races", [1, lio.SCAN_RACE_RETRIES - 1])
def test_a_backstore_removal_scans_again_when_configfs_changed_under_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, races: int
) -> None:
    rts = _fake_lio(tmp_path, monkeypatch, fault=False)
    rts.configfs.mkdir()
    naps: list[float] = []
    monkeypatch.setattr(lio.time, "sleep", naps.append)
    RacedStorageObject(rts, races)
    assert lio.down("scsipr3", 3) == ["rd_mcp/scsipr3"]
    assert rts.storage_objects == [] and rts.deleted == ["scsipr3"]
    assert len(naps) == races and naps == sorted(naps)  # a moment longer each time


def test_a_backstore_removal_that_keeps_failing_is_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rts = _fake_lio(tmp_path, monkeypatch, fault=False)
    rts.configfs.mkdir()
    monkeypatch.setattr(lio.time, "sleep", lambda seconds: None)
    so = RacedStorageObject(rts, lio.SCAN_RACE_RETRIES)
    with pytest.raises(FileNotFoundError):
        lio.down("scsipr3", 3)
    assert rts.storage_objects == [so] and so.races == 0  # every retry was spent
