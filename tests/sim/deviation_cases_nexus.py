"""The deviation cases where a command names another I_T nexus or target port (MOVE, SPEC_I_PT)."""

from __future__ import annotations

from profile_lu import K3, A, B, Lu, triple

from scsi_pr.sim import cdb as C
from scsi_pr.sim.constants import PersistentReserveInAction as IN
from scsi_pr.sim.constants import PersistentReserveOutAction as SA
from scsi_pr.sim.constants import ReservationType as T
from scsi_pr.sim.nexus import ITNexus
from scsi_pr.sim.pr_in_data import parse_read_full_status
from scsi_pr.sim.state import PersistentReservations
from scsi_pr.sim.transportid import TransportId


def move_by_a_registered_non_holder(u: Lu) -> object:
    """Nexus 2 holds WE-RO, then WE-AR; registered nexus 0 moves with SARK 0, then to itself."""
    u.reg(0, A)
    u.reg(2, K3)
    answers = []
    for type_ in (T.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, T.WRITE_EXCLUSIVE_ALL_REGISTRANTS):
        u.out(2, SA.RESERVE, K3, 0, type_)
        answers += [move(u, 0, A, 1, 0), move(u, 0, A, 0, B)]
        u.out(2, SA.RELEASE, K3, 0, type_)
        u.drain(0)
    cdb, data = C.register_and_move(A, B, 2, u.n[1].initiator)
    answers.append(triple(u.lu.execute(u.n[0], cdb, data)))  # no reservation to move
    return answers


def move(u: Lu, i: int, key: int, dest: int, sa_key: int) -> object:
    cdb, data = C.register_and_move(key, sa_key, dest + 1, u.n[dest].initiator)
    return triple(u.lu.execute(u.n[i], cdb, data))


def moved_back(u: Lu) -> object:
    """Nexus 0 moves WE-RO to 1 (UNREG=0): its own RESERVE, after 1 released, ends LIO's stale
    scope; moved to 1 and back again, 0's RESERVE of the same type is where LIO conflicts."""
    u.reg(0, A)
    u.out(0, SA.RESERVE, A, 0, T.WRITE_EXCLUSIVE_REGISTRANTS_ONLY)
    answers = [move(u, 0, A, 1, B)]
    snapshot = PersistentReservations.from_dict(u.lu.pr.to_dict()) == u.lu.pr
    for i, key, action in ((1, B, SA.RELEASE), (0, A, SA.RESERVE), (0, A, SA.RELEASE),
                           (0, A, SA.RESERVE)):  # fmt: skip
        answers.append(triple(u.out(i, action, key, 0, T.WRITE_EXCLUSIVE_REGISTRANTS_ONLY)))
        u.drain(0)  # the RESERVATIONS RELEASED of a RELEASE
        u.drain(1)
    answers += [move(u, 0, A, 1, B), move(u, 1, B, 0, A)]
    answers.append(triple(u.out(0, SA.RESERVE, A, 0, T.WRITE_EXCLUSIVE_REGISTRANTS_ONLY)))
    return answers, snapshot, u.reservation()


def all_target_ports(u: Lu) -> object:
    """Nexus 0 registers with ALL_TG_PT: whose registrations READ FULL STATUS lists."""
    answer = triple(u.out(0, SA.REGISTER, 0, A, all_tg_pt=True))
    r = u.lu.execute(u.n[3], C.persistent_reserve_in(IN.READ_FULL_STATUS))
    listed = [
        (d.key, d.all_tg_pt, d.relative_target_port)
        for d in parse_read_full_status(r.data).descriptors
    ]
    return answer, u.keys(), listed


def all_tg_pt_kept(u: Lu) -> object:
    """Nexus 0, registered with ALL_TG_PT: a wrong key, SPEC_I_PT, then a new key and an
    unregister without the bit, the unregister with it."""
    u.out(0, SA.REGISTER, 0, A, all_tg_pt=True)
    riek = SA.REGISTER_AND_IGNORE_EXISTING_KEY
    return [
        triple(u.out(0, SA.REGISTER, B, K3)),
        triple(u.out(0, SA.REGISTER, A, K3, spec_i_pt=True, transport_ids=[u.n[1].initiator])),
        triple(u.out(0, riek, 0, B)),
        triple(u.out(0, riek, 0, 0)),
        u.keys()[1],
        triple(u.out(0, riek, 0, 0, all_tg_pt=True)),
        u.keys()[1],
    ]


def spec_i_pt_named(u: Lu) -> object:
    """Nexus 2 (target port 3) registers naming nexus 1's initiator (port 2), then nexus 0
    names an initiator that has no I_T nexus at all."""
    first = triple(u.out(2, SA.REGISTER, 0, K3, spec_i_pt=True, transport_ids=[u.n[1].initiator]))
    r = u.lu.execute(u.n[3], C.persistent_reserve_in(IN.READ_FULL_STATUS))
    listed = [(d.key, d.relative_target_port) for d in parse_read_full_status(r.data).descriptors]
    nobody = TransportId.sas(0x50014050000000FF)
    second = triple(u.out(0, SA.REGISTER, 0, A, spec_i_pt=True, transport_ids=[nobody]))
    return first, listed, second, u.keys()[1]


def move_to_another_port(u: Lu) -> object:
    """Nexus 0 moves its reservation to nexus 2's initiator on nexus 1's target port."""
    u.reg(0, A)
    u.out(0, SA.RESERVE, A, 0, T.WRITE_EXCLUSIVE)
    cdb, data = C.register_and_move(A, K3, 2, u.n[2].initiator)
    return triple(u.lu.execute(u.n[0], cdb, data)), u.reservation()


def spec_i_pt_registered(u: Lu) -> object:
    """Nexus 0 (port 1) registers; another initiator on port 1 names it with SPEC_I_PT."""
    u.reg(0, A)
    other = ITNexus.named("naa.50014050000000aa", 1)
    cdb, data = C.prout(SA.REGISTER, 0, K3, spec_i_pt=True, transport_ids=[u.n[0].initiator])
    return triple(u.lu.execute(other, cdb, data)), u.keys()


def spec_i_pt_generation(u: Lu) -> object:
    """Nexus 2 registers itself and, with SPEC_I_PT, nexus 1's initiator."""
    u.out(2, SA.REGISTER, 0, K3, spec_i_pt=True, transport_ids=[u.n[1].initiator])
    return u.keys()


def registered_twice(u: Lu) -> object:
    """Nexus 2 registers naming itself with SPEC_I_PT, changes its key, then unregisters."""
    u.out(2, SA.REGISTER, 0, K3, spec_i_pt=True, transport_ids=[u.n[2].initiator])
    named = u.keys()
    u.out(2, SA.REGISTER, K3, A)
    changed = u.keys()
    u.out(2, SA.REGISTER, A, 0)
    return named, changed, u.keys()
