"""What the two guests run: fence_scsi's sequence split over two nodes, with what each step must
show, and which pause waits for what.

Node A unfences (``fence_scsi -o on``: REGISTER AND IGNORE EXISTING KEY, then RESERVE type 5,
WRITE EXCLUSIVE - REGISTRANTS ONLY) and writes; node B unfences too, sees A's reservation and
fences A (``fence_scsi -o off``: PREEMPT AND ABORT type 5, RK = B, SARK = A). A then sees the
fence as a victim does: a unit attention, RESERVATION CONFLICT on its next write, only B's key.
Keys are fence_scsi's own for nodes 1 and 2 (``scsi_pr.rig.scenarios.library.common``), hex
without 0x as sg_persist takes them.

Pauses order the two guests: a guest that reaches ``Pause(p)`` waits until every event in
``RELEASES[(guest, p)]`` has happened; an event is a pause reached or a guest's ``DONE``.
"""

from __future__ import annotations

from dataclasses import dataclass

from scsi_pr.rig.guest.steps import Command, Pause, Step
from scsi_pr.rig.scenarios.library.common import K1, K2, WE_RO
from scsi_pr.sim.constants import REGISTRATIONS_PREEMPTED, AdditionalSense, ReservationType

A, B = "A", "B"
KEY_A, KEY_B = K1, K2
#: the block both nodes write (LBA), far from anything the guest kernel reads at probe time
WRITE_LBA = 100
#: the event a guest's ``@@DONE`` line stands for (never a pause name: pause names have no '@')
DONE = "@done"

# sg3_utils exit statuses (sg_lib.h SG_LIB_CAT_*), the same for sg_persist, sg_turs and sg_raw
RC_GOOD = 0
RC_UNIT_ATTENTION = 6
RC_RESERVATION_CONFLICT = 24


@dataclass(frozen=True)
class Registrant:
    """One registration as READ FULL STATUS or the model shows it: key, whose (guest label),
    and whether it holds the reservation."""

    key: int
    guest: str
    holder: bool = False


@dataclass(frozen=True)
class Expect:
    """What one step must show; fields left None are not looked at.

    ``keys``: READ KEYS lists exactly these (any order). ``reservation``: READ RESERVATION shows
    this key holding this type. ``registrants``: READ FULL STATUS lists exactly these, each with
    an iSCSI TransportID naming its guest's initiator. ``sense``: the CHECK CONDITION's
    additional sense code, from the raw sense ``sg_raw -v`` prints."""

    rc: int = RC_GOOD
    keys: tuple[int, ...] | None = None
    reservation: tuple[int, ReservationType] | None = None
    registrants: tuple[Registrant, ...] | None = None
    sense: AdditionalSense | None = None


Event = tuple[str, str]  # (guest label, pause name or DONE)


def _pr(*args: str) -> tuple[str, ...]:
    """sg_persist without its INQUIRY (``-n``, as fence_scsi calls it), on the guest's disk."""
    return ("sg_persist", "-n", *args, "{dev}")


def _write() -> tuple[str, ...]:
    """WRITE(10) of one zero block at ``WRITE_LBA`` through SG_IO, so the status comes back
    unchanged (no page cache, no retries in the guest's block layer)."""
    cdb = bytes([0x2A, 0, *WRITE_LBA.to_bytes(4, "big"), 0, 0, 1, 0])
    return ("sg_raw", "-s", "512", "-i", "/dev/zero", "{dev}", *(f"{b:02x}" for b in cdb))


def _tur() -> tuple[str, ...]:
    """TEST UNIT READY as fence_scsi's ``sg_turs`` sends it, through ``sg_raw -v``, which prints
    the raw sense bytes (``sg_turs`` prints only their meaning, in words)."""
    return ("sg_raw", "-v", "{dev}", "00", "00", "00", "00", "00", "00")


def _h(key: int) -> str:
    return f"{key:x}"


T5 = str(int(WE_RO))

