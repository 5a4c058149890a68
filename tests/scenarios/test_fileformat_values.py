"""Scenario files value by value: each reader's refusal as the user reads it, the bounds, the
spellings a file may use, and the exact text the writer produces.

A refusal is checked whole (``ScenarioFileError``'s line, field and ``why``): the message is
what a user fixes the file from. The writer's text is checked whole where its choices show
(header, key order, defaults left out, where a long string wraps), not only that it reads back.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scenario_texts import file_head, line_of

from scsi_pr.rig.backends import ACTIONS, Capability
from scsi_pr.rig.scenarios import fileformat as ff
from scsi_pr.rig.scenarios.commands import (
    RawCdb,
    Read,
    Register,
    Reserve,
    TestUnitReady,
    Write,
)
from scsi_pr.rig.scenarios.fileread import ScenarioFileError, loads
from scsi_pr.rig.scenarios.filewrite import dumps, string, value
from scsi_pr.rig.scenarios.model import (
    CONFLICT,
    GOOD,
    TASK_ABORTED,
    Action,
    Outcome,
    Race,
    Scenario,
    Source,
    Step,
)
from scsi_pr.sim.constants import REGISTRATIONS_PREEMPTED, ReservationType, SenseKey, Status

ACTION_CHOICES = "power-cycle, lun-reset, restart-helper, nexus-loss"
UA_FORMS = (
    'an additional sense name (e.g. RESERVATIONS PREEMPTED) or "ASC xxh" for any ASCQ of that ASC'
)


def scenario_text(step: str, actor: str = "") -> str:
    """A one-actor, one-step file with ``step``'s lines (and ``actor``'s under [[actor]])."""
    return file_head({"a": 0x10}, actor) + f"\n[[phase.step]]\n{step}\n"


def only_step(text: str) -> Step:
    """The file's one step, checked to be a command step."""
    item = loads(text).items[0]
    assert isinstance(item, Step)
    return item


# -- each reader's refusal, as the user reads it --------------------------------------------
REFUSALS = [
    # (step lines, the bad line, field, why)
    (
        'actor = "a"\ncommand = "register"\nparam-aptpl = 1',
        "param-aptpl = 1",
        "param-aptpl",
        "true or false is needed, not 1",
    ),
    (
        'actor = "a"\ncommand = "register"\nparam-rk = true',
        "param-rk = true",
        "param-rk",
        "a reservation key is an integer 0..0xffffffffffffffff, not True",
    ),
    (
        'actor = "a"\ncommand = "read-keys"\nkeys-present = 0x10',
        "keys-present = 0x10",
        "keys-present",
        "a list of keys is needed, not 16",
    ),
    (
        'actor = "a"\ncommand = "read-reservation"\nholder-key = "all"',
        'holder-key = "all"',
        "holder-key",
        'holder-key is a key, "none" or "any", not \'all\'',
    ),
    (
        'actor = "a"\ncommand = "raw"\ncdb = 0x5e',
        "cdb = 0x5e",
        "cdb",
        "hex bytes are a string, not 94",
    ),
    (
        'actor = "a"\ncommand = "raw"\ncdb = "5e:0g"',
        'cdb = "5e:0g"',
        "cdb",
        "not hex bytes: '5e:0g'",
    ),
    (
        'actor = "a"\ncommand = "write"\nlba = -1',
        "lba = -1",
        "lba",
        "an LBA is an integer 0..0xffffffffffffffff, not -1",
    ),
    (
        'actor = "a"\ncommand = "read"\nlba = true',
        "lba = true",
        "lba",
        "an LBA is an integer 0..0xffffffffffffffff, not True",
    ),
    (
        'actor = "a"\ncommand = "register-move"\nparam-rk = 0x10\nparam-sark = 0x20\n'
        'prout-type = "WE"\ndest = 5',
        "dest = 5",
        "dest",
        "an actor name is needed, not 5",
    ),
    (
        'actor = "a"\ncommand = "register-move"\nparam-rk = 0x10\nparam-sark = 0x20\n'
        'prout-type = "WE"\ndest = ""',
        'dest = ""',
        "dest",
        "an actor name is needed, not ''",
    ),
    (
        'action = "reboot"',
        'action = "reboot"',
        "action",
        f"unknown action 'reboot'; choose from {ACTION_CHOICES}",
    ),
    (
        'actor = "a"\ncommand = "tur"\nexpect-ua = [0x29]',
        "expect-ua = [0x29]",
        "expect-ua",
        "a unit attention is a string, not 41",
    ),
    (
        'actor = "a"\ncommand = "tur"\nexpect-ua = ["ASC 29h ASCQ 03h"]',
        "expect-ua = ",
        "expect-ua",
        f"unknown unit attention 'ASC 29h ASCQ 03h': {UA_FORMS}",
    ),
    (
        'actor = "a"\ncommand = "tur"\nexpect-ua = ["power came on"]',
        "expect-ua = ",
        "expect-ua",
        f"unknown unit attention 'power came on': {UA_FORMS}",
    ),
]


