"""The exact decisions of the scenario engine, its checks, commands and model.

The other scenario tests check verdicts of whole scenarios; these pin the fields the engine
writes into each timeline row (action rows, race rows and where a race's failures land), the
wording of failures, the bytes and labels of commands and the outcomes the model builds, so
that a change to any of them is seen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pytest

from scsi_pr.rig.backends import Capability, SimBackend
from scsi_pr.rig.command_thread import CommandThread
from scsi_pr.rig.scenarios import checks, engine
from scsi_pr.rig.scenarios.cli import run_scenario
from scsi_pr.rig.scenarios.commands import (
    Clear,
    RawCdb,
    Read,
    ReadFullStatus,
    Register,
    RegisterAndMove,
    Reserve,
    TestUnitReady,
    Write,
)
from scsi_pr.rig.scenarios.engine import Runner, Verdict
from scsi_pr.rig.scenarios.model import (
    Action,
    Item,
    Outcome,
    Race,
    Scenario,
    ScenarioError,
    Source,
    StateCheck,
    Step,
)
from scsi_pr.rig.scenarios.observe import PrState
from scsi_pr.rig.scenarios.results import RowKind, Run
from scsi_pr.sim.constants import (
    ADDITIONAL_SENSE_BY_CODE,
    I_T_NEXUS_LOSS_OCCURRED,
    INVALID_FIELD_IN_CDB,
    POWER_ON_OCCURRED,
    REGISTRATIONS_PREEMPTED,
    AdditionalSense,
    ReservationType,
    SenseKey,
    Status,
)
from scsi_pr.sim.result import CommandResult

SRC = Source("test", ("tests/scenarios/test_engine_decisions.py",))
WE = ReservationType.WRITE_EXCLUSIVE
T = TypeVar("T")


def scenario(actors: tuple[str, ...], *items: Item, keys: dict[str, int] | None = None) -> Scenario:
    """A throwaway scenario of ``actors`` running ``items``."""
    return Scenario("t", "t", "t", actors, items, SRC, keys or {})


def run_on_sim(s: Scenario) -> tuple[Run, Runner]:
    """The run and its runner (whose medium a test may read) on a fresh in-process LU."""
    runner = Runner(s, SimBackend(initiators=len(s.actors) + 1))
    return runner.run(), runner


def registered(*actors: str) -> tuple[Step, ...]:
    """Each actor registers key 1, 2, ... in order."""
    return tuple(Step(a, Register(0, n)) for n, a in enumerate(actors, 1))


# -- action rows ------------------------------------------------------------------------------
def test_action_rows_carry_the_action_and_the_time_perform_took(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An action row names its lane, label, phase and note; a performed action says "done" and
    how long perform took, at the run's deadline; a narrative one says "—" and took nothing."""
    timeouts: list[float] = []
    real = engine.call_with_deadline

    def quarter_second(
        fn: Callable[[], T], timeout: float, thread: CommandThread | None = None
    ) -> tuple[T, float]:
        timeouts.append(timeout)
        value, _ = real(fn, timeout, thread)
        return value, 0.25

    monkeypatch.setattr(engine, "call_with_deadline", quarter_second)
    s = scenario(
        ("a", "b"),
        Action("power cycle", Capability.POWER_CYCLE, phase="outage", note="mains lost"),
        Action("node a dies", actor="a", phase="death", note="nothing sent"),
    )
    run = Runner(s, SimBackend(initiators=3), timeout=7.5).run()
    assert run.verdict == Verdict.PASS, run.message
    cycle, death = (r for r in run.rows if r.kind == RowKind.ACTION)
    assert (cycle.step, cycle.actor, cycle.command, cycle.result) == (
        1,
        "LUN",
        "power cycle",
        "done",
    )
    assert (cycle.elapsed_ms, cycle.phase, cycle.note, cycle.ok) == (
        250.0,
        "outage",
        "mains lost",
        None,
    )
    assert (death.step, death.actor, death.command, death.result) == (2, "a", "node a dies", "—")
    assert (death.elapsed_ms, death.phase, death.note) == (0.0, "death", "nothing sent")
    assert timeouts and set(timeouts) == {7.5}  # perform too runs against the run's deadline


