"""Small helpers for the conformance suite: send PR commands through an initiator, decode the
PR IN answers, and compare results the way every backend can be compared (status and sense
key/ASC/ASCQ; LIO sends no field pointer, so the sense-key specific bytes are not compared)."""

from __future__ import annotations

from typing import Any

from scsi_pr.helper.executors.limits import (
    IOCTL_NO_REGISTER_AND_MOVE,
    MPATH_ILLEGAL_REQUEST_GUESSED,
    MPATH_UNIT_ATTENTION_OF_EVERY_PATH,
    PathLimit,
)
from scsi_pr.rig import backends
from scsi_pr.sim import cdb as C
from scsi_pr.sim import pr_in_data
from scsi_pr.sim.constants import (
    INVALID_FIELD_IN_CDB,
    AdditionalSense,
    PersistentReserveInAction,
    PersistentReserveOutAction,
    ReservationType,
    SenseKey,
    Status,
)
from scsi_pr.sim.result import CommandResult

SA = PersistentReserveOutAction
IN = PersistentReserveInAction

__all__ = [
    "IN",
    "SA",
    "drain",
    "expect_check",
    "expect_conflict",
    "expect_good",
    "expect_invalid_field_in_cdb",
    "expect_ua",
    "first_path_is_own",
    "full_status",
    "io_path_holds",
    "io_path_told",
    "move",
    "mpath_release_outcomes",
    "nexus_paths",
    "path_refuses_moves",
    "paths",
    "prout",
    "read_keys",
    "read_reservation",
    "register",
    "reserve",
]


def drain(it: Any) -> list[tuple[int, int]]:
    """TEST UNIT READY until GOOD; return the unit attentions (ASC, ASCQ) reported on the way
    (the rig's own drain, a failure of the device under test raised as an assertion)."""
    return backends.drain(it, AssertionError)


def expect_good(r: CommandResult) -> CommandResult:
    assert r.status == Status.GOOD, f"expected GOOD, got {r}"
    return r


def expect_conflict(r: CommandResult) -> None:
    # Status only: a data-in buffer's contents after RESERVATION CONFLICT depend on the backend.
    assert r.status == Status.RESERVATION_CONFLICT, f"expected RESERVATION CONFLICT, got {r}"


def expect_check(r: CommandResult, key: SenseKey, code: AdditionalSense) -> None:
    assert r.status == Status.CHECK_CONDITION, f"expected CHECK CONDITION {code.name}, got {r}"
    sense = r.sense_data
    assert sense is not None, f"unparseable sense {r.sense.hex()}"
    assert sense.triple == (key, code.asc, code.ascq), f"expected {key.name}/{code.name}, got {r}"


def expect_refused(r: CommandResult, limit: PathLimit) -> None:
    """The helper's own answer for what its way to the device cannot carry."""
    assert r.status == Status.CHECK_CONDITION, f"expected CHECK CONDITION ({limit.name}), got {r}"
    sense = r.sense_data
    assert sense is not None, f"unparseable sense {r.sense.hex()}"
    want = (limit.refusal.key, limit.refusal.asc, limit.refusal.ascq)
    assert sense.triple == want, f"expected {limit.name}'s answer, got {r}"


def expect_invalid_field_in_cdb(r: CommandResult, path_limits: frozenset[str]) -> None:
    """05/24/00; through libmpathpersist, the C helper's guess at the lost code."""
    if MPATH_ILLEGAL_REQUEST_GUESSED.name in path_limits:
        expect_refused(r, MPATH_ILLEGAL_REQUEST_GUESSED)
    else:
        expect_check(r, SenseKey.ILLEGAL_REQUEST, INVALID_FIELD_IN_CDB)


def move(it: Any, key: int, sa_key: int, dest: Any, unreg: bool = False) -> CommandResult:
    """REGISTER AND MOVE to ``dest``'s TransportID through its RELATIVE TARGET PORT IDENTIFIER
    (``dest``: an initiator, or anything with those two attributes)."""
    cdb, data = C.register_and_move(
        key, sa_key, dest.relative_target_port, dest.transport_id, unreg=unreg
    )
    return it.execute(cdb, data)


def path_refuses_moves(r: CommandResult, path_limits: frozenset[str]) -> bool:
    """On a path without REGISTER AND MOVE, assert the helper's refusal of ``r`` (the test then
    ends: nothing moved)."""
    if IOCTL_NO_REGISTER_AND_MOVE.name not in path_limits:
        return False
    expect_refused(r, IOCTL_NO_REGISTER_AND_MOVE)
    return True


def expect_ua(r: CommandResult, code: AdditionalSense) -> None:
    expect_check(r, SenseKey.UNIT_ATTENTION, code)


