"""``scsi-pr lockstep`` as a user sees it, pinned exactly: the ``--help`` text, the default
device, each usage error's line, the replay script printed and written to ``--save`` (UTF-8,
whatever the locale), the report lines of a generated run and of ``--preempt-and-abort``.
Mutation testing of ``rig/lockstep/cli.py`` found these unchecked by substring asserts; the
two sides are model profiles, so everything runs in-process on any host."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from locales import ascii_locale  # noqa: F401 (a fixture, used by name)

from scsi_pr.rig.lockstep import cli
from scsi_pr.sim import cdb as C
from scsi_pr.sim.constants import PersistentReserveInAction as In
from scsi_pr.sim.constants import PersistentReserveOutAction as Out

#: the device lio-6.1, the model spc5: they differ in PRGENERATION after an unregistration
TWO = ["--device", "sim", "--device-profile", "lio-6.1", "--profile", "spc5"]
HEADER = (
    "# scsi-pr lockstep --replay: model spc5 vs device sim (lio-6.1)\n"
    "# each step: the decoded command, both answers, then the step itself\n"
)

HELP = """\
usage: scsi-pr lockstep [-h] [--device {helper-iscsi,helper-lio,helper-lio-ioctl,helper-lio-mpath,helper-sim,iscsi,lio,sim}] [--device-profile DEVICE_PROFILE] [--profile PROFILE] [--steps STEPS]
                        [--per-session PER_SESSION] [--initiators INITIATORS] [--replay REPLAY] [--save SAVE] [--preempt-and-abort RUNS]
{description}
options:
  -h, --help            show this help message and exit
  --device {helper-iscsi,helper-lio,helper-lio-ioctl,helper-lio-mpath,helper-sim,iscsi,lio,sim}
                        the device side (default: lio)
  --device-profile DEVICE_PROFILE
                        profile of a model-backed device (sim, helper-sim)
  --profile PROFILE     the model's profile (default: the device's)
  --steps STEPS         steps to compare at least (default 2000)
  --per-session PER_SESSION
                        steps between fresh starts, 1..200 (default 50)
  --initiators INITIATORS
                        initiators on each side, 2..32 (default 3)
  --replay REPLAY       run this replay script instead of generating
  --save SAVE           write the replay script of a difference here
  --preempt-and-abort RUNS
                        instead: RUNS programs ending in PREEMPT AND ABORT
"""  # noqa: E501


def _step(initiator: int, cdb: bytes, data: bytes = b"") -> str:
    return json.dumps({"initiator": initiator, "cdb": cdb.hex(), "data": data.hex()})


def _replay_file(tmp_path: Path) -> Path:
    """A READ (512 bytes: shown cut short, with an ellipsis), a registration and its undoing,
    then READ KEYS: the generations differ between spc5 and lio-6.1 at step 4."""
    path = tmp_path / "program.txt"
    lines = [
        _step(1, C.read_10(0, 1)),
        _step(0, *C.prout(Out.REGISTER, 0, 0xA1)),
        _step(0, *C.prout(Out.REGISTER, 0xA1, 0)),
        _step(1, C.persistent_reserve_in(In.READ_KEYS, 512)),
    ]
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The error line of a usage error (exit status 2), after the usage lines."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err.splitlines()[-1]


def test_the_help_text(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    description = f"\n{cli.__doc__}"  # as written: not rewrapped
    assert (
        capsys.readouterr().out.splitlines()
        == HELP.replace("{description}", description).splitlines()
    )


def test_the_device_is_lio_by_default(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SCSI_PR_LIO_UNAVAILABLE", "no LIO on this host")
    assert cli.main([]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "scsi-pr lockstep: device lio unavailable: no LIO on this host\n"


def test_a_helper_sim_device_gives_the_model_the_default_profile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cli.platform, "release", lambda: "6.12.9-amd64")
    assert cli.default_profile("helper-sim", None) == "spc5"
    assert cli.default_profile("helper-sim", "lio-6.1") == "lio-6.1"
    assert cli.default_profile("lio", None) == "lio-6.12"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--per-session", "0"], "--per-session must be at least 1"),
        (["--per-session", "201"], "--per-session must be at most 200"),
        (["--preempt-and-abort", "0"], "--preempt-and-abort must be at least 1"),
        (
            ["--preempt-and-abort", "1", "--replay", "x.txt"],
            "--preempt-and-abort and --replay exclude each other",
        ),
    ],
)
def test_a_usage_error_is_one_exact_line(
    args: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _refused(["--device", "sim", *args], capsys) == f"scsi-pr lockstep: error: {says}"


@pytest.mark.parametrize("device", ["lio", "iscsi", "helper-lio"])
def test_a_profile_for_a_device_that_is_not_the_model_is_a_usage_error(
    device: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused before anything opens: at the first session it was a traceback and exit 1,
    the status of a difference found."""
    assert _refused(["--device", device, "--device-profile", "spc5"], capsys) == (
        f"scsi-pr lockstep: error: backend {device} takes no profile (only helper-sim, sim)"
    )


