"""What the end-to-end run does: the guest's steps, initiator B's actions at its pauses, and
how one boot repeats them once per helper.

Key values are hex without 0x, as sg_persist takes them.
"""

from __future__ import annotations

from dataclasses import replace

from scsi_pr.rig.guest.steps import Command, Pause, Step
from scsi_pr.sim.constants import ReservationType

GUEST_KEY = 0xA1  # registered by the guest (initiator A, through the helper)
HOST_KEY = 0xB2  # registered by initiator B on the host side
WE_RO = ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY
WE = ReservationType.WRITE_EXCLUSIVE

# sg_persist exit statuses (sg3_utils sg_lib.h SG_LIB_CAT_*)
RC_GOOD = 0
RC_ILLEGAL_REQUEST = 5
RC_UNIT_ATTENTION = 6
RC_RESERVATION_CONFLICT = 24


def _pr(*args: str) -> tuple[str, ...]:
    """sg_persist without its INQUIRY, on the step's device."""
    return ("sg_persist", "-n", *args, "{dev}")


#: What the guest runs.
SEQUENCE: tuple[Step, ...] = (
    Command("tur", ("sg_turs", "{dev}")),
    Command("keys0", _pr("-H", "-k")),
    Command("register", _pr("-o", "-G", "-S", f"{GUEST_KEY:x}")),
    Command("keys1", _pr("-H", "-k")),
    Command("bad_register", _pr("-o", "-G", "-K", "dead", "-S", "beef")),
    Command("bad_type", _pr("-o", "-R", "-T", "2", "-K", f"{GUEST_KEY:x}")),
    Command("reserve", _pr("-o", "-R", "-T", str(WE_RO), "-K", f"{GUEST_KEY:x}")),
    Command("resv1", _pr("-H", "-r")),
    Command("caps", _pr("-H", "-c")),
    Pause("host_conflict"),
    Command("keys2", _pr("-H", "-k")),
    Command("status2", _pr("-H", "-s")),
    Command("preempt", _pr("-o", "-P", "-T", str(WE_RO), "-K", f"{GUEST_KEY:x}",
                           "-S", f"{HOST_KEY:x}")),
    Command("keys3", _pr("-H", "-k")),
    Command("resv3", _pr("-H", "-r")),
    Pause("host_after_preempt"),
    Command("release", _pr("-o", "-L", "-T", str(WE_RO), "-K", f"{GUEST_KEY:x}")),
    Command("resv4", _pr("-H", "-r")),
    Command("unregister", _pr("-o", "-G", "-K", f"{GUEST_KEY:x}", "-S", "0")),
    Command("keys5", _pr("-H", "-k")),
    Command("status5", _pr("-H", "-s")),
    Pause("stop_helper"),
    Command("keys_nohelper", _pr("-H", "-k")),
)  # fmt: skip

#: What initiator B does on the host at each pause (``{dev}`` = B's /dev/sgN); the
#: ``stop_helper`` pause is handled by the driver itself.
HOST_ACTIONS: dict[str, tuple[Command, ...]] = {
    "host_conflict": (
        Command("host.register", _pr("-o", "-G", "-S", f"{HOST_KEY:x}")),
        Command("host.reserve", _pr("-o", "-R", "-T", str(WE), "-K", f"{HOST_KEY:x}")),
        Command("host.resv", _pr("-H", "-r")),
    ),
    "host_after_preempt": (
        Command("host.tur", ("sg_turs", "{dev}")),
        Command("host.keys", _pr("-H", "-k")),
        Command("host.register_old_key", _pr("-o", "-G", "-K", f"{HOST_KEY:x}", "-S", "c3")),
    ),
}


def step_names() -> list[str]:
    """Every step of one round that leaves a result: the guest's commands, then B's."""
    names = [s.name for s in SEQUENCE if isinstance(s, Command)]
    return names + [c.name for cmds in HOST_ACTIONS.values() for c in cmds]


def round_prefix(index: int) -> str:
    return f"r{index}."


def guest_steps(rounds: int) -> tuple[Step, ...]:
    """``SEQUENCE`` once per helper, one boot for all: nested TCG boots take minutes, so the
    guest stays up and the host swaps the helper behind QEMU's socket between rounds, the way
    a helper restart looks to a running VM. Round r's steps are named ``r<r>.<name>``; before
    every round but the first the guest pauses at ``r<r>.start`` for the next helper."""
    steps: list[Step] = []
    for r in range(rounds):
        if r:
            steps.append(Pause(f"{round_prefix(r)}start"))
        steps += [replace(step, name=round_prefix(r) + step.name) for step in SEQUENCE]
    return tuple(steps)


def parse_pause(name: str) -> tuple[int, str]:
    """``r1.host_conflict`` -> (1, "host_conflict"): the round and the pause of ``SEQUENCE``."""
    round_tag, _, what = name.partition(".")
    return int(round_tag.removeprefix("r")), what
