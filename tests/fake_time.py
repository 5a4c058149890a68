"""A clock that only sleeping moves, for code that waits on another process (a record, a saved
guest) with a deadline that follows progress: the tests decide what the other process does
between polls, and no test waits for real."""

from __future__ import annotations

from collections.abc import Callable


class FakeTime:
    """``clock``/``sleep`` for the code under test (``monotonic`` too: it stands in for the
    ``time`` module as well); ``on_sleep(n)`` acts, after the n-th sleep, as the other process
    would meanwhile. ``slept`` holds every sleep's seconds, in order."""

    def __init__(self, on_sleep: Callable[[int], None] | None = None) -> None:
        self.now = 1000.0
        self.slept: list[float] = []
        self.on_sleep = on_sleep

    @property
    def sleeps(self) -> int:
        return len(self.slept)

    def clock(self) -> float:
        return self.now

    monotonic = clock

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept.append(seconds)
        if self.on_sleep is not None:
            self.on_sleep(self.sleeps)
