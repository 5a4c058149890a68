"""Storage fencing with fence-agents' ``fence_scsi`` (Pacemaker): unfence, fence, rejoin, and
two nodes fencing each other at once."""

from __future__ import annotations

from scsi_pr.rig.scenarios.commands import (
    ANY_KEY,
    Preempt,
    Read,
    ReadKeys,
    ReadReservation,
    Register,
    Reserve,
    Write,
)
from scsi_pr.rig.scenarios.library.common import K1, K2, WE_RO, phase
from scsi_pr.rig.scenarios.model import (
    CONFLICT,
    TASK_ABORTED,
    Item,
    Outcome,
    Race,
    Scenario,
    Source,
    StateCheck,
    Step,
)
from scsi_pr.sim.constants import REGISTRATIONS_PREEMPTED

FENCE_SCSI = Source(
    "fence-agents fence_scsi (Pacemaker storage fencing)",
    (
        "ClusterLabs/fence-agents agents/scsi/fence_scsi.py (set_status, register_dev, "
        "preempt_abort, get_status, scsi_check)",
    ),
)


def fence_scsi_on(
    node: str, key: int, other_keys: tuple[int, ...], holder_key: int | None
) -> list[Item]:
    """``fence_scsi -o on`` for one device: register_dev (key not yet registered), verify,
    then reserve only if nobody holds."""
    steps: list[Item] = [
        Step(
            node,
            ReadKeys(present=other_keys, absent=(key,)),
            note="register_dev: is our key registered already? (no)",
        ),
        Step(node, Register(sa_key=key, ignore=True), note="sg_persist -n -o -I -S KEY"),
        Step(node, ReadKeys(present=(*other_keys, key)), note="verify the registration"),
    ]
    if holder_key is None:
        return [
            *steps,
            Step(node, ReadReservation(holder_key=None), note="no reservation yet -> reserve"),
            Step(
                node,
                Reserve(key, WE_RO),
                note="sg_persist -n -o -R -T 5 -K KEY",
                state=StateCheck(holder=node),
            ),
        ]
    return [
        *steps,
        Step(
            node,
            ReadReservation(holder_key=holder_key),
            note="someone holds already: no reserve",
        ),
    ]


def fence_scsi_register_dev_existing(node: str, key: int, holder_key: int) -> list[Item]:
    """register_dev when our key is already registered (first part of ``-o off``): re-register,
    preempt our own key to drop stale I_T nexuses with it, re-register if we do not hold."""
    steps: list[Item] = [
        Step(node, ReadKeys(present=(key,)), note="register_dev(host key): already registered"),
        Step(node, Register(sa_key=key, ignore=True)),
        Step(
            node,
            Preempt(key, key, WE_RO),
            note="preempt own key: drops stale registrations of it (old ISIDs)",
        ),
        Step(node, ReadReservation(holder_key=holder_key)),
    ]
    if holder_key == key:
        return steps
    return [
        *steps,
        Step(
            node,
            Register(sa_key=key, ignore=True),
            note="not the holder: the preempt removed our key too, register again",
        ),
    ]


