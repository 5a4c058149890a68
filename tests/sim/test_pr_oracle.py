"""The PR state machine's oracle (tests/pr_machine/): the SPC-5 reading and LIO's deviations
are separate layers, and the deviations only ever add tagged branches to the standard's."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from pr_machine.deviations import (
    DEV_MOVE_FILES_TYPE_AS_SCOPE,
    DEV_RELEASE_WRONG_TYPE,
    DEV_UNREGISTER_GENERATION,
    DEV_UNREGISTERED_NOT_READY,
    LIO_DEVIATIONS,
    LU_COMMUNICATION_FAILURE,
    OracleWithDeviations,
)
from pr_machine.oracle import (
    CONFLICT,
    GOOD,
    INVALID_RELEASE,
    RESERVATIONS_RELEASED,
    Branch,
    Oracle,
    PRState,
)

from scsi_pr.sim.constants import ReservationType

WE = ReservationType.WRITE_EXCLUSIVE
EA = ReservationType.EXCLUSIVE_ACCESS
INITIATORS = st.integers(0, 2)
KEYS = st.sampled_from((0, 1, 2, 7))
TYPES = st.sampled_from(list(ReservationType))


@st.composite
def states(draw: st.DrawFn) -> PRState:
    keys = draw(st.dictionaries(INITIATORS, st.sampled_from((1, 2, 7)), max_size=3))
    reservation = None
    if keys and draw(st.booleans()):
        type_ = draw(TYPES)
        holder = None if type_.all_registrants else draw(st.sampled_from(sorted(keys)))
        reservation = (holder, type_)
    generation = draw(st.one_of(st.none(), st.integers(0, 5)))
    return PRState(keys, reservation, generation, draw(st.booleans()))


#: issuer, RESERVATION KEY, SERVICE ACTION RESERVATION KEY, TYPE, APTPL/IGNORE/UNREG, destination
Args = tuple[int, int, int, ReservationType, bool, int]


def predictions(oracle: type[Oracle], s: PRState, args: Args) -> list[list[Branch]]:
    i, rk, sark, type_, flag, dest = args
    return [
        oracle.register(s, i, rk, sark, flag, ignore_existing=flag),
        oracle.reserve(s, i, rk, type_),
        oracle.release(s, i, rk, type_),
        oracle.clear(s, i, rk),
        oracle.preempt(s, i, rk, sark, type_),
        oracle.register_and_move(s, i, rk, sark, dest, flag, False),
    ]


@settings(max_examples=300, deadline=None)
@given(states(), st.tuples(INITIATORS, KEYS, KEYS, TYPES, st.booleans(), INITIATORS))
def test_deviations_only_add_tagged_branches(s: PRState, args: Args) -> None:
    spc = predictions(Oracle, s, args)
    lio = predictions(OracleWithDeviations, s, args)
    for standard, extended in zip(spc, lio, strict=True):
        assert all(b.deviation is None for b in standard)
        assert [b for b in extended if b.deviation is None] == standard
        # the standard's branches come first, after those of LIO's hidden scope (the module's
        # docstring says why); with no move behind it, the hidden scope adds only the move's
        hidden = [b for b in extended if b.deviation == DEV_MOVE_FILES_TYPE_AS_SCOPE]
        assert extended[: len(hidden)] == hidden
        assert extended[len(hidden) : len(hidden) + len(standard)] == standard
        assert {b.deviation for b in extended} - {None} <= LIO_DEVIATIONS


def test_a_move_files_the_type_as_the_issuers_scope_on_lio() -> None:
    """LIO's hidden scope: the move's tagged branch (first) remembers the issuer; once the
    reservation is back with it, its RESERVE and RELEASE of the same TYPE conflict, a PREEMPT
    of it tells the survivors RESERVATIONS RELEASED, and its own RESERVE files LU_SCOPE anew."""
    s = PRState(keys={0: 1, 1: 2, 2: 7}, reservation=(0, WE), generation=3)
    filed, standard = OracleWithDeviations.register_and_move(s, 0, 1, 2, 1, False, False)
    assert filed.deviation == DEV_MOVE_FILES_TYPE_AS_SCOPE and standard.deviation is None
    assert filed.state.lio_scope_from_move == {0} and not standard.state.lio_scope_from_move
    assert filed.state.reservation == standard.state.reservation == (1, WE)
    unreg = OracleWithDeviations.register_and_move(s, 0, 1, 2, 1, True, False)
    assert [b.deviation for b in unreg] == [None], "the issuer left: nothing to remember"

    back = PRState(keys={0: 1, 1: 2, 2: 7}, reservation=(0, WE), generation=5)
    back.lio_scope_from_move = {0}
    assert [(b.outcome, b.deviation) for b in OracleWithDeviations.reserve(back, 0, 1, WE)] == [
        (GOOD, None), (CONFLICT, DEV_MOVE_FILES_TYPE_AS_SCOPE)]  # fmt: skip
    assert [(b.outcome, b.deviation) for b in OracleWithDeviations.release(back, 0, 1, WE)] == [
        (GOOD, None), (CONFLICT, DEV_MOVE_FILES_TYPE_AS_SCOPE)]  # fmt: skip
    told, plain = OracleWithDeviations.preempt(back, 2, 7, 1, WE)
    assert told.deviation == DEV_MOVE_FILES_TYPE_AS_SCOPE and plain.deviation is None
    assert told.state.unit_attentions[1] == {RESERVATIONS_RELEASED}
    assert 1 not in plain.state.unit_attentions
    assert not told.state.lio_scope_from_move  # 0 was preempted away
    free = PRState(keys={0: 1}, generation=5)
    free.lio_scope_from_move = {0}
    (anew,) = OracleWithDeviations.reserve(free, 0, 1, WE)
    assert anew.outcome == GOOD and not anew.state.lio_scope_from_move


def test_release_of_another_type_by_the_holder() -> None:
    s = PRState(keys={0: 1}, reservation=(0, WE), generation=3)
    assert Oracle.release(s, 0, 1, EA) == [Branch(INVALID_RELEASE, s)]
    assert OracleWithDeviations.release(s, 0, 1, EA) == [
        Branch(INVALID_RELEASE, s),
        Branch(CONFLICT, s, DEV_RELEASE_WRONG_TYPE),
    ]


def test_unregistered_issuer_without_a_reservation() -> None:
    s = PRState(keys={0: 1}, generation=3)
    assert Oracle.reserve(s, 1, 1, WE) == [Branch(CONFLICT, s)]
    assert OracleWithDeviations.reserve(s, 1, 1, WE)[1] == Branch(
        LU_COMMUNICATION_FAILURE, s, DEV_UNREGISTERED_NOT_READY
    )


def test_unregister_bumps_the_generation_except_on_lio() -> None:
    s = PRState(keys={0: 1, 1: 2}, generation=3)
    standard, lio = OracleWithDeviations.register(s, 0, 1, 0, False, ignore_existing=False)
    assert standard.outcome == lio.outcome == GOOD
    assert (standard.state.generation, standard.deviation) == (4, None)
    assert (lio.state.generation, lio.deviation) == (3, DEV_UNREGISTER_GENERATION)
    assert standard.state.keys == lio.state.keys == {1: 2}
