"""A clock that only sleeping moves, for code that waits on another process (a record, a saved
guest) with a deadline that follows progress: the tests decide what the other process does
between polls, and no test waits for real."""

from __future__ import annotations

from collections.abc import Callable


class FakeTime:
    """``clock``/``sleep`` for the code under test; ``on_sleep(n)`` acts, after the n-th sleep,
    as the other process would meanwhile."""

    def __init__(self, on_sleep: Callable[[int], None] | None = None) -> None:
        self.now = 1000.0
        self.sleeps = 0
        self.on_sleep = on_sleep

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.sleeps += 1
        if self.on_sleep is not None:
            self.on_sleep(self.sleeps)
