"""Which CPUs the helper's threads run on (``--cpus``): one, by default.

Why one: the helper is CPython, so its connection threads take turns on one interpreter lock.
Spread over several CPUs, every hand-over of that lock to a thread on another CPU, and every
wake-up of a thread parked on an idle CPU, is a cross-CPU wake-up: an inter-processor interrupt,
which on a virtual machine is an exit to the hypervisor. The woken thread then waits for the
lock anyway. On one CPU the same hand-overs are plain context switches. Measured with
``scripts/bench --helper`` on a 2-CPU VM (docs/performance.md): 64 clients 2.6-3.4 times the
requests/s of ``all``, 40-55 us of helper CPU per request instead of 181-186; one client about
the same; in the VM under TCG, 64 clients twice the requests/s. A second CPU buys a GIL-bound
process only the time its threads spend in the kernel with the lock released, which for PR
commands is short.

``auto`` keeps the CPU the helper was started on, among those it may use (systemd's
``CPUAffinity=``, a cpuset, ``taskset``): an administrator who keeps CPUs for guests keeps them.
``all`` leaves the scheduler free, as the C helper is. A list (``0,2-3``, as ``taskset -c``)
chooses; a CPU the helper may not use is refused.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable

from scsi_pr.helper.errors import HelperError
from scsi_pr.helper.getopt import is_decimal

AUTO = "auto"
ALL = "all"
#: above any kernel's NR_CPUS (8192 on x86-64): a bound, so that a list cannot ask for a set of
#: millions
MAX_CPU = 65535
#: field 39 of /proc/PID/stat (proc(5)): the CPU the task last ran on; 36th after the comm
_PROCESSOR_AFTER_COMM = 36


class CpuListError(HelperError):
    """A ``--cpus`` value that names no usable set of CPUs; the message says why."""


def parse(text: str) -> frozenset[int] | str:
    """``AUTO``, ``ALL`` or the CPUs of a list such as ``0,2-3`` (CpuListError otherwise)."""
    if text in (AUTO, ALL):
        return text
    cpus: set[int] = set()
    for item in text.split(","):
        first, dash, last = item.partition("-")
        if not is_decimal(first) or (dash and not is_decimal(last)):
            raise CpuListError(f"'{text}' is not auto, all or a CPU list such as 0,2-3")
        low, high = int(first), int(last) if dash else int(first)
        if low > high:
            raise CpuListError(f"'{item}' is an empty CPU range")
        if high > MAX_CPU:
            raise CpuListError(f"'{item}': CPU numbers go up to {MAX_CPU}")
        cpus.update(range(low, high + 1))
    return frozenset(cpus)


def format_list(cpus: Iterable[int]) -> str:
    """``0,2-3`` for {0, 2, 3}: how messages name a set of CPUs."""
    ranges: list[tuple[int, int]] = []
    for cpu in sorted(cpus):
        if ranges and ranges[-1][1] == cpu - 1:
            ranges[-1] = (ranges[-1][0], cpu)
        else:
            ranges.append((cpu, cpu))
    return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges)


def current_cpu(stat_text: str) -> int:
    """The CPU a task last ran on, from the text of its /proc/PID/stat (its name may hold
    spaces and parentheses: the fields are counted after the last one)."""
    return int(stat_text.rpartition(")")[2].split()[_PROCESSOR_AFTER_COMM])


def choose(spec: frozenset[int] | str, allowed: frozenset[int], running_on: int) -> frozenset[int]:
    """The CPUs to keep for ``spec`` when the helper may use ``allowed`` and runs on
    ``running_on`` now. Pure, so that every case is checked without touching the process."""
    if spec == ALL:
        return allowed
    if spec == AUTO:
        return frozenset({running_on if running_on in allowed else min(allowed)})
    assert isinstance(spec, frozenset)
    if not spec <= allowed:
        raise CpuListError(
            f"CPU {format_list(spec - allowed)} not available to the helper "
            f"(it may use {format_list(allowed)})"
        )
    return spec


def confine(spec: frozenset[int] | str) -> frozenset[int]:
    """Keep every thread of this process (and those it starts later, which inherit the mask)
    on the CPUs ``spec`` chooses; returns them. An explicit list that cannot be applied raises
    CpuListError; ``auto`` is an optimisation, so a kernel that refuses it (a seccomp filter,
    a cpuset changing under us) leaves the threads it could not move where they were."""
    allowed = frozenset(os.sched_getaffinity(0))
    with open("/proc/self/stat") as f:
        running_on = current_cpu(f.read())
    cpus = choose(spec, allowed, running_on)
    if cpus == allowed:
        return cpus
    try:
        for task in os.listdir("/proc/self/task"):
            with contextlib.suppress(ProcessLookupError):  # a thread that just ended
                os.sched_setaffinity(int(task), cpus)
    except OSError as e:
        if spec == AUTO:
            return allowed
        raise CpuListError(
            f"cannot keep the helper on CPU {format_list(cpus)}: {e.strerror}"
        ) from None
    return cpus
