"""Hostile scenario files and command lines: each is refused with the format's (or the CLI's)
own error and exit status 2, never a traceback from deep in a run.

These came from fuzzing ``scsi-pr scenario``: a ``registered`` check naming an actor without a
key (KeyError mid-run), an action written as a list or table (TypeError: unhashable), an LBA
too big for READ(16)/WRITE(16) (struct.error when the CDB is packed), and names no file can
have for ``--svg`` or the scenario itself (IsADirectoryError, ENAMETOOLONG). The messages are
checked whole: they are what a user reads, and a reverted fix would not print them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from scenario_texts import line_of

from scsi_pr.rig.scenarios import cli
from scsi_pr.rig.scenarios.commands import Read, Write
from scsi_pr.rig.scenarios.fileread import ScenarioFileError, loads
from scsi_pr.rig.scenarios.library import SCENARIOS, builtin_text
from scsi_pr.rig.scenarios.model import Step
from scsi_pr.rig.scenarios.render import SvgTargetError, svg_target, write_svg

BUILTINS = ", ".join(SCENARIOS)


def run_file(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``scsi-pr scenario run FILE`` on ``text``: (exit status, file name, stderr)."""
    path = tmp_path / "hostile.toml"
    path.write_text(text, encoding="utf-8")
    code = cli.main(["run", str(path)])
    return code, str(path), capsys.readouterr().err


# -- 1. a registered check naming an actor without a key ------------------------------------
def fence_scsi_without_node1_key() -> str:
    text = builtin_text("fence-scsi")
    keyless, count = re.subn(r"(name = \"node1\"\n)key = 0x[0-9a-f]+\n", r"\1", text, count=1)
    assert count == 1, "fence-scsi.toml no longer gives node1 a key on the line after its name"
    return keyless


def test_a_registered_check_needs_the_actors_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = fence_scsi_without_node1_key()
    line = line_of(text, 'registered = ["node1"')
    code, path, err = run_file(tmp_path, text, capsys)
    assert (code, err) == (
        2,
        f"scsi-pr scenario: {path}:{line}: phase[3].step[1].state.registered: actor 'node1' "
        "has no key = ... under [[actor]] to check\n",
    )


def test_show_refuses_it_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "keyless.toml"
    path.write_text(fence_scsi_without_node1_key(), encoding="utf-8")
    assert cli.main(["show", str(path), "--as-file"]) == 2
    assert "state.registered: actor 'node1' has no key" in capsys.readouterr().err


RACE = """\
name = "keyless-race"
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
state = { holder = "none", registered = ["winner"] }

[[phase.step.race]]
actor = "a"
command = "register"
param-sark = 0x10

[[phase.step.race]]
actor = "b"
command = "tur"
"""


def test_a_role_in_a_registered_check_needs_every_racers_key() -> None:
    """The winner may be either racer, so both need a key; one without is refused by name."""
    with pytest.raises(ScenarioFileError) as e:
        loads(RACE, "race.toml")
    assert str(e.value) == (
        "race.toml:16: phase[1].step[1].state.registered: 'winner' may be 'b', "
        "without key = ... under [[actor]] to check"
    )
    keyed = loads(RACE.replace('name = "b"\n', 'name = "b"\nkey = 0x20\n'))
    assert keyed.keys == {"a": 0x10, "b": 0x20}


def test_an_actor_without_a_key_is_still_fine_where_no_key_is_checked() -> None:
    """``key`` stays optional (docs/scenarios.md): only a registered check needs it."""
    loaded = loads(RACE.replace(', registered = ["winner"]', ""))
    assert loaded.keys == {"a": 0x10}


