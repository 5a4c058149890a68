"""A ``TargetServer`` running in a thread of its own (its own event loop) for blocking tests."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from scsi_pr.helper.lu_identity import identify_path
from scsi_pr.target.lus import ServedLUs
from scsi_pr.target.server import TargetConfig, TargetServer

T = TypeVar("T")
TARGET = "iqn.2024-01.test.scsi-pr:disk"
STARTUP_TIMEOUT = 30.0


class LiveTarget:
    """``with LiveTarget(state_dir) as target:`` listens on 127.0.0.1 (``target.address``)."""

    def __init__(self, state_dir: Path, **config: Any) -> None:
        base = TargetConfig(iqn=TARGET, state_dir=state_dir, portals=(("127.0.0.1", 0),),
                            size=4 << 20)  # fmt: skip
        self.config = dataclasses.replace(base, **config)
        self.loop = asyncio.new_event_loop()
        self.server: TargetServer | None = None
        self._thread = threading.Thread(target=self._run, name="live-target", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        #: what the loop reported unhandled (a callback's or a task's exception): a test
        #: whose target failed inside fails too, even when the socket side looked fine
        self.unhandled: list[dict[str, Any]] = []
        self.loop.set_exception_handler(lambda loop, context: self.unhandled.append(context))

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.server = TargetServer(self.config)
            self.loop.run_until_complete(self.server.start())
        except BaseException as e:  # reported by __enter__
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()

    @property
    def address(self) -> tuple[str, int]:
        assert self.server is not None
        return self.server.addresses[0]

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()`` on the target's loop (to read its state without races)."""

        async def wrapper() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(STARTUP_TIMEOUT)

    def connections(self) -> int:
        """How many connections the target is serving now (logged in or not)."""
        server = self.server
        assert server is not None
        return self.call(lambda: len(server.handlers))

    def __enter__(self) -> LiveTarget:
        self._thread.start()
        self._ready.wait(STARTUP_TIMEOUT)
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self.server is not None and self.loop.is_running():
            future = asyncio.run_coroutine_threadsafe(self.server.close(), self.loop)
            future.result(STARTUP_TIMEOUT)
            left = asyncio.run_coroutine_threadsafe(_cancel_the_rest(), self.loop).result(
                STARTUP_TIMEOUT
            )
            self.loop.call_soon_threadsafe(self.loop.stop)
        else:
            left = []
        self._thread.join(STARTUP_TIMEOUT)
        self.loop.close()
        if left and exc[0] is None:
            raise AssertionError(f"the target stopped and left tasks running: {left}")
        if self.unhandled and exc[0] is None:
            messages = [f"{c.get('message')}: {c.get('exception')!r}" for c in self.unhandled]
            raise AssertionError(f"the target's loop had unhandled errors: {messages}")


async def _cancel_the_rest() -> list[str]:
    """Cancel and finish the loop's other tasks; what they were. A task left pending when the
    loop closes is finalised later by the garbage collector, in whatever test runs then."""
    left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in left:
        task.cancel()
    await asyncio.gather(*left, return_exceptions=True)
    return [repr(t.get_coro()) for t in left]


def until(
    condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition never held"
) -> None:
    """Poll ``condition`` until it holds (the deadline only catches a hang)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


@contextlib.contextmanager
def locked_elsewhere(lus: ServedLUs, image: Path) -> Iterator[None]:
    """Within: the LU of ``image`` locked as another process sharing the state dir would lock
    it (an open file description of our own holds the flock). A command on it then waits on
    the target's worker thread, and every command after it behind it: commands in flight."""
    lock = os.open(lus.shared.files(identify_path(image)[0]).lock, os.O_RDWR)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
    finally:
        os.close(lock)  # releases the flock
