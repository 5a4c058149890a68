"""The model's answer at each deviation's decision point, once per profile: a small LU
(``Lu``) and one case per deviation (``CASES``: what to do, SPC-5's answer, LIO's), for
tests/sim/test_profiles.py. Kept apart from the tests as a table is from the code that reads it.
What to do where a command names another I_T nexus or port: deviation_cases_nexus.py."""

from __future__ import annotations

from collections.abc import Callable

from deviation_cases_nexus import (
    all_target_ports,
    all_tg_pt_kept,
    move,
    move_by_a_registered_non_holder,
    move_to_another_port,
    moved_back,
    registered_twice,
    spec_i_pt_generation,
    spec_i_pt_named,
    spec_i_pt_registered,
)
from profile_lu import (
    CONFLICT,
    GOOD,
    INVALID_FIELD_IN_CDB,
    INVALID_FIELD_IN_PARAMETER_LIST,
    INVALID_RELEASE,
    K3,
    NOT_READY,
    A,
    B,
    Lu,
    answers,
    triple,
)

from scsi_pr.sim import cdb as C
from scsi_pr.sim import deviations as D
from scsi_pr.sim.constants import (
    PersistentReserveInAction as IN,
)
from scsi_pr.sim.constants import (
    PersistentReserveOutAction as SA,
)
from scsi_pr.sim.constants import ReservationType as T
from scsi_pr.sim.result import NEVER


def release_wrong_type(u: Lu) -> object:
    u.reg(0, A)
    u.out(0, SA.RESERVE, A, 0, T.WRITE_EXCLUSIVE)
    return triple(u.out(0, SA.RELEASE, A, 0, T.EXCLUSIVE_ACCESS)), u.reservation()


def unregistered(u: Lu) -> object:
    u.reg(1, B)
    cdb, data = C.register_and_move(0, K3, 3, u.n[2].initiator)
    answers = [triple(u.out(0, sa, 0, 0, T.WRITE_EXCLUSIVE)) for sa in (SA.RESERVE, SA.RELEASE)]
    answers += [triple(u.out(0, SA.CLEAR)), triple(u.lu.execute(u.n[0], cdb, data))]
    answers.append(triple(u.out(0, SA.PREEMPT, 0, B, T.WRITE_EXCLUSIVE)))  # conflict on both
    u.out(1, SA.RESERVE, B, 0, T.WRITE_EXCLUSIVE)
    answers.append(triple(u.out(0, SA.RESERVE, 0, 0, T.WRITE_EXCLUSIVE)))  # reserved: conflict
    return answers


def unregister_generation(u: Lu) -> object:
    g0 = u.keys()[0]
    zero = triple(u.out(0, SA.REGISTER, 0, 0))  # unregistered, key zero: nothing to do
    u.reg(0, A)
    g1 = u.keys()[0]
    u.out(0, SA.REGISTER, A, 0)
    return zero, g1 - g0, u.keys()[0] - g1


def reserved_scope(u: Lu) -> object:
    """RESERVE, and PREEMPT of the holder (where SCOPE counts), with SCOPE 1."""
    u.reg(0, A)
    u.reg(1, B)
    reserve = u.out(0, SA.RESERVE, A, 0, T.WRITE_EXCLUSIVE, scope=1)
    u.out(1, SA.RESERVE, B, 0, T.WRITE_EXCLUSIVE)
    preempt = u.out(0, SA.PREEMPT, A, B, T.WRITE_EXCLUSIVE, scope=1)
    return triple(reserve), triple(preempt), u.reservation()


def preempt_removing_registrations(u: Lu) -> object:
    """A holds WE and preempts registrants that do not hold it: with TYPE 0, then SCOPE 1."""
    u.reg(0, A)
    u.reg(1, B)
    u.reg(2, K3)
    u.out(0, SA.RESERVE, A, 0, T.WRITE_EXCLUSIVE)
    bad_type = u.out(0, SA.PREEMPT, A, K3, 0)
    bad_scope = u.out(0, SA.PREEMPT_AND_ABORT, A, B, T.WRITE_EXCLUSIVE, scope=1)
    return triple(bad_type), triple(bad_scope), u.keys()[1], u.reservation()


def allocation_lengths(u: Lu) -> object:
    u.reg(0, A)
    return [
        triple(u.lu.execute(u.n[0], C.persistent_reserve_in(action, allocation_length=n)))
        for action, n in ((IN.READ_KEYS, 7), (IN.READ_KEYS, 0), (IN.READ_KEYS, 8),
                          (IN.REPORT_CAPABILITIES, 5), (IN.REPORT_CAPABILITIES, 6))
    ]  # fmt: skip


