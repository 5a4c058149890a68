"""The VM tier's watchdog on the host, with fake runners: slow is not hung, silence is."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from scsi_pr.rig.watchdog import ENV_PROGRESS, Watchdog, heartbeat, run_watched


def test_watchdog_decision_follows_progress() -> None:
    dog = Watchdog(quiet_limit=10, started=100.0)
    assert not dog.hung(110.0)
    assert dog.hung(110.5)
    dog.progress(109.0, "test 1 passed")
    assert not dog.hung(118.0) and dog.hung(119.5)
    dog.progress(105.0)  # a late report never moves the clock back
    assert dog.last_progress == 109.0 and dog.steps == 2 and dog.last_what == "test 1 passed"
    with pytest.raises(ValueError):
        Watchdog(quiet_limit=0, started=0.0)


def test_a_slow_start_has_its_own_limit() -> None:
    dog = Watchdog(quiet_limit=10, started=0.0, startup_limit=100)
    assert dog.limit == 100 and not dog.hung(99.0) and dog.hung(101.0)
    dog.progress(99.0, "collected 8 items")
    assert dog.limit == 10 and not dog.hung(108.0) and dog.hung(110.0)


def test_a_run_silent_from_the_start_says_so() -> None:
    run = run_watched(_python("import time; time.sleep(60)"), quiet_limit=0.5, startup_limit=1.0,
                      out=io.BytesIO(), poll=0.1)  # fmt: skip
    assert run.hung and not run.started_up
    assert run.verdict == "hung: no sign of life for 1s after the start"


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_a_run_that_keeps_progressing_is_slow_not_hung() -> None:
    # 3 s in all, far over its 0.5 s budget, but never quiet for 1.5 s
    out = io.BytesIO()
    code = "import time\nfor i in range(10):\n    print('test', i, flush=True); time.sleep(0.3)"
    run = run_watched(_python(code), quiet_limit=1.5, budget=0.5, out=out, poll=0.1)
    assert (run.rc, run.hung, run.slow, run.verdict) == (0, False, True, "slow")
    assert out.getvalue().count(b"test ") == 10


def test_a_silent_run_is_hung_and_killed() -> None:
    out = io.BytesIO()
    code = "import time\nprint('started', flush=True)\ntime.sleep(60)"
    run = run_watched(_python(code), quiet_limit=1.0, out=out, poll=0.1)
    assert run.hung and run.rc is None
    assert run.seconds < 30  # killed at its own deadline, not after the child's 60 s
    assert run.verdict == "hung: no progress for 1s (last sign of life: started)"


def test_progress_files_count_as_progress(tmp_path: Path) -> None:
    # No output at all, but the result log grows: the plugin's per-test JSON lines
    log = tmp_path / "results.jsonl"
    code = (
        "import time, sys\n"
        f"for i in range(8):\n    open({str(log)!r}, 'a').write('x\\n'); time.sleep(0.3)"
    )
    run = run_watched(_python(code), quiet_limit=1.0, progress_files=[log], out=io.BytesIO(),
                      poll=0.1)  # fmt: skip
    assert (run.rc, run.hung) == (0, False)
    silent = run_watched(_python("import time; time.sleep(60)"), quiet_limit=1.0,
                         progress_files=[log], out=io.BytesIO(), poll=0.1)  # fmt: skip
    assert silent.hung


def test_inner_progress_reaches_the_outer_watcher(tmp_path: Path) -> None:
    # A step inside a watched phase (libiscsi's report growing) must show up as the phase's
    # progress too, or the phase's own watchdog calls a long, busy step hung.
    log = tmp_path / "report.xml"
    code = (
        f"import time\nfor i in range(3):\n    open({str(log)!r}, 'a').write('x'); time.sleep(0.3)"
    )
    heard: list[str] = []
    run = run_watched(_python(code), quiet_limit=5.0, progress_files=[log], out=io.BytesIO(),
                      poll=0.1, on_progress=heard.append)  # fmt: skip
    assert run.rc == 0 and heard.count("report.xml grew") >= 2


def test_heartbeat_appends_only_when_watched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    beat = tmp_path / "beat"
    monkeypatch.delenv(ENV_PROGRESS, raising=False)
    heartbeat("nobody listens")
    assert not beat.exists()
    monkeypatch.setenv(ENV_PROGRESS, str(beat))
    heartbeat("guest booted")
    heartbeat("round 1")
    lines = beat.read_text().splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == ["guest booted", "round 1"]


def test_exit_status_and_output_of_a_run_that_finishes_in_time() -> None:
    out = io.BytesIO()
    run = run_watched(_python("import sys; print('x'); sys.exit(3)"), quiet_limit=30, budget=60,
                      out=out, poll=0.1)  # fmt: skip
    assert (run.rc, run.hung, run.slow, run.verdict) == (3, False, False, "in time")
    assert out.getvalue() == b"x\n"


def test_a_daemon_holding_the_pipe_does_not_keep_the_run_alive() -> None:
    # The command exits at once but leaves a grandchild that keeps stdout open for 60 s.
    code = (
        "import subprocess, sys\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print('done', flush=True)"
    )
    run = run_watched(_python(code), quiet_limit=20, out=io.BytesIO(), poll=0.1)
    assert (run.rc, run.hung) == (0, False) and run.seconds < 15


def test_work_that_is_done_is_not_held_up_by_a_process_that_will_not_end() -> None:
    """The VM prints that its command ended, then its power-off blocks (a wedged LU): after the
    grace the group is killed and the command's own status returned, not a hang."""
    import re

    marker = re.compile(rb"guest command exited (\d+)")
    code = "import time; print('guest command exited 7', flush=True); time.sleep(60)"
    run = run_watched(_python(code), quiet_limit=30, out=io.BytesIO(), poll=0.1,
                      exit_marker=marker, exit_grace=1.0)  # fmt: skip
    assert (run.rc, run.hung) == (7, False) and run.seconds < 15
    quick = run_watched(_python("print('guest command exited 0'); raise SystemExit(4)"),
                        quiet_limit=30, out=io.BytesIO(), poll=0.1, exit_marker=marker)  # fmt: skip
    assert quick.rc == 4, "a process that ends on its own reports its own status"