def prout(
    it: Any,
    action: SA,
    key: int = 0,
    sa_key: int = 0,
    type_: ReservationType | int = 0,
    **kwargs: Any,
) -> CommandResult:
    cdb, data = C.prout(action, key, sa_key, type_, **kwargs)
    return it.execute(cdb, data)


def register(it: Any, key: int, **kwargs: Any) -> None:
    """Register ``key`` for an unregistered I_T nexus (RESERVATION KEY 0)."""
    expect_good(prout(it, SA.REGISTER, 0, key, **kwargs))


def reserve(it: Any, key: int, type_: ReservationType) -> None:
    expect_good(prout(it, SA.RESERVE, key, 0, type_))


def read_keys(it: Any) -> tuple[int, list[int]]:
    """(PRGENERATION, keys) as READ KEYS reports them."""
    r = expect_good(it.execute(C.persistent_reserve_in(IN.READ_KEYS)))
    got = pr_in_data.parse_read_keys(r.data)
    return got.generation, list(got.keys)


def read_reservation(it: Any) -> tuple[int, tuple[int, ReservationType] | None]:
    """(PRGENERATION, (key, type) or None) as READ RESERVATION reports them."""
    r = expect_good(it.execute(C.persistent_reserve_in(IN.READ_RESERVATION)))
    got = pr_in_data.parse_read_reservation(r.data)
    res = got.reservation
    return got.generation, None if res is None else (res.key, res.type)


def full_status(it: Any) -> pr_in_data.ReadFullStatusData:
    r = expect_good(it.execute(C.persistent_reserve_in(IN.READ_FULL_STATUS)))
    return pr_in_data.parse_read_full_status(r.data)


def nexus_paths(it: Any) -> tuple[tuple[Any, int], ...]:
    """The I_T nexuses (TransportID, RELATIVE TARGET PORT IDENTIFIER) ``it`` registers through:
    a multipath host's one per path (``mpath-one-registration-per-path``), else its own."""
    return getattr(it, "paths", ()) or ((it.transport_id, it.relative_target_port),)


def paths(it: Any) -> int:
    """How many registrations one REGISTER by ``it`` makes (1 but on a multipath host)."""
    return len(nexus_paths(it))


def first_path_is_own(it: Any) -> bool:
    """Whether ``it``'s first path in table order (which libmpathpersist sends RESERVE,
    CLEAR and PREEMPT by, and the helper's REGISTER AND MOVE tries first) is the I_T nexus its
    TransportID names and its other commands take: always, but on a multipath host."""
    return nexus_paths(it)[0] == (it.transport_id, it.relative_target_port)


def io_path_told(it: Any, path_limits: frozenset[str]) -> bool:
    """Whether a unit attention that ``it``'s own PR OUT raises for the other registrants
    reaches ``it``'s I/O path too: on a multipath host whose I/O path is not the first path,
    which libmpathpersist sends the command by (``mpath-unit-attention-of-every-path``)."""
    return MPATH_UNIT_ATTENTION_OF_EVERY_PATH.name in path_limits and not first_path_is_own(it)


def mpath_release_outcomes() -> tuple[list[tuple[int, int]], ...]:
    """What a multipath host's I/O path may report after its library released the reservation
    by another path (``mpath-unit-attention-of-every-path``): nothing, or one RESERVATIONS
    RELEASED. libmpathpersist sends RELEASE down every path at once, a thread each; when the
    LU runs the I/O path's RELEASE after the holder's, that command takes the unit attention
    (the library retries it), else the unit attention stays. Both were measured (VM tiers of
    f0b6b15 and 6f73d08); nothing else may be reported."""
    return ([], [(0x2A, 0x04)])


def io_path_holds(it: Any, reader: Any) -> bool:
    """Whether the I_T nexus ``it``'s non-PR commands take (its first path) holds the
    reservation, as READ FULL STATUS through ``reader`` says (``mpath-io-by-one-path``).

    Under an all-registrants type READ FULL STATUS marks every registrant a holder, and the one
    LIO files as holder (all its ``crh-holder-only`` exemption looks at) is the path that took
    the reservation: the first in table order (``first_path_is_own``). Measured: a VM tier in
    which multipathd's table listed the other path first failed here when R_HOLDER decided."""
    tid = it.transport_id.encode()
    holders = [d for d in full_status(reader).descriptors if d.r_holder]
    if holders and holders[0].type is not None and holders[0].type.all_registrants:
        return first_path_is_own(it)
    return any(
        d.transport_id == tid and d.relative_target_port == it.relative_target_port for d in holders
    )
