"""Where a VM's CPU went: ``/proc/stat``'s totals since boot, and the commands (processes and
kernel threads, with the children they reaped) that used the most, read when a VM tier run ends.

Why: under TCG the tier is bound by the host's CPU (issue 14), and the phases' pytest runs
(with LIO's work, done in their context) account for most of it. This names the rest (kernel
threads, udev, multipathd, the boot) so that waste there shows up. Parsing is pure; only
``usage`` and ``read`` touch ``/proc``.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

#: ``/proc/stat``'s first line: the columns after "cpu", in the order proc(5) gives them
STAT_COLUMNS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
BUSY_COLUMNS = ("user", "nice", "system", "irq", "softirq", "steal")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # proc(5)'s times are in these
PF_KTHREAD = 0x00200000  # /proc/PID/stat's flags: a kernel thread (include/linux/sched.h)
#: kworker/0:1H-kblockd, kworker/u4:2-events_unbound -> kworker: the instance is noise
_INSTANCE = re.compile(r"/.*$")


class Usage(NamedTuple):
    """CPU seconds of one process or kernel thread (``children``: the ones it reaped), and
    its state letter (``R``, ``S``, ``Z`` for a zombie not yet reaped...)."""

    command: str
    kernel_thread: bool
    own: float
    children: float
    state: str = "R"


def parse_proc_stat(text: str, ticks: int) -> dict[str, float]:
    """``/proc/stat``'s aggregate line -> seconds per column of ``STAT_COLUMNS``."""
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            # an older kernel's line has fewer columns: zip stops at the shorter
            return {name: int(v) / ticks for name, v in zip(STAT_COLUMNS, fields[1:], strict=False)}
    raise ValueError("no aggregate cpu line in /proc/stat")


def parse_pid_stat(text: str, ticks: int) -> Usage:
    """One ``/proc/PID/stat``. The command sits in parentheses and may hold spaces and
    parentheses itself: the fields after it start after the *last* ``)``."""
    command = text[text.index("(") + 1 : text.rindex(")")]
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state): field N is rest[N - 3]
    flags, utime, stime, cutime, cstime = (int(rest[i - 3]) for i in (9, 14, 15, 16, 17))
    own, children = (utime + stime) / ticks, (cutime + cstime) / ticks
    return Usage(command, bool(flags & PF_KTHREAD), own, children, rest[0])


def by_command(usages: Iterable[Usage]) -> Counter[str]:
    """CPU seconds (own and reaped children's) per command, kernel threads' instances merged
    (every ``kworker/...`` is one ``[kworker]``)."""
    total: Counter[str] = Counter()
    for u in usages:
        name = f"[{_INSTANCE.sub('', u.command)}]" if u.kernel_thread else u.command
        total[name] += u.own + u.children
    return total


def report(
    totals: dict[str, float], usages: Iterable[Usage], top: int = 8, uevents: int | None = None
) -> list[str]:
    """Lines for the VM's log: busy and idle seconds since boot (and how many uevents the
    kernel sent udev), then the ``top`` commands."""
    busy = sum(totals[c] for c in BUSY_COLUMNS)
    parts = ", ".join(f"{c} {totals[c]:.0f}s" for c in BUSY_COLUMNS if round(totals[c]))
    idle = totals["idle"] + totals["iowait"]
    events = "" if uevents is None else f"; {uevents} uevents"
    lines = [f"  busy {busy:.0f}s ({parts}), idle {idle:.0f}s{events}"]
    ranked = by_command(usages).most_common(top)
    lines.append("  most: " + ", ".join(f"{name} {s:.0f}s" for name, s in ranked if round(s)))
    return lines


def usage(pid: int, proc: Path = Path("/proc")) -> Usage:
    """``pid``'s usage now (OSError once it is gone). The one reader of ``/proc/PID/stat``:
    ``rig.processes.cpu_seconds``, the hostile-input tests, the VM tier's tests and the helper
    bench use it too (``helper.fuzz`` reads the state itself: ``helper`` imports nothing from
    ``rig``)."""
    return parse_pid_stat((proc / str(pid) / "stat").read_text(), CLOCK_TICKS)


def read(proc: Path = Path("/proc")) -> tuple[dict[str, float], list[Usage]]:
    """This system's totals and every live task's usage (tasks that end between the listing
    and the read are skipped)."""
    totals = parse_proc_stat((proc / "stat").read_text(), CLOCK_TICKS)
    usages = []
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                usages.append(usage(int(entry.name), proc))
            except (OSError, ValueError, IndexError):
                continue
    return totals, usages


def uevents(sysfs: Path = Path("/sys")) -> int | None:
    """How many uevents the kernel has sent since boot (each one udev's work), if it says."""
    try:
        return int((sysfs / "kernel" / "uevent_seqnum").read_text())
    except (OSError, ValueError):
        return None
