"""Checking a run: every observation against SPC-5's values for the sequence (with LIO's known
deviations), and every helper's round against the reference round.

Pure: a recorded run is checked again without a VM (tests/rig/test_guest_e2e_checks.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from scsi_pr.rig.guest.console import StepResult
from scsi_pr.rig.guest_e2e.observation import Observation
from scsi_pr.rig.guest_e2e.sequence import (
    GUEST_KEY,
    HOST_KEY,
    RC_GOOD,
    RC_ILLEGAL_REQUEST,
    RC_RESERVATION_CONFLICT,
    RC_UNIT_ATTENTION,
    WE_RO,
    round_prefix,
    step_names,
)
from scsi_pr.sim.constants import LU_SCOPE
from scsi_pr.sim.pr_in_data import (
    FullStatusDescriptor,
    PrInDataError,
    ReservationDescriptor,
    parse_full_status_descriptors,
    parse_key_list,
    parse_report_capabilities,
    parse_reservation_descriptor,
)

T = TypeVar("T")

#: LIO does not increment PRgeneration when a REGISTER removes a registration (SPC-5 6.16.2
#: says every successful REGISTER does); see the SPC note's LIO deviation table, row 3.
UNREGISTER_INCREMENTS_GENERATION = False
#: what QMP ``query-pr-managers`` must report while the helper runs
CONNECTED = [{"id": "pr0", "connected": True}]


@dataclass(frozen=True)
class Port:
    """What the checks need to know about one initiator of the LU."""

    relative_target_port: int
    transport_id: str  # hex, as LIO reports it


@dataclass
class RunResult:
    """One helper's round: what every step observed and what was wrong with it."""

    helper: str
    observations: dict[str, Observation] = field(default_factory=dict)
    pr_managers: list[Any] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: PRgeneration when the round started (rounds after the first inherit the LU)
    base_generation: int = 0

    def relative(self) -> dict[str, Observation]:
        """Observations with PRgeneration counted from the round's start, for comparing
        rounds: the absolute value depends only on how many rounds ran before."""
        return {
            n: replace(
                o, generation=None if o.generation is None else o.generation - self.base_generation
            )
            for n, o in self.observations.items()
        }


