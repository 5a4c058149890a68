"""Windows Server Failover Clustering: disk arbitration between owner and challenger, and the
cluster validation wizard's PR test.

Windows' PR traffic is not public source; each scenario's ``Source`` says what was assumed.
"""

from __future__ import annotations

from scsi_pr.rig.scenarios.commands import (
    Preempt,
    Read,
    ReadKeys,
    ReadReservation,
    Register,
    Release,
    Reserve,
    Write,
)
from scsi_pr.rig.scenarios.library.common import WE_RO, phase
from scsi_pr.rig.scenarios.model import CONFLICT, Action, Scenario, Source, StateCheck, Step
from scsi_pr.sim.constants import REGISTRATIONS_PREEMPTED

# WSFC's keys are random per node and disk (KB 2488012); these values are only labels.
KA, KB = 0xAAAA0001, 0xBBBB0002
WSFC_ASSUMED = (
    "Windows' PR traffic is not public source. The challenge/defence shape follows Microsoft "
    "patent US 7,277,952 (defend every 3 s, challenger waits two periods); the reservation "
    "type WE-RO, the keys and the defence by re-register + PREEMPT are assumptions."
)


def wsfc_arbitration() -> Scenario:
    items = [
        *phase(
            "node A brings the disk online",
            Step("nodeA", Register(0, KA)),
            Step(
                "nodeA",
                Reserve(KA, WE_RO),
                state=StateCheck(holder="nodeA", registered=("nodeA",)),
            ),
            Step("nodeA", Write(0)),
        ),
        *phase(
            "node A polls every 3 s",
            Step("nodeA", ReadReservation(holder_key=KA), wait=3, note="defence poll: still ours"),
        ),
        *phase(
            "node B challenges",
            Step("nodeB", Register(0, KB), wait=1),
            Step(
                "nodeB",
                Preempt(KB, KA, WE_RO),
                note="challenge: preempt the owner's key",
                state=StateCheck(holder="nodeB", registered=("nodeB",)),
            ),
        ),
        *phase(
            "node A defends",
            Step(
                "nodeA",
                ReadKeys(absent=(KA,)),
                wait=2,
                expect_ua=(REGISTRATIONS_PREEMPTED,),
                note="defence poll: our key is gone",
            ),
            Step("nodeA", Register(0, KA)),
            Step(
                "nodeA",
                Preempt(KA, KB, WE_RO),
                note="re-reserve by preempting back",
                state=StateCheck(holder="nodeA", registered=("nodeA",)),
            ),
        ),
        *phase(
            "node B checks after 6 s",
            Step(
                "nodeB",
                ReadReservation(holder_key=KA),
                wait=4,
                expect_ua=(REGISTRATIONS_PREEMPTED,),
                note="owner defended: challenge lost, B backs off",
            ),
            Step("nodeB", Write(1), expect=(CONFLICT,), note="B is not registered"),
        ),
        *phase(
            "node A crashes; node B challenges again",
            Action(
                "node A stops responding (its registration stays)",
                actor="nodeA",
                wait=2,
                state=StateCheck(holder="nodeA", registered=("nodeA",)),
            ),
            Step("nodeB", Register(0, KB), wait=1),
            Step(
                "nodeB",
                Preempt(KB, KA, WE_RO),
                state=StateCheck(holder="nodeB", registered=("nodeB",)),
            ),
            Step(
                "nodeB",
                ReadReservation(holder_key=KB),
                wait=6,
                note="no defence within 6 s: B owns the disk",
            ),
        ),
        *phase("node B owns the disk", Step("nodeB", Write(1)), Step("nodeB", Read(0))),
        *phase(
            "node A returns",
            Step(
                "nodeA",
                Write(0),
                expect=(CONFLICT,),
                expect_ua=(REGISTRATIONS_PREEMPTED,),
                note="stale owner's writes are refused",
            ),
        ),
    ]
    return Scenario(
        "wsfc-arbitration",
        "Windows failover cluster disk arbitration: challenge, defence, takeover",
        "Owner A registers and reserves; challenger B registers and preempts A's key; A, still "
        "alive, sees its key gone and takes the disk back; later A stops defending, B preempts "
        "again and keeps the disk.",
        ("nodeA", "nodeB"),
        tuple(items),
        Source(
            "Windows Server Failover Clustering (arbitration)",
            ("Microsoft patent US 7,277,952; KB 309186; KB 2488012",),
            WSFC_ASSUMED,
        ),
        {"nodeA": KA, "nodeB": KB},
    )


def wsfc_validation() -> Scenario:
    items = phase(
        "Validate SCSI-3 Persistent Reservation",
        Step("nodeA", Register(0, KA), note="Registering PR key from node A"),
        Step("nodeA", Reserve(KA, WE_RO)),
        Step("nodeA", ReadReservation(holder_key=KA)),
        Step(
            "nodeB",
            Preempt(KB, KA, WE_RO),
            expect=(CONFLICT,),
            note="unregistered node B must not preempt",
        ),
        Step("nodeB", Register(0, KB)),
        Step(
            "nodeB",
            Reserve(KB, WE_RO),
            expect=(CONFLICT,),
            note="A holds: B's reserve must conflict",
        ),
        Step("nodeB", ReadReservation(holder_key=KA)),
        Step("nodeA", Write(8), note="arbitration sector"),
        Step("nodeA", Read(8)),
        Step("nodeB", Read(8)),
        Step("nodeB", Write(8), note="registrant under WE-RO: allowed"),
        Step("nodeB", Register(KB, 0), note="unregister B"),
        Step("nodeA", Release(KA, WE_RO)),
        Step(
            "nodeA",
            Register(KA, 0),
            note="CprepDiskPRUnRegister",
            state=StateCheck(holder=None, registered=()),
        ),
    )
    return Scenario(
        "wsfc-validation",
        "Windows cluster validation: 'Validate SCSI-3 Persistent Reservation'",
        "The cluster validation wizard's PR test on one disk from two nodes: register, reserve, "
        "refused preempt and reserve from the other node, arbitration-sector I/O, clean-up.",
        ("nodeA", "nodeB"),
        tuple(items),
        Source(
            "Windows Server cluster validation (Test-Cluster)",
            ("Ask-the-Core blog 2009-04-15; KB 2488012",),
            "Only step 1's log line is documented verbatim; steps 2-9 are reconstructed from "
            "validation reports, with reservation type WE-RO assumed.",
        ),
        {"nodeA": KA, "nodeB": KB},
    )
