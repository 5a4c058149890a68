"""The VM's CPU accounting (``rig.guest_cpu``): the parsers on text shaped as proc(5) gives it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path, PosixPath

import pytest

from scsi_pr.rig import guest_cpu

TICKS = 100
PROC_STAT = "cpu  1000 50 300 9000 150 0 30 0 0 0\ncpu0 500 25 150 4500 10 0 15 0 0 0\n"


def pid_stat(
    command: str, flags: int, utime: int, stime: int, cutime: int, cstime: int, state: str = "S"
) -> str:
    # fields 3..17 after "PID (comm)": state, ppid, pgrp, session, tty, tpgid, flags, minflt,
    # cminflt, majflt, cmajflt, utime, stime, cutime, cstime; then the rest
    after = [state, "1", "1", "1", "0", "-1", str(flags), "7", "0", "0", "0"]
    times = [str(utime), str(stime), str(cutime), str(cstime)]
    return f"42 ({command}) " + " ".join([*after, *times, "20", "0", "1", "0", "15"])


def test_proc_stat_columns_in_seconds() -> None:
    totals = guest_cpu.parse_proc_stat(PROC_STAT, TICKS)
    assert totals == {
        "user": 10.0, "nice": 0.5, "system": 3.0, "idle": 90.0,
        "iowait": 1.5, "irq": 0.0, "softirq": 0.3, "steal": 0.0,
    }  # fmt: skip


def test_proc_stat_without_the_aggregate_line_is_refused() -> None:
    with pytest.raises(ValueError, match="aggregate"):
        guest_cpu.parse_proc_stat("cpu0 1 2 3 4\n", TICKS)


def test_pid_stat_own_and_children_split_and_kernel_thread_flag() -> None:
    u = guest_cpu.parse_pid_stat(pid_stat("python", 0x400000, 150, 50, 300, 100), TICKS)
    assert u == guest_cpu.Usage("python", False, 2.0, 4.0, "S")
    k = guest_cpu.parse_pid_stat(pid_stat("kworker/0:1H-kblockd", 0x208040, 7, 3, 0, 0), TICKS)
    assert k == guest_cpu.Usage("kworker/0:1H-kblockd", True, 0.1, 0.0, "S")


def test_a_command_with_spaces_and_parentheses_is_read_to_the_last_one() -> None:
    u = guest_cpu.parse_pid_stat(pid_stat("a) (b c", 0, 100, 0, 0, 200, state="Z"), TICKS)
    assert (u.command, u.own, u.children, u.state) == ("a) (b c", 1.0, 2.0, "Z")


def test_a_live_process_is_read_from_proc() -> None:
    me = guest_cpu.usage(os.getpid())
    assert me.state == "R" and not me.kernel_thread and me.own > 0  # it is running this test


def test_kernel_threads_merge_by_name_processes_do_not() -> None:
    usages = [
        guest_cpu.Usage("kworker/0:1-events", True, 1.0, 0.0),
        guest_cpu.Usage("kworker/u4:2-events_unbound", True, 2.0, 0.0),
        guest_cpu.Usage("python3", False, 1.0, 5.0),
        guest_cpu.Usage("python3", False, 0.5, 0.0),
        guest_cpu.Usage("kworker/x", False, 1.0, 0.0),  # a process may call itself that
    ]
    assert guest_cpu.by_command(usages) == {"[kworker]": 3.0, "python3": 6.5, "kworker/x": 1.0}


def test_report_names_busy_idle_and_the_top_commands() -> None:
    totals = guest_cpu.parse_proc_stat(PROC_STAT, TICKS)
    usages = [
        guest_cpu.Usage("python3", False, 1.0, 9.0),
        guest_cpu.Usage("udevd", False, 3.0, 0.0),
        guest_cpu.Usage("tiny", False, 0.1, 0.0),
    ]
    busy, most = guest_cpu.report(totals, usages, top=2)
    assert busy == "  busy 14s (user 10s, system 3s), idle 92s"
    assert most == "  most: python3 10s, udevd 3s"
    assert guest_cpu.report(totals, usages, uevents=1234)[0].endswith("idle 92s; 1234 uevents")


def test_uevents_from_sysfs_or_none(tmp_path: Path) -> None:
    (tmp_path / "kernel").mkdir()
    assert guest_cpu.uevents(tmp_path) is None
    (tmp_path / "kernel" / "uevent_seqnum").write_text("4321\n")
    assert guest_cpu.uevents(tmp_path) == 4321


def test_read_this_system() -> None:
    totals, usages = guest_cpu.read()
    assert sum(totals[c] for c in guest_cpu.BUSY_COLUMNS) > 0
    assert any(u.own > 0 for u in usages)


def test_proc_stat_from_an_older_kernel_gives_the_columns_it_has() -> None:
    """Kernels before 2.6.11 give no ``steal`` column: the columns there are read, not the
    line refused (``zip`` is not strict on purpose)."""
    assert guest_cpu.parse_proc_stat("cpu  100 0 200 300 0 0 50\n", TICKS) == {
        "user": 1.0, "nice": 0.0, "system": 2.0, "idle": 3.0,
        "iowait": 0.0, "irq": 0.0, "softirq": 0.5,
    }  # fmt: skip


def test_proc_stat_refusal_says_what_is_missing() -> None:
    with pytest.raises(ValueError) as refused:
        guest_cpu.parse_proc_stat("intr 1 2\n\ncpu0 1 2 3 4\n", TICKS)
    assert str(refused.value) == "no aggregate cpu line in /proc/stat"


def test_report_ranks_eight_commands_unless_told_otherwise() -> None:
    """The ``top`` commands by CPU seconds, most first; the rest are left out even when they
    would show (one second or more)."""
    totals = guest_cpu.parse_proc_stat(PROC_STAT, TICKS)
    usages = [guest_cpu.Usage(f"c{n}", False, float(n), 0.0) for n in range(1, 11)]
    assert guest_cpu.report(totals, usages)[1] == (
        "  most: c10 10s, c9 9s, c8 8s, c7 7s, c6 6s, c5 5s, c4 4s, c3 3s"
    )
    assert guest_cpu.report(totals, usages, top=3)[1] == "  most: c10 10s, c9 9s, c8 8s"


class _Listed(PosixPath):
    """A ``/proc`` stand-in whose listing comes in name order, so that a test can put an entry
    that fails before the ones that read (a real directory's order is the filesystem's)."""

    def iterdir(self) -> Iterator[_Listed]:
        return iter(sorted(super().iterdir(), key=lambda p: p.name))


def test_read_takes_every_task_of_the_proc_it_is_given(tmp_path: Path) -> None:
    """Tasks that end between the listing and the read (no stat, an empty one, a truncated
    one) are skipped, and the ones after them still read; entries that are not PIDs are not
    tasks."""
    proc = _Listed(tmp_path)
    (proc / "stat").write_text(PROC_STAT)
    (proc / "1").mkdir()  # gone: no stat file
    (proc / "2").mkdir()
    (proc / "2" / "stat").write_text("")  # ValueError: no parentheses
    (proc / "3").mkdir()
    (proc / "3" / "stat").write_text("3 (cut) S 1 1")  # IndexError: fields missing
    (proc / "4").mkdir()
    (proc / "4" / "stat").write_text(pid_stat("init", 0, 100, 100, 0, 0))
    (proc / "5").mkdir()
    (proc / "5" / "stat").write_text(pid_stat("kthreadd", 0x200000, 1, 0, 0, 0))
    (proc / "self").mkdir()
    (proc / "self" / "stat").write_text(pid_stat("not a task", 0, 9, 9, 9, 9))
    totals, usages = guest_cpu.read(proc)
    ticks = guest_cpu.CLOCK_TICKS  # what read() divides by
    assert totals == guest_cpu.parse_proc_stat(PROC_STAT, ticks)
    assert usages == [
        guest_cpu.Usage("init", False, 200 / ticks, 0.0, "S"),
        guest_cpu.Usage("kthreadd", True, 1 / ticks, 0.0, "S"),
    ]
    assert guest_cpu.usage(4, proc) == usages[0]