def full_status(u: Lu) -> object:
    u.reg(0, A)
    u.reg(1, B)
    out = []
    for n in (20, 24, 40, 72, 200):
        r = u.lu.execute(u.n[0], C.persistent_reserve_in(IN.READ_FULL_STATUS, allocation_length=n))
        out.append((len(r.data), int.from_bytes(r.data[4:8], "big")))
    return out


def ua_clears_all(u: Lu) -> object:
    """Two conditions queued for nexus 1, reported once by REQUEST SENSE and once with CHECK
    CONDITION (the two places the model pops a unit attention)."""

    def queue_two() -> None:
        u.reg(0, A)
        u.reg(1, B)
        u.out(0, SA.RESERVE, A, 0, T.WRITE_EXCLUSIVE_REGISTRANTS_ONLY)
        u.out(0, SA.RELEASE, A, 0, T.WRITE_EXCLUSIVE_REGISTRANTS_ONLY)  # RESERVATIONS RELEASED
        u.out(0, SA.CLEAR, A)  # RESERVATIONS PREEMPTED

    queue_two()
    sense = u.lu.execute(u.n[1], C.request_sense()).data
    by_request_sense = (sense[12], sense[13]), u.drain(1)
    queue_two()
    return by_request_sense, u.drain(1)


def release_skips_key_check(u: Lu) -> object:
    u.reg(0, A)
    no_reservation = triple(u.out(0, SA.RELEASE, B, 0, T.WRITE_EXCLUSIVE))
    u.reg(1, B)
    u.out(0, SA.RESERVE, A, 0, T.EXCLUSIVE_ACCESS)
    non_holder = triple(u.out(1, SA.RELEASE, K3, 0, T.EXCLUSIVE_ACCESS))
    holder = triple(u.out(0, SA.RELEASE, B, 0, T.EXCLUSIVE_ACCESS))  # conflict on both
    return no_reservation, non_holder, holder, u.reservation()


def all_registrants(u: Lu) -> None:
    for i, key in enumerate((A, B, K3)):
        u.reg(i, key)
    u.out(0, SA.RESERVE, A, 0, T.WRITE_EXCLUSIVE_ALL_REGISTRANTS)


def ar_takes_over(u: Lu) -> object:
    all_registrants(u)
    r = u.out(1, SA.PREEMPT, B, A, T.WRITE_EXCLUSIVE)
    return triple(r), u.keys()[1], u.reservation(), u.drain(0), u.drain(1), u.drain(2)


def ar_holder_passes_on(u: Lu) -> object:
    all_registrants(u)
    u.out(0, SA.REGISTER, A, 0)  # the registrant LIO files as holder leaves: b is next
    r = u.out(2, SA.PREEMPT, K3, B, T.WRITE_EXCLUSIVE)
    return triple(r), u.keys()[1], u.reservation()


def ar_preempt_by_key(u: Lu) -> object:
    """The registrant that reserved is preempted; on a fresh LU, it leaves first."""
    return ar_takes_over(u), ar_holder_passes_on(Lu(u.lu.profile))


def preempt_keeps_issuer(u: Lu) -> object:
    """Under all-registrants only: on a fresh LU with no reservation, the same PREEMPT by the
    issuer's own key removes the issuer under either profile (measured on LIO by
    ``test_preempt_by_own_key_removes_issuer``)."""
    all_registrants(u)
    g0 = u.keys()[0]
    r = u.out(1, SA.PREEMPT, B, B, T.WRITE_EXCLUSIVE_ALL_REGISTRANTS)
    g, keys = u.keys()
    fresh = Lu(u.lu.profile)
    fresh.reg(0, A)
    fresh.reg(1, B)
    unreserved = triple(fresh.out(1, SA.PREEMPT, B, B, T.WRITE_EXCLUSIVE)), fresh.keys()[1]
    return triple(r), g - g0, keys, u.reservation(), unreserved


def verify_and_mode_sense(u: Lu) -> object:
    u.reg(0, A)
    u.reg(1, B)
    verify = bytes([0x2F, 0, 0, 0, 0, 0, 0, 0, 1, 0])
    seen = []
    for type_ in (T.WRITE_EXCLUSIVE, T.EXCLUSIVE_ACCESS):
        u.out(0, SA.RESERVE, A, 0, type_)
        start = bytes([0x1B, 0, 0, 0, 1, 0])
        for cdb in (C.read_capacity_10(), C.read_capacity_16(), C.mode_sense_6(), verify,
                    C.synchronize_cache_10(), start):  # fmt: skip
            seen.append((triple(u.lu.execute(u.n[1], cdb)), triple(u.lu.execute(u.n[2], cdb))))
        u.out(0, SA.RELEASE, A, 0, type_)
    return seen


