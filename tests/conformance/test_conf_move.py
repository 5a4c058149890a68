"""REGISTER AND MOVE on every backend (SPC-5 5.14.8). What every test checks:
``prout_common``."""

from __future__ import annotations

import pytest
from prout_common import (
    C3,
    EA,
    EA_AR,
    ILLEGAL,
    LIBRARY_RELEASE,
    MOVE_FROM_HOLDER,
    MOVES,
    PER_PATH,
    UNREGISTERED_NOT_READY,
    WE,
    WE_AR,
    WE_RO,
    A,
    B,
    T,
    expect_unregistered,
    ids,
)
from prtest import (
    SA,
    drain,
    expect_check,
    expect_conflict,
    expect_good,
    first_path_is_own,
    full_status,
    move,
    path_refuses_moves,
    paths,
    prout,
    read_keys,
    read_reservation,
    register,
    reserve,
)

from scsi_pr.helper.executors import limits as L
from scsi_pr.sim import deviations as D
from scsi_pr.sim.constants import (
    INVALID_FIELD_IN_CDB,
    INVALID_FIELD_IN_PARAMETER_LIST,
    LU_SCOPE,
)
from scsi_pr.sim.pr_in_data import FullStatusDescriptor
from scsi_pr.sim.profiles import Profile


# -- REGISTER AND MOVE -----------------------------------------------------------------------
@MOVES
@PER_PATH
@pytest.mark.parametrize("unreg", [False, True], ids=["keep", "unreg"])
def test_register_and_move(nexuses: list, unreg: bool, path_limits: frozenset[str]) -> None:
    a, b, c = nexuses
    register(a, A)
    reserve(a, A, EA)
    gen, _ = read_keys(a)
    r = move(a, A, B, b, unreg=unreg)
    if path_refuses_moves(r, path_limits):
        return
    expect_good(r)  # type: ignore[arg-type]
    kept = [A] * (paths(a) - 1 if unreg else paths(a))  # UNREG: the holding path's goes
    generation, keys = read_keys(c)
    assert (generation, sorted(keys)) == (gen + 1, [*kept, B])
    assert read_reservation(c)[1] == (B, EA)
    holder = [d for d in full_status(c).descriptors if d.r_holder]
    port, tid = b.relative_target_port, b.transport_id.encode()
    assert holder == [FullStatusDescriptor(B, False, True, LU_SCOPE, EA, port, tid)]
    assert drain(a) == [] and drain(b) == [], "REGISTER AND MOVE establishes no UA"


@MOVES
def test_register_and_move_by_non_holder_conflicts(
    nexuses: list, path_limits: frozenset[str]
) -> None:
    a, b, c = nexuses
    register(a, A)
    register(b, B)
    reserve(a, A, WE)
    r = move(b, B, C3, c)
    if not path_refuses_moves(r, path_limits):
        expect_conflict(r)  # type: ignore[arg-type]


@MOVES
@pytest.mark.parametrize("type_", [WE_AR, EA_AR], ids=ids)
def test_register_and_move_all_registrants_conflicts(
    nexuses: list, type_: T, path_limits: frozenset[str]
) -> None:
    a, b, _ = nexuses
    register(a, A)
    reserve(a, A, type_)
    r = move(a, A, B, b)
    if not path_refuses_moves(r, path_limits):
        expect_conflict(r)  # type: ignore[arg-type]


@MOVES
@PER_PATH
def test_register_and_move_without_reservation_is_an_invalid_field(
    nexuses: list, path_limits: frozenset[str]
) -> None:
    """SPC-5 5.14.8: with no reservation to move, INVALID FIELD IN CDB (LIO alike)."""
    a, b, _ = nexuses
    register(a, A)
    r = move(a, A, B, b)
    if not path_refuses_moves(r, path_limits):
        expect_check(r, ILLEGAL, INVALID_FIELD_IN_CDB)  # type: ignore[arg-type]
    assert read_keys(a)[1] == [A] * paths(a)


@UNREGISTERED_NOT_READY
@MOVES
def test_unregistered_register_and_move_conflicts(
    nexuses: list, device_profile: Profile, path_limits: frozenset[str]
) -> None:
    a, b, c = nexuses
    register(b, B)
    r = move(a, 0, C3, c)
    if not path_refuses_moves(r, path_limits):
        expect_unregistered(r, device_profile)  # type: ignore[arg-type]
    assert read_keys(b)[1] == [B]


