"""Progress for minutes-long work (VM boot, VM tier phases, benchmarks, long scenarios): a rich
bar on a terminal, and elsewhere — a CI log, the VM's console — one plain line a minute, so a
log shows the work moving without a line per step.

One place decides which, so every long command looks and behaves the same.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from scsi_pr.rig.ci import in_ci

#: seconds between two plain progress lines where no bar can be drawn
PLAIN_EVERY = 60.0


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


class Tracker:
    """``with Tracker("VM tier main", total=None) as t: t.update(done, what)``.

    ``total`` None is work of unknown size (a spinner and a count). ``stop()`` ends the bar early
    (a VM boot ends at the guest's first line). Output goes to ``file`` (default stderr, so a
    command's own stdout — a timeline, JSON — stays clean).
    """

    def __init__(
        self,
        description: str,
        total: float | None = None,
        *,
        file: TextIO | None = None,
        every: float = PLAIN_EVERY,
        bar: bool | None = None,
        console: Console | None = None,
    ) -> None:
        self.description, self.total, self.every = description, total, every
        self.console = console or Console(file=file if file is not None else sys.stderr)
        self.bar = bar if bar is not None else (self.console.is_terminal and not in_ci())
        self.done = 0.0
        self.what = ""
        self.start = time.monotonic()
        self.last_line = self.start
        self.progress: Progress | None = None
        self.task: TaskID | None = None

    def __enter__(self) -> Tracker:
        if self.bar:
            columns = [SpinnerColumn(), TextColumn("{task.description}", markup=False)]
            if self.total is not None:
                columns += [BarColumn(), MofNCompleteColumn()]
            else:
                columns.append(TextColumn("{task.completed:.0f}"))
            columns += [
                TimeElapsedColumn(),
                TextColumn("{task.fields[what]}", style="dim", markup=False),
            ]
            self.progress = Progress(*columns, console=self.console, transient=True)
            self.progress.start()
            self.task = self.progress.add_task(self.description, total=self.total, what="")
        return self

    def update(
        self, done: float | None = None, what: str | None = None, total: float | None = None
    ) -> None:
        """Set the count of work done and what is being done now (None: unchanged); ``total``
        once it becomes known (pytest has collected)."""
        if done is not None:
            self.done = done
        if what is not None:
            self.what = what
        if total is not None:
            self.total = total
        if self.progress is not None and self.task is not None:
            self.progress.update(
                self.task, completed=self.done, total=self.total, what=self.what[:60]
            )
            return
        now = time.monotonic()
        if now - self.last_line >= self.every:
            self.last_line = now
            self.console.print(self.line(now), highlight=False, markup=False)

    def advance(self, what: str | None = None) -> None:
        self.update(self.done + 1, what)

    def line(self, now: float) -> str:
        """The plain progress line: ``description: 12/40, 3:05 (what)``."""
        count = f"{self.done:.0f}" + ("" if self.total is None else f"/{self.total:.0f}")
        what = f" ({self.what})" if self.what else ""
        return f"{self.description}: {count}, {_clock(now - self.start)}{what}"

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