@pytest.mark.parametrize(("step", "bad", "field", "why"), REFUSALS)
def test_a_bad_value_is_refused_with_its_readers_message(
    step: str, bad: str, field: str, why: str
) -> None:
    text = scenario_text(step)
    with pytest.raises(ScenarioFileError) as e:
        loads(text, "v.toml")
    assert (e.value.line, e.value.field, e.value.why) == (
        line_of(text, bad),
        f"phase[1].step[1].{field}",
        why,
    )
    assert str(e.value) == f"v.toml:{line_of(text, bad)}: phase[1].step[1].{field}: {why}"


@pytest.mark.parametrize(
    ("initiator", "why"),
    [
        ("5", "an initiator name is a string, not 5"),
        (
            '"node-a"',
            "cannot tell the protocol of initiator 'node-a': "
            "use naa.<16 hex> (SAS), fc.<16 hex> (FC) or iqn.… (iSCSI)",
        ),
        ('"iqn.2026-12.org.example:a,i,0xzz"', "bad ISID: 'zz'"),
        ('"naa.zz"', "bad SAS address: 'naa.zz'"),  # was a ValueError's traceback
    ],
)
def test_a_bad_initiator_is_refused_with_the_transportids_reason(initiator: str, why: str) -> None:
    """The TransportID parser's own reason reaches the user, under the actor's field."""
    text = scenario_text('actor = "a"\ncommand = "tur"', f"initiator = {initiator}")
    with pytest.raises(ScenarioFileError) as e:
        loads(text)
    assert (e.value.line, e.value.field, e.value.why) == (
        line_of(text, "initiator = "),
        "actor[1].initiator",
        why,
    )


# -- bounds and spellings a file may use ----------------------------------------------------
@pytest.mark.parametrize(("command", "cls"), [("write", Write), ("read", Read)])
def test_lba_zero_is_read_as_given(command: str, cls: type[Write | Read]) -> None:
    """0 is the first block, not a missing value: written out, it is read, not refused."""
    step = only_step(scenario_text(f'actor = "a"\ncommand = "{command}"\nlba = 0'))
    assert step.command == cls(lba=0)


@pytest.mark.parametrize(
    "cdb",
    ["5e:01:00:00:00:00:00:00:20:00", "5e 01:00 00:00:00:00:00:20:00", "5e0100000000000020:00"],
)
def test_hex_bytes_may_be_separated_by_colons(cdb: str) -> None:
    """``:`` separates bytes as hex dumps and FC names write them; it reads as a space."""
    step = only_step(scenario_text(f'actor = "a"\ncommand = "raw"\ncdb = "{cdb}"'))
    assert step.command == RawCdb(bytes.fromhex("5e 01 00 00 00 00 00 00 20 00"))


@pytest.mark.parametrize(
    ("written", "capability"),
    [
        ("power-cycle", Capability.POWER_CYCLE),
        ("power_cycle", Capability.POWER_CYCLE),
        ("lun_reset", Capability.LUN_RESET),
        ("restart_helper", Capability.RESTART_HELPER),
    ],
)
def test_an_action_name_may_use_underscores(written: str, capability: Capability) -> None:
    """The capability's own name (``power_cycle``) is read like the file's (``power-cycle``)."""
    item = loads(scenario_text(f'action = "{written}"')).items[0]
    assert isinstance(item, Action) and item.capability == capability


