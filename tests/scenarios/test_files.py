"""Scenario files: the built-ins are files, the reader and the writer agree, a file run gives the
built-in's verdict, and every bad file is refused with its line and field.

Errors are checked by their ``line`` and ``field`` (the parts a user needs to find the mistake),
not by their wording.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from needs import unavailable
from scenario_texts import BUILTIN_DIR

from scsi_pr.rig.backends import BackendUnavailable, Capability, SimBackend
from scsi_pr.rig.scenarios import cli
from scsi_pr.rig.scenarios.commands import (
    ANY_KEY,
    Clear,
    RawCdb,
    ReadFullStatus,
    ReadReservation,
    Register,
    RegisterAndMove,
    Release,
    TestUnitReady,
)
from scsi_pr.rig.scenarios.docs import DOC
from scsi_pr.rig.scenarios.engine import Runner, Verdict
from scsi_pr.rig.scenarios.fileformat import read_outcome
from scsi_pr.rig.scenarios.fileread import ScenarioFileError, load, loads
from scsi_pr.rig.scenarios.filewrite import dumps
from scsi_pr.rig.scenarios.library import BUILTIN_ORDER, SCENARIOS, builtin_text
from scsi_pr.rig.scenarios.library.common import K1, K2, WE_RO, fence_scsi_key, phase
from scsi_pr.rig.scenarios.model import (
    ALL_REGISTRANTS,
    CONFLICT,
    Action,
    Outcome,
    Race,
    Scenario,
    Source,
    StateCheck,
    Step,
)
from scsi_pr.sim.constants import (
    I_T_NEXUS_LOSS_OCCURRED,
    INVALID_FIELD_IN_CDB,
    REGISTRATIONS_PREEMPTED,
    ReservationType,
    SenseKey,
    Status,
)


def test_every_builtin_is_a_shipped_file_and_every_file_is_listed() -> None:
    assert sorted(p.stem for p in BUILTIN_DIR.glob("*.toml")) == sorted(BUILTIN_ORDER)
    assert list(SCENARIOS) == list(BUILTIN_ORDER)
    for name in BUILTIN_ORDER:
        assert SCENARIOS[name].name == name  # a file's name is its scenario's


@pytest.mark.parametrize("name", BUILTIN_ORDER)
def test_show_as_file_prints_the_definition(name: str, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["show", name, "--as-file"]) == 0
    text = capsys.readouterr().out
    assert text == builtin_text(name)
    assert loads(text) == SCENARIOS[name]


@pytest.mark.parametrize("name", BUILTIN_ORDER)
def test_writer_and_reader_agree_on_every_builtin(name: str) -> None:
    text = dumps(SCENARIOS[name])
    assert loads(text) == SCENARIOS[name]
    assert dumps(loads(text)) == text
    assert max(len(line) for line in text.splitlines()) <= 96


def test_fence_scsi_keys_are_fence_scsis_own() -> None:
    """The files hold keys as numbers; these are what fence_scsi derives for nodes 1 and 2."""
    assert (fence_scsi_key("scsi-pr", 1), fence_scsi_key("scsi-pr", 2)) == (K1, K2)
    assert SCENARIOS["fence-scsi"].keys == {"node1": K1, "node2": K2}


def every_kind() -> Scenario:
    """A scenario using every command, outcome form, action and check the format has."""
    ua_any = Outcome.sense(SenseKey.UNIT_ATTENTION)
    items = [
        *phase(
            "one of each",
            Step("a", Register(0, 0x1234, aptpl=True), note='with "quotes" and a \\ backslash'),
            Step("b", Register(7, 0xFFFFFFFFFFFFFFFF, ignore=True)),
            Step("a", ReadReservation(holder_key=None), wait=2.5),
            Step("a", ReadReservation(holder_key=ANY_KEY), expect=(CONFLICT, ua_any)),
            Step("a", ReadReservation(), clear_ua=False),
            Step("a", ReadFullStatus(), expect_ua=(REGISTRATIONS_PREEMPTED, 0x29)),
            Step("a", Release(0x1234, ReservationType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS)),
            Step(
                "b",
                Clear(5),
                expect=(
                    Outcome.check(SenseKey.ILLEGAL_REQUEST, INVALID_FIELD_IN_CDB),
                    Outcome.sense(SenseKey.ILLEGAL_REQUEST, 0x24),
                    Outcome.sense(SenseKey.NOT_READY, 0x7E, 0x01),
                ),
            ),
            Step("a", RawCdb(bytes.fromhex("5f00"), b"\x00" * 24)),
            Step("a", TestUnitReady(), state=StateCheck(unchanged=True), stall=0.25),
        ),
        *phase(
            "",
            Race((Step("a", Register(0, 1)), Step("b", Register(0, 2))), state=StateCheck(...)),
            Step(
                "winner",
                RegisterAndMove(1, 3, "loser", WE_RO, unreg=True),
                state=StateCheck(holder=ALL_REGISTRANTS, registered=("loser",)),
            ),
            Step("loser", RegisterAndMove(3, 4, "a", WE_RO), state=StateCheck(holder=None)),
            Action("power", Capability.POWER_CYCLE, state=StateCheck(holder="b")),
            Action("a dies " * 30, actor="a", wait=1),
            Action("kill it", Capability.RESTART_HELPER, actor="helper"),
            Action("drop", Capability.NEXUS_LOSS, actor="b", device=""),
        ),
    ]
    return Scenario(
        "every-kind",
        "t",
        "s " * 80,
        ("a", "b"),
        tuple(items),
        Source("sw", ()),
        {"a": 0x1234, "b": 0x5678},  # "loser" may be either: a registered check needs both
        initiators={"b": "iqn.2026-12.org.example:b,i,0x23d000000001"},
    )


def test_writer_and_reader_agree_on_every_kind_of_step() -> None:
    scenario = every_kind()
    text = dumps(scenario)
    assert loads(text) == scenario
    assert dumps(loads(text)) == text


VALID = """\
name = "tiny"
title = "t"
summary = "s"

