"""IOPS and latency of ``scsi-pr target serve`` beside LIO's own iSCSI target, both reached
through the Linux kernel's iSCSI initiator and measured by fio, in one VM run.

Our target serves the model (a 64M LU in a temporary state dir, ``scsi_pr.rig.iscsi_rig``), LIO
serves a 64M ramdisk (``scsi_pr.rig.lio_iscsi``), both on 127.0.0.1; open-iscsi logs in to each
(one session each) and fio drives each session's /dev/sdX with 4k direct random reads and
writes at queue depth 1 and 8. The targets take turns job by job (ours first, then LIO first)
so both see the same machine load; the ratio ours/LIO is the number to read, the absolute
rates are TCG's. The aim of issue 11 (ours at least 0.3x LIO's IOPS) is reported, never
enforced: the exit status says only whether the measurement ran.

On a host without the kernel pieces (no root, no iscsi_tcp, no LIO) the benchmark runs itself
inside the VM (``scsi-pr vm run``). ``SCSI_PR_BENCH_RUNTIME`` sets the seconds per fio job;
``SCSI_PR_BENCH_PROFILE=1`` runs our target under cProfile (every thread: the asyncio loop and
the LU worker) and prints its top costs after the table.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pstats
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks import in_vm
from scsi_pr.rig import iscsi_rig, lio, lio_iscsi, processes

AIM = 0.3  # issue 11: ours at least 0.3x the IOPS of LIO's iSCSI target
RUNTIME = 10  # seconds per fio job (after RAMP)
RAMP = 1  # seconds of each job not counted (fio's start, the first commands)
BLOCK_SIZE = "4k"
RUNTIME_ENV = "SCSI_PR_BENCH_RUNTIME"
PROFILE_ENV = "SCSI_PR_BENCH_PROFILE"
PROFILE_TOP = 30  # functions listed, by own time and by cumulative time
#: where a thread of the target waits for work (the event loop's poll, the LU worker's queue)
IDLE_WAITS = frozenset(
    {
        "<method 'poll' of 'select.epoll' objects>",
        "<method 'get' of '_queue.SimpleQueue' objects>",
    }
)
#: on PYTHONPATH while iscsi_rig starts our target (iscsi_rig knows nothing of profiling):
#: every thread of that process gets a profiler, each dumped at exit (SIGTERM ends it cleanly)
SITECUSTOMIZE = """
import atexit, cProfile, os, threading
_out = os.environ.pop("SCSI_PR_PROFILE_OUT", None)
if _out:
    _main = cProfile.Profile()
    _all = [_main]
    _run = threading.Thread.run
    def _profiled(self):
        profile = cProfile.Profile()
        _all.append(profile)
        profile.enable()
        try:
            _run(self)
        finally:
            profile.disable()
    threading.Thread.run = _profiled
    def _dump():
        _main.disable()
        for index, profile in enumerate(_all):
            profile.dump_stats(f"{_out}.{index}")
    atexit.register(_dump)
    _main.enable()
"""
OURS, LIO = "ours", "LIO"


class FioOutputError(ValueError):
    """fio's JSON report is missing, reports an error, or has no completed I/O."""


@dataclass(frozen=True)
class Job:
    """One fio job: a direction and a queue depth, the rest fixed."""

    rw: str  # randread or randwrite
    iodepth: int

    @property
    def direction(self) -> str:
        """The section of fio's report this job fills."""
        return "write" if "write" in self.rw else "read"

    def __str__(self) -> str:
        return f"{self.rw} QD{self.iodepth}"

    def argv(self, device: str, runtime: int) -> list[str]:
        return ["fio", f"--name={self.rw}-qd{self.iodepth}", f"--filename={device}",
                "--direct=1", "--ioengine=libaio", f"--bs={BLOCK_SIZE}", f"--rw={self.rw}",
                f"--iodepth={self.iodepth}", f"--runtime={runtime}", f"--ramp_time={RAMP}",
                "--time_based", "--lat_percentiles=1", "--output-format=json"]  # fmt: skip


