"""The engine's own behaviour: failed expectations, hangs, unsupported actions, bad scenarios.

The device misbehaves through the model's real fault hook (``LogicalUnit.fault``), so these
runs go through exactly the code path a misbehaving real LUN would.
"""

from __future__ import annotations

import pytest

from scsi_pr.rig.backends import Capability, SimBackend
from scsi_pr.rig.scenarios import checks, race
from scsi_pr.rig.scenarios.commands import Preempt, Read, ReadKeys, Register, Reserve, Write
from scsi_pr.rig.scenarios.engine import EXIT_CODES, BackendFault, Runner, Verdict
from scsi_pr.rig.scenarios.library import SCENARIOS, WE_RO, get
from scsi_pr.rig.scenarios.library.common import phase
from scsi_pr.rig.scenarios.model import (
    CONFLICT,
    Action,
    Item,
    Race,
    Scenario,
    ScenarioError,
    Source,
    Step,
)
from scsi_pr.rig.scenarios.observe import (
    parse_read_full_status,
    parse_read_keys,
    parse_read_reservation,
)
from scsi_pr.sim.constants import (
    POWER_ON_OCCURRED,
    Opcode,
    PersistentReserveOutAction,
    SenseKey,
    Status,
)
from scsi_pr.sim.faults import Fail, Stall
from scsi_pr.sim.nexus import ITNexus
from scsi_pr.sim.result import CommandResult

SRC = Source("test", ("tests/scenarios/test_engine.py",))


def two_actors(*items: Item, keys: dict[str, int] | None = None) -> Scenario:
    """A throwaway scenario whose actors are ``a`` and ``b``."""
    return Scenario("t", "t", "t", ("a", "b"), items, SRC, keys or {})


def backend_with(fault: object = None) -> SimBackend:
    b = SimBackend(initiators=3)
    b.lu.fault = fault  # type: ignore[assignment]
    return b


def is_paa(cdb: bytes) -> bool:
    return cdb[0] == Opcode.PERSISTENT_RESERVE_OUT and (
        cdb[1] & 0x1F == PersistentReserveOutAction.PREEMPT_AND_ABORT
    )


def test_fenced_write_that_succeeds_fails_the_run() -> None:
    """A device that lets the fenced node write must turn the verdict into FAIL."""
    b = backend_with()
    victim: ITNexus = b.initiators[1].nexus  # type: ignore[attr-defined]

    def let_victim_write(nexus: ITNexus, cdb: bytes) -> Fail | None:
        fenced = b.lu.pr.registrations.get(victim) is None and b.lu.pr.reservation is not None
        if nexus == victim and cdb[0] == Opcode.WRITE_16 and fenced:
            return Fail(CommandResult.good())
        return None

    b.lu.fault = let_victim_write
    run = Runner(SCENARIOS["fence-scsi"], b).run()
    assert run.verdict == Verdict.FAIL
    assert run.exit_code == 1
    assert any("expected RESERVATION CONFLICT, got GOOD" in f for f in run.failures)


def test_hang_ends_the_run_with_a_hung_verdict_not_a_stall() -> None:
    scenario = SCENARIOS["fence-scsi"]
    paa_step = next(
        n
        for n, i in enumerate(scenario.items, 1)
        if isinstance(i, Step) and isinstance(i.command, Preempt) and i.command.abort
    )
    b = backend_with(lambda nexus, cdb: Stall(3600.0) if is_paa(cdb) else None)
    run = Runner(scenario, b, timeout=0.2).run()
    assert run.verdict == Verdict.HUNG
    assert run.exit_code == EXIT_CODES[Verdict.HUNG] == 3
    assert f"hung at step {paa_step}:" in run.message
    assert "PREEMPT AND ABORT" in run.message
    assert run.rows[-1].kind == "hang"
    assert max(r.step for r in run.rows) == paa_step  # nothing ran after the hang


def test_hung_race_is_reported_too() -> None:
    b = backend_with(lambda nexus, cdb: Stall(3600.0) if is_paa(cdb) else None)
    run = Runner(SCENARIOS["split-brain"], b, timeout=0.2).run()
    assert run.verdict == Verdict.HUNG
    assert "node1" in run.message and "node2" in run.message


def test_missing_capability_is_unsupported_before_any_command() -> None:
    b = backend_with(lambda nexus, cdb: pytest.fail("no command may be sent"))
    run = Runner(SCENARIOS["helper-restart"], b).run()
    assert run.verdict == Verdict.UNSUPPORTED and run.exit_code == 4
    assert "restart_helper" in run.message


def test_unexpected_check_condition_is_a_failure() -> None:
    busy = CommandResult(0x08)  # BUSY on every READ KEYS
    b = backend_with(
        lambda nexus, cdb: (
            Fail(busy) if cdb[0] == Opcode.PERSISTENT_RESERVE_IN and cdb[1] == 0 else None
        )
    )
    run = Runner(SCENARIOS["fence-scsi"], b).run()
    assert run.verdict == Verdict.FAIL
    assert "got BUSY" in run.message


