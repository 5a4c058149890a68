"""Events besides commands (power loss/on, hard reset, LUN reset, I_T nexus loss), APTPL through
the store interface, snapshots, and the fault hook. The crash-safe file store is the helper's
(tests/helper/test_lu_state_file.py)."""

from __future__ import annotations

import json

import pytest
from modeltest import out

from scsi_pr.sim import cdb as C
from scsi_pr.sim.constants import ReservationType, SenseKey, Status
from scsi_pr.sim.device import LogicalUnit, LogicalUnitConfigError
from scsi_pr.sim.errors import SimError
from scsi_pr.sim.faults import Fail, FaultRules, Stall
from scsi_pr.sim.nexus import ITNexus
from scsi_pr.sim.result import CommandResult
from scsi_pr.sim.state import StateFormatError
from scsi_pr.sim.store import MemoryAptplStore

T = ReservationType
A, B = 0xA, 0xB
I1 = ITNexus.named("naa.5001405000000001", 1)
I2 = ITNexus.named("naa.5001405000000002", 2)


def ua(lu: LogicalUnit, nexus: ITNexus) -> tuple[int, int] | None:
    r = lu.execute(nexus, C.test_unit_ready())
    if r.status == Status.GOOD:
        return None
    assert r.sense[2] == SenseKey.UNIT_ATTENTION, str(r)
    return r.sense[12], r.sense[13]


def drain(lu: LogicalUnit, nexus: ITNexus) -> list[tuple[int, int]]:
    seen = []
    while (code := ua(lu, nexus)) is not None:
        seen.append(code)
        assert len(seen) < 10
    return seen


def reserved_lu(store: object = None, aptpl: bool = True) -> LogicalUnit:
    lu = LogicalUnit(store=store)  # type: ignore[arg-type]
    assert out(lu, I1, 0, 0, A, aptpl=aptpl).status == Status.GOOD
    assert out(lu, I2, 0, 0, B, aptpl=aptpl).status == Status.GOOD
    assert out(lu, I1, 1, A, 0, T.WRITE_EXCLUSIVE_REGISTRANTS_ONLY).status == Status.GOOD
    return lu


# -- power, resets, nexus loss --------------------------------------------------------------
def test_power_loss_without_aptpl_drops_everything() -> None:
    lu = reserved_lu(MemoryAptplStore(), aptpl=False)
    lu.power_loss()
    r = lu.execute(I1, C.test_unit_ready())
    assert r.status == Status.CHECK_CONDITION and r.sense[2] == SenseKey.NOT_READY
    lu.power_on()
    assert drain(lu, I1) == [(0x29, 0x01)] and drain(lu, I2) == [(0x29, 0x01)]
    assert lu.pr.registrations == {} and lu.pr.reservation is None


def test_power_cycle_with_aptpl_keeps_registrations_and_reservation() -> None:
    lu = reserved_lu(MemoryAptplStore())
    lu.power_loss()
    lu.power_on()
    drain(lu, I1)
    drain(lu, I2)
    assert {n: r.key for n, r in lu.pr.registrations.items()} == {I1: A, I2: B}
    assert lu.pr.is_holder(I1) and lu.pr.aptpl
    assert lu.pr.generation == 0, "PRgeneration is not preserved (SPC-5 6.16.2)"
    caps = lu.execute(I1, C.persistent_reserve_in(2)).data
    assert caps[3] & 0x01, "PTPL_A"


def test_aptpl_turned_off_persists_nothing() -> None:
    store = MemoryAptplStore()
    lu = reserved_lu(store)
    assert out(lu, I2, 0, B, B, aptpl=False).status == Status.GOOD
    lu.power_loss()
    lu.power_on()
    assert lu.pr.registrations == {}


def test_hard_reset_keeps_pr_and_drops_spc2() -> None:
    lu = reserved_lu()
    lu.hard_reset()
    assert drain(lu, I1) == [(0x29, 0x00)]
    assert lu.pr.is_holder(I1)
    fresh = LogicalUnit()
    assert fresh.execute(I1, C.reserve_6()).status == Status.GOOD
    fresh.hard_reset()
    drain(fresh, I2)
    assert fresh.execute(I2, C.read_10(0, 1)).status == Status.GOOD