def test_a_replayed_difference_is_printed_as_saved(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "difference.txt"
    assert cli.main([*TWO, "--replay", str(_replay_file(tmp_path)), "--save", str(saved)]) == 1
    captured = capsys.readouterr()
    text = saved.read_text(encoding="utf-8")
    assert captured.out == text  # the script alone, as written: nothing after it
    assert text.startswith(f"{HEADER}#   1  initiator 1: ")
    assert text.count("\n{") == 4 and "… (512 bytes)" in text
    assert captured.err == f"replay script written to {saved}\n"


@pytest.mark.usefixtures("ascii_locale")
def test_the_saved_replay_is_utf8_whatever_the_locale(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "difference.txt"
    assert cli.main([*TWO, "--replay", str(_replay_file(tmp_path)), "--save", str(saved)]) == 1
    assert saved.read_bytes().decode("utf-8") == capsys.readouterr().out


def test_a_preempt_and_abort_difference_is_printed_saved_and_summed_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The model lio-6.1 never completes the first (sure) run's PREEMPT AND ABORT; the device
    spc5 does: a difference at its step 12."""
    saved = tmp_path / "abort.txt"
    argv = ["--device", "sim", "--device-profile", "spc5", "--profile", "lio-6.1"]
    assert cli.main([*argv, "--preempt-and-abort", "3", "--save", str(saved)]) == 1
    captured = capsys.readouterr()
    text = saved.read_text(encoding="utf-8")
    assert text.startswith(
        "# scsi-pr lockstep --replay: model lio-6.1 vs device sim (spc5)\n"
        "# each step: the decoded command, both answers, then the step itself\n"
        "#   1  initiator 0: TEST UNIT READY\n"
    )
    assert text.endswith(
        "#  12  initiator 0: PR OUT PREEMPT AND ABORT type=WE key=0xa1 sa_key=0xb2\n"
        "#      model:  no answer (naa.5001405000000001: the LU (profile lio-6.1) never "
        "completes this command)\n"
        "#      device: GOOD\n"
        '{"initiator": 0, "cdb": "5f050100000000001800", '
        '"data": "00000000000000a100000000000000b20000000000000000"}\n'
    )
    assert captured.out.startswith(text)
    summary = captured.out[len(text) :]
    assert re.fullmatch(
        r"lockstep PREEMPT AND ABORT: 1 run, 12 steps compared \(model lio-6\.1 vs device sim "
        r"\(spc5\)\), 0 never completed on either side, a difference, \d+ s\n",
        summary,
    ), summary
    assert captured.err == f"replay script written to {saved}\n"


def test_a_run_without_a_difference_reports_its_steps_and_sessions(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One step per session: three steps in three fresh sessions (or more, if an example is
    empty), not one session of up to the default 50."""
    argv = ["--device", "sim", "--device-profile", "spc5", "--steps", "3", "--per-session", "1"]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    found = re.fullmatch(
        r"lockstep: 3 steps compared in (\d+) sessions \(model spc5 vs device sim \(spc5\)\), "
        r"0 differences, \d+ s\n",
        captured.out,
    )
    assert found is not None, captured.out
    assert int(found[1]) >= 3
    assert captured.err == ""