def test_an_action_is_written_with_dashes_and_reads_back() -> None:
    assert ff.write_action(Capability.POWER_CYCLE) == '"power-cycle"'
    assert ff.write_action(Capability.RESTART_HELPER) == '"restart-helper"'
    for capability in ACTIONS:
        written = tomllib.loads(f"action = {ff.write_action(capability)}")["action"]
        assert "_" not in written and ff.read_action(written) == capability


# -- writers --------------------------------------------------------------------------------
def test_toml_string_keeps_non_ascii_as_it_is() -> None:
    """A file is UTF-8 for people: ``é`` stays ``é``, not ``\\u00e9``."""
    assert ff.toml_string("café → naïve") == '"café → naïve"'


def test_toml_string_escapes_del_which_toml_forbids_raw() -> None:
    assert ff.toml_string("a\x7fb") == '"a\\u007fb"'
    with pytest.raises(tomllib.TOMLDecodeError):
        tomllib.loads('k = "a\x7fb"')  # why DEL is escaped: raw, it is not TOML


@pytest.mark.parametrize(
    "text", ["a\x7fb", 'say "hi"', "back\\slash", "tab\there", "nl\nnul\x00", "né\u2028€", ""]
)
def test_toml_string_reads_back_as_the_same_string(text: str) -> None:
    assert tomllib.loads(f"k = {ff.toml_string(text)}")["k"] == text


def test_an_outcome_whose_text_reads_back_otherwise_is_refused() -> None:
    """CHECK CONDITION with a sense key but no text prints as plain ``CHECK CONDITION``,
    which reads back without the key: the writer refuses rather than write another outcome."""
    outcome = Outcome(Status.CHECK_CONDITION, SenseKey.ILLEGAL_REQUEST)
    with pytest.raises(ff.ValueProblem) as e:
        ff.write_outcome(outcome)
    assert str(e.value) == f"outcome {outcome!r} has no file form"


@dataclass(frozen=True)
class Probe(TestUnitReady):
    """A command built in code that the file format has no name for."""


def test_a_command_without_a_file_name_is_refused_by_the_writer() -> None:
    scenario = Scenario("probe", "t", "s", ("a",), (Step("a", Probe()),), Source("", ()))
    with pytest.raises(ff.ValueProblem) as e:
        dumps(scenario)
    assert str(e.value) == "no scenario-file command writes Probe()"


def test_a_default_asked_for_a_field_the_command_lacks_names_it() -> None:
    """A table mistake (a field on the wrong command) fails naming the attribute."""
    with pytest.raises(KeyError) as e:
        ff.COMMANDS["tur"].default(ff.RK)
    assert e.value.args == ("key",)
    assert ff.COMMANDS["write"].default(ff.LBA) == 0


# -- the written file -----------------------------------------------------------------------
FILE = "agents/scsi/fence_scsi.py: scsi_reserve()"
#: one line of exactly 96 columns
EXPECT_96 = (CONFLICT, Outcome(Status.CHECK_CONDITION), Outcome.ua(REGISTRATIONS_PREEMPTED))
#: one line of 97 columns: one outcome a line
EXPECT_97 = (
    CONFLICT,
    Outcome(Status.BUSY),
    Outcome.sense(SenseKey.UNIT_ATTENTION),
    Outcome.sense(SenseKey.NOT_READY, 0x7E, 0x01),
)


def small() -> Scenario:
    """Defaults everywhere the writer leaves them out, a first phase named "" and two items in
    one phase, and a 96- and a 97-column ``expect``."""
    we_ro = ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY
    items = (
        Step("a", Register(0, 0x10)),
        Race((Step("a", Reserve(0x10, we_ro)), Step("b", TestUnitReady()))),
        Action("power", Capability.POWER_CYCLE),
        Action("b dies"),
        Step("b", TestUnitReady(), expect=EXPECT_96, phase="after"),
        Step("b", TestUnitReady(), expect=EXPECT_97, phase="after"),
        Step("a", TestUnitReady(), expect=(GOOD, TASK_ABORTED), phase="after"),
    )
    return Scenario("small", "t", "s", ("a", "b"), items, Source("sw", (FILE,)), {"a": 0x10})