[[actor]]
name = "a"
key = 0x10

[[actor]]
name = "b"

[[phase]]
name = "p"

[[phase.step]]
actor = "a"
command = "reserve"
param-rk = 0x10
prout-type = "WE-RO"
state = { holder = "a", registered = ["a"] }

[[phase.step]]
actor = "b"
command = "write"
expect = ["RESERVATION CONFLICT"]
"""


def test_the_reference_file_reads() -> None:
    tiny = loads(VALID)
    assert tiny.actors == ("a", "b") and tiny.keys == {"a": 0x10}
    assert tiny.items[1] == Step("b", tiny.items[1].command, (CONFLICT,), phase="p")


WHOLE_STEP = 'actor = "b"\ncommand = "write"\nexpect = ["RESERVATION CONFLICT"]'


@pytest.mark.parametrize(
    ("old", "new", "line", "field"),
    [
        ('prout-type = "WE-RO"', 'prout-type = "WE-R0"', 19, "phase[1].step[1].prout-type"),
        ('prout-type = "WE-RO"', "prout-type = 4", 19, "phase[1].step[1].prout-type"),
        ('command = "reserve"', 'command = "reserv"', 17, "phase[1].step[1].command"),
        ("param-rk = 0x10", "param-rk = -1", 18, "phase[1].step[1].param-rk"),
        ("param-rk = 0x10", "param-rk = 0x10000000000000000", 18, "phase[1].step[1].param-rk"),
        ("param-rk = 0x10\n", "", 15, "phase[1].step[1]"),  # reserve needs param-rk
        ('actor = "b"\ncommand', 'actor = "c"\ncommand', 23, "phase[1].step[2].actor"),
        ('actor = "b"\ncommand', 'actor = "winner"\ncommand', 23, "phase[1].step[2].actor"),
        (
            'expect = ["RESERVATION CONFLICT"]',
            'expect = ["CONFLICTED"]',
            25,
            "phase[1].step[2].expect",
        ),
        ('expect = ["RESERVATION CONFLICT"]', "expect = []", 25, "phase[1].step[2].expect"),
        ('command = "write"', 'command = "write"\nlba = "x"', 25, "phase[1].step[2].lba"),
        ('command = "write"', 'command = "write"\nbogus = 1', 25, "phase[1].step[2].bogus"),
        ('command = "write"', 'command = "write"\nwait = -1', 25, "phase[1].step[2].wait"),
        ('command = "write"', 'command = "write"\nrace = []', 22, "phase[1].step[2]"),
        ('holder = "a"', 'holder = "c"', 20, "phase[1].step[1].state.holder"),
        ('registered = ["a"]', 'registered = "a"', 20, "phase[1].step[1].state.registered"),
        ('name = "b"', 'name = "LUN"', 10, "actor[2].name"),
        ('name = "b"', 'name = "a"', 10, "actor[2].name"),
        ("key = 0x10", 'key = "0x10"', 7, "actor[1].key"),
        ("key = 0x10", 'key = 0x10\ninitiator = "node-a"', 8, "actor[1].initiator"),
        ('name = "tiny"', 'name = "Tiny Scenario"', 1, "name"),
        ('title = "t"\n', "", None, ""),  # missing title: the whole file is wrong
        ('summary = "s"', 'summary = "s"\nformat = 2', 4, "format"),
        ('summary = "s"', 'summary = "s\nx"', 3, ""),  # not TOML at all
        (WHOLE_STEP, 'action = "nexus-loss"', 22, "phase[1].step[2]"),
        (
            WHOLE_STEP,
            'action = "nexus-loss"\nactor = "LUN"',
            22,
            "phase[1].step[2]",
        ),
    ],
)
def test_a_bad_file_names_its_line_and_field(
    old: str, new: str, line: int | None, field: str
) -> None:
    assert old in VALID
    with pytest.raises(ScenarioFileError) as e:
        loads(VALID.replace(old, new, 1), "my.toml")
    assert (e.value.origin, e.value.line, e.value.field) == ("my.toml", line, field), str(e.value)


def test_a_race_and_its_roles() -> None:
    racing = VALID.replace(
        '[[phase.step]]\nactor = "b"',
        '[[phase.step]]\nlosers-expect = ["reservation conflict", "unit attention (any)"]\n'
        'state = { holder = "winner" }\n\n[[phase.step.race]]\nactor = "a"\ncommand = "tur"\n\n'
        '[[phase.step.race]]\nactor = "b"\ncommand = "tur"\n\n[[phase.step]]\nactor = "loser"',
    )
    race = loads(racing).items[1]
    assert isinstance(race, Race) and race.state == StateCheck(holder="winner")
    assert [s.actor for s in race.steps] == ["a", "b"]
    assert race.losers_expect == (CONFLICT, Outcome.sense(SenseKey.UNIT_ATTENTION))
    alone = racing.replace('actor = "b"\ncommand = "tur"', 'actor = "a"\ncommand = "tur"')
    with pytest.raises(ScenarioFileError) as e:
        loads(alone)
    assert e.value.field == "phase[1].step[2].race"
    judged = racing.replace(
        'actor = "a"\ncommand = "tur"', 'actor = "a"\ncommand = "tur"\nexpect = ["GOOD"]'
    )
    with pytest.raises(ScenarioFileError) as e:
        loads(judged)
    assert e.value.field == "phase[1].step[2].race[1].expect"


@pytest.mark.parametrize(
    ("text", "outcome"),
    [
        ("good", Outcome(Status.GOOD)),
        ("Unit_Attention (Registrations Preempted)", Outcome.ua(REGISTRATIONS_PREEMPTED)),
        ("UNIT ATTENTION (ASC 29h)", Outcome.ua(asc=0x29)),
        ("unit attention (i_t nexus loss occurred)", Outcome.ua(I_T_NEXUS_LOSS_OCCURRED)),
        (
            "ILLEGAL REQUEST (ASC 24h ASCQ 00h)",
            Outcome.check(SenseKey.ILLEGAL_REQUEST, INVALID_FIELD_IN_CDB),
        ),
    ],
)
def test_outcomes_are_read_in_any_case_and_named_canonically(text: str, outcome: Outcome) -> None:
    assert read_outcome(text) == outcome


def test_reservation_types_by_number_and_holder_key_forms() -> None:
    text = VALID.replace('prout-type = "WE-RO"', "prout-type = 8")
    assert loads(text).items[0].command.type_ == ReservationType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS
    for form, key in (('"none"', None), ('"any"', ANY_KEY), ("0x10", 0x10)):
        read = VALID.replace(
            'command = "reserve"\nparam-rk = 0x10\nprout-type = "WE-RO"',
            f'command = "read-reservation"\nholder-key = {form}',
        )
        assert loads(read).items[0].command == ReadReservation(holder_key=key)


@pytest.mark.parametrize("name", BUILTIN_ORDER)
def test_a_builtin_run_from_its_file_gives_the_builtins_verdict(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """``show NAME --as-file`` → ``run FILE`` on helper-sim: the same verdict and rows."""
    assert cli.main(["show", name, "--as-file"]) == 0
    path = tmp_path / f"{name}.toml"
    path.write_text(capsys.readouterr().out)
    assert load(path) == SCENARIOS[name]
    try:
        builtin = cli.run_scenario(SCENARIOS[name], "helper-sim")
    except BackendUnavailable as e:
        unavailable(f"helper-sim unavailable: {e}")
    code = cli.main(["run", str(path), "--backend", "helper-sim", "--json"])
    assert code == builtin.exit_code == 0
    rows = json.loads(capsys.readouterr().out)["timeline"]
    assert [r["command"] for r in rows] == [r.command for r in builtin.rows]


def test_show_describes_and_refuses_what_is_neither_name_nor_file(
    capsys: pytest.CaptureFixture,
) -> None:
    assert cli.main(["show", "failover-aptpl"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("failover-aptpl: ") and "needs a backend that can: power_cycle" in out
    assert cli.main(["show", "no-such-scenario"]) == 2
    assert cli.main(["run", "no-such.toml"]) == 2


def test_a_bad_file_fails_the_run_with_its_location(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(VALID.replace('"WE-RO"', '"WE-R0"'))
    assert cli.main(["run", str(path)]) == 2
    assert f"{path}:19: phase[1].step[1].prout-type: " in capsys.readouterr().err


def test_every_kind_is_dataclass_equal_not_just_text_equal() -> None:
    """The round-trip tests compare dataclasses: a field the writer forgot must show."""
    scenario = every_kind()
    first = scenario.items[0]
    assert isinstance(first, Step)
    changed = dataclasses.replace(first, command=Register(0, 0x1234, aptpl=False))
    assert (
        loads(dumps(dataclasses.replace(scenario, items=(changed, *scenario.items[1:]))))
        != scenario
    )


def doc_example() -> str:
    text = DOC.read_text()
    match = re.search(
        r"<!-- BEGIN example scenario file -->\n```toml\n(.*?)```\n<!-- END", text, re.S
    )
    assert match, "docs/scenarios.md lost its example scenario file"
    return match.group(1)


@pytest.mark.parametrize("backend_name", ["sim", "helper-sim"])
def test_the_docs_example_file_runs_and_passes(backend_name: str) -> None:
    example = loads(doc_example(), "docs/scenarios.md")
    try:
        run = cli.run_scenario(example, backend_name)
    except BackendUnavailable as e:
        unavailable(f"{backend_name} unavailable: {e}")
    assert run.verdict == Verdict.PASS, run.failures
    # and it checks something: a reset that dropped the reservation would fail it
    wrong = doc_example().replace('expect = ["RESERVATION CONFLICT"]', 'expect = ["GOOD"]', 1)
    assert cli.run_scenario(loads(wrong), "sim").verdict == Verdict.FAIL


STALLED = VALID.replace(
    '[[phase.step]]\nactor = "a"\ncommand = "reserve"',
    '[[phase.step]]\nactor = "a"\ncommand = "register"\nparam-sark = 0x10\n\n'
    '[[phase.step]]\nactor = "a"\ncommand = "reserve"',
).replace('command = "write"', 'command = "write"\nstall = 0.3', 1)


def test_a_stall_delays_the_answer_and_one_over_the_timeout_is_a_hang() -> None:
    """``stall``: the LU holds back that command's answer (real time); the command still takes
    effect. Within the run's timeout the step passes, late; beyond it the run is hung."""
    scenario = loads(STALLED)
    assert Capability.STALL in scenario.needs
    slow = cli.run_scenario(scenario, "sim", timeout=5)
    assert slow.verdict == Verdict.PASS
    write = next(r for r in slow.rows if r.command.startswith("WRITE"))
    assert write.elapsed_ms >= 300
    others = [r.elapsed_ms for r in slow.rows if r is not write]
    assert max(others) < 300  # only the stalled command waited
    hung = cli.run_scenario(scenario, "sim", timeout=0.1)
    assert hung.verdict == Verdict.HUNG
    assert cli.run_scenario(scenario, "helper-sim").verdict == Verdict.UNSUPPORTED