@pytest.mark.lio_deviation(D.TYPE_BEFORE_REGISTRATION.name)
@pytest.mark.parametrize("held_by", ["nobody", "another-WE", "another-WE-RO"])
@pytest.mark.parametrize("to_self", [False, True], ids=["zero-sa-key", "to-itself"])
@MOVES
@PER_PATH
@MOVE_FROM_HOLDER
@pytest.mark.lio_deviation(D.MOVE_LIST_BEFORE_HOLDER.name)
def test_the_move_parameter_list_is_checked_before_the_reservation(
    nexuses: list,
    to_self: bool,
    held_by: str,
    device_profile: Profile,
    path_limits: frozenset[str],
) -> None:
    """With no reservation to move, a bad parameter list answers INVALID FIELD IN PARAMETER
    LIST (SPC-5 orders neither check; LIO's order). While another I_T nexus holds the
    reservation, the issuer is a registered non-holder, whose parameter list SPC-5 ignores:
    RESERVATION CONFLICT; LIO checks the list first, after its own check of a non-holder
    (which conflicts while the reservation is not registrants-only)."""
    a, b, c = nexuses
    register(a, A)
    if held_by != "nobody":
        register(c, C3)
        reserve(c, C3, WE_RO if held_by == "another-WE-RO" else WE)
    r = move(a, A, B, a) if to_self else move(a, A, 0, b)
    if path_refuses_moves(r, path_limits):
        pass
    elif held_by != "nobody" and (
        D.MOVE_LIST_BEFORE_HOLDER not in device_profile  # SPC-5: the list is ignored
        or (held_by == "another-WE" and D.TYPE_BEFORE_REGISTRATION in device_profile)
    ):
        expect_conflict(r)
    elif to_self and held_by == "nobody" and not first_path_is_own(a):
        # sent by a path the TransportID does not name: a move to another I_T nexus, with
        # no reservation to move
        expect_check(r, ILLEGAL, INVALID_FIELD_IN_CDB)
    else:
        expect_check(r, ILLEGAL, INVALID_FIELD_IN_PARAMETER_LIST)
    assert sorted(read_keys(a)[1]) == [A] * paths(a) + ([] if held_by == "nobody" else [C3])


@MOVES
@MOVE_FROM_HOLDER
@pytest.mark.parametrize("to_self", [False, True], ids=["zero-sa-key", "to-itself"])
def test_register_and_move_invalid_parameters(
    nexuses: list, to_self: bool, path_limits: frozenset[str]
) -> None:
    a, b, _ = nexuses
    register(a, A)
    reserve(a, A, WE)
    r = move(a, A, B, a) if to_self else move(a, A, 0, b)
    if to_self and not first_path_is_own(a) and not path_refuses_moves(r, path_limits):
        # the holding path moves it to the path the TransportID names, a registered I_T nexus
        # whose key becomes the SERVICE ACTION RESERVATION KEY (SPC-5 5.14.8): B holds WE
        expect_good(r)  # type: ignore[arg-type]
        assert read_reservation(a)[1] == (B, WE)
        return
    if not path_refuses_moves(r, path_limits):
        expect_check(r, ILLEGAL, INVALID_FIELD_IN_PARAMETER_LIST)  # type: ignore[arg-type]
    assert read_reservation(a)[1] == (A, WE)


@pytest.mark.lio_deviation(D.MOVE_FILES_TYPE_AS_SCOPE.name)
@MOVES
@MOVE_FROM_HOLDER
@LIBRARY_RELEASE
@pytest.mark.parametrize("action", [SA.RESERVE, SA.RELEASE, SA.PREEMPT], ids=lambda a: a.name)
def test_a_reservation_moved_back_to_its_issuer(
    nexuses: list, device_profile: Profile, action: SA, path_limits: frozenset[str]
) -> None:
    """A moves its reservation to B and keeps its registration (UNREG=0); B moves it back. SPC:
    A holds the same reservation as before. LIO filed the TYPE as A's own scope on the first
    move, so A's RESERVE and RELEASE conflict and a PREEMPT of A is a change of scope. A
    multipath host's first move leaves by the holding path and the reservation comes back to
    the path its TransportID names: another registration, whose scope LIO left alone."""
    a, b, c = nexuses
    register(a, A)
    register(c, C3)
    reserve(a, A, WE_RO)
    r = move(a, A, B, b)
    if path_refuses_moves(r, path_limits):
        return
    expect_good(r)  # type: ignore[arg-type]
    expect_good(move(b, B, A, a))
    assert read_reservation(c)[1] == (A, WE_RO)
    other_path = not first_path_is_own(a)  # the first move came from another of A's paths
    lio = D.MOVE_FILES_TYPE_AS_SCOPE in device_profile and not other_path
    if action == SA.RESERVE:
        r = prout(a, SA.RESERVE, A, 0, WE_RO)  # a multipath host's goes by its first path
        expect_conflict(r) if lio or other_path else expect_good(r)  # type: ignore[func-returns-value]
        assert read_reservation(c)[1] == (A, WE_RO)
    elif action == SA.RELEASE:
        r = prout(a, SA.RELEASE, A, 0, WE_RO)
        if lio:
            if L.MPATH_RELEASE_BY_THE_LIBRARY.name in path_limits:
                # the library found its reservation still held after every path's RELEASE:
                # it took it over (PREEMPT by its own key) and released it
                expect_good(r)
                observed = (drain(b), drain(c), read_reservation(c)[1])
                assert observed == ([(0x2A, 0x03)], [(0x2A, 0x03)], None), observed
                return
            expect_conflict(r)
            assert read_reservation(c)[1] == (A, WE_RO)
            assert drain(b) == [] and drain(c) == []
        else:
            expect_good(r)
            assert read_reservation(a)[1] is None
            assert drain(b) == [(0x2A, 0x04)] and drain(c) == [(0x2A, 0x04)]
    else:
        # B, registered by the first move, preempts A with the same TYPE
        expect_good(prout(b, SA.PREEMPT, B, A, WE_RO))
        assert read_reservation(b)[1] == (B, WE_RO)
        assert drain(a) == [(0x2A, 0x05)]
        assert drain(c) == ([(0x2A, 0x04)] if lio else []), "LIO: A's scope differed"
        # B issued a move too, but its PREEMPT filed its own scope anew: its RELEASE is GOOD
        expect_good(prout(b, SA.RELEASE, B, 0, WE_RO))
        assert read_reservation(b)[1] is None
        assert drain(c) == [(0x2A, 0x04)]
