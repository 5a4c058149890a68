"""The VM tier's accounting: a phase's outcomes read from its pytest's result log, its
summary line, the exit status, and the results files by which VMs booted side by side report
to the host (``--results``, ``--merge``). The phases themselves and how they run:
``scsi_pr.rig.vm_tier``."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from scsi_pr.rig.pytest_plugin import LIO_HANGS

ORDER = ("passed", "failed", "error", "xfailed", "xpassed", "skipped")


@dataclass
class Phase:
    name: str
    rc: int | None = None
    seconds: float = 0.0
    results: list[dict[str, str]] = field(default_factory=list)
    abandoned: bool = False
    verdict: str = "in time"
    #: CPU seconds of its pytest (reaped children included) once collected, and in all
    #: (``pytest_plugin.cpu_seconds``; None when it did not get that far)
    start_cpu: float | None = None
    cpu: float | None = None

    def counts(self) -> Counter[str]:
        c: Counter[str] = Counter()
        for r in self.results:
            kind = r["outcome"]
            if kind == "xfailed" and r["reason"].startswith(LIO_HANGS):
                kind = "LIO hangs"
            elif kind == "xfailed":
                kind = "xfailed (LIO deviation)"
            c[kind] += 1
        return c

    def failed(self) -> bool:
        c = self.counts()
        if c["failed"] or c["error"] or c["xpassed"]:
            return True
        if self.abandoned and not self.results:
            return True  # hung before a single test reported or was even collected
        # pytest's own exit status catches collection errors and crashes the log cannot show
        return self.rc not in (0, 5) and not self.abandoned


def read_log(log: Path) -> list[dict]:
    """The records of a phase's result log (``pytest_plugin``: results, collected, CPU)."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def cpu_marks(records: list[dict]) -> tuple[float | None, float | None]:
    """The CPU seconds the log records once collected and at the end (None: not there)."""
    start = next((r["cpu"] for r in records if "collected" in r and "cpu" in r), None)
    end = next((r["cpu"] for r in records if set(r) == {"cpu"}), None)
    return start, end


def outcomes(records: list[dict], abandoned: bool, hang_phase: bool) -> list[dict[str, str]]:
    """Per-test outcomes from the log. When the run was abandoned, every collected test that
    never reported is counted: in the hang phase as "LIO hangs" (it was running, or waiting
    behind the one that hung), elsewhere as an error, because nothing there should hang."""
    results = [r for r in records if "nodeid" in r]
    if abandoned:
        seen = {r["nodeid"] for r in results}
        for collected in (r["collected"] for r in records if "collected" in r):
            results += [
                {"nodeid": n, "when": "call", "outcome": "xfailed" if hang_phase else "error",
                 "reason": f"{LIO_HANGS}: never reported, the run was abandoned"}
                for n in collected if n not in seen
            ]  # fmt: skip
    return results


@dataclass
class Reported:
    """Tests reported and collected so far, from a phase's result log as it grows: each call
    reads only the complete lines added since the last (the watcher calls it for every sign of
    life, and the log holds a line per test)."""

    log: Path
    offset: int = 0
    done: int = 0
    total: int | None = None  # None before pytest has collected

    def __call__(self) -> tuple[int, int | None]:
        try:
            with self.log.open("rb") as f:
                f.seek(self.offset)
                added = f.read()
        except OSError:
            return self.done, self.total
        added = added[: added.rfind(b"\n") + 1]  # a line still being written waits
        self.offset += len(added)
        for line in added.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # not a record yet: ``outcomes`` reads the log as it is at the end
            if "nodeid" in record:
                self.done += 1
            elif "collected" in record:
                self.total = (self.total or 0) + len(record["collected"])
        return self.done, self.total


def report(ph: Phase, details: bool = True) -> None:
    counts = ", ".join(f"{n} {k}" for k, n in sorted(ph.counts().items())) or "no tests"
    state = "abandoned" if ph.abandoned else f"pytest exit {ph.rc}"
    cpu = "" if ph.cpu is None else f"; CPU {ph.cpu:.0f}s"
    if ph.cpu is not None and ph.start_cpu is not None:
        cpu += f" ({ph.start_cpu:.0f}s to collect)"
    print(f"  {ph.name:<10} {counts}; {state}; {ph.seconds:.0f}s, {ph.verdict}{cpu}", flush=True)
    for r in ph.results if details else []:
        if r["outcome"] == "xfailed" and r["reason"].startswith(LIO_HANGS):
            print(f"    known defect: {r['nodeid']}: {r['reason']}")
        elif r["outcome"] in ("failed", "error", "xpassed"):
            print(f"    {r['outcome'].upper()}: {r['nodeid']}: {r['reason'][:300]}")


def summary_line(phases: list[Phase]) -> str:
    total: Counter[str] = Counter()
    for p in phases:
        total.update(p.counts())
    keys = [k for k in ORDER if total[k]] + sorted(k for k in total if k not in ORDER)
    return "VM tier: " + (", ".join(f"{total[k]} {k}" for k in keys) or "no tests ran")


def conclude(phases: list[Phase]) -> int:
    """Print the summary of ``phases``; the exit status: 1 when any failed."""
    print("\n== VM tier summary ==")
    for ph in phases:
        report(ph)
    if cpus := [ph.cpu for ph in phases if ph.cpu is not None]:
        print(f"  CPU of the phases' pytest runs: {sum(cpus):.0f}s (the VMs' own work besides)")
    print(summary_line(phases), flush=True)
    return 1 if any(ph.failed() for ph in phases) else 0


def write_results(path: Path, phases: list[Phase]) -> None:
    """The phases' outcomes as JSON, for ``--merge`` on the host (written whole, then renamed:
    a VM killed while writing leaves no half a file that would read as fewer tests)."""
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps([asdict(ph) for ph in phases]))
    part.rename(path)


def merge(files: list[Path]) -> int:
    """One summary of several VMs' ``--results``. A file that is missing or unreadable is a
    phase that failed: its VM ended (or was killed) before it wrote its outcomes."""
    phases: list[Phase] = []
    for f in files:
        try:
            records = json.loads(f.read_text())
            phases += [Phase(**r) for r in records]
        except (OSError, ValueError, TypeError) as e:
            why = f"no results in {f.name} ({type(e).__name__}): its VM ended without them"
            phases.append(Phase(f.stem, abandoned=True, verdict=why))
    return conclude(phases)
