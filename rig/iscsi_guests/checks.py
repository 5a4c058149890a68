"""Checking a run: every guest step against the scenario's ``Expect``, the model's own view of
the LU against ``HOST_EXPECT``, and the nexuses: each guest is one iSCSI initiator port named by
its own initiator name, the same in READ FULL STATUS, in the model and in the target's logins.

Pure: a run's console results and host looks are checked again without QEMU (tests/rig).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from scsi_pr.rig.guest.console import ConsoleError, StepResult
from scsi_pr.rig.iscsi_guests.scenario import (
    HOST_EXPECT,
    RC_GOOD,
    Expect,
    Registrant,
    expectations,
)
from scsi_pr.sim.constants import ProtocolIdentifier, ReservationType
from scsi_pr.sim.device import LogicalUnit
from scsi_pr.sim.pr_in_data import (
    PrInDataError,
    parse_full_status_descriptors,
    parse_key_list,
    parse_reservation_descriptor,
)
from scsi_pr.sim.result import SenseData
from scsi_pr.sim.transportid import TransportId, TransportIdError

#: sg_raw -v: the line before the raw sense bytes, then lines of two-digit hex bytes only
_RAW_SENSE = "Raw sense data (in hex)"
_HEX_BYTES = re.compile(r"^\s*[0-9a-fA-F]{2}(\s+[0-9a-fA-F]{2})*\s*$")
#: the target's log line for a session's login (``scsi_pr.target``): name and ISID of the port
_LOGIN = re.compile(r"login: (\S+),i,0x([0-9a-fA-F]{12}) ")


@dataclass(frozen=True)
class HostView:
    """The LU's registrations as the model holds them, read from the target's state dir:
    (key, initiator port, holds the reservation) in registration order, and the type."""

    registrations: tuple[tuple[int, TransportId, bool], ...]
    reservation: ReservationType | None


def view_of(lu: LogicalUnit) -> HostView:
    res = lu.pr.reservation
    holder = None if res is None else res.holder
    regs = tuple(
        (r.key, r.nexus.initiator, res is not None and (holder is None or holder == r.nexus))
        for r in lu.pr.registrations.values()
    )
    return HostView(regs, None if res is None else res.type)


def raw_sense(lines: Iterable[str]) -> bytes:
    """The sense bytes ``sg_raw -v`` printed after ``Raw sense data (in hex)`` (empty: none)."""
    out, inside = bytearray(), False
    for line in lines:
        if _RAW_SENSE in line:
            inside = True
        elif inside and _HEX_BYTES.match(line):
            out += bytes.fromhex("".join(line.split()))
        elif inside:
            break
    return bytes(out)


def target_problems(exit_status: int | None, target_log: str) -> list[str]:
    """A target that stopped cleanly on SIGTERM exits 0 and logged no traceback."""
    problems = [] if exit_status == 0 else [f"exit status {exit_status} after SIGTERM"]
    if "Traceback" in target_log:
        tail = target_log[target_log.index("Traceback") :][:2000]
        problems.append(f"traceback in its log: {tail}")
    return problems


def logins(target_log: str) -> list[TransportId]:
    """The initiator ports that logged in, in order, from the target's log."""
    return [TransportId.iscsi(name, isid) for name, isid in _LOGIN.findall(target_log)]


@dataclass
class Reading:
    """What one step showed: its exit status and what its PR IN data said."""

    rc: int | None
    keys: tuple[int, ...] | None = None
    reservation: tuple[int, ReservationType] | None = None
    registrants: tuple[Registrant, ...] | None = None
    sense: SenseData | None = None
    #: guest label (or the name itself, if no guest has it) -> the port READ FULL STATUS shows
    ports: dict[str, TransportId] = field(default_factory=dict)

    def text(self) -> str:
        parts = [f"rc {self.rc}"]
        if self.keys is not None:
            parts.append("keys " + _hexes(self.keys))
        if self.reservation is not None:
            parts.append(f"reservation {self.reservation[0]:#x} {self.reservation[1].abbreviation}")
        if self.registrants is not None:
            parts.append("registrants " + _registrants(self.registrants))
        if self.sense is not None:
            parts.append(str(self.sense))
        return ", ".join(parts)


def _hexes(keys: Iterable[int]) -> str:
    return ", ".join(f"{k:#x}" for k in keys) or "none"


def _registrants(regs: Iterable[Registrant]) -> str:
    return ", ".join(f"{r.guest} {r.key:#x}{' (holder)' if r.holder else ''}" for r in regs) or "-"


def _label(port: TransportId, names: Mapping[str, str]) -> str:
    return next((g for g, n in names.items() if TransportId.iscsi(n).name == port.name), str(port))


def read_step(
    result: StepResult | None, expect: Expect, names: Mapping[str, str]
) -> tuple[Reading, list[str]]:
    """The step's reading and everything in it that differs from ``expect``."""
    if result is None or result.rc is None:
        return Reading(None), ["no result"]
    reading, problems = Reading(result.rc), []
    if result.rc != expect.rc:
        problems.append(f"exit status {result.rc}, expected {expect.rc}")
    if expect.sense is not None:
        reading.sense = SenseData.parse(raw_sense(result.err))
        want = (expect.sense.asc, expect.sense.ascq)
        if reading.sense is None or (reading.sense.asc, reading.sense.ascq) != want:
            problems.append(f"sense {reading.sense}, expected {expect.sense.name}")
    if result.rc != RC_GOOD or (expect.keys, expect.reservation, expect.registrants) == (None,) * 3:
        return reading, problems
    try:
        body = result.data
        if expect.keys is not None:
            reading.keys = parse_key_list(body)
            if sorted(reading.keys) != sorted(expect.keys):
                problems.append(f"keys {_hexes(reading.keys)}, expected {_hexes(expect.keys)}")
        if expect.reservation is not None:
            desc = parse_reservation_descriptor(body)
            reading.reservation = None if desc is None else (desc.key, desc.type)
            if reading.reservation != expect.reservation:
                problems.append(f"reservation {desc}, expected {expect.reservation}")
        if expect.registrants is not None:
            problems += _read_status(body, reading, expect.registrants, names)
    except (ConsoleError, PrInDataError, TransportIdError) as e:
        problems.append(f"unreadable PR IN data: {e}")
    return reading, problems


