"""Where ``fileread`` says a scenario file is wrong: the error's parts (origin, line, field)
and the few refusals of races and lanes no other test reached. A user fixes a file by these
messages, so each is checked whole."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from locales import ascii_locale  # noqa: F401 (a fixture, used by name)
from scenario_texts import BUILTIN_DIR, file_head

from scsi_pr.rig.scenarios.fileread import ScenarioFileError, load, loads
from scsi_pr.rig.scenarios.library import builtin_text

HEAD = file_head({"a": 0x10, "b": 0x20, "c": None})


def _refusal(text: str) -> ScenarioFileError:
    with pytest.raises(ScenarioFileError) as e:
        loads(HEAD + text, "f.toml")
    return e.value


@pytest.mark.parametrize(
    ("origin", "line", "field", "shown"),
    [
        ("f.toml", 3, "x", "f.toml:3: x: why"),
        ("f.toml", None, "x", "f.toml: x: why"),
        ("f.toml", 3, "", "f.toml:3: why"),
        ("f.toml", None, "", "f.toml: why"),
        ("f.toml", 0, "x", "f.toml: x: why"),  # no line 0: none is named
    ],
)
def test_an_error_names_what_it_knows(
    origin: str, line: int | None, field: str, shown: str
) -> None:
    error = ScenarioFileError(origin, line, field, "why")
    assert str(error) == shown
    assert (error.origin, error.line, error.field, error.why) == (origin, line, field, "why")


def test_a_file_that_cannot_be_read_says_so_with_its_path(tmp_path: Path) -> None:
    """A directory, or bytes that are not UTF-8: the path and the system's reason, no line
    and no field (nothing was read)."""
    with pytest.raises(ScenarioFileError) as e:
        load(tmp_path)
    assert (e.value.origin, e.value.line, e.value.field) == (str(tmp_path), None, "")
    assert str(e.value) == f"{tmp_path}: cannot read it: [Errno 21] Is a directory: '{tmp_path}'"
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(ScenarioFileError) as e:
        load(latin)
    assert str(e.value).startswith(f"{latin}: cannot read it: 'utf-8' codec can't decode byte 0xe9")


def test_a_race_of_one_actor_or_of_one_actor_twice_is_refused_at_the_race() -> None:
    race = '\n[[phase.step]]\n\n[[phase.step.race]]\nactor = "a"\ncommand = "tur"\n'
    twice = race + '\n[[phase.step.race]]\nactor = "a"\ncommand = "tur"\n'
    for text in (race, twice):
        error = _refusal(text)
        assert (error.field, error.why) == (
            "phase[1].step[1].race",
            "a race needs two or more distinct actors",
        )
        # at the step that holds the race (the race's list has no line of its own)
        assert error.line == (HEAD + text).splitlines().index("[[phase.step]]") + 1


def test_a_race_s_losers_expect_is_read_at_its_place() -> None:
    error = _refusal(
        '\n[[phase.step]]\nlosers-expect = ["NOPE"]\n\n[[phase.step.race]]\nactor = "a"\n'
        'command = "tur"\n\n[[phase.step.race]]\nactor = "b"\ncommand = "tur"\n'
    )
    assert error.field == "phase[1].step[1].losers-expect"
    assert error.line == HEAD.count("\n") + 3


def test_a_race_of_a_role_can_be_any_actor_the_role_could_be() -> None:
    """The second race's 'winner' is a or b; its own winner may then be a, b or c, so a
    registered check of it needs c's key too, and the refusal names c (not the role)."""
    error = _refusal(
        '\n[[phase.step]]\n\n[[phase.step.race]]\nactor = "a"\ncommand = "tur"\n'
        '\n[[phase.step.race]]\nactor = "b"\ncommand = "tur"\n'
        '\n[[phase.step]]\nstate = { registered = ["winner"] }\n'
        '\n[[phase.step.race]]\nactor = "winner"\ncommand = "tur"\n'
        '\n[[phase.step.race]]\nactor = "c"\ncommand = "tur"\n'
    )
    assert (error.field, error.why) == (
        "phase[1].step[2].state.registered",
        "'winner' may be 'c', without key = ... under [[actor]] to check",
    )


def test_an_action_s_lane_is_the_lun_or_a_known_actor() -> None:
    error = _refusal('\n[[phase.step]]\nevent = "it happens"\nactor = "nobody"\n')
    assert (error.field, error.why) == (
        "phase[1].step[1].actor",
        "unknown actor 'nobody'; actors: a, b, c",
    )
    assert (
        loads(HEAD + '\n[[phase.step]]\nevent = "it happens"\nactor = "c"\n').items[0].actor == "c"
    )


def test_no_file_by_that_name_is_an_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(ScenarioFileError) as e:
        load(missing)
    assert str(e.value) == (
        f"{missing}: cannot read it: [Errno 2] No such file or directory: '{missing}'"
    )
    assert not os.path.exists(missing)


@pytest.mark.usefixtures("ascii_locale")
def test_files_are_utf8_whatever_the_locale(tmp_path: Path) -> None:
    """A user's file and the shipped built-ins (two hold non-ASCII text) read as UTF-8 under
    an ASCII locale too."""
    mine = tmp_path / "café.toml"
    mine.write_bytes((HEAD + '\n[[phase.step]]\nevent = "café"\n').encode())
    assert load(mine).items[0].label == "café"
    for name in ("wsfc-same-key", "fence-scsi-devices"):
        shipped = BUILTIN_DIR / f"{name}.toml"
        assert builtin_text(name) == shipped.read_bytes().decode("utf-8")
