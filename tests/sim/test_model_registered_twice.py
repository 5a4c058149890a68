"""LIO's second registration of one I_T nexus (``spec-i-pt-registers-twice``), in the model.

The sequences are the ones measured on tcm_loop (6.1, 2026-12-05; ``.dbg``-style probe in the
VM, then ``test_conf_ports.py`` on both kernels): each assertion is the answer LIO gave. The
lockstep differential then compares random sequences with such registrations against LIO.
"""

from __future__ import annotations

import copy
import pickle

import pytest
from modeltest import out

from scsi_pr.sim import cdb
from scsi_pr.sim.constants import PersistentReserveInAction as IN
from scsi_pr.sim.constants import PersistentReserveOutAction as SA
from scsi_pr.sim.constants import ReservationType, Status
from scsi_pr.sim.device import LogicalUnit
from scsi_pr.sim.nexus import ITNexus
from scsi_pr.sim.pr_in_data import parse_read_full_status, parse_read_keys, parse_read_reservation
from scsi_pr.sim.state import PersistentReservations, Registration, Registrations

T = ReservationType
GOOD, CONFLICT = Status.GOOD, Status.RESERVATION_CONFLICT
A1, B2, C3, C4, C5 = 0xA1, 0xB2, 0xC3, 0xC4, 0xC5


@pytest.fixture
def lu() -> LogicalUnit:
    """Three initiators, each through its own target port, as on the rig."""
    lu = LogicalUnit(target_ports=(1, 2, 3), profile="lio-6.1")
    for n in [*NEXUSES, READER]:
        lu.attach(n)
        lu.ua.clear(n)
    return lu


NEXUSES = [ITNexus.named(f"naa.500140500000000{i}", i) for i in (1, 2, 3)]
A, B, C = NEXUSES
READER = ITNexus.named("naa.50014050000000ff", 1)  # never registered: no unit attentions


def keys(lu: LogicalUnit) -> tuple[int, list[int]]:
    got = parse_read_keys(lu.execute(READER, cdb.persistent_reserve_in(IN.READ_KEYS)).data)
    return got.generation, list(got.keys)


def reservation(lu: LogicalUnit) -> tuple[int, T] | None:
    data = lu.execute(READER, cdb.persistent_reserve_in(IN.READ_RESERVATION)).data
    res = parse_read_reservation(data).reservation
    return None if res is None else (res.key, T(res.type))


def holders(lu: LogicalUnit) -> list[tuple[int, int, bool]]:
    data = lu.execute(READER, cdb.persistent_reserve_in(IN.READ_FULL_STATUS, 2048)).data
    return [
        (d.key, d.relative_target_port, d.r_holder)
        for d in parse_read_full_status(data).descriptors
    ]


def twice(lu: LogicalUnit, issuer: ITNexus, *named: ITNexus) -> None:
    r = out(
        lu, issuer, SA.REGISTER, 0, C3, spec_i_pt=True, transport_ids=[n.initiator for n in named]
    )
    assert r.status == GOOD, r


def test_the_issuer_named_is_registered_twice_and_the_first_answers(lu: LogicalUnit) -> None:
    twice(lu, C, C)
    assert keys(lu) == (2, [C3, C3])
    assert holders(lu) == [(C3, 3, False), (C3, 3, False)]
    assert out(lu, C, SA.REGISTER, C3, C4).status == GOOD
    assert keys(lu) == (3, [C4, C3])
    assert out(lu, C, SA.REGISTER_AND_IGNORE_EXISTING_KEY, 0, C5).status == GOOD
    assert keys(lu) == (4, [C5, C3])
    assert out(lu, C, SA.REGISTER, C5, 0).status == GOOD  # the first goes
    assert keys(lu) == (4, [C3])
    assert out(lu, C, SA.RESERVE, C3, 0, T.WRITE_EXCLUSIVE).status == GOOD  # the second answers
    assert reservation(lu) == (C3, T.WRITE_EXCLUSIVE)
    assert out(lu, C, SA.RESERVE, C4, 0, T.WRITE_EXCLUSIVE).status == CONFLICT
    assert out(lu, C, SA.REGISTER_AND_IGNORE_EXISTING_KEY, 0, 0).status == GOOD
    assert (keys(lu), reservation(lu)) == ((4, []), None)