def fence_scsi() -> Scenario:
    items = [
        *phase("node1: fence_scsi -o on", *fence_scsi_on("node1", K1, (), None)),
        *phase("node2: fence_scsi -o on", *fence_scsi_on("node2", K2, (K1,), K1)),
        *phase(
            "cluster runs",
            Step(
                "node1",
                Write(0),
                note="registrants may write",
                state=StateCheck(holder="node1", registered=("node1", "node2")),
            ),
            Step("node2", Write(1)),
            Step("node1", Read(1)),
        ),
        *phase(
            "node1: fence_scsi -o off -n node2",
            *fence_scsi_register_dev_existing("node1", K1, K1),
            Step("node1", ReadKeys(present=(K2,)), note="victim registered -> preempt"),
            Step(
                "node1",
                Preempt(K1, K2, WE_RO, abort=True),
                note="sg_persist -n -o -A -T 5 -K HOST -S VICTIM",
                state=StateCheck(holder="node1", registered=("node1",)),
            ),
            Step("node1", ReadKeys(absent=(K2,)), note="verify: victim key gone"),
            Step("node1", ReadReservation(holder_key=ANY_KEY), note="verify: a reservation exists"),
        ),
        *phase(
            "node2 is fenced",
            Step(
                "node2",
                Write(1),
                expect=(CONFLICT,),
                expect_ua=(REGISTRATIONS_PREEMPTED,),
                note="the fenced node's writes are refused",
            ),
            Step("node2", Read(0), note="WE-RO: anyone may read"),
            Step(
                "node2",
                ReadKeys(absent=(K2,)),
                note="fence_scsi_check watchdog: own key gone -> exit 2, reboot",
            ),
        ),
        *phase(
            "node1: fence_scsi -o status -n node2",
            Step("node1", ReadKeys(absent=(K2,)), note="key absent -> status OFF (exit 2)"),
        ),
        *phase("node2 rebooted: fence_scsi -o on", *fence_scsi_on("node2", K2, (K1,), K1)),
        *phase(
            "node2 rejoined",
            Step(
                "node2",
                Write(1),
                note="unfenced: writes allowed again",
                state=StateCheck(holder="node1", registered=("node1", "node2")),
            ),
            Step("node1", Read(1)),
        ),
    ]
    return Scenario(
        "fence-scsi",
        "fence_scsi: unfence, fence with PREEMPT AND ABORT, status, rejoin",
        "Two Pacemaker nodes unfence (register + reserve WE-RO), node1 fences node2 with "
        "PREEMPT AND ABORT; node2's writes fail, its reads work, its watchdog sees its key "
        "gone; after reboot it registers again.",
        ("node1", "node2"),
        tuple(items),
        FENCE_SCSI,
        {"node1": K1, "node2": K2},
    )


def split_brain() -> Scenario:
    items = [
        *phase(
            "both nodes unfenced",
            Step("node1", Register(sa_key=K1, ignore=True)),
            Step("node1", Reserve(K1, WE_RO)),
            Step(
                "node2",
                Register(sa_key=K2, ignore=True),
                state=StateCheck(holder="node1", registered=("node1", "node2")),
            ),
        ),
        *phase(
            "heartbeat lost: each node runs fence_scsi -o off against the other",
            *fence_scsi_register_dev_existing("node1", K1, K1),
            *fence_scsi_register_dev_existing("node2", K2, K1),
            Step("node1", ReadKeys(present=(K2,))),
            Step("node2", ReadKeys(present=(K1,))),
            Race(
                (
                    Step("node1", Preempt(K1, K2, WE_RO, abort=True)),
                    Step("node2", Preempt(K2, K1, WE_RO, abort=True)),
                ),
                # The loser is already unregistered (conflict), or its pending unit attention
                # is reported first, or its command was aborted by the winner's PREEMPT AND
                # ABORT.
                losers_expect=(CONFLICT, Outcome.ua(REGISTRATIONS_PREEMPTED), TASK_ABORTED),
                state=StateCheck(holder="winner", registered=("winner",)),
            ),
        ),
        *phase(
            "the loser is fenced",
            Step("loser", Write(1), expect=(CONFLICT,)),
            Step("loser", Read(0)),
        ),
        *phase("the winner runs the cluster", Step("winner", Write(0))),
    ]
    return Scenario(
        "split-brain",
        "Split brain: two fence_scsi nodes preempt each other at once",
        "Both nodes lose the heartbeat and fence each other with PREEMPT AND ABORT at the same "
        "moment; the LU serialises them: exactly one wins, the loser's writes fail.",
        ("node1", "node2"),
        tuple(items),
        FENCE_SCSI,
        {"node1": K1, "node2": K2},
    )