def crh(u: Lu) -> object:
    u.reg(0, A)
    u.reg(1, B)
    answers = []
    for type_ in (T.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, T.EXCLUSIVE_ACCESS_ALL_REGISTRANTS):
        u.out(0, SA.RESERVE, A, 0, type_)
        for i in (1, 0, 2):  # a registrant, the one that reserved, an unregistered nexus
            answers.append(triple(u.lu.execute(u.n[i], C.reserve_6())))
            answers.append(triple(u.lu.execute(u.n[i], C.release_6())))
        u.out(0, SA.RELEASE, A, 0, type_)
        u.drain(1)
    return answers


def preempt_and_abort(u: Lu) -> object:
    u.reg(0, A)
    u.reg(1, B)
    u.out(0, SA.RESERVE, A, 0, T.WRITE_EXCLUSIVE)
    r = u.out(1, SA.PREEMPT_AND_ABORT, B, A, T.WRITE_EXCLUSIVE)
    failed = u.out(1, SA.PREEMPT_AND_ABORT, B, 0x99, T.WRITE_EXCLUSIVE)  # a conflict answers
    return r.completes, r.stall == NEVER, u.reservation(), triple(failed), failed.completes


WE, EA = T.WRITE_EXCLUSIVE, T.EXCLUSIVE_ACCESS


def reserved_type_without_key(u: Lu) -> object:
    u.reg(0, A)
    u.reg(1, B)
    return [
        triple(u.out(0, SA.RESERVE, K3, 0, 0x2)),
        triple(u.out(0, SA.PREEMPT, K3, B, 0x2)),
        triple(u.out(2, SA.PREEMPT, 0, B, 0x2)),
        triple(u.out(0, SA.RESERVE, A, 0, 0x2)),  # with the key: 24h either way
        *held_by_another(u),
    ]


def held_by_another(u: Lu) -> list[object]:
    """Nexus 1 holds WE (LIO's non-holder check comes first), then WE-RO, then WE again, which
    it moves: the holder passes LIO's check."""
    u.out(1, SA.RESERVE, B, 0, T.WRITE_EXCLUSIVE)
    answers = [
        triple(u.out(2, SA.PREEMPT, 0, B, 0x2)),  # unregistered: conflict either way
        triple(u.out(0, SA.RESERVE, A, 0, 0x2)),  # registered non-holder RESERVE: LIO conflicts
        triple(u.out(0, SA.PREEMPT, A, B, 0x2)),  # its PREEMPT is looked at: 24h either way
        move(u, 0, A, 2, 0),  # its REGISTER AND MOVE, SARK 0: a non-holder's, conflicts
    ]
    u.out(1, SA.RELEASE, B, 0, T.WRITE_EXCLUSIVE)
    u.out(1, SA.RESERVE, B, 0, T.WRITE_EXCLUSIVE_REGISTRANTS_ONLY)
    answers.append(triple(u.out(0, SA.RESERVE, A, 0, 0x2)))  # a registrant under RO: looked at
    answers.append(triple(u.out(2, SA.RESERVE, 0, 0, 0x2)))  # unregistered under RO: conflict
    answers.append(move(u, 0, A, 2, 0))  # a registrant's move under RO: LIO 26h, SPC conflict
    u.out(1, SA.RELEASE, B, 0, T.WRITE_EXCLUSIVE_REGISTRANTS_ONLY)
    u.out(1, SA.RESERVE, B, 0, T.WRITE_EXCLUSIVE)
    answers.append(move(u, 1, B, 2, K3))  # the holder moves WE: GOOD either way
    answers.append(u.reservation())
    return answers


def field_pointer(u: Lu) -> object:
    u.reg(0, A)
    answers = [
        u.out(0, SA.RESERVE, A, 0, 0x2),
        u.lu.execute(u.n[0], bytes([0x5E, 0x1F]) + bytes(8)),
    ]
    answers.append(u.lu.execute(u.n[0], C.test_unit_ready()))  # no sense at all: untouched
    return [(triple(r), r.sense[15:18].hex()) for r in answers]


#: READ RESERVATION after one REGISTER and a WE reservation with key A (SPC-5 6.16.3)
WHOLE_RESERVATION = bytes.fromhex("0000000100000010000000000000000a0000000000010000")
UNRESERVED = bytes.fromhex("0000000100000000")  # PRGENERATION 1, ADDITIONAL LENGTH 0