def test_expected_unit_attention_that_never_comes_fails() -> None:
    from scsi_pr.sim.constants import REGISTRATIONS_PREEMPTED

    s = two_actors(
        Step("a", Register(0, 1)),
        Step("a", Write(0), expect_ua=(REGISTRATIONS_PREEMPTED,)),
        keys={"a": 1},
    )
    run = Runner(s, backend_with()).run()
    assert run.verdict == Verdict.FAIL
    assert "expected unit attention REGISTRATIONS PREEMPTED" in run.message


def test_read_returns_what_was_written() -> None:
    s = two_actors(
        Step("a", Write(3)),
        Step("b", Read(3)),
        Step("b", Write(3)),
        Step("a", Read(3)),
    )
    assert Runner(s, backend_with()).run().verdict == Verdict.PASS


def test_read_of_other_data_fails() -> None:
    other = CommandResult.good(b"x" * 512)
    b = backend_with(lambda nexus, cdb: Fail(other) if cdb[0] == Opcode.READ_16 else None)
    s = two_actors(Step("a", Write(3)), Step("b", Read(3)))
    run = Runner(s, b).run()
    assert run.verdict == Verdict.FAIL
    assert "READ returned 'xxxx" in run.message and "written by a'" in run.message


def test_payload_expectations_are_checked() -> None:
    s = two_actors(
        Step("a", Register(0, 0x11)),
        Step("b", ReadKeys(present=(0x22,), absent=(0x11,))),
    )
    run = Runner(s, backend_with()).run()
    assert run.verdict == Verdict.FAIL
    assert "key 0x22 missing" in run.message
    assert any("key 0x11 still registered" in f for f in run.failures)


def test_race_with_two_winners_fails() -> None:
    # Both register distinct keys, nobody holds: both RESERVEs of the same type cannot win,
    # so make the device (wrongly) grant both through the fault hook.
    b = backend_with(
        lambda nexus, cdb: (
            Fail(CommandResult.good())
            if cdb[0] == Opcode.PERSISTENT_RESERVE_OUT and cdb[1] & 0x1F == 1
            else None
        )
    )
    s = two_actors(
        Step("a", Register(0, 1)),
        Step("b", Register(0, 2)),
        Race((Step("a", Reserve(1, WE_RO)), Step("b", Reserve(2, WE_RO)))),
    )
    run = Runner(s, b).run()
    assert run.verdict == Verdict.FAIL
    assert "2 initiators won" in run.message


