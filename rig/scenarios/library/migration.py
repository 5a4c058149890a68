"""A guest's reservation follows it from host A to host B: the destination preempts it (QEMU's
migrate-pr), or the source moves it with REGISTER AND MOVE."""

from __future__ import annotations

from scsi_pr.rig.scenarios.commands import (
    Preempt,
    Read,
    ReadReservation,
    Register,
    RegisterAndMove,
    Reserve,
    Write,
)
from scsi_pr.rig.scenarios.library.common import WE_RO, phase
from scsi_pr.rig.scenarios.model import CONFLICT, Item, Scenario, Source, StateCheck, Step
from scsi_pr.sim.constants import REGISTRATIONS_PREEMPTED, AdditionalSense

KV = 0x9E5700000001  # the guest's key: the guest does not know which host it runs on
QEMU_MIGRATE_PR = Source(
    "QEMU scsi-block migrate-pr=on (QEMU 11.0; KubeVirt PR #17505 enables live migration)",
    ("QEMU docs: 'SCSI Persistent Reservation Live Migration' (label scsi_migrate_pr)",),
    "QEMU's documentation says the destination submits PREEMPT to take the reservation over "
    "before the guest runs; that it first registers the guest's key on its own I_T nexus "
    "(REGISTER AND IGNORE EXISTING KEY) is our reading: PREEMPT needs a registered issuer.",
)


def guest_holds() -> list[Item]:
    """The guest holds the disk through host A; after migration host B is not registered."""
    return [
        *phase(
            "guest on host A holds the disk",
            Step("hostA", Register(0, KV)),
            Step("hostA", Reserve(KV, WE_RO)),
            Step("hostA", Write(0)),
        ),
        *phase(
            "migrated, PR left on the source",
            Step(
                "hostB",
                Write(0),
                expect=(CONFLICT,),
                note="migrate-pr=off: the destination host is not registered",
            ),
        ),
    ]


def guest_runs_on_b(source_ua: tuple[AdditionalSense, ...], note: str) -> list[Item]:
    """The guest writes through host B; the stale source's writes conflict (after
    ``source_ua``), its reads work."""
    return phase(
        "guest runs on host B",
        Step("hostB", Write(0)),
        Step("hostA", Write(1), expect=(CONFLICT,), expect_ua=source_ua, note=note),
        Step("hostA", Read(0)),
    )


def vm_migration() -> Scenario:
    items = [
        *guest_holds(),
        *phase(
            "destination QEMU takes the reservation over (migrate-pr=on)",
            Step(
                "hostB",
                Register(sa_key=KV, ignore=True),
                note="register the guest's key on host B's nexus",
            ),
            Step(
                "hostB",
                Preempt(KV, KV, WE_RO),
                note="PREEMPT of the holder's key: B holds, A's registration goes",
                state=StateCheck(holder="hostB", registered=("hostB",)),
            ),
        ),
        *guest_runs_on_b((REGISTRATIONS_PREEMPTED,), "a stale source can no longer write"),
    ]
    return Scenario(
        "vm-migration",
        "VM live migration: the destination preempts the guest's reservation",
        "A guest's reservation is held through host A's I_T nexus. After live migration host "
        "B's nexus is unregistered and the guest's writes conflict; with QEMU's migrate-pr the "
        "destination registers the guest's key and PREEMPTs, moving the reservation atomically.",
        ("hostA", "hostB"),
        tuple(items),
        QEMU_MIGRATE_PR,
        {"hostA": KV, "hostB": KV},
    )


def register_and_move() -> Scenario:
    items = [
        *guest_holds(),
        *phase(
            "source moves the PR with REGISTER AND MOVE",
            Step(
                "hostA",
                RegisterAndMove(KV, KV, "hostB", WE_RO, unreg=True),
                state=StateCheck(holder="hostB", registered=("hostB",)),
            ),
            Step("hostB", ReadReservation(holder_key=KV)),
        ),
        *guest_runs_on_b(
            (), "source unregistered (UNREG); REGISTER AND MOVE raises no unit attention"
        ),
    ]
    return Scenario(
        "register-and-move",
        "Reservation moved between I_T nexuses with REGISTER AND MOVE",
        "The same migration done from the source side: the holder moves its registration and "
        "reservation to host B's I_T nexus (TransportID + relative target port) and drops its "
        "own registration.",
        ("hostA", "hostB"),
        tuple(items),
        Source(
            "SPC-5 REGISTER AND MOVE as sg_persist --register-move sends it",
            ("sg3_utils sg_persist(8)",),
            "No virtualisation stack we read issues REGISTER AND MOVE on migration; this is "
            "the standard's own mechanism, shown for comparison with vm-migration.",
        ),
        {"hostA": KV, "hostB": KV},
    )
