"""What a lockstep run tells its user, pinned exactly: the text of each answer and of a
difference, a replay file's lines and its refusals, the step mix, and a run's counts, wall
time and hypothesis settings (no deadline, no example database, no hypothesis shrinking).

These are what a person reads when LIO and the model disagree, and what they run again: a
changed word or an off-by-one count is a wrong report, so whole strings and exact counts are
compared. The two sides are model profiles (or a model whose device side stops answering
after the start), as in ``test_lockstep.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import hypothesis.core
import pytest
from hypothesis import given, settings
from hypothesis.database import InMemoryExampleDatabase
from locales import ascii_locale  # noqa: F401 (a fixture, used by name)

from scsi_pr.rig.backends import Backend, SimBackend
from scsi_pr.rig.lockstep import run as run_module
from scsi_pr.rig.lockstep.compare import View, difference, view
from scsi_pr.rig.lockstep.machine import steps
from scsi_pr.rig.lockstep.run import Report, run
from scsi_pr.rig.lockstep.session import Opener, Session
from scsi_pr.rig.lockstep.steps import ReplayError, Step, read_replay, replay_text
from scsi_pr.sim import cdb as C
from scsi_pr.sim.constants import INVALID_FIELD_IN_CDB, Opcode, SenseKey, Status
from scsi_pr.sim.constants import PersistentReserveInAction as In
from scsi_pr.sim.constants import PersistentReserveOutAction as Out
from scsi_pr.sim.result import CommandResult, FieldPointer
from scsi_pr.sim.transportid import TransportId

READ_KEYS = C.persistent_reserve_in(In.READ_KEYS, 512)
REFUSED = View(Status.CHECK_CONDITION, (0x05, 0x24, 0x00), b"", b"")


def sides(model: str, device: str) -> tuple[Opener, Opener]:
    return (lambda: SimBackend(3, profile=model)), (lambda: SimBackend(3, profile=device))


class _AnswersOnlyTheStart:
    """An initiator that answers until the start's READ KEYS, then never again (a hung LU):
    every compared step is a difference, the first one included."""

    def __init__(self, inner: Backend, index: int, hung: list[bool]) -> None:
        it = inner.initiators[index]
        self.inner, self.hung = it, hung
        self.name: str = it.name
        self.transport_id: TransportId = it.transport_id
        self.relative_target_port: int = it.relative_target_port

    def execute(self, cdb: bytes, data: bytes = b"") -> CommandResult:
        if self.hung[0]:
            raise TimeoutError("did not complete in 8000 ms")
        result = self.inner.execute(cdb, data)
        self.hung[0] = cdb[0] == Opcode.PERSISTENT_RESERVE_IN  # the start's last command
        return result


def hung_device() -> Backend:
    side = SimBackend(3)
    hung = [False]
    side.initiators = [_AnswersOnlyTheStart(side, i, hung) for i in range(3)]
    return side


def model() -> Backend:
    return SimBackend(3)


# -- how an answer reads ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("answer", "text"),
    [
        (
            View(Status.CHECK_CONDITION, (0x05, 0x24, 0x00), bytes.fromhex("cf0002"), b""),
            "CHECK CONDITION (ILLEGAL REQUEST: INVALID FIELD IN CDB, SKS cf0002)",
        ),
        (REFUSED, "CHECK CONDITION (ILLEGAL REQUEST: INVALID FIELD IN CDB)"),
        (View(Status.GOOD, None, b"", bytes(range(4))), "GOOD data 00010203 (4 bytes)"),
        (
            View(Status.GOOD, None, b"", bytes(range(32))),
            "GOOD data 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f (32 bytes)",
        ),
        (
            View(Status.GOOD, None, b"", bytes(range(33))),
            "GOOD data 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f…"
            " (33 bytes)",
        ),
        (View(Status.RESERVATION_CONFLICT, None, b"", b""), "RESERVATION CONFLICT"),
    ],
)
def test_an_answer_reads_as_status_sense_and_at_most_32_bytes_of_data(
    answer: View, text: str
) -> None:
    assert str(answer) == text


def test_every_difference_is_named_in_one_line() -> None:
    good = View(Status.GOOD, None, b"", b"ab")
    assert difference(good, REFUSED) == "status, sense, data (length: 2 vs 0 bytes)"


# -- what is compared ------------------------------------------------------------------------
def test_generation_is_left_as_is_without_a_base_and_counted_in_a_four_byte_answer() -> None:
    keys = CommandResult.good(bytes.fromhex("00000007"))
    short_read_keys = C.persistent_reserve_in(In.READ_KEYS, 4)
    assert view(keys, short_read_keys) == View(Status.GOOD, None, b"", bytes.fromhex("00000007"))
    assert view(keys, short_read_keys, 5).data == bytes.fromhex("00000002")
    # a replay line may carry a CDB cut to its opcode and service action: still PR IN data
    assert view(keys, bytes([Opcode.PERSISTENT_RESERVE_IN, In.READ_KEYS]), 5).data == bytes(
        [0, 0, 0, 2]
    )


def test_sense_bytes_of_an_answer_that_is_not_check_condition_are_not_compared() -> None:
    """SG_IO may hand back a stale sense buffer with GOOD: it is nothing the device said."""
    pointed = CommandResult.check_condition(
        SenseKey.ILLEGAL_REQUEST, INVALID_FIELD_IN_CDB, FieldPointer(in_cdb=True, byte=2)
    )
    stale = CommandResult(Status.GOOD, pointed.sense, b"")
    assert view(stale, C.test_unit_ready()) == View(Status.GOOD, None, b"", b"")


# -- replay files ----------------------------------------------------------------------------
def test_a_step_line_decodes_its_data_out() -> None:
    step = Step(1, *C.prout(Out.REGISTER, 0, 0xA1))
    assert step.line() == "initiator 1: PR OUT REGISTER key=0x0 sa_key=0xa1"


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ('{"initiator": 0, "cdb": "00"}', "a step is an object with initiator, cdb and data"),
        ('{"initiator": 0, "cdb": "", "data": ""}', "empty CDB"),
        ('{"initiator": -1, "cdb": "00", "data": ""}', "initiator -1 is not an index"),
        ('{"initiator": true, "cdb": "00", "data": ""}', "initiator True is not an index"),
        ("[1, 2]", "a step is an object with initiator, cdb and data"),
    ],
)
def test_a_bad_replay_line_says_exactly_what_is_wrong(tmp_path: Path, line: str, says: str) -> None:
    path, message = _refusal(tmp_path, line)
    assert message == f"{path}:2: {says}"


@pytest.mark.parametrize(
    "line", ["{not json", '{"initiator": 0, "cdb": "zz", "data": ""}'], ids=["json", "hex"]
)
def test_a_line_python_cannot_parse_is_named_before_pythons_words(
    tmp_path: Path, line: str
) -> None:
    path, message = _refusal(tmp_path, line)
    assert message.startswith(f"{path}:2: ")


def _refusal(tmp_path: Path, line: str) -> tuple[Path, str]:
    """A replay file whose second line is ``line``, and what ``read_replay`` says of it."""
    path = tmp_path / "replay.txt"
    path.write_text(f"# comment\n{line}\n")
    with pytest.raises(ReplayError) as e:
        read_replay(path)
    return path, str(e.value)


def test_a_replay_naming_the_initiator_one_past_the_last_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "replay.txt"
    path.write_text(Step(2, C.test_unit_ready()).to_json() + "\n")
    assert read_replay(path, 3) == [Step(2, C.test_unit_ready())]
    path.write_text(Step(3, C.test_unit_ready()).to_json() + "\n")
    with pytest.raises(ReplayError) as e:
        read_replay(path, 3)
    assert str(e.value) == f"{path}:1: initiator 3, but the run has 3 (see --initiators)"


@pytest.mark.usefixtures("ascii_locale")
def test_a_replay_file_reads_back_whatever_the_locale(tmp_path: Path) -> None:
    """Its comments hold answers cut with '…': the file is UTF-8 under any locale."""
    program = [Step(0, READ_KEYS)]
    answers = f"model:  {View(Status.GOOD, None, b'', bytes(40))}\ndevice: GOOD"
    path = tmp_path / "replay.txt"
    path.write_bytes(replay_text([(program[0], answers)]).encode("utf-8"))
    assert read_replay(path) == program


# -- generated steps -------------------------------------------------------------------------
def test_pr_out_steps_are_drawn_twice_as_often_as_any_other_kind() -> None:
    """Plain PR OUT (what changes the reservation state) has two of the seven branches (2/7),
    every other kind one (1/7): a machine with one PR OUT branch draws it about 1/6 of the
    time."""
    drawn: list[bool] = []

    @settings(max_examples=300, database=None, deadline=None, derandomize=True)
    @given(steps(3))
    def collect(step: Step) -> None:
        out = step.cdb[0] == Opcode.PERSISTENT_RESERVE_OUT
        move = out and step.cdb[1] & 0x1F == Out.REGISTER_AND_MOVE
        spec_i_pt = out and not move and bool(step.data[20] & 0x08)
        drawn.append(out and not move and not spec_i_pt)

    collect()
    assert sum(drawn) / len(drawn) > 0.24


# -- a run's counts, time and settings -------------------------------------------------------
@pytest.mark.parametrize(
    ("budget", "per_session", "compared", "sessions"),
    [(1, 1, 1, 1), (2, 1, 2, 2), (6, 3, 6, 2), (7, 3, 9, 3), (20, 20, 20, 1)],
)
def test_a_budget_is_spent_in_whole_sessions_of_per_session_steps(
    budget: int, per_session: int, compared: int, sessions: int
) -> None:
    report = run(*sides("spc5", "spc5"), steps=budget, initiators=3, per_session=per_session)
    assert (report.compared, report.sessions, report.failed) == (compared, sessions, None)


def test_a_session_hypothesis_cuts_short_leaves_the_rest_of_the_budget_to_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Hypothesis ends a machine early once its choices near their buffer's end (after a
    few hundred steps; ``MAX_PER_SESSION`` keeps sessions below that, lifted here): the next
    round draws only what the budget still lacks, so the run stops within one session of it."""
    monkeypatch.setattr(run_module, "MAX_PER_SESSION", 500)
    report = run(*sides("spc5", "spc5"), steps=500, initiators=3, per_session=500)
    assert 500 <= report.compared < 1000 and report.failed is None