def test_an_actions_state_expectation_is_checked() -> None:
    """An action's ``state`` is judged on its own row like a step's."""
    s = scenario(("a", "b"), Action("a dies", actor="a", state=StateCheck(holder="a")))
    run, _ = run_on_sim(s)
    assert run.verdict == Verdict.FAIL
    assert run.rows[0].failures == ["holder: expected a, observed none"]
    assert run.rows[0].ok is False


def test_an_action_on_a_role_reaches_the_actor_the_race_bound() -> None:
    """A NEXUS_LOSS on "winner" must hit the winner's own I_T nexus: the unit attention it
    leaves is reported to that actor next."""
    s = scenario(
        ("a", "b"),
        *registered("a", "b"),
        Step("a", Reserve(1, WE)),
        Race((Step("a", Write(0)), Step("b", Write(1)))),
        Action("winner loses its nexus", Capability.NEXUS_LOSS, actor="winner"),
        Step("winner", TestUnitReady(), expect_ua=(I_T_NEXUS_LOSS_OCCURRED,)),
    )
    run, _ = run_on_sim(s)
    assert run.verdict == Verdict.PASS, run.message
    ua = next(r for r in run.rows if r.kind == RowKind.UA)
    assert (ua.step, ua.actor, ua.ok) == (6, "a", True)


# -- races ------------------------------------------------------------------------------------
def three_way_race(state: StateCheck | None = None) -> Scenario:
    """a holds WRITE EXCLUSIVE and then lost its nexus; a, b and c race to write: a wins."""
    return scenario(
        ("a", "b", "c"),
        *registered("a", "b", "c"),
        Step("a", Reserve(1, WE)),
        Action("a loses its nexus", Capability.NEXUS_LOSS, actor="a"),
        Race(
            (
                Step("a", Write(0), expect_ua=(I_T_NEXUS_LOSS_OCCURRED,)),
                Step("b", Write(1)),
                Step("c", Write(2)),
            ),
            state=state,
        ),
        keys={"a": 1, "b": 2, "c": 3},
    )


def test_a_race_state_failure_lands_on_its_last_row_only() -> None:
    """The race's state expectation is judged once, on the last contender's row; every
    contender's row shows the state observed after the race."""
    run, _ = run_on_sim(three_way_race(StateCheck(holder="b")))
    assert run.verdict == Verdict.FAIL
    contenders = [r for r in run.rows if r.step == 6 and r.kind == RowKind.COMMAND]
    assert [r.actor for r in contenders] == ["a", "b", "c"]
    assert [r.failures for r in contenders] == [[], [], ["holder: expected b, observed a"]]
    assert [r.note for r in contenders] == ["won the race", "lost the race", "lost the race"]
    assert all(r.state is not None and r.state.holder == "a" for r in contenders)


def test_a_race_clears_unit_attentions_on_its_own_step_and_writes_as_its_actor() -> None:
    """The unit attention cleared before a contender's command belongs to the race's step, and
    each contender's WRITE carries its own actor's name."""
    run, runner = run_on_sim(three_way_race(StateCheck(holder="winner")))
    assert run.verdict == Verdict.PASS, run.message
    ua = next(r for r in run.rows if r.kind == RowKind.UA)
    assert (ua.step, ua.actor, ua.ok) == (6, "a", True)
    assert runner.medium[0].startswith(b"scsi-pr scenario: block 0 written by a\n")


def test_a_race_with_no_single_winner_fails_its_last_row() -> None:
    """With nobody reserving, all three writes win; the failure goes on the last row."""
    s = scenario(("a", "b", "c"), Race(tuple(Step(a, Write(0)) for a in ("a", "b", "c"))))
    run, _ = run_on_sim(s)
    assert run.verdict == Verdict.FAIL
    assert [r.failures for r in run.rows] == [
        [],
        [],
        ["race: 3 initiators won, exactly one must"],
    ]