def expected_problems(
    obs: dict[str, Observation], guest: Port, host: Port, base: int = 0
) -> list[str]:
    """Every way ``obs`` differs from what SPC-5 (with LIO's known deviations) gives for one
    round of ``SEQUENCE``/``HOST_ACTIONS`` on an LU with no registrations and PRgeneration
    ``base``. Empty list = all as expected."""
    problems: list[str] = []
    unreg = int(UNREGISTER_INCREMENTS_GENERATION)

    def want(name: str, rc: int | None = RC_GOOD, gen: int | None = None) -> Observation | None:
        o = obs.get(name)
        if o is None or o.rc is None:
            problems.append(f"{name}: no result")
            return None
        if rc is not None and o.rc != rc:
            problems.append(f"{name}: exit status {o.rc}, expected {rc}")
        if gen is not None and o.generation != gen:
            problems.append(f"{name}: PRgeneration {o.generation}, expected {gen}")
        return o

    def read(name: str, parse: Callable[[bytes], T], gen: int | None = None) -> tuple[T] | None:
        """The step's data as ``parse`` reads it, in a 1-tuple (a reader may return None);
        None when the step has no result or its data is malformed, both problems."""
        o = want(name, gen=gen)
        if o is None:
            return None
        try:
            return (parse(bytes.fromhex(o.data)),)
        except PrInDataError as e:
            problems.append(f"{name}: {e}")
            return None

    def keys(name: str, gen: int, expected: list[int]) -> None:
        if (got := read(name, parse_key_list, gen)) and sorted(got[0]) != sorted(expected):
            problems.append(f"{name}: keys {_hexes(got[0])}, expected {_hexes(expected)}")

    def reservation(name: str, gen: int, key: int | None) -> None:
        """``key`` holds the WE-RO reservation; None: there is none."""
        expected = None if key is None else ReservationDescriptor(key, LU_SCOPE, WE_RO)
        if (got := read(name, parse_reservation_descriptor, gen)) and got[0] != expected:
            problems.append(f"{name}: reservation {got[0]}, expected {expected}")

    def registration(key: int, port: Port, holder: bool) -> FullStatusDescriptor:
        return FullStatusDescriptor(
            key, False, holder, LU_SCOPE if holder else None, WE_RO if holder else None,
            port.relative_target_port, bytes.fromhex(port.transport_id),
        )  # fmt: skip

    want("tur")
    keys("keys0", base + 0, [])
    want("register")
    keys("keys1", base + 1, [GUEST_KEY])
    want("bad_register", RC_RESERVATION_CONFLICT)
    want("bad_type", RC_ILLEGAL_REQUEST)
    want("reserve")
    reservation("resv1", base + 1, GUEST_KEY)
    if (caps := read("caps", parse_report_capabilities)) and WE_RO not in caps[0].type_mask:
        problems.append(f"caps: type mask {sorted(caps[0].type_mask)} without {WE_RO.name}")
    want("host.register")
    want("host.reserve", RC_RESERVATION_CONFLICT)
    reservation("host.resv", base + 2, GUEST_KEY)
    keys("keys2", base + 2, [GUEST_KEY, HOST_KEY])
    if status := read("status2", parse_full_status_descriptors, base + 2):
        got = sorted(status[0], key=lambda d: d.key)
        exp = [registration(GUEST_KEY, guest, True), registration(HOST_KEY, host, False)]
        if got != exp:
            problems.append(f"status2: {got}, expected {exp}")
    want("preempt")
    keys("keys3", base + 3, [GUEST_KEY])
    reservation("resv3", base + 3, GUEST_KEY)
    # B's registration was preempted: its next command reports REGISTRATIONS PREEMPTED (UA)
    want("host.tur", RC_UNIT_ATTENTION)
    keys("host.keys", base + 3, [GUEST_KEY])
    # an unregistered nexus that REGISTERs with a non-zero key gets RESERVATION CONFLICT
    want("host.register_old_key", RC_RESERVATION_CONFLICT)
    want("release")
    reservation("resv4", base + 3, None)
    want("unregister")
    keys("keys5", base + 3 + unreg, [])
    left = want("status5", gen=base + 3 + unreg)
    if left and left.data:
        problems.append(f"status5: descriptors left: {left.data}")
    # With the helper gone the guest's PR command must fail (QEMU gives up after its retries);
    # a pass here would mean PR commands were not going through the helper at all.
    gone = want("keys_nohelper", rc=None)
    if gone and gone.rc == RC_GOOD:
        problems.append("keys_nohelper: succeeded without a helper: PR bypassed the helper")
    return problems


def _hexes(values: Iterable[int]) -> str:
    return "[" + ", ".join(f"{v:#x}" for v in values) + "]"


def compare_runs(runs: Sequence[RunResult]) -> list[str]:
    """Steps where a helper's observation differs from the first (reference) run's; generations
    are compared relative to each round's start."""
    if len(runs) < 2:
        return []
    ref = runs[0].relative()
    problems = []
    for run in runs[1:]:
        mine = run.relative()
        for name in sorted(set(ref) | set(mine)):
            a, b = ref.get(name), mine.get(name)
            if a != b:
                problems.append(f"{name}: {runs[0].helper} gave {a}, {run.helper} gave {b}")
    return problems


def evaluate(
    results: list[RunResult], steps: dict[str, StepResult], guest: Port, host: Port
) -> list[str]:
    """Fill each round's observations and problems from the steps of one boot (guest and host
    steps, keyed ``r<r>.<name>``); return the differences between helpers."""
    base = 0
    for r, result in enumerate(results):
        prefix = round_prefix(r)
        result.base_generation = base
        result.observations = {
            n: Observation.from_step(steps.get(prefix + n)) for n in step_names()
        }
        result.problems += expected_problems(result.observations, guest, host, base)
        if result.pr_managers != CONNECTED:
            result.problems.append(f"query-pr-managers: {result.pr_managers}, expected connected")
        # the next round starts where this one left the LU
        base = result.observations["keys5"].generation or 0
    return compare_runs(results)
