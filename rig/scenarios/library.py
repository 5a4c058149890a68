"""The scenarios: command sequences real cluster software sends, with what each must cause.

Every sequence is transcribed from the software that issues it (``Source``); where that
software's traffic is not documented (Windows failover clustering), the docs say what was
assumed. ``docs/scenarios.md`` shows each one's timeline and chart.
"""

from __future__ import annotations

import hashlib

from scsi_pr.rig.scenarios.commands import (
    ANY_KEY,
    Preempt,
    Read,
    ReadKeys,
    ReadReservation,
    Register,
    RegisterAndMove,
    Release,
    Reserve,
    Write,
)
from scsi_pr.rig.scenarios.model import (
    CONFLICT,
    TASK_ABORTED,
    Action,
    Outcome,
    Race,
    Scenario,
    Source,
    StateCheck,
    Step,
)
from scsi_pr.sim.constants import REGISTRATIONS_PREEMPTED, ReservationType

WE_RO = ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY
POWER_ON_OR_RESET = 0x29  # ASC of every "power on, reset, or bus device reset" UA
CLUSTER_NAME = "scsi-pr"

FENCE_SCSI = Source(
    "fence-agents fence_scsi (Pacemaker storage fencing)",
    (
        "ClusterLabs/fence-agents agents/scsi/fence_scsi.py (set_status, register_dev, "
        "preempt_abort, get_status, scsi_check)",
    ),
)


def fence_scsi_key(cluster: str, node_id: int) -> int:
    """fence_scsi's default ``--key-value=id`` key: 4 hex digits of md5(cluster name) and the
    corosync node id as 4 decimal digits (``"%.4s%.4d"``), read by sg_persist as hex."""
    return int(f"{hashlib.md5(cluster.encode('ascii')).hexdigest()[:4]}{node_id:04d}", 16)


K1, K2 = fence_scsi_key(CLUSTER_NAME, 1), fence_scsi_key(CLUSTER_NAME, 2)


def fence_scsi_on(
    node: str, key: int, other_keys: tuple[int, ...], holder_key: int | None, phase: str
) -> list[Step]:
    """``fence_scsi -o on`` for one device: register_dev (key not yet registered), verify,
    then reserve only if nobody holds."""
    steps = [
        Step(
            node,
            ReadKeys(present=other_keys, absent=(key,)),
            phase=phase,
            note="register_dev: is our key registered already? (no)",
        ),
        Step(
            node, Register(sa_key=key, ignore=True), phase=phase, note="sg_persist -n -o -I -S KEY"
        ),
        Step(
            node, ReadKeys(present=(*other_keys, key)), phase=phase, note="verify the registration"
        ),
    ]
    if holder_key is None:
        steps += [
            Step(
                node,
                ReadReservation(holder_key=None),
                phase=phase,
                note="no reservation yet -> reserve",
            ),
            Step(
                node,
                Reserve(key, WE_RO),
                phase=phase,
                note="sg_persist -n -o -R -T 5 -K KEY",
                state=StateCheck(holder=node),
            ),
        ]
    else:
        steps.append(
            Step(
                node,
                ReadReservation(holder_key=holder_key),
                phase=phase,
                note="someone holds already: no reserve",
            )
        )
    return steps


def fence_scsi_register_dev_existing(
    node: str, key: int, holder_key: int, phase: str
) -> list[Step]:
    """register_dev when our key is already registered (first part of ``-o off``): re-register,
    preempt our own key to drop stale I_T nexuses with it, re-register if we do not hold."""
    steps = [
        Step(
            node,
            ReadKeys(present=(key,)),
            phase=phase,
            note="register_dev(host key): already registered",
        ),
        Step(node, Register(sa_key=key, ignore=True), phase=phase),
        Step(
            node,
            Preempt(key, key, WE_RO),
            phase=phase,
            note="preempt own key: drops stale registrations of it (old ISIDs)",
        ),
        Step(node, ReadReservation(holder_key=holder_key), phase=phase),
    ]
    if holder_key != key:
        steps.append(
            Step(
                node,
                Register(sa_key=key, ignore=True),
                phase=phase,
                note="not the holder: the preempt removed our key too, register again",
            )
        )
    return steps


