"""Active/standby failover: the active node dies with its registration in place and the standby
preempts it; with APTPL, the PR state must also survive power cycles of the LUN."""

from __future__ import annotations

from scsi_pr.rig.backends import Capability
from scsi_pr.rig.scenarios.commands import (
    Preempt,
    Read,
    ReadKeys,
    ReadReservation,
    Register,
    Reserve,
    Write,
)
from scsi_pr.rig.scenarios.library.common import K1, K2, POWER_ON_OR_RESET, WE_RO, phase
from scsi_pr.rig.scenarios.model import CONFLICT, Action, Item, Scenario, Source, StateCheck, Step
from scsi_pr.sim.constants import REGISTRATIONS_PREEMPTED

POWER_CYCLE = "power cycle of the LUN (APTPL keeps PR state)"


def power_cycle(holder: str, registered: tuple[str, ...], note: str = "") -> list[Item]:
    """Power-cycle the LUN: holder and registrations survive (APTPL), and the holder's next
    write reports the power-on unit attention before it succeeds."""
    return phase(
        POWER_CYCLE,
        Action(
            "power cycle",
            capability=Capability.POWER_CYCLE,
            state=StateCheck(holder=holder, registered=registered),
        ),
        Step(holder, Write(0), expect_ua=(POWER_ON_OR_RESET,), note=note),
    )


def failover(aptpl: bool) -> Scenario:
    items = phase(
        "active node1 holds, standby node2 registered",
        Step("node1", Register(0, K1, aptpl=aptpl)),
        Step("node1", Reserve(K1, WE_RO)),
        Step("node2", Register(0, K2, aptpl=aptpl)),
        Step("node1", Write(0)),
    )
    if aptpl:
        items += power_cycle("node1", ("node1", "node2"), "holder still writes after power on")
    items += phase(
        "node1 dies; node2 takes over",
        Action(
            "node1 dies (its registration and reservation stay)",
            actor="node1",
            state=StateCheck(holder="node1", registered=("node1", "node2")),
        ),
        Step("node2", ReadKeys(present=(K1, K2)), wait=5, note="heartbeat timeout"),
        Step("node2", ReadReservation(holder_key=K1)),
        Step(
            "node2",
            Preempt(K2, K1, WE_RO),
            state=StateCheck(holder="node2", registered=("node2",)),
        ),
        Step("node2", Write(0)),
        Step("node2", Read(0)),
    )
    if aptpl:
        items += power_cycle("node2", ("node2",))
    items += phase(
        "node1 returns",
        Step(
            "node1",
            Write(0),
            expect=(CONFLICT,),
            expect_ua=(POWER_ON_OR_RESET,) if aptpl else (REGISTRATIONS_PREEMPTED,),
            note="the old owner's writes are refused",
        ),
        Step("node1", Read(0), note="it reads node2's data"),
    )
    return Scenario(
        "failover-aptpl" if aptpl else "failover",
        "Failover" + (" with APTPL across power cycles" if aptpl else ""),
        "The active node dies with its registration in place; the standby preempts its key and "
        "takes over; the returning node's writes conflict."
        + (
            " Registrations carry APTPL, so the PR state survives a power cycle of the LUN, "
            "before and after the takeover."
            if aptpl
            else ""
        ),
        ("node1", "node2"),
        tuple(items),
        Source(
            "generic active/standby failover (sg_persist -P, as fence_scsi and mpathpersist "
            "issue it)",
            ("sg3_utils sg_persist(8)",),
        ),
        {"node1": K1, "node2": K2},
    )