SMALL_TEXT = f"""\
# small: t
# A scsi-pr scenario file (docs/scenarios.md, "Scenario files"). Run it with
#   scsi-pr scenario run small.toml --backend sim
format = 1
name = "small"
title = "t"
summary = "s"

[source]
software = "sw"
files = [
  "{FILE}",
]

[[actor]]
name = "a"
key = 0x10

[[actor]]
name = "b"

[[phase]]
name = ""

[[phase.step]]
actor = "a"
command = "register"
param-sark = 0x10

[[phase.step]]

[[phase.step.race]]
actor = "a"
command = "reserve"
param-rk = 0x10
prout-type = "WE-RO"

[[phase.step.race]]
actor = "b"
command = "tur"

[[phase.step]]
action = "power-cycle"
label = "power"

[[phase.step]]
event = "b dies"

[[phase]]
name = "after"

[[phase.step]]
actor = "b"
command = "tur"
expect = ["RESERVATION CONFLICT", "CHECK CONDITION", "UNIT ATTENTION (REGISTRATIONS PREEMPTED)"]

[[phase.step]]
actor = "b"
command = "tur"
expect = [
  "RESERVATION CONFLICT",
  "BUSY",
  "UNIT ATTENTION (any)",
  "NOT READY (ASC 7Eh ASCQ 01h)",
]

[[phase.step]]
actor = "a"
command = "tur"
expect = ["GOOD", "TASK ABORTED"]
"""


def test_the_writer_leaves_defaults_out_and_groups_steps_by_phase() -> None:
    """Header comments, key order, one ``[[phase]]`` per run of steps (the first one even when
    named ""), no ``expect``/``losers-expect``/``device``/``wait``/``note``/``actor = "LUN"``/
    ``devices`` line where the default holds, and lines up to 96 columns kept whole."""
    text = dumps(small())
    assert text == SMALL_TEXT
    assert loads(text) == small()


#: a title that, as ``title = "…"``, is exactly 96 columns
TITLE_96 = "A reservation holder's key is " + "x" * 56


def test_a_string_that_fits_96_columns_stays_one_line() -> None:
    assert len(TITLE_96) == 86
    assert string("title", TITLE_96) == f'title = "{TITLE_96}"'


def test_a_string_one_column_longer_becomes_a_multi_line_string() -> None:
    """Its lines start at column 0, so the text fits on the line after the opening quotes."""
    longer = TITLE_96 + "y"
    assert string("title", longer) == f'title = """\\\n{longer}"""'
    assert tomllib.loads(string("title", longer))["title"] == longer


def test_a_long_string_without_a_space_stays_one_line() -> None:
    """Without a space there is nowhere to break: a basic string, however long."""
    url = "https://example.org/" + "p" * 100
    assert value(url, 7) == f'"{url}"'


def test_wrapped_lines_are_filled_up_to_96_columns_with_their_backslash() -> None:
    """A word joins its line while the line, with its trailing `` \\``, stays within 96
    columns: 50 + 1 + 43 + 2 = 96 joins; the next word starts a line, without a space."""
    first, second, third = "a" * 50, "b" * 43, "c" * 10
    text = f"{first} {second} {third}"
    written = string("summary", text)
    assert written == f'summary = """\\\n{first} {second} \\\n{third}"""'
    assert len(written.splitlines()[1]) == 96
    assert tomllib.loads(written)["summary"] == text
    wider = f"{first} {second}b {third}"  # one more column: the second word starts a line
    assert string("summary", wider) == f'summary = """\\\n{first} \\\n{second}b {third}"""'