def _fence_scsi() -> Scenario:
    on1, on2 = "node1: fence_scsi -o on", "node2: fence_scsi -o on"
    off = "node1: fence_scsi -o off -n node2"
    steps: list[Step | Action] = [
        *fence_scsi_on("node1", K1, (), None, on1),
        *fence_scsi_on("node2", K2, (K1,), K1, on2),
        Step(
            "node1",
            Write(0),
            phase="cluster runs",
            note="registrants may write",
            state=StateCheck(holder="node1", registered=("node1", "node2")),
        ),
        Step("node2", Write(1), phase="cluster runs"),
        Step("node1", Read(1), phase="cluster runs"),
        *fence_scsi_register_dev_existing("node1", K1, K1, off),
        Step("node1", ReadKeys(present=(K2,)), phase=off, note="victim registered -> preempt"),
        Step(
            "node1",
            Preempt(K1, K2, WE_RO, abort=True),
            phase=off,
            note="sg_persist -n -o -A -T 5 -K HOST -S VICTIM",
            state=StateCheck(holder="node1", registered=("node1",)),
        ),
        Step("node1", ReadKeys(absent=(K2,)), phase=off, note="verify: victim key gone"),
        Step(
            "node1",
            ReadReservation(holder_key=ANY_KEY),
            phase=off,
            note="verify: a reservation exists",
        ),
        Step(
            "node2",
            Write(1),
            expect=(CONFLICT,),
            expect_ua=(REGISTRATIONS_PREEMPTED,),
            phase="node2 is fenced",
            note="the fenced node's writes are refused",
        ),
        Step("node2", Read(0), phase="node2 is fenced", note="WE-RO: anyone may read"),
        Step(
            "node2",
            ReadKeys(absent=(K2,)),
            phase="node2 is fenced",
            note="fence_scsi_check watchdog: own key gone -> exit 2, reboot",
        ),
        Step(
            "node1",
            ReadKeys(absent=(K2,)),
            phase="node1: fence_scsi -o status -n node2",
            note="key absent -> status OFF (exit 2)",
        ),
        *fence_scsi_on("node2", K2, (K1,), K1, "node2 rebooted: fence_scsi -o on"),
        Step(
            "node2",
            Write(1),
            phase="node2 rejoined",
            note="unfenced: writes allowed again",
            state=StateCheck(holder="node1", registered=("node1", "node2")),
        ),
        Step("node1", Read(1), phase="node2 rejoined"),
    ]
    return Scenario(
        "fence-scsi",
        "fence_scsi: unfence, fence with PREEMPT AND ABORT, status, rejoin",
        "Two Pacemaker nodes unfence (register + reserve WE-RO), node1 fences node2 with "
        "PREEMPT AND ABORT; node2's writes fail, its reads work, its watchdog sees its key "
        "gone; after reboot it registers again.",
        ("node1", "node2"),
        tuple(steps),
        FENCE_SCSI,
        {"node1": K1, "node2": K2},
    )


# WSFC's keys are random per node and disk (KB 2488012); these values are only labels.
KA, KB = 0xAAAA0001, 0xBBBB0002
WSFC_ASSUMED = (
    "Windows' PR traffic is not public source. The challenge/defence shape follows Microsoft "
    "patent US 7,277,952 (defend every 3 s, challenger waits two periods); the reservation "
    "type WE-RO, the keys and the defence by re-register + PREEMPT are assumptions."
)