JOBS = (Job("randread", 1), Job("randread", 8), Job("randwrite", 1), Job("randwrite", 8))


@dataclass(frozen=True)
class FioResult:
    iops: float
    mean_us: float  # total latency (submission + completion), what the application waits
    p99_us: float


def parse_fio(text: str, direction: str) -> FioResult:
    """The ``direction`` ("read" or "write") side of fio's ``--output-format=json`` report of
    one job run with ``--lat_percentiles=1``. fio may print warnings before the JSON."""
    start = text.find("{")
    try:
        report = json.loads(text[start:]) if start >= 0 else None
        job = report["jobs"][0] if report else None
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise FioOutputError(f"no fio JSON report in: {text[:200]!r}") from e
    if job is None:
        raise FioOutputError(f"no fio JSON report in: {text[:200]!r}")
    if job.get("error"):
        raise FioOutputError(f"fio job {job.get('jobname')} failed: error {job['error']}")
    side = job[direction]
    if not side.get("total_ios"):
        raise FioOutputError(f"fio job {job.get('jobname')} completed no {direction}s")
    latency = side["lat_ns"]
    return FioResult(
        iops=float(side["iops"]),
        mean_us=float(latency["mean"]) / 1e3,
        p99_us=float(latency["percentile"]["99.000000"]) / 1e3,
    )


@dataclass(frozen=True)
class Comparison:
    """One job on both targets."""

    job: Job
    ours: FioResult
    lio: FioResult

    @property
    def ratio(self) -> float:
        """Our IOPS over LIO's."""
        return self.ours.iops / self.lio.iops if self.lio.iops else float("inf")


def _ms(us: float) -> str:
    return f"{us / 1e3:.2f}"


def table(rows: Iterable[Comparison]) -> Table:
    out = Table(title=f"iSCSI through the Linux initiator: fio {BLOCK_SIZE} direct, libaio")
    out.add_column("job")
    for who in (OURS, LIO):
        out.add_column(f"{who} IOPS", justify="right")
        out.add_column(f"{who} mean ms", justify="right")
        out.add_column(f"{who} p99 ms", justify="right")
    out.add_column("ours/LIO", justify="right")
    for row in rows:
        cells = [str(row.job)]
        for result in (row.ours, row.lio):
            cells += [f"{result.iops:,.0f}", _ms(result.mean_us), _ms(result.p99_us)]
        out.add_row(*cells, f"{row.ratio:.2f}x")
    return out


def aim_verdict(rows: Iterable[Comparison]) -> str:
    """Information, not a test: is ours at least AIM x LIO's IOPS on every job?"""
    rows = list(rows)
    short = [f"{r.job} {r.ratio:.2f}x" for r in rows if r.ratio < AIM]
    lowest = min(rows, key=lambda r: r.ratio)
    head = f"aim (issue 11): ours >= {AIM}x LIO's IOPS on every job: "
    if not short:
        return head + f"met (lowest {lowest.ratio:.2f}x, {lowest.job})"
    return head + f"not met on {len(short)} of {len(rows)} ({', '.join(short)})"


def turns(jobs: Iterable[Job]) -> list[tuple[Job, str]]:
    """Every job on both targets, who goes first alternating job by job."""
    order = []
    for index, job in enumerate(jobs):
        first, second = (OURS, LIO) if index % 2 == 0 else (LIO, OURS)
        order += [(job, first), (job, second)]
    return order


# -- in the VM --------------------------------------------------------------------------------
def run_fio(job: Job, device: str, runtime: int) -> FioResult:
    done = subprocess.run(job.argv(device, runtime), capture_output=True, text=True,
                          timeout=runtime + RAMP + 300)  # fmt: skip
    if done.returncode != 0:
        raise FioOutputError(f"fio exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return parse_fio(done.stdout, job.direction)


def _say(line: str) -> None:
    print(line, flush=True)  # each line is also a sign of life for the VM's quiet timeout


@contextlib.contextmanager
def profiled_start(out: Path | None) -> Iterator[None]:
    """Python processes started inside run under SITECUSTOMIZE, dumping to ``out``.N."""
    if out is None:
        yield
        return
    (out.parent / "sitecustomize.py").write_text(SITECUSTOMIZE)
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(out.parent), saved]))
    os.environ["SCSI_PR_PROFILE_OUT"] = str(out)
    try:
        yield
    finally:
        del os.environ["SCSI_PR_PROFILE_OUT"]
        if saved is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = saved