ONE_HOST_TWO_PORTS = """\
name = "one-host-two-ports"
title = "t"
summary = "One initiator through two target ports is two I_T nexuses."

[[actor]]
name = "p1"
key = 0x77
initiator = "iqn.2026-12.org.example:host,i,0x23d000000001"

[[actor]]
name = "p2"
initiator = "iqn.2026-12.org.example:host,i,0x23d000000001"

[[phase]]
name = "p"

[[phase.step]]
actor = "p1"
command = "register"
param-sark = 0x77

[[phase.step]]
actor = "p2"
command = "read-keys"
keys-present = [0x77]
note = "the registration shows from every nexus"

[[phase.step]]
actor = "p2"
command = "reserve"
param-rk = 0x77
prout-type = "WE"
expect = ["RESERVATION CONFLICT"]
note = "but the nexus through port 2 is not registered"
state = { holder = "none", registered = ["p1"] }
"""


@pytest.mark.parametrize("backend_name", ["sim", "helper-sim"])
def test_actors_may_name_their_initiators(backend_name: str) -> None:
    """Two actors with one iSCSI initiator name, on target ports 1 and 2: the backend is
    opened with those names (the run's initiators say so) and the nexuses stay apart."""
    scenario = loads(ONE_HOST_TWO_PORTS)
    assert Capability.NAMED_INITIATORS in scenario.needs
    try:
        run = cli.run_scenario(scenario, backend_name)
    except BackendUnavailable as e:
        unavailable(f"{backend_name} unavailable: {e}")
    assert run.verdict == Verdict.PASS, run.failures
    assert run.initiators["p1"] == run.initiators["p2"] != run.initiators["observer"]
    assert run.initiators["p1"].startswith("iqn.2026-12.org.example:host")


def test_a_backend_opened_with_other_names_is_not_used_as_if_named() -> None:
    run = Runner(loads(ONE_HOST_TWO_PORTS), SimBackend(initiators=3)).run()
    assert run.verdict == Verdict.UNSUPPORTED and run.rows == []