def _wsfc_arbitration() -> Scenario:
    online, challenge = "node A brings the disk online", "node B challenges"
    defend, check = "node A defends", "node B checks after 6 s"
    crash = "node A crashes; node B challenges again"
    steps: list[Step | Action] = [
        Step("nodeA", Register(0, KA), phase=online),
        Step(
            "nodeA",
            Reserve(KA, WE_RO),
            phase=online,
            state=StateCheck(holder="nodeA", registered=("nodeA",)),
        ),
        Step("nodeA", Write(0), phase=online),
        Step(
            "nodeA",
            ReadReservation(holder_key=KA),
            wait=3,
            phase="node A polls every 3 s",
            note="defence poll: still ours",
        ),
        Step("nodeB", Register(0, KB), wait=1, phase=challenge),
        Step(
            "nodeB",
            Preempt(KB, KA, WE_RO),
            phase=challenge,
            note="challenge: preempt the owner's key",
            state=StateCheck(holder="nodeB", registered=("nodeB",)),
        ),
        Step(
            "nodeA",
            ReadKeys(absent=(KA,)),
            wait=2,
            expect_ua=(REGISTRATIONS_PREEMPTED,),
            phase=defend,
            note="defence poll: our key is gone",
        ),
        Step("nodeA", Register(0, KA), phase=defend),
        Step(
            "nodeA",
            Preempt(KA, KB, WE_RO),
            phase=defend,
            note="re-reserve by preempting back",
            state=StateCheck(holder="nodeA", registered=("nodeA",)),
        ),
        Step(
            "nodeB",
            ReadReservation(holder_key=KA),
            wait=4,
            expect_ua=(REGISTRATIONS_PREEMPTED,),
            phase=check,
            note="owner defended: challenge lost, B backs off",
        ),
        Step("nodeB", Write(1), expect=(CONFLICT,), phase=check, note="B is not registered"),
        Action(
            "node A stops responding (its registration stays)",
            actor="nodeA",
            wait=2,
            phase=crash,
            state=StateCheck(holder="nodeA", registered=("nodeA",)),
        ),
        Step("nodeB", Register(0, KB), wait=1, phase=crash),
        Step(
            "nodeB",
            Preempt(KB, KA, WE_RO),
            phase=crash,
            state=StateCheck(holder="nodeB", registered=("nodeB",)),
        ),
        Step(
            "nodeB",
            ReadReservation(holder_key=KB),
            wait=6,
            phase=crash,
            note="no defence within 6 s: B owns the disk",
        ),
        Step("nodeB", Write(1), phase="node B owns the disk"),
        Step("nodeB", Read(0), phase="node B owns the disk"),
        Step(
            "nodeA",
            Write(0),
            expect=(CONFLICT,),
            expect_ua=(REGISTRATIONS_PREEMPTED,),
            phase="node A returns",
            note="stale owner's writes are refused",
        ),
    ]
    return Scenario(
        "wsfc-arbitration",
        "Windows failover cluster disk arbitration: challenge, defence, takeover",
        "Owner A registers and reserves; challenger B registers and preempts A's key; A, still "
        "alive, sees its key gone and takes the disk back; later A stops defending, B preempts "
        "again and keeps the disk.",
        ("nodeA", "nodeB"),
        tuple(steps),
        Source(
            "Windows Server Failover Clustering (arbitration)",
            ("Microsoft patent US 7,277,952; KB 309186; KB 2488012",),
            WSFC_ASSUMED,
        ),
        {"nodeA": KA, "nodeB": KB},
    )


def _wsfc_validation() -> Scenario:
    test = "Validate SCSI-3 Persistent Reservation"
    steps: list[Step | Action] = [
        Step("nodeA", Register(0, KA), phase=test, note="Registering PR key from node A"),
        Step("nodeA", Reserve(KA, WE_RO), phase=test),
        Step("nodeA", ReadReservation(holder_key=KA), phase=test),
        Step(
            "nodeB",
            Preempt(KB, KA, WE_RO),
            expect=(CONFLICT,),
            phase=test,
            note="unregistered node B must not preempt",
        ),
        Step("nodeB", Register(0, KB), phase=test),
        Step(
            "nodeB",
            Reserve(KB, WE_RO),
            expect=(CONFLICT,),
            phase=test,
            note="A holds: B's reserve must conflict",
        ),
        Step("nodeB", ReadReservation(holder_key=KA), phase=test),
        Step("nodeA", Write(8), phase=test, note="arbitration sector"),
        Step("nodeA", Read(8), phase=test),
        Step("nodeB", Read(8), phase=test),
        Step("nodeB", Write(8), phase=test, note="registrant under WE-RO: allowed"),
        Step("nodeB", Register(KB, 0), phase=test, note="unregister B"),
        Step("nodeA", Release(KA, WE_RO), phase=test),
        Step(
            "nodeA",
            Register(KA, 0),
            phase=test,
            note="CprepDiskPRUnRegister",
            state=StateCheck(holder=None, registered=()),
        ),
    ]
    return Scenario(
        "wsfc-validation",
        "Windows cluster validation: 'Validate SCSI-3 Persistent Reservation'",
        "The cluster validation wizard's PR test on one disk from two nodes: register, reserve, "
        "refused preempt and reserve from the other node, arbitration-sector I/O, clean-up.",
        ("nodeA", "nodeB"),
        tuple(steps),
        Source(
            "Windows Server cluster validation (Test-Cluster)",
            ("Ask-the-Core blog 2009-04-15; KB 2488012",),
            "Only step 1's log line is documented verbatim; steps 2-9 are reconstructed from "
            "validation reports, with reservation type WE-RO assumed.",
        ),
        {"nodeA": KA, "nodeB": KB},
    )