def test_lun_reset_drops_reserve_6_only() -> None:
    lu = LogicalUnit()
    assert lu.execute(I1, C.reserve_6()).status == Status.GOOD
    assert lu.execute(I2, C.read_10(0, 1)).status == 0x18
    lu.lun_reset()
    assert drain(lu, I2) == [(0x29, 0x03)]
    assert lu.execute(I2, C.read_10(0, 1)).status == Status.GOOD
    pr = reserved_lu()
    pr.lun_reset()
    assert pr.pr.is_holder(I1)


def test_nexus_loss_keeps_registrations() -> None:
    lu = reserved_lu()
    lu.nexus_loss(I1)
    assert drain(lu, I1) == [(0x29, 0x07)]
    assert drain(lu, I2) == []
    assert lu.pr.is_holder(I1) and I1 in lu.pr.registrations


def test_nexus_loss_releases_that_nexus_reserve_6() -> None:
    lu = LogicalUnit()
    assert lu.execute(I1, C.reserve_6()).status == Status.GOOD
    lu.nexus_loss(I1)
    assert lu.execute(I2, C.read_10(0, 1)).status == Status.GOOD


def test_snapshot_round_trip() -> None:
    lu = reserved_lu()
    assert out(lu, I1, 3, A).status == Status.GOOD  # CLEAR: I2 gets a UA
    snap = json.loads(json.dumps(lu.snapshot()))
    copy = LogicalUnit.from_snapshot(snap)
    assert copy.snapshot() == lu.snapshot()
    assert drain(copy, I2) == [(0x2A, 0x03)]


@pytest.mark.parametrize(
    "damage",
    [
        lambda s: s.pop("pr"),
        lambda s: s["pr"]["registrations"][0].pop("key"),
        lambda s: s["pr"]["reservation"].update(type=2),
        lambda s: s["ua"].update(queues=[[{"protocol": 6}, []]]),
        lambda s: s.update(spc2_holder="naa.5001405000000001"),
    ],
    ids=["no PR state", "registration without key", "reserved TYPE", "bad nexus", "bad holder"],
)
def test_malformed_snapshot_is_a_typed_error_and_changes_nothing(damage: object) -> None:
    lu = reserved_lu()
    before = lu.snapshot()
    snap = json.loads(json.dumps(before))
    damage(snap)  # type: ignore[operator]
    with pytest.raises(StateFormatError) as caught:
        lu.restore(snap)
    assert isinstance(caught.value, SimError)
    assert lu.snapshot() == before


@pytest.mark.parametrize(
    "kwargs", [{"target_ports": ()}, {"target_ports": (0,)}, {"blocks": 0}], ids=str
)
def test_impossible_logical_unit_is_a_typed_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(LogicalUnitConfigError) as caught:
        LogicalUnit(**kwargs)  # type: ignore[arg-type]
    assert isinstance(caught.value, SimError) and isinstance(caught.value, ValueError)


# -- fault hook ------------------------------------------------------------------------------
def test_fault_fail_for_one_initiator() -> None:
    rules = FaultRules()
    busy = CommandResult(Status.BUSY)
    rules.add(Fail(busy), initiators=[str(I2.initiator)])
    lu = LogicalUnit(fault=rules)
    assert lu.execute(I2, *C.prout(0, 0, B)) == busy
    assert I2 not in lu.pr.registrations, "a failed command does nothing"
    assert lu.execute(I1, *C.prout(0, 0, A)).status == Status.GOOD


def test_fault_stall_answers_normally_with_a_delay() -> None:
    rules = FaultRules()
    rules.add(Stall(2.5), opcodes=[0x5F])
    lu = LogicalUnit(fault=rules)
    r = lu.execute(I1, *C.prout(0, 0, A))
    assert r.status == Status.GOOD and r.stall == 2.5
    assert lu.pr.registrations[I1].key == A
    assert lu.execute(I1, C.test_unit_ready()).stall == 0
