"""``scripts/soak``: the long hardening run of issue 10, one table of what was tried and lost.

Three phases against real ``scsi-pr-helper --backend sim`` processes, each the long version of
a host test:

* **fuzz** (``scsi_pr.helper.fuzz``): seeded frames, well-formed and malformed, from several
  clients with a well-behaved client alongside; afterwards the helper must be alive, exit 0 on
  SIGTERM, hold no more fds than before, and its audit log must parse line by line and show
  only PR commands reaching the executor.
* **load** (``scsi_pr.helper.loadgen``): many clients sending READ KEYS for a while from other
  processes; every answer right, every connection served, fds back at the baseline.
* **kill** (``scsi_pr.helper.soak_kill``): kill -9 rounds of helpers sharing an LU under APTPL
  load; nothing acknowledged lost, nothing unacknowledged resurrected.

Anything lost or wrong makes the exit status 1 (3 if the soak itself could not run). An amount
of 0 skips its phase. The seed is printed, so a run that finds something can be replayed.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from scsi_pr.helper.audit import AuditFormatError, parse_audit_line
from scsi_pr.helper.errors import HelperError
from scsi_pr.helper.executable import helper_executable
from scsi_pr.helper.fuzz import alive, run_fuzz, settled_fd_count
from scsi_pr.helper.fuzz_frames import Frame, frames
from scsi_pr.helper.loadgen import run_load
from scsi_pr.helper.soak_kill import SoakError, kill_rounds

START_TIMEOUT = 20.0
STOP_TIMEOUT = 40.0  # SIGTERM to exit: the shutdown grace (30 s) and some
PROGRESS_STEP = 1000  # fuzz frames per progress update
MAX_FINDINGS = 20  # findings printed per phase (all are counted)


class SoakFailed(HelperError):
    """The soak could not run (a helper did not start); not a finding about the helper."""


@dataclass(frozen=True)
class Plan:
    """How much of each phase to run; 0 skips a phase."""

    frames: int = 1_000_000
    fuzz_clients: int = 4
    clients: int = 256
    seconds: float = 60.0
    load_processes: int = 2
    rounds: int = 50
    seed: int = 0


@dataclass
class PhaseResult:
    """One row of the table: what was tried, and each thing lost or wrong, in words."""

    phase: str
    tried: str
    findings: list[str] = field(default_factory=list)
    lost: int = 0  # things lost or wrong (findings may list only the first ones)
    seconds: float = 0.0
    skipped: bool = False

    def find(self, problem: str, count: int = 1) -> None:
        self.lost += count
        if len(self.findings) < MAX_FINDINGS:
            self.findings.append(problem)

    @property
    def ok(self) -> bool:
        return self.lost == 0


class _Helper:
    """One ``scsi-pr-helper --backend sim`` with its output in ``NAME.log``."""

    def __init__(self, workdir: Path, name: str, *extra: str) -> None:
        self.sock, self.log = workdir / f"{name}.sock", workdir / f"{name}.log"
        argv = [helper_executable(), "-q", "--backend", "sim", "-k", str(self.sock), *extra]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SoakFailed(f"{name}: helper did not start: {self.log.read_text()[-500:]}")
            time.sleep(0.02)

    def _answers(self) -> bool:
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(str(self.sock))
            except OSError:
                return False
            return True

    def stop(self) -> int | None:
        """SIGTERM; its exit status (None if it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode


def _stopped(helper: _Helper, result: PhaseResult) -> None:
    code = helper.stop()
    if code != 0:
        result.find(f"helper exit status on SIGTERM: {code} (log {helper.log})")


# -- the phases ---------------------------------------------------------------------------------
@contextlib.contextmanager
def _thread_crashes(result: PhaseResult) -> Iterator[None]:
    """Count an exception that ends one of the fuzzer's threads as a finding: the frames that
    thread would have played were never tried."""
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        result.find(f"fuzzer thread died: {args.exc_type.__name__}: {args.exc_value}")
        previous(args)

    threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = previous


def fuzz_phase(plan: Plan, workdir: Path, progress: Progress) -> PhaseResult:
    trace = workdir / "fuzz.trace"
    events = "prh_command,prh_refused,prh_error,prh_disconnect"  # the reasons, if one is wrong
    helper = _Helper(workdir, "fuzz", "-T", f"{events},file={trace}")
    task = progress.add_task("fuzz frames", total=plan.frames)

    def counted(stream: Iterator[Frame]) -> Iterator[Frame]:
        for n, frame in enumerate(stream, 1):
            if n % PROGRESS_STEP == 0:
                progress.update(task, completed=n)
            yield frame

    result = PhaseResult("fuzz", "")
    try:
        with _thread_crashes(result):
            report = run_fuzz(
                helper.sock,
                counted(itertools.islice(frames(plan.seed), plan.frames)),
                plan.fuzz_clients,
                workdir=workdir,
                helper_pid=helper.proc.pid,
            )
    finally:
        _stopped(helper, result)
    progress.update(task, completed=report.frames)
    result.tried = (
        f"{report.frames:,} frames from {plan.fuzz_clients} clients, seed {plan.seed}; "
        f"{report.answers:,} answers checked; well-behaved client: "
        f"{report.good_requests:,} requests"
    )
    result.seconds = report.seconds
    if report.frames < plan.frames:
        result.find(f"only {report.frames:,} of {plan.frames:,} frames were played")
    for problem in report.anomalies:
        result.find(problem, 0)
    result.lost += report.anomaly_count
    for error in report.good_errors:
        result.find(f"well-behaved client: {error}")
    if report.good_requests == 0:
        result.find("the well-behaved client got no answer at all")
    if not report.helper_alive:
        result.find("helper died")
    if report.fds_after != report.fds_before:
        result.find(f"helper fds {report.fds_before} -> {report.fds_after}")
    _judge_audit(trace, report.answers + report.good_requests, result)
    if result.ok:
        trace.unlink(missing_ok=True)  # hundreds of MB; kept when it may explain a finding
    else:
        result.findings.append(f"the helper's audit trace is kept in {trace}")
    return result


def _judge_audit(trace: Path, at_least: int, result: PhaseResult) -> None:
    """Every line parses (nothing forged), only PR commands ran, none went unlogged."""
    commands = 0
    with trace.open(errors="surrogateescape") as lines:
        for line in lines:
            try:
                record = parse_audit_line(line)
            except AuditFormatError as e:
                result.find(f"audit line that does not parse: {e}")
                continue
            commands += record.event == "prh_command"
            command = record.fields.get("command", "")
            if record.event == "prh_command" and not command.startswith(("PR IN ", "PR OUT ")):
                result.find(f"a non-PR CDB reached the executor: {command}")
    if commands < at_least:
        result.find(f"{commands:,} prh_command lines for {at_least:,} answers")


def load_phase(plan: Plan, workdir: Path, progress: Progress) -> PhaseResult:
    image = workdir / "load.img"
    image.write_bytes(bytes(1 << 16))
    helper = _Helper(workdir, "load")
    result = PhaseResult("load", "")
    task = progress.add_task("load seconds", total=plan.seconds)
    try:
        before = settled_fd_count(helper.proc.pid)
        with _ticking(progress, task):
            report = run_load(helper.sock, image, plan.clients, plan.seconds, plan.load_processes)
        after = settled_fd_count(helper.proc.pid, at_most=before)
        helper_alive = alive(helper.proc.pid)
    finally:
        _stopped(helper, result)
    counts = report.counts or [0]
    result.tried = (
        f"{plan.clients} clients for {plan.seconds:g} s: {report.total:,} READ KEYS, "
        f"{min(counts):,}..{max(counts):,} per connection, p99 {report.latency(0.99) * 1e3:.0f} ms"
    )
    result.seconds = plan.seconds
    for error in report.errors:
        result.find(f"wrong answer: {error}")
    starved = sum(n == 0 for n in report.counts) + plan.clients - len(report.counts)
    if starved:
        result.find(f"{starved} connections never answered", starved)
    if not helper_alive:
        result.find("helper died")
    if after != before:
        result.find(f"helper fds {before} -> {after}")
    return result


def kill_phase(plan: Plan, workdir: Path, progress: Progress) -> PhaseResult:
    progress.add_task(f"kill -9 rounds ({plan.rounds})", total=None)
    start = time.monotonic()
    try:
        report = kill_rounds(workdir / "kill", plan.rounds, plan.seed)
    except SoakError as e:
        raise SoakFailed(str(e)) from e
    result = PhaseResult(
        "kill -9",
        f"{report.rounds} rounds with APTPL: {report.kills} helpers killed, "
        f"{report.acknowledged:,} commands acknowledged, {report.in_flight} in flight",
        seconds=time.monotonic() - start,
    )
    for problem in report.lost:
        result.find(f"lost: {problem}")
    for problem in report.resurrected:
        result.find(f"resurrected: {problem}")
    if report.refused:
        result.find(f"{report.refused} commands refused (the workload never conflicts)",
                    report.refused)  # fmt: skip
    return result


@contextlib.contextmanager
def _ticking(progress: Progress, task: TaskID) -> Iterator[None]:
    """Advance ``task`` with the wall clock while a blocking call runs."""
    stop = threading.Event()
    start = time.monotonic()

    def tick() -> None:
        while not stop.wait(0.5):
            progress.update(task, completed=time.monotonic() - start)

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


Phase = Callable[[Plan, Path, Progress], PhaseResult]
#: phase -> (its function, the plan's amount that decides whether it runs)
PHASES: dict[str, tuple[Phase, Callable[[Plan], float]]] = {
    "fuzz": (fuzz_phase, lambda plan: plan.frames),
    "load": (load_phase, lambda plan: plan.clients * plan.seconds),
    "kill -9": (kill_phase, lambda plan: plan.rounds),
}


def run_soak(plan: Plan, workdir: Path, console: Console) -> list[PhaseResult]:
    """Every phase whose amount is not 0, in order, under one progress display."""
    results = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=console, transient=True) as progress:
        for name, (phase, amount) in PHASES.items():
            if not amount(plan):
                results.append(PhaseResult(name, "skipped", skipped=True))
                continue
            results.append(phase(plan, workdir, progress))
    return results


