"""Backends declare what they can do besides commands; the engine, the plugin's ``requires``
marker and the scenarios decide on that declaration, never by probing for attributes."""

from __future__ import annotations

import pytest
from needs import unavailable

from scsi_pr.rig.backend_helper import HelperLioBackend, HelperSimBackend
from scsi_pr.rig.backend_lio import LioBackend
from scsi_pr.rig.backends import (
    ACTIONS,
    Backend,
    BackendUnavailable,
    Capability,
    CapabilityMissing,
    SimBackend,
)
from scsi_pr.rig.scenarios.engine import Runner
from scsi_pr.rig.scenarios.library import SCENARIOS
from scsi_pr.sim import cdb
from scsi_pr.sim.constants import (
    BUS_DEVICE_RESET_FUNCTION_OCCURRED,
    I_T_NEXUS_LOSS_OCCURRED,
    PersistentReserveInAction,
    PersistentReserveOutAction,
    Status,
)

BACKEND_CLASSES: list[type[Backend]] = [SimBackend, HelperSimBackend, LioBackend, HelperLioBackend]


@pytest.mark.parametrize("cls", BACKEND_CLASSES, ids=lambda c: c.name)
def test_every_declared_action_is_implemented(cls: type[Backend]) -> None:
    for capability in cls.capabilities:
        assert isinstance(capability, Capability)
        if capability in ACTIONS:
            # the base class's version only refuses: a declared action must override it
            assert capability.value in vars(cls), f"{cls.name} declares {capability}, lacks it"


def test_declarations() -> None:
    """What each backend offers, as docs/scenarios.md's table and NOT_ON rely on."""
    assert {c.name: set(c.capabilities) for c in BACKEND_CLASSES} == {
        "sim": {
            Capability.POWER_CYCLE,
            Capability.LUN_RESET,
            Capability.NEXUS_LOSS,
            Capability.INDEPENDENT_LUS,
            Capability.STALL,
            Capability.NAMED_INITIATORS,
        },
        "helper-sim": {
            Capability.POWER_CYCLE,
            Capability.RESTART_HELPER,
            Capability.LUN_RESET,
            Capability.NEXUS_LOSS,
            Capability.INDEPENDENT_LUS,
            Capability.NAMED_INITIATORS,
        },
        "lio": {Capability.REAL_KERNEL},
        "helper-lio": {Capability.RESTART_HELPER, Capability.REAL_KERNEL},
    }
    # only the in-process model needs its callers to serialise commands
    assert [c.name for c in BACKEND_CLASSES if not c.thread_safe] == ["sim"]


def test_an_undeclared_capability_is_refused_by_type() -> None:
    b = SimBackend()
    with pytest.raises(CapabilityMissing, match="backend sim does not declare restart_helper"):
        b.perform(Capability.RESTART_HELPER)
    with pytest.raises(CapabilityMissing):
        b.restart_helper()
    with pytest.raises(CapabilityMissing, match="real_kernel is a property"):
        b.perform(Capability.REAL_KERNEL)
    assert b.hung is False


def test_capabilities_compare_as_plain_strings() -> None:
    """The plugin's ``requires("power_cycle")`` marker passes names, not enum members."""
    assert {"power_cycle", "teleport"} - SimBackend.capabilities == {"teleport"}


def test_sim_lun_reset_is_performed_on_the_model() -> None:
    b = SimBackend()
    b.perform(Capability.LUN_RESET)
    answer = b.initiators[0].execute(cdb.test_unit_ready())
    assert answer.status == Status.CHECK_CONDITION and answer.sense_data is not None
    code = (answer.sense_data.asc, answer.sense_data.ascq)
    assert code == BUS_DEVICE_RESET_FUNCTION_OCCURRED[:2]


def test_the_engine_serialises_only_what_is_not_thread_safe() -> None:
    assert Runner(SCENARIOS["failover"], SimBackend(initiators=3)).device.lock is not None


@pytest.mark.parametrize("cls", [SimBackend, HelperSimBackend], ids=lambda c: c.name)
def test_nexus_loss_reaches_that_nexus_only_and_keeps_registrations(cls: type[Backend]) -> None:
    """SAM-5 I_T nexus loss: the initiator's nexus gets I_T NEXUS LOSS OCCURRED, the others
    nothing; its registration survives (only an SPC-2 reservation would go)."""
    try:
        b = cls(initiators=2)
    except BackendUnavailable as e:
        unavailable(f"{cls.name}: {e}")
    with b:
        a, other = b.initiators
        cdb_, data = cdb.prout(PersistentReserveOutAction.REGISTER, 0, 0xABC)
        assert a.execute(cdb_, data).status == Status.GOOD
        with pytest.raises(CapabilityMissing):
            b.perform(Capability.NEXUS_LOSS)  # whose nexus?
        b.perform(Capability.NEXUS_LOSS, a)
        lost = a.execute(cdb.test_unit_ready()).sense_data
        assert lost is not None and lost.triple[1:] == (
            I_T_NEXUS_LOSS_OCCURRED.asc,
            I_T_NEXUS_LOSS_OCCURRED.ascq,
        )
        assert other.execute(cdb.test_unit_ready()).status == Status.GOOD
        keys = other.execute(cdb.persistent_reserve_in(PersistentReserveInAction.READ_KEYS))
        assert keys.data[8:16] == (0xABC).to_bytes(8, "big")


def test_helper_sim_lun_reset_reaches_every_nexus() -> None:
    try:
        b = HelperSimBackend(initiators=2)
    except BackendUnavailable as e:
        unavailable(f"helper-sim: {e}")
    with b:
        b.perform(Capability.LUN_RESET)
        for it in b.initiators:
            sense = it.execute(cdb.test_unit_ready()).sense_data
            assert sense is not None and sense.triple[1:] == (
                BUS_DEVICE_RESET_FUNCTION_OCCURRED.asc,
                BUS_DEVICE_RESET_FUNCTION_OCCURRED.ascq,
            )