def _split_brain() -> Scenario:
    setup = "both nodes unfenced"
    race = "heartbeat lost: each node runs fence_scsi -o off against the other"
    steps: list[Step | Action | Race] = [
        Step("node1", Register(sa_key=K1, ignore=True), phase=setup),
        Step("node1", Reserve(K1, WE_RO), phase=setup),
        Step(
            "node2",
            Register(sa_key=K2, ignore=True),
            phase=setup,
            state=StateCheck(holder="node1", registered=("node1", "node2")),
        ),
        *fence_scsi_register_dev_existing("node1", K1, K1, race),
        *fence_scsi_register_dev_existing("node2", K2, K1, race),
        Step("node1", ReadKeys(present=(K2,)), phase=race),
        Step("node2", ReadKeys(present=(K1,)), phase=race),
        Race(
            (
                Step("node1", Preempt(K1, K2, WE_RO, abort=True)),
                Step("node2", Preempt(K2, K1, WE_RO, abort=True)),
            ),
            # The loser is already unregistered (conflict), or its pending unit attention
            # is reported first, or its command was aborted by the winner's PREEMPT AND ABORT.
            losers_expect=(CONFLICT, Outcome.ua(REGISTRATIONS_PREEMPTED), TASK_ABORTED),
            phase=race,
            state=StateCheck(holder="winner", registered=("winner",)),
        ),
        Step("loser", Write(1), expect=(CONFLICT,), phase="the loser is fenced"),
        Step("loser", Read(0), phase="the loser is fenced"),
        Step("winner", Write(0), phase="the winner runs the cluster"),
    ]
    return Scenario(
        "split-brain",
        "Split brain: two fence_scsi nodes preempt each other at once",
        "Both nodes lose the heartbeat and fence each other with PREEMPT AND ABORT at the same "
        "moment; the LU serialises them: exactly one wins, the loser's writes fail.",
        ("node1", "node2"),
        tuple(steps),
        FENCE_SCSI,
        {"node1": K1, "node2": K2},
    )