def test_another_port_named_twice_loses_its_reservation_with_its_first(lu: LogicalUnit) -> None:
    twice(lu, C, B, B)
    assert keys(lu) == (3, [C3, C3, C3])
    assert holders(lu) == [(C3, 3, False), (C3, 2, False), (C3, 2, False)]
    assert out(lu, B, SA.RESERVE, C3, 0, T.EXCLUSIVE_ACCESS).status == GOOD
    assert holders(lu) == [(C3, 3, False), (C3, 2, True), (C3, 2, False)]
    assert out(lu, B, SA.REGISTER, C3, 0).status == GOOD
    assert (keys(lu), reservation(lu)) == ((3, [C3, C3]), None)
    assert out(lu, B, SA.REGISTER, C3, 0).status == GOOD
    assert keys(lu) == (3, [C3])


def test_all_registrants_hold_with_every_registration(lu: LogicalUnit) -> None:
    twice(lu, C, C)
    assert out(lu, C, SA.RESERVE, C3, 0, T.WRITE_EXCLUSIVE_ALL_REGISTRANTS).status == GOOD
    assert holders(lu) == [(C3, 3, True), (C3, 3, True)]


@pytest.mark.parametrize("action", [SA.PREEMPT, SA.CLEAR])
def test_preempt_and_clear_remove_every_registration(lu: LogicalUnit, action: SA) -> None:
    twice(lu, C, C)
    assert out(lu, A, SA.REGISTER, 0, A1).status == GOOD
    if action == SA.PREEMPT:
        assert out(lu, A, SA.PREEMPT, A1, C3, T.WRITE_EXCLUSIVE).status == GOOD
        assert keys(lu) == (4, [A1])
    else:
        assert out(lu, C, SA.CLEAR, C3).status == GOOD
        assert keys(lu) == (4, [])


def test_the_standard_registers_an_i_t_nexus_once() -> None:
    lu = LogicalUnit(target_ports=(1, 2, 3))
    twice(lu, C, C, B, B)
    assert keys(lu)[1] == [C3, C3]  # C itself and B (with C's target port) once each


# -- the container ------------------------------------------------------------------------------
def test_a_second_registration_keeps_its_place_when_it_becomes_the_first() -> None:
    regs = Registrations()
    for nexus, key in ((C, 1), (B, 2), (C, 3), (A, 4)):
        regs.add(Registration(nexus, key))
    assert [r.key for r in regs.entries()] == [1, 2, 3, 4] and regs.count == 4 and len(regs) == 3
    del regs[C]
    assert [r.key for r in regs.entries()] == [2, 3, 4]
    assert list(regs) == [B, C, A], "the dict follows registration order"
    regs[B] = Registration(B, 5)  # a registered I_T nexus keeps its place
    assert [r.key for r in regs.entries()] == [5, 3, 4]
    regs.add(Registration(A, 6))  # with a second registration listed among them too
    regs[C] = Registration(C, 7)
    assert [r.key for r in regs.entries()] == [5, 7, 4, 6]
    assert Registrations() == {} and regs != {}, "compared with a plain dict, as a dict"


def test_deleting_a_registration_without_a_second_leaves_the_others_seconds() -> None:
    regs = Registrations()
    for nexus, key in ((C, 1), (B, 2), (C, 3)):
        regs.add(Registration(nexus, key))
    del regs[B]
    assert [(r.nexus, r.key) for r in regs.entries()] == [(C, 1), (C, 3)]


def test_removing_one_registration_leaves_its_twin() -> None:
    regs = Registrations()
    first, second = Registration(C, 7), Registration(C, 7)
    regs.add(first)
    regs.add(second)
    regs.remove(second)
    assert regs.entries() == [first] and regs[C] is first and regs.seconds == []
    regs.add(second)
    regs.remove(first)
    assert regs[C] is second and regs.count == 1


def test_snapshots_keep_second_registrations_in_order() -> None:
    pr = PersistentReservations()
    for nexus, key in ((C, 1), (B, 2), (C, 3)):
        pr.registrations.add(Registration(nexus, key))
    back = PersistentReservations.from_dict(pr.to_dict())
    assert [(r.nexus, r.key) for r in back.registrations.entries()] == [(C, 1), (B, 2), (C, 3)]
    assert back == pr
    other = PersistentReservations.from_dict(pr.to_dict())
    other.registrations.remove(other.registrations.seconds[0])
    assert other != pr, "equality sees second registrations"


def test_copies_keep_second_registrations_in_order() -> None:
    regs = Registrations()
    for nexus, key in ((C, 1), (B, 2), (C, 3), (A, 4)):
        regs.add(Registration(nexus, key))
    for dup in (copy.deepcopy(regs), pickle.loads(pickle.dumps(regs))):
        assert [(r.nexus, r.key) for r in dup.entries()] == [(C, 1), (B, 2), (C, 3), (A, 4)]
        assert dup == regs and dup.entries()[0] is not regs.entries()[0]
