"""Faults of the I/O path rather than of a node: the PR helper process dies mid-sequence."""

from __future__ import annotations

from scsi_pr.rig.backends import Capability
from scsi_pr.rig.scenarios.commands import (
    Preempt,
    ReadKeys,
    ReadReservation,
    Register,
    Reserve,
    Write,
)
from scsi_pr.rig.scenarios.library.common import K1, K2, WE_RO, phase
from scsi_pr.rig.scenarios.model import CONFLICT, Action, Scenario, Source, StateCheck, Step
from scsi_pr.sim.constants import REGISTRATIONS_PREEMPTED


def helper_restart() -> Scenario:
    items = [
        *phase(
            "a guest cluster holds the disk",
            Step("vm1", Register(0, K1)),
            Step("vm1", Reserve(K1, WE_RO)),
            Step("vm2", Register(0, K2)),
            Step("vm1", Write(0)),
        ),
        *phase(
            "qemu-pr-helper is killed and restarted",
            Action(
                "kill -9 the helper, start it again",
                capability=Capability.RESTART_HELPER,
                actor="helper",
                state=StateCheck(unchanged=True),
            ),
            Step(
                "vm1",
                ReadReservation(holder_key=K1),
                note="clients reconnect: PR IN works",
                state=StateCheck(holder="vm1", registered=("vm1", "vm2"), unchanged=True),
            ),
            Step("vm2", ReadKeys(present=(K1, K2))),
        ),
        *phase(
            "PR OUT after the restart",
            Step(
                "vm2",
                Preempt(K2, K1, WE_RO),
                state=StateCheck(holder="vm2", registered=("vm2",)),
            ),
            Step("vm1", Write(0), expect=(CONFLICT,), expect_ua=(REGISTRATIONS_PREEMPTED,)),
            Step("vm2", Write(0)),
        ),
    ]
    return Scenario(
        "helper-restart",
        "PR helper restart: state unchanged, clients reconnect",
        "Two guests' disks go through the PR helper; the helper is killed and restarted "
        "mid-sequence; PR state (keys, holder, PRGENERATION) is unchanged and later commands "
        "work.",
        ("vm1", "vm2"),
        tuple(items),
        Source(
            "QEMU pr-manager-helper (reconnects to the socket after the helper restarts)",
            ("qemu scsi/pr-manager-helper.c", "qemu scsi/qemu-pr-helper.c"),
        ),
        {"vm1": K1, "vm2": K2},
    )