#: Node A: unfence, write, wait to be fenced, then look at the fence from the inside.
GUEST_A: tuple[Step | tuple[Command, Expect], ...] = (
    (Command("tur", ("sg_turs", "{dev}")), Expect()),
    (Command("keys0", _pr("-H", "-k")), Expect(keys=())),
    (Command("register", _pr("-o", "-I", "-S", _h(KEY_A))), Expect()),
    (Command("reserve", _pr("-o", "-R", "-T", T5, "-K", _h(KEY_A))), Expect()),
    (Command("resv", _pr("-H", "-r")), Expect(reservation=(KEY_A, WE_RO))),
    (Command("write", _write()), Expect()),
    Pause("reserved"),
    # the victim's next command reports the preemption (SPC-5 5.14.11.2.5) ...
    (Command("tur_fenced", _tur()),
     Expect(rc=RC_UNIT_ATTENTION, sense=REGISTRATIONS_PREEMPTED)),
    # ... and its writes are refused: it is no registrant of a registrants-only reservation
    (Command("write_fenced", _write()), Expect(rc=RC_RESERVATION_CONFLICT)),
    (Command("keys_fenced", _pr("-H", "-k")), Expect(keys=(KEY_B,))),
    (Command("resv_fenced", _pr("-H", "-r")), Expect(reservation=(KEY_B, WE_RO))),
)  # fmt: skip

#: Node B: wait for A's reservation, unfence, read everything, fence A, write.
GUEST_B: tuple[Step | tuple[Command, Expect], ...] = (
    (Command("tur", ("sg_turs", "{dev}")), Expect()),
    Pause("start"),
    (Command("write_unregistered", _write()), Expect(rc=RC_RESERVATION_CONFLICT)),
    (Command("register", _pr("-o", "-I", "-S", _h(KEY_B))), Expect()),
    (Command("keys", _pr("-H", "-k")), Expect(keys=(KEY_A, KEY_B))),
    (Command("resv", _pr("-H", "-r")), Expect(reservation=(KEY_A, WE_RO))),
    (Command("status", _pr("-H", "-s")),
     Expect(registrants=(Registrant(KEY_A, A, True), Registrant(KEY_B, B)))),
    Pause("registered"),
    (Command("preempt", _pr("-o", "-A", "-T", T5, "-K", _h(KEY_B), "-S", _h(KEY_A))),
     Expect()),
    (Command("keys_after", _pr("-H", "-k")), Expect(keys=(KEY_B,))),
    (Command("resv_after", _pr("-H", "-r")), Expect(reservation=(KEY_B, WE_RO))),
    (Command("write", _write()), Expect()),
    Pause("fenced"),
    (Command("status_final", _pr("-H", "-s")), Expect(registrants=(Registrant(KEY_B, B, True),))),
)  # fmt: skip

SCRIPTS = {A: GUEST_A, B: GUEST_B}

#: (guest, pause) -> the events it waits for
RELEASES: dict[Event, tuple[Event, ...]] = {
    (B, "start"): ((A, "reserved"),),  # B starts once A holds the reservation
    (B, "registered"): (),  # the host looks at the model's state (HOST_LOOKS) first
    (A, "reserved"): ((B, "fenced"),),  # A goes on once B has fenced it
    (B, "fenced"): ((A, DONE),),  # B's final look comes after A saw everything
}

#: (guest, pause) -> name of the host's look at the model's state, taken before the release
HOST_LOOKS: dict[Event, str] = {(B, "registered"): "registered", (B, "fenced"): "fenced"}

#: what each host look must show
HOST_EXPECT: dict[str, tuple[Registrant, ...]] = {
    "registered": (Registrant(KEY_A, A, True), Registrant(KEY_B, B)),
    "fenced": (Registrant(KEY_B, B, True),),
}


def steps_of(guest: str) -> tuple[Step, ...]:
    """The guest's steps, as its /init runs them."""
    return tuple(item if isinstance(item, Pause) else item[0] for item in SCRIPTS[guest])


def expectations(guest: str) -> dict[str, Expect]:
    """Step name -> what it must show, for the guest's commands."""
    return {item[0].name: item[1] for item in SCRIPTS[guest] if not isinstance(item, Pause)}
