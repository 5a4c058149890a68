"""The lockstep differential on the host: its comparison, replay files, minimiser and CLI,
with two profiles of the model as the two sides (the VM tier runs it against real LIO)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings

from scsi_pr.rig.backends import SimBackend, initiator_name
from scsi_pr.rig.lockstep import cli
from scsi_pr.rig.lockstep.compare import View, difference, view
from scsi_pr.rig.lockstep.machine import IN_ACTIONS, OUT_ACTIONS, steps
from scsi_pr.rig.lockstep.run import run
from scsi_pr.rig.lockstep.session import LockstepError, Opener, Session, minimise, port_of, replay
from scsi_pr.rig.lockstep.steps import ReplayError, Step, read_replay, replay_text
from scsi_pr.sim import cdb as C
from scsi_pr.sim.constants import INVALID_FIELD_IN_CDB, Opcode, SenseKey, Status
from scsi_pr.sim.constants import PersistentReserveInAction as In
from scsi_pr.sim.constants import PersistentReserveOutAction as Out
from scsi_pr.sim.constants import ReservationType as T
from scsi_pr.sim.result import CommandResult, FieldPointer
from scsi_pr.sim.transportid import decode_transport_id, decode_transport_id_list

READ_KEYS = C.persistent_reserve_in(In.READ_KEYS, 512)
REPORT_CAPABILITIES = C.persistent_reserve_in(In.REPORT_CAPABILITIES, 512)


def sides(model: str, device: str) -> tuple[Opener, Opener]:
    return (lambda: SimBackend(3, profile=model)), (lambda: SimBackend(3, profile=device))


# -- what is compared ------------------------------------------------------------------------
def test_generation_counts_from_the_base_only_where_pr_in_data_has_one() -> None:
    keys = CommandResult.good(bytes.fromhex("0000000700000000"))
    assert view(keys, READ_KEYS, base_generation=5).data == bytes.fromhex("0000000200000000")
    assert view(keys, READ_KEYS, base_generation=9).data[:4] == (2**32 - 2).to_bytes(4, "big")
    capabilities = CommandResult.good(bytes.fromhex("0008000700000000"))
    assert view(capabilities, REPORT_CAPABILITIES, 5).data == capabilities.data
    assert view(keys, C.read_10(0, 1), 5).data == keys.data


def test_data_counts_only_with_good_status() -> None:
    refused = CommandResult(Status.CHECK_CONDITION, bytes(18), bytes(4))  # SG_IO's buffer
    assert view(refused, READ_KEYS, base_generation=20).data == b""
    assert view(CommandResult(Status.GOOD, b"", bytes(4)), C.read_10(0, 1)).data == bytes(4)


def test_sense_key_specific_bytes_count_only_when_valid() -> None:
    pointed = CommandResult.check_condition(
        SenseKey.ILLEGAL_REQUEST, INVALID_FIELD_IN_CDB, FieldPointer(in_cdb=True, byte=2)
    )
    plain = CommandResult.check_condition(SenseKey.ILLEGAL_REQUEST, INVALID_FIELD_IN_CDB)
    a, b = view(pointed, READ_KEYS), view(plain, READ_KEYS)
    assert a.sense == b.sense == (0x05, 0x24, 0x00)
    assert a.sks[0] & 0x80 and b.sks == b""
    assert difference(a, b) == "sense-key-specific bytes"


@pytest.mark.parametrize(
    ("model", "device", "says"),
    [
        (View(0, None, b"", b"ab"), View(0, None, b"", b"ab"), None),
        (View(0, None, b"", b""), View(0x18, None, b"", b""), "status"),
        (View(2, (5, 0x24, 0), b"", b""), View(2, (5, 0x26, 0), b"", b""), "sense"),
        (View(0, None, b"", b"abcd"), View(0, None, b"", b"abXd"), "data (byte 2: 4 vs 4 bytes)"),
        (View(0, None, b"", b"ab"), View(0, None, b"", b"abc"), "data (length: 2 vs 3 bytes)"),
    ],
)
def test_difference_names_what_differs(model: View, device: View, says: str | None) -> None:
    assert difference(model, device) == says


def test_a_view_reads_as_the_answer() -> None:
    text = str(view(CommandResult.good(bytes(40)), C.read_10(0, 1)))
    assert text.startswith("GOOD data 0000") and text.endswith("… (40 bytes)")
    assert str(View.no_answer("did not complete")) == "no answer (did not complete)"
    assert str(View(0x41, None, b"", b"")) == "STATUS 0x41"


# -- replay files ----------------------------------------------------------------------------
def test_a_replay_script_reads_back_as_its_steps(tmp_path: Path) -> None:
    program = [Step(0, *C.prout(Out.REGISTER, 0, 0xA1)), Step(2, READ_KEYS)]
    path = tmp_path / "replay.txt"
    path.write_text(replay_text(((s, "model: GOOD\ndevice: GOOD") for s in program), ["head"]))
    text = path.read_text()
    assert text.startswith("# head\n#   1  initiator 0: PR OUT REGISTER")
    assert "#      device: GOOD" in text
    assert read_replay(path) == program


def test_a_replay_with_no_steps_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.write_text("# only comments\n\n")
    with pytest.raises(ReplayError, match="no steps"):
        read_replay(path)


# -- generated steps -------------------------------------------------------------------------
def test_the_machine_generates_every_kind_of_step_for_every_initiator() -> None:
    seen: set[tuple[int, int]] = set()
    who: set[int] = set()

    @settings(max_examples=600, database=None, deadline=None)
    @given(steps(3))
    def collect(step: Step) -> None:
        action = step.cdb[1] & 0x1F if step.cdb[0] in (0x5E, 0x5F) else 0
        seen.add((step.cdb[0], action))
        who.add(step.initiator)
        if action == Out.REGISTER_AND_MOVE and step.cdb[0] == Opcode.PERSISTENT_RESERVE_OUT:
            assert not step.data[17] & 0x01  # APTPL never set: no files under LIO's dbroot
            unreg.add(bool(step.data[17] & 0x02))
            # through a target port of the run, to its initiators or one the LU does not have
            port = int.from_bytes(step.data[18:20], "big")
            tid = decode_transport_id(step.data, 24)[0]
            assert port in {port_of(i) for i in range(3)}
            named.add(tid.name)
            moves.add(port == port_of(int(tid.name[-2:], 16) - 1))
        elif step.cdb[0] == Opcode.PERSISTENT_RESERVE_OUT:
            assert not step.data[20] & 0x01  # APTPL never set: no files under LIO's dbroot
            all_tg_pt.add(bool(step.data[20] & 0x04))
            assert action != Out.PREEMPT_AND_ABORT
            if step.data[20] & 0x08:  # SPEC_I_PT: REGISTER only, one or two initiators
                assert action == Out.REGISTER
                tids = decode_transport_id_list(step.data[28:])
                names = [t.name for t in tids]
                assert 1 <= len(names) <= 2
                named.update(names)
                # the issuer's own and one named twice too (LIO: a second registration)
                spec_i_pt.add(
                    (initiator_name(step.initiator) in names, len(set(names)) < len(names))
                )

    unreg: set[bool] = set()
    all_tg_pt: set[bool] = set()
    moves: set[bool] = set()  # to the initiator's own target port, or another
    named: set[str] = set()
    spec_i_pt: set[tuple[bool, bool]] = set()  # (names the issuer, names one twice)
    collect()
    assert {(True, False), (False, True), (False, False)} <= spec_i_pt
    assert unreg == all_tg_pt == moves == {False, True}
    assert named == {initiator_name(i) for i in range(4)}  # the run's three, and a stranger
    want = {(0x5F, int(a)) for a in (*OUT_ACTIONS, Out.REGISTER_AND_MOVE)}
    want |= {(0x5E, int(a)) for a in IN_ACTIONS}
    want |= {(Opcode.TEST_UNIT_READY, 0), (Opcode.READ_10, 0), (Opcode.WRITE_10, 0)}
    assert want <= seen
    assert who == {0, 1, 2}


# -- sessions, runs and the minimiser --------------------------------------------------------
def test_one_profile_on_both_sides_compares_the_whole_budget_without_a_difference() -> None:
    report = run(*sides("lio-6.1", "lio-6.1"), steps=400, initiators=3, per_session=40)
    assert report.failed is None and report.minimal is None
    assert report.compared >= 400 and report.sessions >= 10
    assert "0 differences" in report.summary("lio-6.1", "sim")


def test_two_profiles_differ_and_the_difference_is_minimised() -> None:
    report = run(*sides("spc5", "lio-6.1"), steps=5000, initiators=3)
    assert report.failed is not None and report.minimal is not None
    assert report.compared < 5000
    assert len(report.minimal.history) <= len(report.failed.history)
    last = report.minimal.history[-1]
    assert difference(last.model, last.device) is not None
    assert all(difference(r.model, r.device) is None for r in report.minimal.history[:-1])


def test_minimise_keeps_only_the_steps_the_difference_needs() -> None:
    register, unregister = C.prout(Out.REGISTER, 0, 0xA1), C.prout(Out.REGISTER, 0xA1, 0)
    noise = Step(1, C.test_unit_ready())
    program = [noise, Step(0, *register), noise, Step(0, *unregister), noise, Step(1, READ_KEYS)]
    # lio-6.1 does not count an unregistration in PRGENERATION (docs/lio-deviations.md)
    minimal = minimise(*sides("spc5", "lio-6.1"), program)
    assert [r.step for r in minimal.history] == [program[1], program[3], program[5]]
    assert minimal.history[-1].model.data[:4] == (2).to_bytes(4, "big")
    assert minimal.history[-1].device.data[:4] == (1).to_bytes(4, "big")


def test_replay_stops_at_the_first_difference_and_a_steady_program_runs_through() -> None:
    program = [Step(0, *C.prout(Out.REGISTER, 0, 0xA1)), Step(0, *C.prout(Out.REGISTER, 0xA1, 0)),
               Step(1, READ_KEYS), Step(2, READ_KEYS)]  # fmt: skip
    assert len(replay(*sides("spc5", "lio-6.1"), program).history) == 3
    assert len(replay(*sides("spc5", "spc5"), program).history) == 4


@dataclass
class Silent:
    """An initiator whose commands never complete (a hung LUN)."""

    name: str = "hung"

    def execute(self, cdb: bytes, data: bytes = b"") -> CommandResult:
        raise TimeoutError("did not complete in 8000 ms")


def test_a_device_that_never_answers_is_a_difference() -> None:
    model, device = SimBackend(2), SimBackend(2)
    session = Session(model, device, (0, 0))
    device.initiators = [device.initiators[0], Silent()]  # type: ignore[list-item]
    assert session.send(Step(0, C.test_unit_ready())) is None
    assert session.send(Step(1, C.test_unit_ready())) == "status"
    assert "no answer (did not complete" in str(session.history[-1].device)


def test_a_step_for_a_missing_initiator_is_refused() -> None:
    session = Session(SimBackend(2), SimBackend(2), (0, 0))
    with pytest.raises(LockstepError, match="initiator 2"):
        session.send(Step(2, C.test_unit_ready()))


# -- scsi-pr lockstep ------------------------------------------------------------------------
def test_cli_compares_and_prints_the_count(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--device", "sim", "--steps", "120", "--per-session", "30"]) == 0
    out = capsys.readouterr().out
    assert "lockstep: " in out and "(model spc5 vs device sim), 0 differences" in out


def test_cli_saves_a_difference_and_replays_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "difference.txt"
    two = ["--device", "sim", "--device-profile", "lio-6.1", "--profile", "spc5"]
    assert cli.main([*two, "--steps", "5000", "--save", str(saved)]) == 1
    printed = capsys.readouterr().out
    assert saved.read_text() in printed and "a difference" in printed
    assert cli.main([*two, "--replay", str(saved)]) == 1
    same = ["--device", "sim", "--device-profile", "lio-6.1", "--profile", "lio-6.1"]
    assert cli.main([*same, "--replay", str(saved)]) == 0
    assert "shows no difference" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--steps", "0"], "--steps must be at least 1"),
        (["--initiators", "1"], "--initiators must be at least 2"),
        (["--profile", "nope"], "nope"),
        (["--device-profile", "nope", "--device", "sim"], "nope"),
        (["--device", "tape"], "invalid choice"),
    ],
)
def test_cli_refuses_bad_options(
    args: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(args)
    assert e.value.code == 2 and says in capsys.readouterr().err


def test_cli_says_when_the_device_cannot_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SCSI_PR_LIO_UNAVAILABLE", "no LIO on this host")
    assert cli.main(["--device", "lio", "--steps", "10"]) == 2
    assert "device lio unavailable: no LIO on this host" in capsys.readouterr().err


def test_the_model_takes_the_device_profile_or_the_kernels_lio(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert cli.default_profile("sim", None) == "spc5"
    assert cli.default_profile("sim", "lio-6.1") == "lio-6.1"
    monkeypatch.setattr(cli.platform, "release", lambda: "6.12.9-amd64")
    assert cli.default_profile("lio", None) == "lio-6.12"
    monkeypatch.setattr(cli.platform, "release", lambda: "5.10.0-30-amd64")
    assert cli.default_profile("lio", None) == "lio-6.1"


def test_a_side_whose_ports_differ_from_the_steps_layout_is_refused() -> None:
    """REGISTER AND MOVE steps name initiator i's TransportID and target port i+1: a side laid
    out otherwise would receive moves to I_T nexuses the other side does not have."""
    from scsi_pr.sim.nexus import ITNexus

    def crossed() -> SimBackend:
        side = SimBackend(3)
        side.sim_initiators[1].nexus = ITNexus.named(initiator_name(1), 3)
        return side

    with pytest.raises(LockstepError, match=r"initiator 1 is .* on target port 3, not"):
        Session.open(lambda: SimBackend(3), crossed)


# -- PREEMPT AND ABORT, each run on a fresh pair -------------------------------------------
def test_preempt_and_abort_runs_stall_alike_under_one_profile() -> None:
    from scsi_pr.rig.lockstep.abort import run_preempt_and_abort

    report = run_preempt_and_abort(*sides("lio-6.1", "lio-6.1"), runs=20, initiators=3)
    assert report.failed is None and report.runs == 21  # the sure run first, then 20 drawn
    assert report.stalled >= 1, "the sure run stalls (how many drawn ones do is chance)"
    summary = report.summary("lio-6.1", "sim")
    assert "21 runs" in summary and "0 differences" in summary


def test_a_preempt_and_abort_that_cannot_preempt_completes_alike() -> None:
    """A key nobody holds: RESERVATION CONFLICT on both sides, an answer, not a stall."""
    from scsi_pr.rig.lockstep.abort import arranged

    program = arranged(0, 1, 0xC3, T.WRITE_EXCLUSIVE, T.WRITE_EXCLUSIVE)
    last = replay(*sides("lio-6.1", "lio-6.1"), program).history[-1]
    assert last.step.cdb[1] & 0x1F == Out.PREEMPT_AND_ABORT and last.differs is None
    assert last.device.status == last.model.status == Status.RESERVATION_CONFLICT


def test_a_preempt_and_abort_that_completes_on_one_side_only_is_a_difference() -> None:
    from scsi_pr.rig.lockstep.abort import run_preempt_and_abort

    report = run_preempt_and_abort(*sides("lio-6.1", "spc5"), runs=20, initiators=3)
    assert report.failed is not None
    last = report.failed.history[-1]
    assert last.step.cdb[1] & 0x1F == Out.PREEMPT_AND_ABORT
    assert str(last.model).startswith("no answer") and last.device.status == Status.GOOD


def test_the_cli_runs_preempt_and_abort_alone(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--device", "sim", "--device-profile", "lio-6.1", "--preempt-and-abort", "5"]
    assert cli.main(argv) == 0
    assert "lockstep PREEMPT AND ABORT: 6 runs" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main([*argv, "--replay", "x.txt"])