def read_reservation_cut(u: Lu) -> object:
    u.reg(0, A)
    unreserved = u.lu.execute(u.n[3], C.persistent_reserve_in(IN.READ_RESERVATION, 16)).data
    u.out(0, SA.RESERVE, A, 0, T.WRITE_EXCLUSIVE)
    return [unreserved.hex()] + [
        u.lu.execute(u.n[3], C.persistent_reserve_in(IN.READ_RESERVATION, n)).data.hex()
        for n in (8, 16, 21, 22)
    ]


CASES: dict[D.Deviation, tuple[Callable[[Lu], object], object, object]] = {
    D.MOVE_FILES_TYPE_AS_SCOPE: (
        moved_back,
        ([GOOD] * 8, True, (A, T.WRITE_EXCLUSIVE_REGISTRANTS_ONLY)),
        ([GOOD] * 7 + [CONFLICT], True, (A, T.WRITE_EXCLUSIVE_REGISTRANTS_ONLY)),
    ),
    D.READ_RESERVATION_CUT: (
        read_reservation_cut,
        [UNRESERVED.hex()] + [WHOLE_RESERVATION[:n].hex() for n in (8, 16, 21, 22)],
        [
            UNRESERVED.hex(),
            WHOLE_RESERVATION[:8].hex(),
            (WHOLE_RESERVATION[:8] + bytes(8)).hex(),
            (WHOLE_RESERVATION[:8] + bytes(13)).hex(),
            WHOLE_RESERVATION[:22].hex(),
        ],
    ),
    D.TYPE_BEFORE_REGISTRATION: (
        reserved_type_without_key,
        [CONFLICT] * 3
        + [INVALID_FIELD_IN_CDB]
        + [CONFLICT, INVALID_FIELD_IN_CDB, INVALID_FIELD_IN_CDB, CONFLICT]
        + [INVALID_FIELD_IN_CDB, CONFLICT, CONFLICT, GOOD, (K3, WE)],
        [INVALID_FIELD_IN_CDB] * 4
        + [CONFLICT, CONFLICT, INVALID_FIELD_IN_CDB, CONFLICT]
        + [INVALID_FIELD_IN_CDB, CONFLICT, INVALID_FIELD_IN_PARAMETER_LIST, GOOD, (K3, WE)],
    ),
    D.NO_FIELD_POINTER: (
        field_pointer,
        [(INVALID_FIELD_IN_CDB, "cb0002"), (INVALID_FIELD_IN_CDB, "cc0001"), (GOOD, "")],
        [(INVALID_FIELD_IN_CDB, "000000"), (INVALID_FIELD_IN_CDB, "000000"), (GOOD, "")],
    ),
    D.RELEASE_WRONG_TYPE: (release_wrong_type, (INVALID_RELEASE, (A, WE)), (CONFLICT, (A, WE))),
    D.UNREGISTERED_NOT_READY: (
        unregistered,
        [CONFLICT] * 6,
        [NOT_READY] * 4 + [CONFLICT] * 2,
    ),
    D.UNREGISTER_GENERATION: (unregister_generation, (GOOD, 2, 1), (GOOD, 1, 0)),
    D.MOVE_LIST_BEFORE_HOLDER: (
        move_by_a_registered_non_holder,
        [CONFLICT] * 4 + [INVALID_FIELD_IN_CDB],
        [INVALID_FIELD_IN_PARAMETER_LIST] * 4 + [INVALID_FIELD_IN_CDB],
    ),
    D.SCOPE_IN_PARAMETER_LIST: (
        reserved_scope,
        (INVALID_FIELD_IN_CDB, INVALID_FIELD_IN_CDB, (B, WE)),
        (INVALID_FIELD_IN_PARAMETER_LIST, INVALID_FIELD_IN_PARAMETER_LIST, (B, WE)),
    ),
    D.PREEMPT_CHECKS_TYPE_AND_SCOPE: (
        preempt_removing_registrations,
        (GOOD, GOOD, [A], (A, WE)),
        (INVALID_FIELD_IN_CDB, INVALID_FIELD_IN_PARAMETER_LIST, [A, B, K3], (A, WE)),
    ),
    D.ALLOCATION_LENGTH_MINIMUM: (
        allocation_lengths,
        [GOOD] * 5,
        [INVALID_FIELD_IN_CDB, INVALID_FIELD_IN_CDB, GOOD, INVALID_FIELD_IN_CDB, GOOD],
    ),
    # two descriptors of 24 + a 24-byte SAS TransportID: 104 bytes in all
    D.FULL_STATUS_TRUNCATION: (
        full_status,
        [(20, 96), (24, 96), (40, 96), (72, 96), (104, 96)],
        [(8, 0), (24, 48), (40, 48), (72, 96), (104, 96)],
    ),
    D.UA_CLEARS_ALL: (
        ua_clears_all,
        (((0x2A, 0x04), [(0x2A, 0x03)]), [(0x2A, 0x04), (0x2A, 0x03)]),
        (((0x2A, 0x04), []), [(0x2A, 0x04)]),
    ),
    D.RELEASE_SKIPS_KEY_CHECK: (
        release_skips_key_check,
        (CONFLICT, CONFLICT, CONFLICT, (A, EA)),
        (GOOD, GOOD, CONFLICT, (A, EA)),
    ),
    D.AR_PREEMPT_TAKES_OVER: (
        ar_preempt_by_key,
        (
            (GOOD, [B, K3], (0, T.WRITE_EXCLUSIVE_ALL_REGISTRANTS), [(0x2A, 0x05)], [], []),
            (GOOD, [K3], (0, T.WRITE_EXCLUSIVE_ALL_REGISTRANTS)),
        ),
        (
            (GOOD, [B, K3], (B, WE), [(0x2A, 0x05)], [], [(0x2A, 0x04)]),
            (GOOD, [K3], (K3, WE)),
        ),
    ),
    D.PREEMPT_KEEPS_ISSUER: (
        preempt_keeps_issuer,
        (GOOD, 1, [A, K3], (0, T.WRITE_EXCLUSIVE_ALL_REGISTRANTS), (GOOD, [A])),
        (GOOD, 1, [A, B, K3], (0, T.WRITE_EXCLUSIVE_ALL_REGISTRANTS), (GOOD, [A])),
    ),
    D.READ_CAPACITY_16_CONFLICT: (
        verify_and_mode_sense,
        answers("GG GG GG GG CC GG  GG GG CC CC CC GG"),
        answers("GG GG GG CG CG CG  CC CC GC CC CC CC"),
    ),
    D.CRH_HOLDER_ONLY: (
        crh,
        [GOOD, GOOD, GOOD, GOOD, CONFLICT, CONFLICT] * 2,
        [CONFLICT, CONFLICT, GOOD, GOOD, CONFLICT, CONFLICT] * 2,
    ),
    D.ALL_TG_PT_ISSUING_PORT_ONLY: (
        all_target_ports,
        (GOOD, (1, [A] * 4), [(A, True, port) for port in (1, 2, 3, 4)]),
        (GOOD, (1, [A]), [(A, True, 0)]),
    ),
    D.ALL_TG_PT_KEPT: (
        all_tg_pt_kept,
        [CONFLICT, INVALID_FIELD_IN_PARAMETER_LIST, GOOD, GOOD, [A] * 3, GOOD, [A] * 3],
        [CONFLICT, INVALID_FIELD_IN_PARAMETER_LIST, *[INVALID_FIELD_IN_CDB] * 2, [A], GOOD, []],
    ),
    D.SPEC_I_PT_WHERE_KNOWN: (
        spec_i_pt_named,
        (GOOD, [(K3, 3), (K3, 3)], GOOD, [K3, K3, A, A]),
        (GOOD, [(K3, 3), (K3, 2)], INVALID_FIELD_IN_PARAMETER_LIST, [K3, K3]),
    ),
    D.MOVE_NEEDS_NEXUS: (
        move_to_another_port,
        (GOOD, (K3, WE)),
        (INVALID_FIELD_IN_PARAMETER_LIST, (A, WE)),
    ),
    D.SPEC_I_PT_SKIPS_REGISTERED: (
        spec_i_pt_registered,
        (INVALID_FIELD_IN_PARAMETER_LIST, (1, [A])),
        (GOOD, (2, [A, K3])),
    ),
    D.GENERATION_PER_REGISTRATION: (spec_i_pt_generation, (1, [K3, K3]), (2, [K3, K3])),
    D.SPEC_I_PT_REGISTERS_TWICE: (
        registered_twice,
        ((1, [K3]), (2, [A]), (3, [])),
        ((2, [K3, K3]), (3, [A, K3]), (3, [K3])),
    ),
    D.PREEMPT_AND_ABORT_STALLS: (
        preempt_and_abort,
        (True, False, (B, WE), CONFLICT, True),
        (False, True, (B, WE), CONFLICT, True),
    ),
}
# MODE SENSE and the no-data commands are answered in the READ CAPACITY case above.
COVERED_TOGETHER = {D.MODE_SENSE_ALLOWED, D.NO_DATA_BY_DIRECTION, D.READ_CAPACITY_10_CONFLICT}