def own_time_by_place(stats: pstats.Stats, top: int = PROFILE_TOP) -> list[tuple[float, str]]:
    """Own time summed per source file (per function for built-ins, which have no file), the
    threads' idle waits left out: where the target's busy time goes, at a glance."""
    totals: dict[str, float] = {}
    entries = stats.stats.items()  # type: ignore[attr-defined]  # pstats keeps them there
    for (filename, _line, name), (_cc, _nc, own, _cum, _callers) in entries:
        if name in IDLE_WAITS:
            continue
        place = name if filename == "~" else "/".join(Path(filename).parts[-2:])
        totals[place] = totals.get(place, 0.0) + own
    return sorted(((own, place) for place, own in totals.items()), reverse=True)[:top]


def profile_report(out: Path, top: int = PROFILE_TOP) -> str:
    """The target's threads merged: own time per file, then the top functions by own time and
    by cumulative time."""
    dumps = sorted(str(p) for p in out.parent.glob(out.name + ".*"))
    if not dumps:
        return f"no profile written to {out}.N (did the target exit cleanly?)"
    text = io.StringIO()
    stats = pstats.Stats(*dumps, stream=text)
    places = "\n".join(f"{own:9.3f} s  {place}" for own, place in own_time_by_place(stats, top))
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return (
        f"our target's profile ({len(dumps)} threads); own time per file, idle waits left out:"
        f"\n{places}\n{text.getvalue()}"
    )


def measure(runtime: int, profile: Path | None = None) -> list[Comparison]:
    """Serve both targets, log in to each, run every job on both; tear it all down after
    (with ``profile``, our target's threads dump their profiles to ``profile``.N as it ends)."""
    with ExitStack() as stack:
        with profiled_start(profile):
            rig = iscsi_rig.IscsiRig(1)  # our target, iscsid, a session
        stack.callback(rig.down)
        devices = {OURS: rig.ports[0].block}
        reference = lio_iscsi.LioIscsiTarget(processes.free_port())
        stack.callback(reference.delete)
        session = lio_iscsi.KernelSession(reference.iqn, reference.port)
        stack.callback(session.logout)
        devices[LIO] = session.block
        _say(f"ours: {devices[OURS]}, LIO: {devices[LIO]}; {runtime} s per job")
        results: dict[tuple[Job, str], FioResult] = {}
        for job, who in turns(JOBS):
            result = results[job, who] = run_fio(job, devices[who], runtime)
            _say(f"  {job} {who}: {result.iops:,.0f} IOPS, mean {_ms(result.mean_us)} ms")
    return [Comparison(job, results[job, OURS], results[job, LIO]) for job in JOBS]


def _kernel_ready() -> str | None:
    """Why this machine cannot run the benchmark itself, or None."""
    try:
        iscsi_rig.check_available()
        lio.check_available()
    except (iscsi_rig.IscsiUnavailable, lio.LioUnavailable) as e:
        return str(e)
    return None


def main() -> int:
    why = _kernel_ready()
    if why is not None:
        return in_vm.run_in_vm("--iscsi", why)[0]
    warnings.filterwarnings("ignore", "Cannot set dbroot")  # rtslib-fb's, about the VM's tmpfs
    with tempfile.TemporaryDirectory(prefix="scsi-pr-bench-") as tmp:
        profile = Path(tmp, "target.prof") if os.environ.get(PROFILE_ENV) else None
        rows = measure(int(os.environ.get(RUNTIME_ENV, RUNTIME)), profile)
        console = Console(width=140)
        console.print(table(rows))
        console.print(aim_verdict(rows), soft_wrap=True)
        if profile is not None:
            print(profile_report(profile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
