"""Task management functions (RFC 7143 11.5, SAM-5 clause 7) on the target's tasks and LUs.

One row per function. Each aborts the tasks in its scope (SAM-5 7.2-7.7) and waits until they
are settled, so no aborted task answers after the function's response (RFC 7143 4.2.3.3;
with TAS=0, as the model's control mode page says, an aborted task gets no response at all);
then it applies the function's effect on the model (unit attentions, the SPC-2 reservation)
on the server's worker thread, in order with the commands. A command the worker is already
running completes on the model; only its answer is dropped.

The scope: ABORT TASK one task of the session, ABORT TASK SET the session's tasks on the LU,
CLEAR TASK SET and LOGICAL UNIT RESET every session's tasks on the LU, the target resets every
task. TARGET COLD RESET is a power cycle of every LU (APTPL state survives) and, after its
response, the end of every session (RFC 7143 11.5.1).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from scsi_pr.target.proto import (
    TaskManagementFunction,
    TaskManagementReceived,
    TaskManagementResponseCode,
)

if TYPE_CHECKING:
    from scsi_pr.target.handler import ConnectionHandler, Flight

Response = TaskManagementResponseCode
Outcome = tuple[Response, Callable[[], None] | None]  # the response, what to do once it is sent
Function = Callable[["ConnectionHandler", TaskManagementReceived], Awaitable[Outcome]]
COMPLETE: Outcome = (Response.FUNCTION_COMPLETE, None)
NO_LUN: Outcome = (Response.LUN_DOES_NOT_EXIST, None)


async def _settle(flights: list[Flight]) -> None:
    tasks = [f.task for f in flights if f.task is not None and not f.task.done()]
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


def _everywhere(handler: ConnectionHandler, lun: int | None) -> list[Flight]:
    """Abort the tasks on ``lun`` (None: all LUNs) of every session of the target: the
    commands handed to the LU, and the other sessions' writes still collecting data (the
    issuing session's own the codec ended already)."""
    flights = []
    for other in list(handler.server.handlers):
        flights += other.abort_flights(lun)
        if other is not handler:
            other.abort_collecting(lun)
    return flights


def _lun_exists(handler: ConnectionHandler, lun: int | None) -> bool:
    return lun in handler.server.lus.images


async def _abort_task(handler: ConnectionHandler, event: TaskManagementReceived) -> Outcome:
    """RFC 7143 11.6.1 for a task the session handed out: one that is not there (any more)
    'does not exist' (the session answers for tasks it never handed out: a lost CmdSN, a
    command waiting behind a gap)."""
    flight = handler.flights.get(event.referenced_task_tag)
    if flight is not None:
        flight.abort()
        await _settle([flight])
        return COMPLETE
    if event.referenced_task_tag in event.aborted:  # a write the codec was still collecting
        return COMPLETE
    return (Response.TASK_DOES_NOT_EXIST, None)


async def _abort_task_set(handler: ConnectionHandler, event: TaskManagementReceived) -> Outcome:
    if not _lun_exists(handler, event.lun):
        return NO_LUN
    await _settle(handler.abort_flights(event.lun))
    return COMPLETE


async def _clear_task_set(handler: ConnectionHandler, event: TaskManagementReceived) -> Outcome:
    """SAM-5 7.5: other I_T nexuses whose tasks were cleared get COMMANDS CLEARED BY ANOTHER
    INITIATOR."""
    if not _lun_exists(handler, event.lun):
        return NO_LUN
    assert event.lun is not None
    cleared, others = [], []
    for other in list(handler.server.handlers):
        hit = other.abort_flights(event.lun)
        cleared += hit
        # the issuer's own writes still collecting data the codec ended already
        told = other is not handler and (other.abort_collecting(event.lun) or hit)
        if told and other.nexus is not None:
            others.append(other.nexus)
    await _settle(cleared)
    await handler.server.run_on_one_lu(handler.server.lus.commands_cleared, event.lun, others)
    return COMPLETE


async def _lun_reset(handler: ConnectionHandler, event: TaskManagementReceived) -> Outcome:
    if not _lun_exists(handler, event.lun):
        return NO_LUN
    await _settle(_everywhere(handler, event.lun))
    await handler.server.run_on_one_lu(handler.server.lus.lun_reset, event.lun)
    return COMPLETE


async def _warm_reset(handler: ConnectionHandler, event: TaskManagementReceived) -> Outcome:
    await _settle(_everywhere(handler, None))
    await handler.server.run(handler.server.lus.hard_reset)
    return COMPLETE


async def _cold_reset(handler: ConnectionHandler, event: TaskManagementReceived) -> Outcome:
    await _settle(_everywhere(handler, None))
    await handler.server.run(handler.server.lus.power_cycle)
    server = handler.server
    # POWER ON OCCURRED already tells every initiator; no I_T nexus loss on top of it.
    return (Response.FUNCTION_COMPLETE, lambda: server.end_all("target cold reset", loss=False))


FUNCTIONS: dict[int, Function] = {
    TaskManagementFunction.ABORT_TASK: _abort_task,
    TaskManagementFunction.ABORT_TASK_SET: _abort_task_set,
    TaskManagementFunction.CLEAR_TASK_SET: _clear_task_set,
    TaskManagementFunction.LOGICAL_UNIT_RESET: _lun_reset,
    TaskManagementFunction.TARGET_WARM_RESET: _warm_reset,
    TaskManagementFunction.TARGET_COLD_RESET: _cold_reset,
}


def name(function: int) -> str:
    try:
        return TaskManagementFunction(function).name
    except ValueError:
        return f"function {function:#x}"


async def apply(handler: ConnectionHandler, event: TaskManagementReceived) -> Outcome:
    """The response to ``event`` (CLEAR ACA and unknown functions are not supported: the
    model has no ACA, NACA=0)."""
    function = FUNCTIONS.get(event.function)
    if function is None:
        return (Response.TASK_MANAGEMENT_FUNCTION_NOT_SUPPORTED, None)
    return await function(handler, event)