def test_a_race_with_other_losers_and_an_action_with_an_actor_write_them() -> None:
    """The counterpart of the defaults left out: a non-default is written, and reads back."""
    race = Race(
        (Step("a", TestUnitReady()), Step("b", TestUnitReady())),
        losers_expect=(CONFLICT, TASK_ABORTED),
        wait=1.5,
        note="n",
    )
    drop = Action("drop", Capability.NEXUS_LOSS, actor="b")
    scenario = Scenario("w", "t", "s", ("a", "b"), (race, drop), Source("", ()))
    text = dumps(scenario)
    assert (
        '[[phase.step]]\nlosers-expect = ["RESERVATION CONFLICT", "TASK ABORTED"]\n'
        'wait = 1.5\nnote = "n"\n'
    ) in text
    assert '[[phase.step]]\naction = "nexus-loss"\nlabel = "drop"\nactor = "b"\n' in text
    assert loads(text) == scenario


@pytest.mark.parametrize(
    "text",
    [
        " indented " + "word " * 30,  # the reader drops a continued line's leading spaces
        "a" * 94 + "  b",  # a double space where the line breaks
        "x " * 60,
        ("  lead and  double  spaces " * 6) + "end  ",
    ],
)
def test_a_wrapped_text_keeps_every_space(text: str) -> None:
    """Lines break after a word's spaces, never before them, and spaces that start the text
    are escaped: the text reads back as it was."""
    written = string("note", text)
    assert "\n" in written and tomllib.loads(written)["note"] == text


@given(
    text=st.text(st.sampled_from('ab é"\x7f'), max_size=400),
    before=st.integers(0, 40),
    after=st.integers(0, 2),
)
def test_any_text_reads_back_and_its_lines_keep_to_96_columns(
    text: str, before: int, after: int
) -> None:
    """Whatever the text, its TOML reads back as it; each line, with its backslash, closing
    quotes or ``after`` characters behind it, keeps to 96 columns unless one word alone is
    wider (a word is never broken)."""
    written = value(text, before, after)
    assert tomllib.loads(f"k = {written}")["k"] == text
    lines = written.split("\n")
    widths = (
        [before + len(written) + after]
        if len(lines) == 1
        else [*(len(line) for line in lines[1:-1]), len(lines[-1]) + after]
    )
    lead = 6 * (len(text) - len(text.lstrip(" ")))  # each written as \\u0020
    longest_word = max((len(ff.toml_string(w)) for w in text.split(" ")), default=0)
    assert max(widths) <= max(96, lead + longest_word + before + after + 4)


def test_a_text_fits_with_what_stands_behind_it() -> None:
    """A one-line string counts ``after`` (a list entry's comma) within the 96 columns."""
    text = "w " * 45  # 90 characters: 92 quoted
    assert value(text, 4, 0) == f'"{text}"'
    assert value(text, 3, 1) == f'"{text}"'
    assert value(text, 4, 1).startswith('"""')


def test_the_last_wrapped_line_keeps_its_closing_quotes_and_comma_within_96() -> None:
    """A middle line ends with its backslash (1 column), the last with the closing quotes (3)
    and ``after``: a last word that would pass 96 with them goes on a line of its own."""
    first = "a" * 50 + " "
    for after in (0, 1):
        fits = first + "b" * (96 - len(first) - 3 - after)  # the last line exactly 96
        assert value(fits, 90, after).split("\n")[1:] == [f'{fits}"""']
        wider = fits + "b"
        assert value(wider, 90, after).split("\n")[1:] == [
            f"{first}\\",
            "b" * len(wider[len(first) :]) + '"""',
        ]


def test_a_source_file_entry_counts_its_indent_and_comma() -> None:
    """``files = [`` entries are written ``  "…",``: one of exactly 96 columns stays on its
    line, one column more wraps."""

    def entry_lines(name: str) -> list[str]:
        text = dumps(Scenario("f", "t", "s", ("a",), (Step("a", TestUnitReady()),),
                              Source("sw", (name,))))  # fmt: skip
        start = text.index("files = [\n") + len("files = [\n")
        return text[start : text.index("\n]", start)].split("\n")

    fits = "doc " + "x" * 87  # 2 + 1 + 91 + 1 + 1 = 96
    assert entry_lines(fits) == [f'  "{fits}",']
    assert entry_lines(fits + "x")[0] == '  """\\'