def table(results: Sequence[PhaseResult], plan: Plan) -> Table:
    out = Table(title=f"scripts/soak, seed {plan.seed}")
    for column in ("phase", "tried", "took", "lost or wrong"):
        out.add_column(column, justify="right" if column in ("took", "lost or wrong") else "left")
    for r in results:
        lost = "-" if r.skipped else f"[{'green' if r.ok else 'bold red'}]{r.lost}"
        took = "-" if r.skipped else f"{r.seconds:.0f} s"
        out.add_row(r.phase, r.tried, took, lost)
    return out


def _parser() -> argparse.ArgumentParser:
    defaults = Plan()
    p = argparse.ArgumentParser(prog="scripts/soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=defaults.frames, help="fuzz frames (%(default)s)")
    p.add_argument("--fuzz-clients", type=int, default=defaults.fuzz_clients,
                   help="fuzzing connections at once (%(default)s)")  # fmt: skip
    p.add_argument("--clients", type=int, default=defaults.clients,
                   help="load clients (%(default)s)")  # fmt: skip
    p.add_argument("--seconds", type=float, default=defaults.seconds,
                   help="load duration (%(default)s)")  # fmt: skip
    p.add_argument("--load-processes", type=int, default=defaults.load_processes,
                   help="processes the load clients run in (%(default)s)")  # fmt: skip
    p.add_argument("--rounds", type=int, default=defaults.rounds,
                   help="kill -9 rounds (%(default)s)")  # fmt: skip
    p.add_argument("--seed", type=int, default=None, help="replay a run (default: a new one)")
    p.add_argument("--workdir", type=Path, default=None,
                   help="keep sockets, images, logs here (default: a temporary dir)")  # fmt: skip
    return p


def main(argv: Sequence[str] | None = None, console: Console | None = None) -> int:
    args = _parser().parse_args(argv)
    amounts = (args.frames, args.fuzz_clients, args.clients, args.seconds, args.load_processes,
               args.rounds)  # fmt: skip
    if any(n < 0 for n in amounts) or args.fuzz_clients < 1 or args.load_processes < 1:
        _parser().error("amounts must be 0 or more, clients and processes at least 1")
    seed = random.SystemRandom().randrange(2**31) if args.seed is None else args.seed
    plan = Plan(args.frames, args.fuzz_clients, args.clients, args.seconds,
                args.load_processes, args.rounds, seed)  # fmt: skip
    console = console or Console()
    try:
        if args.workdir is not None:
            args.workdir.mkdir(parents=True, exist_ok=True)
            results = run_soak(plan, args.workdir, console)
        else:
            with tempfile.TemporaryDirectory(prefix="scsi-pr-soak-") as tmp:
                results = run_soak(plan, Path(tmp), console)
    except SoakFailed as e:
        console.print(f"[bold red]soak could not run:[/] {e}")
        return 3
    console.print(table(results, plan))
    for r in results:
        for problem in r.findings:
            console.print(f"[red]{r.phase}:[/] {escape(problem)}", highlight=False)
    verdict = all(r.ok for r in results)
    console.print("[green]nothing lost[/]" if verdict else "[bold red]something was lost[/]")
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())
