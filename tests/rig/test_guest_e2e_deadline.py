"""The nested guest's deadline follows its progress (``guest_e2e.driver.until_finished``):
QEMU's CPU time is the guest's work under TCG, so a slow machine never fails a guest that is
working, while a guest that waits for nothing or spins is caught. A fake clock and CPU reader
stand in for the wall and ``/proc``."""

from __future__ import annotations

import queue
from collections.abc import Iterator

import pytest

from scsi_pr.rig.guest_e2e import driver
from scsi_pr.rig.guest_e2e.driver import E2EError, until_finished

PID = 4242
POLL = 10.0  # wall seconds one empty poll stands for


class Console(queue.Queue[bytes | None]):
    """QEMU's output: ``script`` holds lines (bytes, None for the end) and silences (an int:
    that many empty polls, each advancing the wall by ``POLL`` and QEMU's CPU by ``cpu_step``).
    Past the script the console stays silent."""

    def __init__(self, script: list[bytes | int | None], cpu_step: float) -> None:
        super().__init__()
        self.script, self.cpu_step = list(script), cpu_step
        self.now = self.used = 0.0
        self.polls = 0

    def clock(self) -> float:
        return self.now

    def cpu(self, pid: int) -> float | None:
        assert pid == PID
        return self.used

    def get(self, block: bool = True, timeout: float | None = None) -> bytes | None:
        head = self.script[0] if self.script else 1
        if isinstance(head, int):
            if self.script:
                self.script[0] = head - 1
                if head <= 1:
                    self.script.pop(0)
            self.polls += 1
            self.now += POLL
            self.used += self.cpu_step
            raise queue.Empty
        return self.script.pop(0)

    def lines(self, budget: float, stall: float) -> Iterator[bytes]:
        return until_finished(self, PID, budget, stall, cpu=self.cpu, clock=self.clock, poll=0)


def test_a_silent_guest_that_works_is_not_cut_off_by_the_wall_clock() -> None:
    """1,400 s without a line, twenty times the stall limit, QEMU at 30 % of a CPU (a loaded
    machine): the guest is working, and the lines it then prints end the run normally."""
    console = Console([140, b"login\n", None], cpu_step=3.0)
    assert list(console.lines(budget=450.0, stall=70.0)) == [b"login\n"]
    assert console.now == 1400.0


def test_a_guest_that_spins_is_caught_by_its_cpu_budget() -> None:
    console = Console([b"booting\n"], cpu_step=10.0)
    with pytest.raises(E2EError, match="150 CPU seconds"):
        list(console.lines(budget=150.0, stall=70.0))
    assert console.used == 160.0  # the first poll past the budget


@pytest.mark.parametrize("cpu_step", [0.0, 2.0])  # QEMU idle, or idling at a fifth of a CPU
def test_a_guest_that_waits_for_nothing_is_caught_by_the_stall_limit(cpu_step: float) -> None:
    console = Console([b"waiting\n"], cpu_step=cpu_step)
    with pytest.raises(E2EError, match=r"no progress .* for 70s"):
        list(console.lines(budget=150.0, stall=70.0))
    assert console.now == 80.0  # the first poll past the limit


def test_a_quarter_of_a_cpu_is_work() -> None:
    console = Console([30, None], cpu_step=2.5)
    assert list(console.lines(budget=150.0, stall=70.0)) == []


def test_each_line_is_progress_and_the_consumers_time_is_not_the_guests() -> None:
    """Lines 60 s apart from an idle QEMU never stall (each restarts the limit); the 500 s the
    consumer takes after each line (the host acting on a pause) count for nothing."""
    console = Console([6, b"a\n", 6, b"b\n", 6, b"c\n", None], cpu_step=0.0)
    got = console.lines(budget=150.0, stall=70.0)
    for expected in (b"a\n", b"b\n", b"c\n"):
        assert next(got) == expected
        console.now += 500.0
    assert list(got) == []


def test_a_silent_working_guest_heartbeats(monkeypatch: pytest.MonkeyPatch) -> None:
    beats: list[str] = []
    monkeypatch.setattr(driver, "heartbeat", beats.append)
    console = Console([21, None], cpu_step=5.0)
    assert list(console.lines(budget=150.0, stall=70.0)) == []
    # 210 s of silence with CPU time growing: one beat per BEAT_INTERVAL (30 s)
    assert len(beats) == 7 and beats[0].startswith("e2e: guest running silently")
    beats.clear()
    idle = Console([21, None], cpu_step=0.0)
    assert list(idle.lines(budget=150.0, stall=300.0)) == []
    assert beats == [], "an idle QEMU is no sign of life"
