"""A small LU under a chosen profile for the deviation cases (tests/sim/deviation_cases.py),
and the answers they compare: status or (sense key, ASC, ASCQ)."""

from __future__ import annotations

from scsi_pr.sim import cdb as C
from scsi_pr.sim import profiles as P
from scsi_pr.sim.constants import (
    PersistentReserveInAction as IN,
)
from scsi_pr.sim.constants import (
    PersistentReserveOutAction as SA,
)
from scsi_pr.sim.constants import ReservationType as T
from scsi_pr.sim.constants import SenseKey, Status
from scsi_pr.sim.device import LogicalUnit
from scsi_pr.sim.nexus import ITNexus
from scsi_pr.sim.pr_in_data import (
    parse_read_keys,
    parse_read_reservation,
)
from scsi_pr.sim.result import CommandResult

A, B, K3 = 0xA, 0xB, 0xC


class Lu:
    """An LU and its nexuses 0..2 under one profile; nexus 3 only reads the PR state back."""

    def __init__(self, profile: str | P.Profile) -> None:
        self.lu = LogicalUnit(target_ports=(1, 2, 3, 4), profile=profile)
        self.n = [ITNexus.named(f"naa.50014050000000{i + 1:02x}", i + 1) for i in range(4)]
        for n in self.n:  # as on the rig: every nexus exists and has nothing to report
            self.lu.attach(n)
            self.lu.ua.clear(n)

    def out(self, i: int, action: SA, key: int = 0, sa_key: int = 0, type_: int = 0, **kw: object):
        cdb, data = C.prout(action, key, sa_key, type_, **kw)  # type: ignore[arg-type]
        return self.lu.execute(self.n[i], cdb, data)

    def reg(self, i: int, key: int) -> None:
        assert self.out(i, SA.REGISTER, 0, key).status == Status.GOOD

    def keys(self) -> tuple[int, list[int]]:
        r = self.lu.execute(self.n[3], C.persistent_reserve_in(IN.READ_KEYS))
        got = parse_read_keys(r.data)
        return got.generation, list(got.keys)

    def reservation(self) -> tuple[int, T] | None:
        r = self.lu.execute(self.n[3], C.persistent_reserve_in(IN.READ_RESERVATION))
        res = parse_read_reservation(r.data).reservation
        return None if res is None else (res.key, T(res.type))

    def drain(self, i: int) -> list[tuple[int, int]]:
        seen = []
        while (r := self.lu.execute(self.n[i], C.test_unit_ready())).status != Status.GOOD:
            assert r.sense_data is not None
            seen.append((r.sense_data.asc, r.sense_data.ascq))
        return seen


def triple(r: CommandResult) -> tuple[int, int, int] | int:
    sense = r.sense_data
    return int(r.status) if sense is None else sense.triple


CONFLICT = int(Status.RESERVATION_CONFLICT)
GOOD = int(Status.GOOD)
NOT_READY = (SenseKey.NOT_READY, 0x08, 0x00)
INVALID_FIELD_IN_CDB = (SenseKey.ILLEGAL_REQUEST, 0x24, 0x00)
INVALID_FIELD_IN_PARAMETER_LIST = (SenseKey.ILLEGAL_REQUEST, 0x26, 0x00)
INVALID_RELEASE = (SenseKey.ILLEGAL_REQUEST, 0x26, 0x04)


def answers(text: str) -> list[tuple[int, int]]:
    """(registered, unregistered) per READ CAPACITY(10), (16), MODE SENSE, VERIFY, SYNCHRONIZE
    CACHE, START STOP UNIT, under WE then EA: G for GOOD, C for RESERVATION CONFLICT."""
    code = {"G": GOOD, "C": CONFLICT}
    return [(code[pair[0]], code[pair[1]]) for pair in text.split()]


#: deviation -> (situation, the standard's answer, LIO's measured answer)