def _failover(aptpl: bool) -> Scenario:
    cycle = "power cycle of the LUN (APTPL keeps PR state)"
    setup = "active node1 holds, standby node2 registered"
    steps: list[Step | Action] = [
        Step("node1", Register(0, K1, aptpl=aptpl), phase=setup),
        Step("node1", Reserve(K1, WE_RO), phase=setup),
        Step("node2", Register(0, K2, aptpl=aptpl), phase=setup),
        Step("node1", Write(0), phase=setup),
    ]
    if aptpl:
        steps += [
            Action(
                "power cycle",
                capability="power_cycle",
                phase=cycle,
                state=StateCheck(holder="node1", registered=("node1", "node2")),
            ),
            Step(
                "node1",
                Write(0),
                expect_ua=(POWER_ON_OR_RESET,),
                phase=cycle,
                note="holder still writes after power on",
            ),
        ]
    takeover = "node1 dies; node2 takes over"
    steps += [
        Action(
            "node1 dies (its registration and reservation stay)",
            actor="node1",
            phase=takeover,
            state=StateCheck(holder="node1", registered=("node1", "node2")),
        ),
        Step("node2", ReadKeys(present=(K1, K2)), wait=5, phase=takeover, note="heartbeat timeout"),
        Step("node2", ReadReservation(holder_key=K1), phase=takeover),
        Step(
            "node2",
            Preempt(K2, K1, WE_RO),
            phase=takeover,
            state=StateCheck(holder="node2", registered=("node2",)),
        ),
        Step("node2", Write(0), phase=takeover),
        Step("node2", Read(0), phase=takeover),
    ]
    if aptpl:
        steps += [
            Action(
                "power cycle",
                capability="power_cycle",
                phase=cycle,
                state=StateCheck(holder="node2", registered=("node2",)),
            ),
            Step("node2", Write(0), expect_ua=(POWER_ON_OR_RESET,), phase=cycle),
        ]
    steps += [
        Step(
            "node1",
            Write(0),
            expect=(CONFLICT,),
            expect_ua=(POWER_ON_OR_RESET,) if aptpl else (REGISTRATIONS_PREEMPTED,),
            phase="node1 returns",
            note="the old owner's writes are refused",
        ),
        Step("node1", Read(0), phase="node1 returns", note="it reads node2's data"),
    ]
    name = "failover-aptpl" if aptpl else "failover"
    return Scenario(
        name,
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
        tuple(steps),
        Source(
            "generic active/standby failover (sg_persist -P, as fence_scsi and mpathpersist "
            "issue it)",
            ("sg3_utils sg_persist(8)",),
        ),
        {"node1": K1, "node2": K2},
    )


def _helper_restart() -> Scenario:
    before, restart = "a guest cluster holds the disk", "qemu-pr-helper is killed and restarted"
    steps: list[Step | Action] = [
        Step("vm1", Register(0, K1), phase=before),
        Step("vm1", Reserve(K1, WE_RO), phase=before),
        Step("vm2", Register(0, K2), phase=before),
        Step("vm1", Write(0), phase=before),
        Action(
            "kill -9 the helper, start it again",
            capability="restart_helper",
            actor="helper",
            phase=restart,
            state=StateCheck(unchanged=True),
        ),
        Step(
            "vm1",
            ReadReservation(holder_key=K1),
            phase=restart,
            note="clients reconnect: PR IN works",
            state=StateCheck(holder="vm1", registered=("vm1", "vm2"), unchanged=True),
        ),
        Step("vm2", ReadKeys(present=(K1, K2)), phase=restart),
        Step(
            "vm2",
            Preempt(K2, K1, WE_RO),
            phase="PR OUT after the restart",
            state=StateCheck(holder="vm2", registered=("vm2",)),
        ),
        Step(
            "vm1",
            Write(0),
            expect=(CONFLICT,),
            expect_ua=(REGISTRATIONS_PREEMPTED,),
            phase="PR OUT after the restart",
        ),
        Step("vm2", Write(0), phase="PR OUT after the restart"),
    ]
    return Scenario(
        "helper-restart",
        "PR helper restart: state unchanged, clients reconnect",
        "Two guests' disks go through the PR helper; the helper is killed and restarted "
        "mid-sequence; PR state (keys, holder, PRGENERATION) is unchanged and later commands "
        "work.",
        ("vm1", "vm2"),
        tuple(steps),
        Source(
            "QEMU pr-manager-helper (reconnects to the socket after the helper restarts)",
            ("qemu scsi/pr-manager-helper.c", "qemu scsi/qemu-pr-helper.c"),
        ),
        {"vm1": K1, "vm2": K2},
    )


KV = 0x9E5700000001  # the guest's key: the guest does not know which host it runs on
QEMU_MIGRATE_PR = Source(
    "QEMU scsi-block migrate-pr=on (QEMU 11.0; KubeVirt PR #17505 enables live migration)",
    ("QEMU docs: 'SCSI Persistent Reservation Live Migration' (label scsi_migrate_pr)",),
    "QEMU's documentation says the destination submits PREEMPT to take the reservation over "
    "before the guest runs; that it first registers the guest's key on its own I_T nexus "
    "(REGISTER AND IGNORE EXISTING KEY) is our reading: PREEMPT needs a registered issuer.",
)