# -- 2. an action that is not a name --------------------------------------------------------
@pytest.mark.parametrize("value", ['["restart-helper"]', "{}"])
def test_an_action_that_is_not_a_name_is_the_formats_error(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = builtin_text("helper-restart")
    assert 'action = "restart-helper"' in text
    line = line_of(text, 'action = "restart-helper"')
    bad = text.replace('action = "restart-helper"', f"action = {value}", 1)
    shown = "['restart-helper']" if value.startswith("[") else "{}"
    code, path, err = run_file(tmp_path, bad, capsys)
    assert (code, err) == (
        2,
        f"scsi-pr scenario: {path}:{line}: phase[2].step[1].action: an action is a name, not "
        f"{shown}; choose from power-cycle, lun-reset, restart-helper, nexus-loss\n",
    )
    assert cli.main(["show", str(tmp_path / "hostile.toml")]) == 2


# -- 3. an LBA too big for the CDB ----------------------------------------------------------
LBA_FILE = """\
name = "lba"
title = "t"
summary = "s"

[[actor]]
name = "a"

[[phase]]
name = "p"

[[phase.step]]
actor = "a"
command = "COMMAND"
lba = LBA
"""


@pytest.mark.parametrize("command", ["write", "read"])
@pytest.mark.parametrize("lba", [1 << 64, 10**30])
def test_an_lba_beyond_64_bits_is_refused_when_read(
    command: str, lba: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = LBA_FILE.replace("COMMAND", command).replace("LBA", str(lba))
    code, path, err = run_file(tmp_path, text, capsys)
    assert (code, err) == (
        2,
        f"scsi-pr scenario: {path}:14: phase[1].step[1].lba: an LBA is an integer "
        f"0..0xffffffffffffffff, not {lba}\n",
    )


@pytest.mark.parametrize(("command", "cls"), [("write", Write), ("read", Read)])
def test_the_largest_lba_still_reads(command: str, cls: type[Write | Read]) -> None:
    text = LBA_FILE.replace("COMMAND", command).replace("LBA", "0xffffffffffffffff")
    step = loads(text).items[0]
    assert isinstance(step, Step) and step.command == cls(lba=(1 << 64) - 1)


# -- 4. names no file can have --------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "cannot write SVG to '': no file name given"),
        ("DIR", "cannot write SVG to 'DIR': it is a directory"),
        ("DIR/" + "s" * 300, "cannot write SVG to 'DIR/sss…': File name too long"),
        ("FILE/x.svg", "cannot write SVG to 'FILE/x.svg': Not a directory"),
    ],
)
def test_svg_where_no_file_can_be_written_is_refused_before_the_run(
    name: str, why: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("")
    target = name.replace("DIR", str(tmp_path)).replace("FILE", str(tmp_path / "file"))
    expected = why.replace("DIR", str(tmp_path)).replace("FILE", str(tmp_path / "file"))
    if "…" in expected:  # a long name is cut to 80 characters and its length given
        shown = repr(target[:80])[:-1]
        expected = f"cannot write SVG to {shown}'… ({len(target)} characters): File name too long"
    assert cli.main(["fence-scsi", "--svg", target]) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"scsi-pr scenario: --svg: {expected}\n")


def test_svg_that_cannot_be_written_after_the_run_is_an_error_too(tmp_path: Path) -> None:
    """The check before the run cannot see everything (a disk filling up, a directory made
    meanwhile): writing says why in the same error type, not an OSError."""
    assert svg_target(str(tmp_path / "new" / "chart.svg")) == tmp_path / "new" / "chart.svg"
    run = cli.run_scenario(cli.resolve("fence-scsi"), "sim")
    with pytest.raises(SvgTargetError) as e:
        write_svg(run, tmp_path)
    assert str(e.value) == f"cannot write SVG to {str(tmp_path)!r}: Is a directory"


@pytest.mark.parametrize("verb", ["show", "run"])
def test_a_scenario_name_no_file_can_have_is_no_scenario(
    verb: str, capsys: pytest.CaptureFixture[str]
) -> None:
    name = "a" * 10_000
    assert cli.main([verb, name]) == 2
    prog = "scsi-pr scenario show" if verb == "show" else "scsi-pr scenario"
    assert capsys.readouterr().err == (
        f"{prog}: no scenario {name[:80]!r}… (10000 characters): neither a built-in "
        f"({BUILTINS}) nor a file (File name too long)\n"
    )
