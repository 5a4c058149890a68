"""``scsi-pr lockstep`` with arguments found by fuzzing: a replay file that cannot be read, one
naming an initiator the run does not have, an initiator count no side can have. Each is one
line and exit status 2 (a usage error, as for any bad argument), never a traceback or a hang."""

from __future__ import annotations

from pathlib import Path

import pytest

from scsi_pr.rig.backends import Backend, SimBackend
from scsi_pr.rig.lockstep import cli
from scsi_pr.rig.lockstep.steps import ReplayError, read_replay

SIM = ["--device", "sim"]
TUR_FOR_99 = '{"initiator": 99, "cdb": "5e00000000000000ff00", "data": ""}\n'


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The error line of a usage error (exit status 2)."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.splitlines()[-1]


def _unreadable(tmp_path: Path, kind: str) -> Path:
    """A replay path of ``kind``: a directory, a missing file or binary garbage."""
    if kind == "directory":
        return tmp_path
    path = tmp_path / "replay.bin"
    if kind == "binary":
        path.write_bytes(b"\x00\xff\xfe\x80 binary")
    return path


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("directory", "Is a directory"),
        ("missing", "No such file or directory"),
        ("binary", "can't decode byte 0xff"),
    ],
)
def test_a_replay_file_that_cannot_be_read_is_a_usage_error(
    kind: str, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _unreadable(tmp_path, kind)
    line = _refused([*SIM, "--replay", str(path)], capsys)
    assert line.startswith(f"scsi-pr lockstep: error: cannot read {path}: ") and says in line


def test_read_replay_raises_replay_error_for_an_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match=r"cannot read .*: Is a directory"):
        read_replay(tmp_path)


def test_a_replay_naming_an_initiator_the_run_lacks_is_refused_by_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "replay.txt"
    path.write_text("# a comment\n" + TUR_FOR_99)
    line = _refused([*SIM, "--replay", str(path)], capsys)
    assert line == (f"scsi-pr lockstep: error: {path}:2: initiator 99, but the run has 3 "
                    "(see --initiators)")  # fmt: skip
    assert len(read_replay(path)) == 1  # without a count the file itself is well formed
    with pytest.raises(ReplayError, match=r"replay.txt:2: initiator 99, but the run has 32"):
        read_replay(path, 32)


def test_a_replay_within_the_initiators_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "replay.txt"
    path.write_text(TUR_FOR_99.replace("99", "4"))
    assert cli.main([*SIM, "--initiators", "5", "--replay", str(path)]) == 0
    assert "shows no difference" in capsys.readouterr().out


@pytest.mark.parametrize("count", ["33", "99999999999999999999"])
def test_initiators_beyond_what_a_side_can_have_are_refused(
    count: str, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _refused([*SIM, "--initiators", count, "--steps", "1"], capsys)
    assert line == f"scsi-pr lockstep: error: --initiators must be at most {cli.MAX_INITIATORS}"
    assert cli.MAX_INITIATORS == 32  # the LIO rig's bound (lio.LunSpec)


def test_the_most_initiators_run(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [*SIM, "--initiators", str(cli.MAX_INITIATORS), "--steps", "20", "--per-session", "20"]
    assert cli.main(argv) == 0
    assert "0 differences" in capsys.readouterr().out


class _Unstartable(SimBackend):
    """A side whose initiator 0 is not on target port 1: it cannot be brought to the start."""

    def __init__(self, initiators: int = 2, profile: str = "spc5") -> None:
        super().__init__(initiators + 1, profile=profile)
        self.initiators = self.initiators[1:]


def test_a_side_that_cannot_start_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def open_backend(name: str, initiators: int, profile: str | None = None) -> Backend:
        return _Unstartable(initiators)

    monkeypatch.setattr(cli, "open_backend", open_backend)
    assert cli.main([*SIM, "--steps", "5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("scsi-pr lockstep: sim initiator 0 is ") and "Traceback" not in err


def test_a_save_path_that_cannot_be_written_still_prints_the_difference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    two = [*SIM, "--device-profile", "lio-6.1", "--profile", "spc5", "--steps", "5000"]
    assert cli.main([*two, "--save", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "a difference" in captured.out
    assert f"scsi-pr lockstep: cannot write {tmp_path}: Is a directory" in captured.err