def _read_status(
    body: bytes, reading: Reading, expected: tuple[Registrant, ...], names: Mapping[str, str]
) -> list[str]:
    problems, regs = [], []
    for d in parse_full_status_descriptors(body):
        port = d.initiator()
        label = _label(port, names)
        regs.append(Registrant(d.key, label, d.r_holder))
        reading.ports[label] = port
        problems += _port_problems(port, label)
        if d.r_holder and d.type is not ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY:
            problems.append(f"{label} holds a {d.type} reservation, expected WE_RO")
    reading.registrants = tuple(regs)
    if sorted(regs, key=repr) != sorted(expected, key=repr):
        problems.append(f"registrants {_registrants(regs)}, expected {_registrants(expected)}")
    return problems


def _port_problems(port: TransportId, label: str) -> list[str]:
    """Each guest is one iSCSI initiator port: an iSCSI TransportID with its session's ISID."""
    if port.protocol is not ProtocolIdentifier.ISCSI or port.isid is None:
        return [f"{label}: TransportID {port} is not an iSCSI initiator port (name,i,0xISID)"]
    return []


def host_problems(look: str, view: HostView | None, names: Mapping[str, str]) -> list[str]:
    """The model's view at ``look`` against ``HOST_EXPECT``."""
    if view is None:
        return [f"host look {look!r}: not taken"]
    got, problems = [], []
    for key, port, holder in view.registrations:
        label = _label(port, names)
        got.append(Registrant(key, label, holder))
        problems += [f"host look {look!r}: {p}" for p in _port_problems(port, label)]
    if sorted(got, key=repr) != sorted(HOST_EXPECT[look], key=repr):
        problems.append(f"host look {look!r}: registrants {_registrants(got)}, expected "
                        f"{_registrants(HOST_EXPECT[look])}")  # fmt: skip
    if view.reservation is not ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY:
        problems.append(f"host look {look!r}: reservation {view.reservation}, expected WE_RO")
    return problems


@dataclass
class Observed:
    """Everything one run saw: the guests' initiator names (label -> IQN), their step results
    and whether each finished, the host's looks at the model and the target's logins."""

    names: dict[str, str]
    steps: dict[str, dict[str, StepResult]] = field(default_factory=dict)
    finished: dict[str, bool] = field(default_factory=dict)
    looks: dict[str, HostView] = field(default_factory=dict)
    logins: list[TransportId] = field(default_factory=list)
    #: why the run stopped before both guests finished (a hang, a dead guest), if it did
    aborted: str | None = None
    #: what was wrong with the target itself (its exit status, a traceback in its log)
    target: list[str] = field(default_factory=list)


@dataclass
class Verdict:
    """Per guest, each step's reading in order; every problem found."""

    readings: dict[str, dict[str, Reading]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def evaluate(obs: Observed) -> Verdict:
    verdict = Verdict()
    if obs.aborted:
        verdict.problems.append(f"run aborted: {obs.aborted}")
    verdict.problems += [f"target: {p}" for p in obs.target]
    for guest in obs.names:
        if not obs.finished.get(guest):
            verdict.problems.append(f"guest {guest} did not finish its steps")
        readings = verdict.readings[guest] = {}
        for name, expect in expectations(guest).items():
            reading, problems = read_step(obs.steps.get(guest, {}).get(name), expect, obs.names)
            readings[name] = reading
            verdict.problems += [f"{guest} {name}: {p}" for p in problems]
    for look in HOST_EXPECT:
        verdict.problems += host_problems(look, obs.looks.get(look), obs.names)
    verdict.problems += _nexus_problems(obs, verdict)
    return verdict


def _nexus_problems(obs: Observed, verdict: Verdict) -> list[str]:
    """The port each guest registered from (B's READ FULL STATUS) is the one the model keeps
    and one the target logged in under that guest's name; the two guests' ports differ."""
    seen: dict[str, TransportId] = {}
    for readings in verdict.readings.values():
        for reading in readings.values():
            seen.update(reading.ports)
    model = {_label(p, obs.names): p for v in obs.looks.values() for _, p, _ in v.registrations}
    problems = []
    for guest, name in obs.names.items():
        port = seen.get(guest)
        if port is None:
            problems.append(f"{guest}: no READ FULL STATUS showed {name}")
            continue
        if guest in model and model[guest] != port:
            problems.append(f"{guest}: READ FULL STATUS shows {port}, the model {model[guest]}")
        if port not in obs.logins:
            problems.append(f"{guest}: {port} is not a session the target logged in")
    if len(set(seen.values())) < len(seen):
        problems.append(f"the guests share an initiator port: {seen}")
    return problems


def nexus_lines(verdict: Verdict) -> list[str]:
    """Each guest's I_T nexus as READ FULL STATUS showed it."""
    ports: dict[str, TransportId] = {}
    for readings in verdict.readings.values():
        for reading in readings.values():
            ports.update(reading.ports)
    return [f"nexus {guest}: {port}" for guest, port in sorted(ports.items())]
