"""The LIO rig's own decisions on the host, on a fake rtslib-fb: building, removing, leaving."""

from __future__ import annotations

import fcntl
from pathlib import Path
from types import SimpleNamespace

import pytest

from scsi_pr.rig import lio
from scsi_pr.sim.constants import INVALID_FIELD_IN_PARAMETER_LIST, SenseKey
from scsi_pr.sim.constants import PersistentReserveOutAction as Out


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