def _clock(monkeypatch: pytest.MonkeyPatch, *readings: float) -> None:
    """``run``'s monotonic clock reads ``readings``, one per call."""
    values = iter(readings)
    monkeypatch.setattr(run_module, "time", SimpleNamespace(monotonic=lambda: next(values)))


def test_a_run_without_a_difference_reports_its_wall_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _clock(monkeypatch, 1000.0, 1002.0)
    report = run(*sides("spc5", "spc5"), steps=1, initiators=3, per_session=1)
    assert report.seconds == 2.0
    assert report.summary("spc5", "sim") == (
        "lockstep: 1 steps compared in 1 sessions (model spc5 vs device sim), 0 differences, 2 s"
    )


def test_a_difference_is_reported_with_its_minimal_replay_and_the_time_minimising_took(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first failing session, then hypothesis' one replay of it (no shrinking: the
    minimiser drops steps itself); the time includes the minimiser's."""
    _clock(monkeypatch, 1000.0, 1002.0, 1007.0)
    report = run(model, hung_device, steps=100, initiators=3, per_session=5)
    assert (report.compared, report.sessions, report.seconds) == (2, 2, 7.0)
    assert report.summary("spc5", "lio") == (
        "lockstep: 2 steps compared in 2 sessions (model spc5 vs device lio), a difference, 7 s"
    )
    assert report.minimal is not None
    assert report.minimal.replay(["lockstep"]) == (
        "# lockstep\n"
        "#   1  initiator 0: PR OUT REGISTER key=0x0 sa_key=0x0\n"
        "#      model:  GOOD\n"
        "#      device: no answer (did not complete in 8000 ms)\n"
        '{"initiator": 0, "cdb": "5f000100000000001800", "data": "' + "00" * 24 + '"}\n'
    )


