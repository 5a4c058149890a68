"""A call into the kernel that may never return, run where the caller can stop waiting for it.

A wedged LUN can block SG_IO past its own timeout (the SCSI error handler blocks too), so the
rig never issues a command on its own thread. It used to start a thread per command; under TCG
a thread's start and join cost about ten times a hand-over to a thread that is already there
(``scripts/bench --rig``), and the VM tier sends thousands of commands. A ``CommandThread``
is that thread, kept for one initiator: calls queue to it, the caller waits with a deadline.

A call the thread has not returned from in time raises ``CallTimeout``; that thread stays
blocked in the kernel with its call, so it is retired (left as a daemon, its late answer to a
queue nobody reads) and the next call gets a new thread. A call made while another caller's is
in flight runs on a one-off thread of its own, so concurrent callers still run concurrently.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import TypeVar

from scsi_pr.rig.errors import RigError

T = TypeVar("T")

#: what the queues carry: a job (None: end the thread), and its outcome (a value, or what the
#: call raised)
_Job = Callable[[], object] | None


class CallTimeout(RigError, TimeoutError):
    """The call had not returned when its deadline passed (it may still be blocked)."""


class _Worker:
    """One daemon thread and its two queues; abandoned whole when a call misses its deadline."""

    def __init__(self, name: str) -> None:
        self.jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self.outcomes: queue.SimpleQueue[tuple[bool, object]] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name=name, daemon=True).start()

    def _serve(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            try:
                self.outcomes.put((True, job()))
            except BaseException as e:  # handed to the caller, which re-raises it
                self.outcomes.put((False, e))


class CommandThread:
    """The thread one initiator's commands run on (see the module's docstring)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._worker: _Worker | None = None
        self._busy = threading.Lock()

    def call(self, fn: Callable[[], T], timeout: float) -> T:
        """``fn()``'s value, or what it raised; ``CallTimeout`` after ``timeout`` seconds."""
        if not self._busy.acquire(blocking=False):
            return call_once(self.name, fn, timeout)  # another caller's is in flight
        try:
            worker = self._worker
            if worker is None:
                worker = self._worker = _Worker(self.name)
            worker.jobs.put(fn)
            try:
                ok, outcome = worker.outcomes.get(timeout=timeout)
            except BaseException as e:  # no answer in time, or the wait was interrupted
                self._worker = None  # busy with this call: the next one gets a new thread
                if isinstance(e, queue.Empty):
                    raise CallTimeout(f"{self.name}: no answer in {timeout:g} s") from None
                raise
        finally:
            self._busy.release()
        if not ok:
            assert isinstance(outcome, BaseException)
            raise outcome
        return outcome  # type: ignore[return-value]

    def close(self) -> None:
        """End the thread once it is idle (a retired one stays with its blocked call)."""
        with self._busy:
            if self._worker is not None:
                self._worker.jobs.put(None)
                self._worker = None


def call_once(name: str, fn: Callable[[], T], timeout: float) -> T:
    """``CommandThread.call`` on a thread of its own that ends with the call (if it returns)."""
    thread = CommandThread(name)
    try:
        return thread.call(fn, timeout)
    finally:
        thread.close()
