"""Racing: several initiators send at the same moment, and exactly one must win.

The commands of a ``Race`` start together behind a barrier, each in its own thread with its own
deadline, so the LU (not the engine) decides the order. The one answered GOOD is the winner;
every other must answer one of the race's ``losers_expect``. The winner and a loser are bound
to the role names ``winner``/``loser`` for the steps that follow.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from scsi_pr.rig.scenarios.deadline import call_with_deadline
from scsi_pr.rig.scenarios.model import GOOD, Outcome, Race
from scsi_pr.rig.scenarios.results import Row
from scsi_pr.sim.constants import Status
from scsi_pr.sim.result import CommandResult


def send_at_once(
    calls: list[Callable[[], CommandResult]], timeout: float
) -> list[tuple[CommandResult, float]]:
    """Start every call at once; (answer, seconds taken) per call, in call order.

    A call that missed its deadline or raised re-raises here (``Hung``, ``BackendFault``),
    the first one in call order, after every contender has finished or been abandoned.
    """
    gate = threading.Barrier(len(calls))
    box: dict[int, tuple[CommandResult, float] | BaseException] = {}

    def contender(i: int, call: Callable[[], CommandResult]) -> None:
        def go() -> CommandResult:
            gate.wait(timeout)
            return call()

        try:
            box[i] = call_with_deadline(go, timeout)
        except BaseException as e:  # re-raised in order below
            box[i] = e

    threads = [
        threading.Thread(target=contender, args=(i, call), daemon=True)
        for i, call in enumerate(calls)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    answers = []
    for i in range(len(calls)):
        outcome = box[i]
        if isinstance(outcome, BaseException):
            raise outcome
        answers.append(outcome)
    return answers


def send_in_order(
    calls: list[Callable[[], CommandResult]], timeout: float
) -> list[tuple[CommandResult, float]]:
    """One call after another, in call order, so the first contender that can win does: for
    output that must be the same on every run (the docs' timelines), never for judging a
    device, whose own order is what a race is for."""
    return [call_with_deadline(call, timeout) for call in calls]


def expectation(result: CommandResult, race: Race) -> tuple[tuple[Outcome, ...], str]:
    """What a contender's answer must be, and its row's note: a GOOD answer won."""
    if int(result.status) == Status.GOOD:
        return (GOOD,), "won the race"
    return race.losers_expect, "lost the race"


def roles(rows: list[Row]) -> dict[str, str]:
    """The ``winner`` and ``loser`` actors of a race's rows; none (and a failure on the last
    row) unless exactly one contender won."""
    winners = [r for r in rows if r.status == Status.GOOD]
    if len(winners) != 1:
        rows[-1].fail(f"race: {len(winners)} initiators won, exactly one must")
        return {}
    loser = next(r.actor for r in rows if r is not winners[0])
    return {"winner": winners[0].actor, "loser": loser}