def test_race_loser_conflicts_on_the_model() -> None:
    s = two_actors(
        Step("a", Register(0, 1)),
        Step("b", Register(0, 2)),
        Race(
            (Step("a", Reserve(1, WE_RO)), Step("b", Reserve(2, WE_RO))),
            losers_expect=(CONFLICT,),
        ),
        Step("winner", Write(0)),
    )
    run = Runner(s, backend_with()).run()
    assert run.verdict == Verdict.PASS, run.message


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Scenario("t", "t", "t", ("a",), (Step("z", Write(0)),), SRC), "unknown actor"),
        (lambda: Race((Step("a", Write(0)),)), "two or more distinct actors"),
        (lambda: Step("a", Write(0), expect=()), "expects nothing"),
    ],
)
def test_bad_scenarios_are_refused(build: object, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        build()  # type: ignore[operator]


def test_too_few_initiators_is_a_clear_error() -> None:
    with pytest.raises(ScenarioError, match="needs 3 initiators"):
        Runner(SCENARIOS["fence-scsi"], SimBackend(initiators=2))


def test_bad_timeout_is_refused() -> None:
    with pytest.raises(ValueError, match="timeout must be positive"):
        Runner(SCENARIOS["fence-scsi"], SimBackend(initiators=3), timeout=0)


def test_role_before_race_is_a_scenario_error() -> None:
    s = two_actors(Step("winner", Write(0)))
    run = Runner(s, backend_with()).run()
    assert run.verdict == Verdict.ERROR
    assert "before a race decided it" in run.message


def test_narrative_action_sends_nothing() -> None:
    sent: list[bytes] = []
    b = backend_with(lambda nexus, cdb: sent.append(cdb))
    s = two_actors(Action("a dies", actor="a"))
    Runner(s, b).run()
    # only the observer's READ FULL STATUS (before and after) reached the LU
    assert {c[0] for c in sent} == {Opcode.PERSISTENT_RESERVE_IN}


def test_unknown_scenario_name() -> None:
    with pytest.raises(KeyError) as e:
        get("nope")
    assert e.value.args == (f"unknown scenario 'nope'; choose from {', '.join(SCENARIOS)}",)
    assert get("register-and-move").name == "register-and-move"


@pytest.mark.parametrize(
    ("parse", "data", "message"),
    [
        (parse_read_keys, b"\0" * 4, "shorter than the 8-byte header"),
        (parse_read_keys, b"\0\0\0\1\0\0\0\x10" + b"\0" * 8, "runs past"),
        (parse_read_keys, b"\0\0\0\1\0\0\0\x04" + b"\0" * 4, "not a multiple of 8"),
        (parse_read_reservation, b"\0\0\0\1\0\0\0\x08" + b"\0" * 8, "need 16"),
        (parse_read_full_status, b"\0\0\0\1\0\0\0\x08" + b"\0" * 8, "truncated descriptor"),
    ],
)
def test_pr_in_parsers_reject_malformed_data(parse: object, data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse(data)  # type: ignore[operator]


def test_malformed_read_full_status_is_a_clear_error() -> None:
    garbage = CommandResult.good(b"\0\0\0\1\0\0\0\x20" + b"\0" * 8)
    b = backend_with(
        lambda nexus, cdb: (
            Fail(garbage) if cdb[0] == Opcode.PERSISTENT_RESERVE_IN and cdb[1] == 3 else None
        )
    )
    run = Runner(SCENARIOS["failover"], b).run()
    assert run.verdict == Verdict.ERROR and run.exit_code == 2
    assert "observer: READ FULL STATUS" in run.message


def test_unit_attentions_that_never_stop_fail_the_step() -> None:
    ua = CommandResult.check_condition(SenseKey.UNIT_ATTENTION, POWER_ON_OCCURRED)
    answers = [(ua, 0.001)] * checks.MAX_UA_REPORTS
    rows = checks.unit_attention_rows(1, 0.0, "a", Step("a", Write(0)), None, answers)
    assert len(rows) == checks.MAX_UA_REPORTS
    assert rows[-1].ok is False and rows[-1].failures == ["unit attentions still pending after 8"]
    assert all(r.ok is None for r in rows[:-1])  # unexpected but harmless: informational


def test_a_test_unit_ready_that_is_no_unit_attention_fails() -> None:
    busy = CommandResult(Status.BUSY)
    step = Step("a", Write(0), expect_ua=(POWER_ON_OCCURRED,))
    rows = checks.unit_attention_rows(1, 0.0, "a", step, None, [(busy, 0.0)])
    assert [r.result for r in rows] == ["BUSY"]
    assert rows[0].failures == [
        "TEST UNIT READY answered BUSY",
        "expected unit attention POWER ON OCCURRED (reported: none)",
    ]


def test_race_contenders_start_together_and_the_first_error_wins() -> None:
    def good() -> CommandResult:
        return CommandResult.good()

    def broken() -> CommandResult:
        raise OSError("socket closed")

    assert [r.status for r, _ in race.send_at_once([good, good], 1.0)] == [Status.GOOD] * 2
    with pytest.raises(BackendFault, match="OSError: socket closed"):
        race.send_at_once([good, broken, good], 1.0)


def test_phase_names_every_item_of_a_phase() -> None:
    contest = Race((Step("a", Write(0)), Step("b", Write(0))))
    items = phase("p", Step("a", Write(0)), Action("x"), contest)
    assert [i.phase for i in items] == ["p", "p", "p"]
    # a racer's rows belong to the race's phase too, as a scenario file's racers do
    assert [s.phase for s in items[2].steps] == ["p", "p"]


def test_a_scenario_over_several_devices_sends_each_item_to_its_own_lu() -> None:
    """fence-scsi-devices passes only when disk1 and disk2 are different LUs: node2 reserves
    disk2 while node1 holds disk1. Given one LU twice, the run must fail; given one backend,
    it must say the backend cannot (not run on one LU as if it were two)."""
    scenario = SCENARIOS["fence-scsi-devices"]
    assert scenario.devices == ("disk1", "disk2")
    assert Capability.INDEPENDENT_LUS in scenario.needs
    two = [SimBackend(initiators=3), SimBackend(initiators=3)]
    assert Runner(scenario, two[0], more=two[1:]).run().verdict == Verdict.PASS
    same = SimBackend(initiators=3)
    assert Runner(scenario, same, more=[same]).run().verdict == Verdict.FAIL
    alone = Runner(scenario, SimBackend(initiators=3)).run()
    assert alone.verdict == Verdict.UNSUPPORTED and alone.rows == []
    with pytest.raises(ScenarioError):
        Runner(scenario, SimBackend(initiators=3), more=two)  # three LUs for two devices


def test_rows_name_the_device_they_addressed() -> None:
    two = [SimBackend(initiators=3), SimBackend(initiators=3)]
    run = Runner(SCENARIOS["fence-scsi-devices"], two[0], more=two[1:]).run()
    commands = [r.command for r in run.rows]
    assert commands[0].startswith("disk1: ") and any(c.startswith("disk2: ") for c in commands)
    event = next(r for r in run.rows if "exits 1" in r.command)
    assert not event.command.startswith("disk")  # an item without a device names none