@pytest.fixture
def hypothesis_defaults(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemoryExampleDatabase]:
    """Hypothesis' own defaults as ``scsi-pr lockstep`` meets them outside this suite: a
    200 ms deadline, an example database (this one), as under CI ``print_blob``, and no seed
    forced by pytest's ``--hypothesis-seed`` (with one, hypothesis writes no database)."""
    monkeypatch.setattr(hypothesis.core, "global_force_seed", None)
    database = InMemoryExampleDatabase()
    before = settings.get_current_profile_name()
    settings.register_profile(
        "lockstep-report",
        database=database,
        deadline=timedelta(milliseconds=200),
        print_blob=True,
    )
    settings.load_profile("lockstep-report")
    try:
        yield database
    finally:
        settings.load_profile(before)


@pytest.mark.usefixtures("hypothesis_defaults")
def test_a_slow_session_start_is_no_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening a real pair (drain, zero the blocks) may take seconds: no hypothesis deadline.
    Each open here moves the clock hypothesis times examples by a second."""
    real = time.perf_counter
    spent = [0.0]
    monkeypatch.setattr(time, "perf_counter", lambda: real() + spent[0])

    def slow() -> Backend:
        spent[0] += 1.0
        return SimBackend(3)

    report = run(slow, model, steps=4, initiators=3, per_session=2)
    assert (report.compared, report.sessions, report.failed) == (4, 2, None)


def test_a_difference_is_not_saved_to_hypothesis_example_database(
    hypothesis_defaults: InMemoryExampleDatabase,
) -> None:
    """The replay script is the record of a difference; a later run draws fresh steps."""
    report = run(model, hung_device, steps=10, initiators=3, per_session=5)
    assert report.failed is not None
    assert hypothesis_defaults.data == {}


def _session() -> Session:
    return Session(SimBackend(2), SimBackend(2), (0, 0))


def test_a_report_summary_names_what_was_found() -> None:
    report = Report(12, 3, 4.4, failed=_session())
    assert report.summary("lio-6.1", "lio") == (
        "lockstep: 12 steps compared in 3 sessions (model lio-6.1 vs device lio), a difference, 4 s"
    )


@pytest.mark.usefixtures("hypothesis_defaults")
def test_an_error_that_is_no_difference_is_raised_without_a_hypothesis_blob() -> None:
    """A side that cannot be opened is the error itself, not a test case to reproduce."""

    def broken() -> Backend:
        raise OSError("no such device")

    with pytest.raises(OSError) as e:
        run(model, broken, steps=5, initiators=3, per_session=5)
    assert str(e.value) == "no such device"
    notes = getattr(e.value, "__notes__", [])
    assert not any("reproduce_failure" in note for note in notes), notes


@pytest.mark.parametrize("per_session", [0, 201])
def test_a_session_longer_than_hypothesis_draws_is_refused(per_session: int) -> None:
    """Above 200 steps hypothesis cut a session short without a word (about 437) or, from
    about 300, failed a health check with a traceback."""
    with pytest.raises(ValueError) as refused:
        run(*sides("spc5", "spc5"), 10, 3, per_session=per_session)
    assert str(refused.value) == f"per_session {per_session}: 1..200"


def test_the_longest_session_runs_whole_sessions() -> None:
    report = run(*sides("spc5", "spc5"), 400, 3, per_session=200)
    assert (report.compared, report.sessions, report.failed) == (400, 2, None)