def test_a_race_contender_builds_its_command_against_the_run() -> None:
    """REGISTER AND MOVE in a race needs the run's context to address its destination."""
    s = scenario(
        ("a", "b", "c"),
        *registered("a", "b"),
        Step("a", Reserve(1, WE)),
        Race((Step("a", RegisterAndMove(1, 3, "c", WE)), Step("b", Reserve(2, WE)))),
        Step("c", Write(0)),
        keys={"a": 1, "b": 2, "c": 3},
    )
    run, _ = run_on_sim(s)
    assert run.verdict == Verdict.PASS, run.message
    assert run.rows[-1].state is not None and run.rows[-1].state.holder == "c"


# -- checks -----------------------------------------------------------------------------------
def ua(code: AdditionalSense) -> tuple[CommandResult, float]:
    """A unit attention answer to TEST UNIT READY."""
    return CommandResult.check_condition(SenseKey.UNIT_ATTENTION, code), 0.0


def test_a_missing_unit_attention_names_what_was_reported() -> None:
    """Reported codes are shown by their SPC name, or as ASC/ASCQ hex when SPC names none."""
    unnamed = AdditionalSense(0x3F, 0x9C, "unnamed")
    assert (unnamed.asc, unnamed.ascq) not in ADDITIONAL_SENSE_BY_CODE
    step = Step("a", Write(0), expect_ua=(REGISTRATIONS_PREEMPTED,))
    answers = [ua(POWER_ON_OCCURRED), ua(unnamed), (CommandResult.good(), 0.0)]
    rows = checks.unit_attention_rows(1, 0.0, "a", step, None, answers)
    assert rows[0].failures == [
        "expected unit attention REGISTRATIONS PREEMPTED (reported: POWER ON OCCURRED, 3Fh/9Ch)"
    ]


# -- commands ---------------------------------------------------------------------------------
def context() -> Runner:
    """A runner not yet run: the context commands build against (actors a, b, c on the sim)."""
    return Runner(scenario(("a", "b", "c")), SimBackend(initiators=4))


def read_failure(returned: bytes, written: bytes) -> list[str]:
    """What READ's check says when the block returned is not the block written."""
    ctx = context()
    ctx.medium[0] = written
    return Read(0).check(CommandResult.good(returned), ctx, b"")


@pytest.mark.parametrize(
    ("returned", "shown"),
    [
        (b"", "no data"),
        (b"\0" * 8, "8 zero bytes"),
        (b"hello".ljust(64, b"\0"), "'hello'"),
        (b"by X\nmore\nlines\n", "'by X'"),
        (b"\xff" * 20, "bytes " + "ff" * 16 + "…"),
        (b"\x01\x02\x03", "bytes 010203…"),
    ],
)
def test_read_shows_the_block_it_got_as_a_reader_wants(returned: bytes, shown: str) -> None:
    """The first line of text without its NUL padding, else the block's first 16 bytes."""
    assert read_failure(returned, b"mine\n") == [f"READ returned {shown}, not 'mine'"]


def test_command_bytes() -> None:
    """Each command's CDB and data-out, byte for byte."""
    ctx = context()
    assert ReadFullStatus().build(ctx, "a") == (bytes.fromhex("5e 03 00000000 00 2000 00"), b"")
    assert Read(3).build(ctx, "a") == (bytes.fromhex("88 00 0000000000000003 00000001 00 00"), b"")
    cdb, data = Clear(0x1234).build(ctx, "a")
    assert cdb == bytes.fromhex("5f 03 00 0000 00000018 00")
    assert data == (0x1234).to_bytes(8, "big") + bytes(16)


def test_register_and_move_sends_its_type() -> None:
    """The reservation type goes in the CDB's TYPE field; UNREG and the destination's target
    port (c's is 3 on the sim) in the parameter list."""
    cdb, data = RegisterAndMove(1, 2, "c", WE, unreg=True).build(context(), "a")
    assert cdb[:3] == bytes.fromhex("5f 07 01")
    assert data[17] == 0x02 and data[18:20] == b"\0\3"