def _guest_holds(phase: str) -> list[Step | Action]:
    return [
        Step("hostA", Register(0, KV), phase=phase),
        Step("hostA", Reserve(KV, WE_RO), phase=phase),
        Step("hostA", Write(0), phase=phase),
        Step(
            "hostB",
            Write(0),
            expect=(CONFLICT,),
            phase="migrated, PR left on the source",
            note="migrate-pr=off: the destination host is not registered",
        ),
    ]


def _vm_migration() -> Scenario:
    move = "destination QEMU takes the reservation over (migrate-pr=on)"
    steps: list[Step | Action] = [
        *_guest_holds("guest on host A holds the disk"),
        Step(
            "hostB",
            Register(sa_key=KV, ignore=True),
            phase=move,
            note="register the guest's key on host B's nexus",
        ),
        Step(
            "hostB",
            Preempt(KV, KV, WE_RO),
            phase=move,
            note="PREEMPT of the holder's key: B holds, A's registration goes",
            state=StateCheck(holder="hostB", registered=("hostB",)),
        ),
        Step("hostB", Write(0), phase="guest runs on host B"),
        Step(
            "hostA",
            Write(1),
            expect=(CONFLICT,),
            expect_ua=(REGISTRATIONS_PREEMPTED,),
            phase="guest runs on host B",
            note="a stale source can no longer write",
        ),
        Step("hostA", Read(0), phase="guest runs on host B"),
    ]
    return Scenario(
        "vm-migration",
        "VM live migration: the destination preempts the guest's reservation",
        "A guest's reservation is held through host A's I_T nexus. After live migration host "
        "B's nexus is unregistered and the guest's writes conflict; with QEMU's migrate-pr the "
        "destination registers the guest's key and PREEMPTs, moving the reservation atomically.",
        ("hostA", "hostB"),
        tuple(steps),
        QEMU_MIGRATE_PR,
        {"hostA": KV, "hostB": KV},
    )


def _register_and_move() -> Scenario:
    move = "source moves the PR with REGISTER AND MOVE"
    steps: list[Step | Action] = [
        *_guest_holds("guest on host A holds the disk"),
        Step(
            "hostA",
            RegisterAndMove(KV, KV, "hostB", WE_RO, unreg=True),
            phase=move,
            state=StateCheck(holder="hostB", registered=("hostB",)),
        ),
        Step("hostB", ReadReservation(holder_key=KV), phase=move),
        Step("hostB", Write(0), phase="guest runs on host B"),
        Step(
            "hostA",
            Write(1),
            expect=(CONFLICT,),
            phase="guest runs on host B",
            note="source unregistered (UNREG); REGISTER AND MOVE raises no unit attention",
        ),
        Step("hostA", Read(0), phase="guest runs on host B"),
    ]
    return Scenario(
        "register-and-move",
        "Reservation moved between I_T nexuses with REGISTER AND MOVE",
        "The same migration done from the source side: the holder moves its registration and "
        "reservation to host B's I_T nexus (TransportID + relative target port) and drops its "
        "own registration.",
        ("hostA", "hostB"),
        tuple(steps),
        Source(
            "SPC-5 REGISTER AND MOVE as sg_persist --register-move sends it",
            ("sg3_utils sg_persist(8)",),
            "No virtualisation stack we read issues REGISTER AND MOVE on migration; this is "
            "the standard's own mechanism, shown for comparison with vm-migration.",
        ),
        {"hostA": KV, "hostB": KV},
    )


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        _fence_scsi(),
        _wsfc_arbitration(),
        _wsfc_validation(),
        _split_brain(),
        _failover(aptpl=False),
        _failover(aptpl=True),
        _helper_restart(),
        _vm_migration(),
        _register_and_move(),
    )
}
ALIASES: dict[str, str] = {}


def get(name: str) -> Scenario:
    try:
        return SCENARIOS[ALIASES.get(name, name)]
    except KeyError:
        raise KeyError(
            f"unknown scenario {name!r}; choose from {', '.join([*SCENARIOS, *ALIASES])}"
        ) from None
