"""Every command and action of a scenario runs against a deadline.

A real LUN can hang (LIO's tcm_loop never completes PREEMPT AND ABORT): a call that misses its
deadline raises ``Hung`` instead of stalling the caller, and the engine ends the run with the
verdict HUNG. A backend's own ``TimeoutError`` (the LIO backend's ``CommandTimeout``, a helper
client's socket timeout) counts the same.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from scsi_pr.rig.command_thread import CallTimeout, CommandThread, call_once
from scsi_pr.rig.errors import RigError

#: Seconds a command may take before the run is declared hung. LIO in a TCG VM answers in
#: milliseconds; 30 s leaves room for a loaded CI machine without hiding a real hang.
DEFAULT_TIMEOUT = 30.0

T = TypeVar("T")


class Hung(RigError):
    """A command or action missed its deadline (or the backend said it timed out)."""


class BackendFault(RigError):
    """The backend raised instead of answering (socket closed, helper died, ...)."""


def call_with_deadline(
    fn: Callable[[], T], timeout: float, thread: CommandThread | None = None
) -> tuple[T, float]:
    """Run ``fn`` on ``thread`` (a new one when None); (its value, seconds taken) or Hung
    after ``timeout``.

    A thread blocked in the kernel cannot be cancelled; it is left behind as a daemon so the
    process can still report and exit (``rig.command_thread``).
    """
    started = time.monotonic()
    try:
        if thread is None:
            value = call_once("scenario-command", fn, timeout)
        else:
            value = thread.call(fn, timeout)
    except CallTimeout:
        raise Hung(f"did not complete within {timeout:g}s") from None
    except TimeoutError as error:  # e.g. scsi_pr.rig.backend_lio.CommandTimeout
        raise Hung(str(error) or "timed out") from error
    except Exception as error:
        raise BackendFault(f"{type(error).__name__}: {error}") from error
    return value, time.monotonic() - started
