"""The thread the rig's commands run on (``rig.command_thread``) and the LIO initiator's use of
it: one thread per initiator for all its commands, a deadline the caller keeps, a call that
misses it retiring its thread, concurrent callers still concurrent."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from scsi_pr.helper.executors.sg import SgIoResult
from scsi_pr.rig import backend_lio
from scsi_pr.rig.backend_lio import CommandTimeout, LioInitiator
from scsi_pr.rig.command_thread import CallTimeout, CommandThread, call_once
from scsi_pr.rig.scenarios.deadline import Hung, call_with_deadline
from scsi_pr.sim import cdb as C

#: long enough for any machine to run a trivial call; only missed on purpose below
PATIENT = 60.0


@pytest.fixture
def thread() -> Iterator[CommandThread]:
    t = CommandThread("test")
    yield t
    t.close()


def test_a_value_comes_back_from_the_same_thread_every_time(thread: CommandThread) -> None:
    idents = [thread.call(threading.get_ident, PATIENT) for _ in range(3)]
    assert len(set(idents)) == 1
    assert idents[0] != threading.get_ident()


def test_what_the_call_raises_is_raised_to_the_caller(thread: CommandThread) -> None:
    error = OSError(5, "EIO")

    def fail() -> None:
        raise error

    with pytest.raises(OSError) as caught:
        thread.call(fail, PATIENT)
    assert caught.value is error
    assert thread.call(lambda: "still serving", PATIENT) == "still serving"


def test_a_missed_deadline_retires_the_thread_and_its_late_answer_is_nobodys() -> None:
    thread = CommandThread("test")
    release = threading.Event()
    first = thread.call(threading.get_ident, PATIENT)

    def blocked() -> str:
        release.wait(PATIENT)
        return "late"

    with pytest.raises(CallTimeout) as caught:
        thread.call(blocked, 0.05)
    assert isinstance(caught.value, TimeoutError)
    # the next call runs (on a new thread) while the first is still blocked ...
    second = thread.call(threading.get_ident, PATIENT)
    assert second != first
    # ... and after the blocked call returns, its answer does not reach a later caller
    release.set()
    assert thread.call(lambda: "fresh", PATIENT) == "fresh"
    thread.close()


def test_a_call_made_while_another_is_in_flight_runs_beside_it(thread: CommandThread) -> None:
    started, release = threading.Event(), threading.Event()
    answers: list[str] = []

    def first() -> str:
        started.set()
        release.wait(PATIENT)
        return "first"

    caller = threading.Thread(target=lambda: answers.append(thread.call(first, PATIENT)))
    caller.start()
    assert started.wait(PATIENT)

    def second() -> str:  # queued behind ``first`` this would wait out its deadline
        release.set()
        return threading.current_thread().name

    assert thread.call(second, PATIENT) == "test"  # a one-off thread, named as the kept one
    caller.join(PATIENT)
    assert answers == ["first"]


def test_close_ends_the_idle_thread() -> None:
    thread = CommandThread("test")
    worker = thread.call(threading.current_thread, PATIENT)
    thread.close()
    worker.join(PATIENT)
    assert not worker.is_alive()
    assert thread.call(lambda: 1, PATIENT) == 1  # a call after close starts a thread again
    thread.close()


GOOD = SgIoResult(0, 0, 0, b"", b"", 0)


def initiator() -> LioInitiator:
    port = SimpleNamespace(sg="/dev/sg-test", wwn="naa.5001405000000001")
    return LioInitiator(port, fd=99)  # type: ignore[arg-type]


def test_an_initiator_runs_all_its_commands_on_one_thread_and_ends_it_on_close(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[threading.Thread] = []

    def fake_sg_io(*args: object) -> SgIoResult:
        seen.append(threading.current_thread())
        return GOOD

    monkeypatch.setattr(backend_lio, "sg_io", fake_sg_io)
    monkeypatch.setattr(backend_lio.os, "close", lambda fd: None)
    it = initiator()
    for _ in range(3):
        assert it.execute(C.test_unit_ready()).status == 0
    assert len(set(seen)) == 1 and seen[0] is not threading.current_thread()
    it.close()
    seen[0].join(PATIENT)
    assert not seen[0].is_alive()


def test_an_initiator_whose_command_misses_its_deadline_is_hung_for_good(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = threading.Event()
    calls: list[bytes] = []

    def wedged_sg_io(fd: int, cdb: bytes, *args: object) -> SgIoResult:
        calls.append(cdb)
        release.wait(PATIENT)
        return GOOD

    monkeypatch.setattr(backend_lio, "sg_io", wedged_sg_io)
    monkeypatch.setattr(backend_lio, "GRACE_SECONDS", 0.0)
    monkeypatch.setattr(backend_lio, "COMMAND_TIMEOUT_MS", 50)
    monkeypatch.setattr(backend_lio, "mark_hung", lambda: None)
    it = initiator()
    with pytest.raises(CommandTimeout, match="did not complete in 50 ms"):
        it.execute(C.test_unit_ready())
    assert it.hung
    with pytest.raises(CommandTimeout, match="already hung"):
        it.execute(C.test_unit_ready())
    assert len(calls) == 1  # the hung initiator sent nothing more
    release.set()


def test_a_one_off_call_ends_its_thread() -> None:
    worker = call_once("test", threading.current_thread, PATIENT)
    worker.join(PATIENT)
    assert not worker.is_alive() and worker is not threading.current_thread()


def test_a_scenario_sends_from_the_runs_thread_and_a_miss_is_hung(thread: CommandThread) -> None:
    (first, _), (second, _) = (
        call_with_deadline(threading.current_thread, PATIENT, thread) for _ in range(2)
    )
    assert first is second and first is not threading.current_thread()
    release = threading.Event()
    with pytest.raises(Hung, match=r"did not complete within 0\.05s"):
        call_with_deadline(lambda: release.wait(PATIENT), 0.05, thread)
    release.set()


def test_the_threads_are_daemons_named_for_their_initiator() -> None:
    """A thread blocked in the kernel must not keep the process alive at its end, and its name
    is what a stack dump (faulthandler, py-spy) shows for it."""
    thread = CommandThread("sg_io naa.5001405000000001")
    worker = thread.call(threading.current_thread, PATIENT)
    assert worker.daemon and worker.name == "sg_io naa.5001405000000001"
    one_off = call_once("sg_io once", threading.current_thread, PATIENT)
    assert one_off.daemon and one_off.name == "sg_io once"
    release = threading.Event()
    with pytest.raises(CallTimeout, match=r"^sg_io naa\.5001405000000001: no answer in 0\.05 s$"):
        thread.call(lambda: release.wait(PATIENT), 0.05)
    release.set()


def test_a_one_off_call_keeps_its_deadline_too() -> None:
    release = threading.Event()
    with pytest.raises(CallTimeout):
        call_once("test", lambda: release.wait(PATIENT), 0.05)
    release.set()


def test_a_call_beside_one_in_flight_keeps_its_deadline(thread: CommandThread) -> None:
    started, release = threading.Event(), threading.Event()
    caller = threading.Thread(
        target=thread.call, args=(lambda: started.set() or release.wait(PATIENT), PATIENT)
    )
    caller.start()
    assert started.wait(PATIENT)
    beside = threading.Event()
    with pytest.raises(CallTimeout):
        thread.call(lambda: beside.wait(PATIENT), 0.05)
    beside.set()
    release.set()
    caller.join(PATIENT)
