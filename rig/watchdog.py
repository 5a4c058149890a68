"""Tell a slow run from a hung one: a deadline that follows progress.

A fixed wall-clock deadline for a whole phase calls a run on a busy machine "hung" when it is only
slow (seen: the VM tier's main phase abandoned at 900 s while tests were still completing). Here
a run is hung only when it makes no progress for ``quiet_limit`` seconds, a limit chosen above the
longest single step's own deadline (a test's ``--lio-test-timeout``, a guest pause): as long as
steps keep finishing, the run goes on however long it takes.

Progress is anything the watched process shows of itself: a line on its stdout or stderr, or
growth of a progress file (the pytest plugin's per-test result log, the ``heartbeat`` file that
long single steps such as the nested-guest test append to).

``Watchdog`` is the pure decision (fed with times and progress); ``run_watched`` is the edge that
runs a command, forwards its output and feeds the watchdog.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from scsi_pr.rig.processes import lower_priority

#: environment variable naming the file that ``heartbeat`` appends to
ENV_PROGRESS = "SCSI_PR_PROGRESS_FILE"
POLL_SECONDS = 1.0


@dataclass
class Watchdog:
    """``progress(now)`` on every sign of life; ``hung(now)`` once none came for ``quiet_limit``.

    Before the first sign of life ``startup_limit`` applies instead (default: the quiet limit):
    a Python process under TCG on a busy machine can take minutes to import and collect before
    it prints anything, longer than any later step may stay quiet."""

    quiet_limit: float
    started: float
    startup_limit: float | None = None
    last_progress: float = field(init=False)
    steps: int = 0
    last_what: str = ""

    def __post_init__(self) -> None:
        if self.quiet_limit <= 0:
            raise ValueError(f"quiet limit must be positive, not {self.quiet_limit}")
        self.last_progress = self.started

    def progress(self, now: float, what: str = "") -> None:
        self.last_progress = max(self.last_progress, now)
        self.steps += 1
        if what:
            self.last_what = what

    def quiet_for(self, now: float) -> float:
        return now - self.last_progress

    @property
    def limit(self) -> float:
        """The quiet limit in force now."""
        if self.steps == 0 and self.startup_limit is not None:
            return self.startup_limit
        return self.quiet_limit

    def hung(self, now: float) -> bool:
        return self.quiet_for(now) > self.limit


@dataclass(frozen=True)
class WatchedRun:
    """How a watched command ended. ``hung``: killed after ``quiet_limit`` without progress;
    ``slow``: finished (or still progressing) beyond its nominal ``budget``."""

    rc: int | None
    seconds: float
    hung: bool
    slow: bool
    quiet_limit: float
    last_what: str
    started_up: bool = True

    @property
    def verdict(self) -> str:
        if self.hung:
            last = f" (last sign of life: {self.last_what})" if self.last_what else ""
            if not self.started_up:
                return f"hung: no sign of life for {self.quiet_limit:.0f}s after the start"
            return f"hung: no progress for {self.quiet_limit:.0f}s{last}"
        return "slow" if self.slow else "in time"


_progress = {"last": time.monotonic(), "beat": 0.0}
#: seconds between heartbeats that ``note_progress`` writes (it may be called per command)
BEAT_INTERVAL = 5.0


def note_progress(what: str = "a command completed") -> None:
    """Record that this process's work moved on (a command to a device completed): it resets
    the per-test deadline of the pytest plugin and, at most every ``BEAT_INTERVAL`` seconds,
    is a heartbeat for a watcher of the whole run."""
    now = time.monotonic()
    _progress["last"] = now
    if now - _progress["beat"] >= BEAT_INTERVAL:
        _progress["beat"] = now
        heartbeat(what)


def last_progress() -> float:
    """``time.monotonic()`` of the last ``note_progress``."""
    return _progress["last"]


def heartbeat(text: str) -> None:
    """Record progress of a long step for whoever watches this process (no-op when unwatched)."""
    path = os.environ.get(ENV_PROGRESS)
    if not path:
        return
    with suppress(OSError), open(path, "a") as f:
        f.write(f"{time.time():.3f} {text}\n")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def run_watched(
    cmd: Sequence[str],
    *,
    quiet_limit: float,
    startup_limit: float | None = None,
    budget: float | None = None,
    env: dict[str, str] | None = None,
    progress_files: Sequence[Path] = (),
    out: BinaryIO | None = None,
    poll: float = POLL_SECONDS,
    on_progress: Callable[[str], None] | None = None,
    cwd: Path | None = None,
    exit_marker: re.Pattern[bytes] | None = None,
    exit_grace: float = 60.0,
    nice: int = 0,
) -> WatchedRun:
    """Run ``cmd`` (its own process group), forward its output to ``out`` (default: our stdout),
    and kill the group once it makes no progress for ``quiet_limit`` seconds.

    ``on_progress(what)`` hears every sign of life: a step that runs inside a watched run passes
    ``heartbeat`` so that its own watcher sees the inner command's progress too.
    ``exit_marker``: a line saying the work is done, its exit status in group 1; should the
    process not end within ``exit_grace`` seconds after it, the group is killed and that status
    returned (a VM whose power-off blocks on a wedged LU has done its work). ``nice``: the
    command's scheduling priority (``processes.lower_priority``)."""
    sink = out if out is not None else sys.stdout.buffer
    start = time.monotonic()
    dog = Watchdog(quiet_limit, start, startup_limit)

    def alive(what: str) -> None:
        dog.progress(time.monotonic(), what)
        if on_progress is not None:
            on_progress(what)

    sizes = {p: _size(p) for p in progress_files}
    proc = subprocess.Popen(
        list(cmd), env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    if nice:
        lower_priority(proc.pid, nice)
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    hung = False
    open_pipe = True
    seen = b""
    said = ""  # the last line with text the command printed
    marked: tuple[float, int] | None = None  # when the exit marker came, and its status
    try:
        while True:
            if open_pipe:
                for _key, _ in sel.select(timeout=poll):
                    chunk = proc.stdout.read(65536)
                    if not chunk:
                        open_pipe = False
                        sel.unregister(proc.stdout)
                        break
                    # what it says: its last line with text (a chunk may be only the end
                    # of a line written in parts); first: a spinner may end here
                    if tail := chunk.rstrip().rsplit(b"\n", 1)[-1]:
                        said = tail.decode(errors="replace")[:120]
                    alive(said)
                    sink.write(chunk)
                    sink.flush()
                    window = seen + chunk  # the tail before: a marker split between reads
                    found = exit_marker.search(window) if exit_marker and not marked else None
                    seen = window[-4096:]
                    if found is not None:
                        marked = (time.monotonic(), int(found.group(1)))
            else:
                time.sleep(poll)
            for p, old in sizes.items():
                if (new := _size(p)) != old:
                    sizes[p] = new
                    alive(f"{p.name} grew")
            if proc.poll() is not None:
                # Exited: forward what is left, but do not wait for children that inherited
                # the pipe (a daemon the run started may keep it open).
                if open_pipe:
                    with suppress(OSError):
                        while rest := proc.stdout.read(65536):
                            sink.write(rest)
                    sink.flush()
                break
            if marked is not None and time.monotonic() - marked[0] > exit_grace:
                break  # done, but the process does not end: the group goes below
            if dog.hung(time.monotonic()):
                hung = True
                break
    finally:
        sel.close()
        # Whatever is left of the group goes: after a hang, the process (a thread stuck in SG_IO
        # on a wedged LUN can keep it from exiting; the VM's power-off reaps what stays in D
        # state), and in any case daemons it left behind.
        with suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        proc.stdout.close()
    seconds = time.monotonic() - start
    rc = proc.returncode
    if marked is not None and (rc is None or rc < 0):
        rc = marked[1]  # killed after its work was done: the work's own status
    return WatchedRun(
        rc=None if hung else rc,
        seconds=seconds,
        hung=hung,
        slow=budget is not None and seconds > budget,
        quiet_limit=dog.limit,
        last_what=dog.last_what,
        started_up=dog.steps > 0,
    )


def wait_for_result(
    directory: Path,
    done: str,
    failed: str,
    quiet_limit: float,
    what: str,
    error: Callable[[str], Exception],
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Path:
    """The file ``done`` another process leaves in ``directory`` (on another machine too: the
    VM tier's shared directory), once it is there; it writes the file whole (renamed into
    place), or ``failed`` with its reason, which raises ``error(reason)``.

    Hung only when nothing in the directory grows for ``quiet_limit`` seconds, so a slow
    writer is waited for and a dead one is not."""
    if not directory.is_dir():
        raise error(f"{directory}: no such directory, so no {what} will come")
    dog = Watchdog(quiet_limit, started=clock())
    seen = -1
    while True:
        if (directory / failed).exists():
            raise error(f"the {what} failed: {(directory / failed).read_text()}")
        if (directory / done).exists():
            return directory / done
        size = sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())
        now = clock()
        if size != seen:
            seen = size
            dog.progress(now, f"{size} bytes")
            heartbeat(f"{what}: {size} bytes")
        if dog.hung(now):
            raise error(f"no {what} in {directory}: nothing there grew for {quiet_limit:.0f}s")
        sleep(POLL_SECONDS)