@pytest.mark.parametrize(
    ("command", "label"),
    [
        (ReadFullStatus(), "PR IN READ FULL STATUS"),
        (TestUnitReady(), "TEST UNIT READY"),
        (RegisterAndMove(1, 2, "c", WE), "PR OUT REGISTER AND MOVE key=0x1 sark=0x2 -> c"),
        (
            RegisterAndMove(1, 2, "c", WE, unreg=True),
            "PR OUT REGISTER AND MOVE key=0x1 sark=0x2 -> c UNREG",
        ),
        (RawCdb(bytes(6)), "CDB 00 00 00 00 00 00"),
        (RawCdb(bytes.fromhex("5f00"), bytes(24)), "CDB 5f 00 +24 bytes"),
    ],
)
def test_command_labels(command: object, label: str) -> None:
    """Labels are what the timeline and failure texts show."""
    assert str(command) == label


# -- model ------------------------------------------------------------------------------------
def test_outcome_constructors_keep_asc_and_ascq_apart() -> None:
    """ua/check/sense put key, ASC and ASCQ in their own fields, with the text a file writes."""
    cc = Status.CHECK_CONDITION
    assert Outcome.check(SenseKey.ILLEGAL_REQUEST, INVALID_FIELD_IN_CDB) == Outcome(
        cc, SenseKey.ILLEGAL_REQUEST, 0x24, 0x00, "ILLEGAL REQUEST (INVALID FIELD IN CDB)"
    )
    assert Outcome.ua(POWER_ON_OCCURRED) == Outcome(
        cc, SenseKey.UNIT_ATTENTION, 0x29, 0x01, "UNIT ATTENTION (POWER ON OCCURRED)"
    )
    assert Outcome.ua(asc=0x29) == Outcome(
        cc, SenseKey.UNIT_ATTENTION, 0x29, None, "UNIT ATTENTION (ASC 29h)"
    )
    assert Outcome.ua() == Outcome(cc, SenseKey.UNIT_ATTENTION, None, None, "UNIT ATTENTION (any)")
    # an ASCQ without its ASC means nothing and is dropped
    assert Outcome.sense(SenseKey.NOT_READY, None, 0x05).ascq is None


def test_outcome_check_matches_only_its_own_ascq() -> None:
    """INVALID FIELD IN CDB (24h/00h) does not match another ASCQ of ASC 24h."""
    outcome = Outcome.check(SenseKey.ILLEGAL_REQUEST, INVALID_FIELD_IN_CDB)
    other = AdditionalSense(0x24, 0x01, "other")
    assert outcome.matches(
        CommandResult.check_condition(SenseKey.ILLEGAL_REQUEST, INVALID_FIELD_IN_CDB)
    )
    assert not outcome.matches(CommandResult.check_condition(SenseKey.ILLEGAL_REQUEST, other))


@pytest.mark.parametrize("actors", [("a",), ("a", "a")])
def test_race_refusal_text(actors: tuple[str, ...]) -> None:
    """A race of one actor, or of one actor twice, is refused with exactly this text."""
    with pytest.raises(ScenarioError, match=r"^a race needs two or more distinct actors$"):
        Race(tuple(Step(a, Write(0)) for a in actors))


# -- observer ---------------------------------------------------------------------------------
def test_state_json_names_the_reservation_type() -> None:
    """The JSON timeline shows the reservation's type by its abbreviation, null when none."""
    held = PrState(4, {"a": 0x1A}, "a", WE)
    assert held.to_json() == {"generation": 4, "keys": {"a": "0x1a"}, "holder": "a", "type": "WE"}
    assert PrState(4, {}, None, None).to_json()["type"] is None


@pytest.mark.parametrize("order", [("a", "b"), ("b", "a")])
def test_races_in_order_let_the_first_contender_win_every_time(order: tuple[str, str]) -> None:
    """The docs' runs send a race's contenders one after another: the first listed reserves,
    the other conflicts, on every run (a real race's winner is the threads' choice)."""
    keys = {"a": 1, "b": 2}
    s = scenario(
        ("a", "b"),
        *registered("a", "b"),
        Race(tuple(Step(who, Reserve(keys[who], WE)) for who in order)),
        keys=keys,
    )
    for _ in range(3):
        run = run_scenario(s, "sim", races_in_order=True)
        assert run.verdict == Verdict.PASS, run.message
        first, second = run.rows[-2:]
        assert (first.actor, first.note, second.actor, second.note) == (
            order[0],
            "won the race",
            order[1],
            "lost the race",
        )