def test_note_progress_moves_the_clock_and_beats_at_most_every_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scsi_pr.rig import watchdog

    beat = tmp_path / "beat"
    monkeypatch.setenv(ENV_PROGRESS, str(beat))
    monkeypatch.setitem(watchdog._progress, "beat", 0.0)
    before = watchdog.last_progress()
    for _ in range(50):  # a burst of commands: one heartbeat line, not fifty
        watchdog.note_progress("cmd")
    assert watchdog.last_progress() >= before
    assert len(beat.read_text().splitlines()) == 1


def test_a_niced_run_and_what_it_starts_run_at_that_priority_in_their_group() -> None:
    """A VM runs in a session of its own (``start_new_session``), and with autogroups the
    kernel ranks a process's nice value only inside its session: the run's group is niced too,
    and a child started later (QEMU under vng) inherits both."""
    out = io.BytesIO()
    code = (
        "import os, subprocess, sys, time\n"
        "time.sleep(0.2)\n"  # the parent sets the priority after the fork
        "child = 'import os; print(\"child\", os.getpriority(os.PRIO_PROCESS, 0))'\n"
        "subprocess.run([sys.executable, '-c', child])\n"
        "print('self', os.getpriority(os.PRIO_PROCESS, 0))\n"
        "if os.path.exists('/proc/self/autogroup'):\n"
        "    print('group', open('/proc/self/autogroup').read().split()[-1])\n"
    )
    run = run_watched(_python(code), quiet_limit=30.0, out=out, poll=0.1, nice=7)
    assert run.rc == 0
    lines = out.getvalue().decode().split("\n")
    assert "child 7" in lines and "self 7" in lines
    if Path("/proc/self/autogroup").exists():
        assert "group 7" in lines
    plain = io.BytesIO()
    run_watched(_python(code), quiet_limit=30.0, out=plain, poll=0.1)
    assert "self 0" in plain.getvalue().decode().split("\n")
