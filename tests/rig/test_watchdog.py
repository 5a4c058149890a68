"""The VM tier's watchdog on the host, with fake runners: slow is not hung, silence is."""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fake_time import FakeTime

from scsi_pr.rig import watchdog
from scsi_pr.rig.watchdog import (
    ENV_PROGRESS,
    Watchdog,
    heartbeat,
    run_watched,
    wait_for_result,
)


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
    and a child started later (QEMU under vng) inherits both.

    The values are relative to our own (``scripts/mutate`` runs the tests under ``nice``), and
    the command waits until the parent, which sets them after the fork, has done so."""
    base = os.getpriority(os.PRIO_PROCESS, 0)
    nice = min(base + 7, 19)
    if nice == base:
        pytest.skip(f"already at the lowest priority (nice {base})")
    code = (
        "import os, subprocess, sys, time\n"
        "want, group = int(sys.argv[1]), '/proc/self/autogroup'\n"
        "def now():\n"
        "    grouped = open(group).read().split()[-1] if os.path.exists(group) else str(want)\n"
        "    return os.getpriority(os.PRIO_PROCESS, 0), grouped\n"
        "deadline = time.monotonic() + 20\n"  # a guard only: the parent acts at once
        "while want and now() != (want, str(want)) and time.monotonic() < deadline:\n"
        "    time.sleep(0.01)\n"
        "child = 'import os; print(\"child\", os.getpriority(os.PRIO_PROCESS, 0))'\n"
        "subprocess.run([sys.executable, '-c', child])\n"
        "print('self', os.getpriority(os.PRIO_PROCESS, 0))\n"
        "if os.path.exists(group):\n"
        "    print('group', open(group).read().split()[-1])\n"
    )
    out = io.BytesIO()
    run = run_watched([*_python(code), str(nice)], quiet_limit=30.0, out=out, poll=0.1, nice=nice)
    assert run.rc == 0
    lines = out.getvalue().decode().split("\n")
    assert f"child {nice}" in lines and f"self {nice}" in lines
    if Path("/proc/self/autogroup").exists():
        assert f"group {nice}" in lines
    plain = io.BytesIO()
    run_watched([*_python(code), "0"], quiet_limit=30.0, out=plain, poll=0.1)
    assert f"self {base}" in plain.getvalue().decode().split("\n")


class ResultError(Exception):
    """What the caller of ``wait_for_result`` raises (its own error type)."""


def writing(steps: list[Callable[[], None] | None]) -> FakeTime:
    """Another process writing its result into a shared directory, on a fake clock: after
    ``wait_for_result``'s n-th sleep it does ``steps[n - 1]`` (None: nothing)."""

    def step(n: int) -> None:
        if n <= len(steps) and (act := steps[n - 1]) is not None:
            act()

    return FakeTime(step)


def _append(path: Path, data: str) -> Callable[[], None]:
    def step() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write(data)

    return step


def test_a_slow_writer_is_waited_for_as_long_as_its_files_grow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Growth anywhere below the directory (a subfolder too) is progress and a heartbeat for
    our own watcher; 25 s in all with a quiet limit of 10, quiet for 10 at most: no hang, and
    the ``done`` file once it is there."""
    beat = tmp_path / "beat"
    monkeypatch.setenv(ENV_PROGRESS, str(beat))
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "started").write_text("1")  # one byte there already: progress from the start
    steps: list[Callable[[], None] | None] = [None] * 24
    steps[4] = _append(shared / "log", "x" * 3)
    steps[14] = _append(shared / "sub" / "part", "y" * 4)
    steps[23] = _append(shared / "result.json", "{}")
    writer = writing(steps)
    found = wait_for_result(shared, "result.json", "failed", 10.0, "snapshot", ResultError,
                            clock=writer.clock, sleep=writer.sleep)  # fmt: skip
    assert found == shared / "result.json"
    assert writer.slept == [watchdog.POLL_SECONDS] * 24
    texts = [line.split(" ", 1)[1] for line in beat.read_text().splitlines()]
    assert texts == ["snapshot: 1 bytes", "snapshot: 4 bytes", "snapshot: 8 bytes"]


def test_a_writer_that_stops_growing_is_hung_after_the_quiet_limit(tmp_path: Path) -> None:
    """Quiet for exactly the limit is still waited for; a second more is hung."""
    shared = tmp_path / "shared"
    shared.mkdir()
    writer = writing([None, None, _append(shared / "log", "x")])
    with pytest.raises(ResultError) as raised:
        wait_for_result(shared, "done", "failed", 10.0, "report", ResultError,
                        clock=writer.clock, sleep=writer.sleep)  # fmt: skip
    assert str(raised.value) == f"no report in {shared}: nothing there grew for 10s"
    # it grew in the third second: hung 14 s in, not 13, quiet for 10 s exactly
    assert writer.now - 1000.0 == len(writer.slept) == 3 + 11


def test_a_failed_writer_says_why_and_a_missing_directory_at_once(tmp_path: Path) -> None:
    """The ``failed`` file's reason reaches the caller (before a ``done`` beside it); a
    directory that is not there will never get a result, so no waiting at all."""
    shared = tmp_path / "shared"
    shared.mkdir()
    writer = writing([_append(shared / "failed", "disk full"), _append(shared / "done", "")])
    with pytest.raises(ResultError) as raised:
        wait_for_result(shared, "done", "failed", 10.0, "snapshot", ResultError,
                        clock=writer.clock, sleep=writer.sleep)  # fmt: skip
    assert str(raised.value) == "the snapshot failed: disk full" and len(writer.slept) == 1
    (shared / "done").write_text("")
    with pytest.raises(ResultError) as raised:
        wait_for_result(shared, "done", "failed", 10.0, "snapshot", ResultError,
                        clock=writer.clock, sleep=writer.sleep)  # fmt: skip
    assert str(raised.value) == "the snapshot failed: disk full"
    missing = tmp_path / "missing"
    with pytest.raises(ResultError) as raised:
        wait_for_result(missing, "done", "failed", 10.0, "report", ResultError,
                        clock=writer.clock, sleep=writer.sleep)  # fmt: skip
    assert str(raised.value) == f"{missing}: no such directory, so no report will come"
    assert len(writer.slept) == 1


def test_a_quiet_limit_must_be_positive() -> None:
    """A zero or negative limit would call every run hung at once: refused, saying which."""
    for limit in (0.0, -5.0):
        with pytest.raises(ValueError) as raised:
            Watchdog(quiet_limit=limit, started=0.0)
        assert str(raised.value) == f"quiet limit must be positive, not {limit}"


def test_note_progress_moves_the_clock_and_beats_from_the_interval_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a fake clock: every call moves ``last_progress``; a heartbeat comes with the first
    call and then once ``BEAT_INTERVAL`` has passed (exactly that is enough), saying what
    completed (by default: a command)."""
    beat = tmp_path / "beat"
    monkeypatch.setenv(ENV_PROGRESS, str(beat))
    monkeypatch.setitem(watchdog._progress, "beat", 0.0)
    monkeypatch.setitem(watchdog._progress, "last", 0.0)
    now = [1000.0]
    monkeypatch.setattr(watchdog.time, "monotonic", lambda: now[0])
    watchdog.note_progress()
    assert watchdog.last_progress() == 1000.0
    now[0] += watchdog.BEAT_INTERVAL - 0.5
    watchdog.note_progress("PR IN READ KEYS")
    assert watchdog.last_progress() == 1004.5
    now[0] += 0.5
    watchdog.note_progress("PR OUT RESERVE")
    texts = [line.split(" ", 1)[1] for line in beat.read_text().splitlines()]
    assert texts == ["a command completed", "PR OUT RESERVE"]


def test_a_heartbeat_that_cannot_be_written_is_no_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watcher's file is a courtesy: a step must not fail because it cannot be written."""
    monkeypatch.setenv(ENV_PROGRESS, str(tmp_path))  # a directory: open() fails
    heartbeat("still here")
    assert list(tmp_path.iterdir()) == []


def test_the_command_gets_its_environment_directory_and_session_and_stderr_is_forwarded(
    tmp_path: Path,
) -> None:
    """``env`` and ``cwd`` reach the command; its stderr comes with its stdout; it leads a
    session (a process group) of its own, so that the whole group can be killed."""
    code = (
        "import os, sys\n"
        "print(os.environ.get('SCSI_PR_TEST_VAR'), os.getcwd(), flush=True)\n"
        "print('to stderr', file=sys.stderr, flush=True)\n"
        "print('leader' if os.getsid(0) == os.getpid() else 'not leader', flush=True)\n"
    )
    out = io.BytesIO()
    env = {"SCSI_PR_TEST_VAR": "set", "PATH": os.environ.get("PATH", "")}
    run = run_watched(_python(code), quiet_limit=30, out=out, poll=0.1, env=env, cwd=tmp_path)
    assert run.rc == 0
    assert out.getvalue().decode().splitlines() == [f"set {tmp_path}", "to stderr", "leader"]


def test_output_goes_to_our_stdout_by_default(capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    """Without ``out`` the command's output is forwarded to our own stdout."""
    run = run_watched(_python("print('forwarded')"), quiet_limit=30, poll=0.1)
    assert run.rc == 0 and capfdbinary.readouterr().out == b"forwarded\n"


def _wait_for(path: Path) -> str:
    """Python for the command: wait until ``path`` exists (the test's signal that the watcher
    has seen what came before), with a generous guard so that a failing test still ends."""
    return (
        "import os, time\n"
        "deadline = time.monotonic() + 30\n"
        f"while not os.path.exists({str(path)!r}) and time.monotonic() < deadline:\n"
        "    time.sleep(0.01)\n"
    )


def _signal(path: Path, heard: list[str]) -> Callable[[str], None]:
    """An ``on_progress`` that records what it hears and signals ``path`` to the command."""

    def on_progress(what: str) -> None:
        heard.append(what)
        path.touch()

    return on_progress


def test_what_a_chunk_says_is_its_last_line_replaced_and_cut(tmp_path: Path) -> None:
    """The sign of life a run reports is the last line of what it printed (not the first),
    bytes that are not UTF-8 replaced, at most 120 characters. A chunk that only ends a line
    (a line written in parts, as an unbuffered ``print`` does: text, then its newline) is
    progress still said by that line, not an empty one (seen under load in CI)."""
    heard: list[str] = []

    def on_progress(what: str) -> None:
        heard.append(what)
        (tmp_path / f"go{len(heard)}").touch()

    code = (
        "import os, sys\n"
        "sys.stdout.buffer.write(b'first\\nsecond\\nthird \\xff\\n'); sys.stdout.flush()\n"
        + _wait_for(tmp_path / "go1")
        + "os.write(1, b'y' * 130)\n"
        + _wait_for(tmp_path / "go2")
        + "os.write(1, b'\\n')\n"
    )
    run = run_watched(_python(code), quiet_limit=30, out=io.BytesIO(), poll=0.1,
                      on_progress=on_progress)  # fmt: skip
    assert run.rc == 0 and heard == ["third \ufffd", "y" * 120, "y" * 120]
    assert run.last_what == "y" * 120


def test_output_after_the_exit_is_forwarded_too(tmp_path: Path) -> None:
    """What the command wrote just before it ended, still in the pipe when its end is seen,
    is forwarded all the same."""
    go = tmp_path / "go"
    heard: list[str] = []

    def on_progress(what: str) -> None:
        _signal(go, heard)(what)
        if what.startswith("pid "):  # hold the watcher until the command has ended
            stat = Path(f"/proc/{what.split()[1]}/stat")
            for _ in range(3000):  # a guard only
                if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
                    break
                time.sleep(0.01)

    code = (
        "import os\n"
        "print('pid', os.getpid(), flush=True)\n"
        + _wait_for(go)
        + "print('last words', flush=True)\n"
    )
    out = io.BytesIO()
    run = run_watched(_python(code), quiet_limit=30, out=out, poll=0.1, on_progress=on_progress)
    assert run.rc == 0 and out.getvalue().decode().splitlines()[1:] == ["last words"]


def test_a_progress_file_that_appears_grows_and_one_that_stops_is_silence(
    tmp_path: Path,
) -> None:
    """A progress file that is not there yet counts once it appears, however small (one byte);
    one that grew and then stays as it is is no progress: the run is hung."""
    log = tmp_path / "results.jsonl"
    go = tmp_path / "go"
    heard: list[str] = []
    code = (
        f"import time\nopen({str(log)!r}, 'w').write('x')\n" + _wait_for(go) + ("time.sleep(60)\n")
    )
    run = run_watched(_python(code), quiet_limit=1.0, progress_files=[log], out=io.BytesIO(),
                      poll=0.1, on_progress=_signal(go, heard))  # fmt: skip
    assert run.hung and heard == ["results.jsonl grew"]
    assert run.verdict == "hung: no progress for 1s (last sign of life: results.jsonl grew)"


def test_the_exit_marker_may_be_anchored_and_a_status_of_its_own_wins() -> None:
    """A marker anchored at a line's start is found in the very first output; a process that
    ends on its own after the marker reports its own status, 0 too (not the marker's)."""
    import re

    marker = re.compile(rb"(?m)^guest command exited (\d+)$")
    code = "import time; print('guest command exited 7', flush=True); time.sleep(60)"
    run = run_watched(_python(code), quiet_limit=30, out=io.BytesIO(), poll=0.1,
                      exit_marker=marker, exit_grace=0.5)  # fmt: skip
    assert (run.rc, run.hung) == (7, False)
    own = run_watched(_python("print('guest command exited 7')"), quiet_limit=30,
                      out=io.BytesIO(), poll=0.1, exit_marker=marker)  # fmt: skip
    assert own.rc == 0


def test_an_exit_marker_followed_by_much_output_in_one_read_is_found() -> None:
    """The marker is looked for before the kept tail is cut: 5 KB after it in the same read
    must not push it out (it did: the run was then called hung)."""
    import re

    marker = re.compile(rb"guest command exited (\d+)")
    code = ("import sys, time; sys.stdout.buffer.write(b'guest command exited 7\\n' + b'x' * 5000"
            " + b'\\n'); sys.stdout.flush(); time.sleep(60)")  # fmt: skip
    run = run_watched(_python(code), quiet_limit=30, out=io.BytesIO(), poll=0.1,
                      exit_marker=marker, exit_grace=0.1)  # fmt: skip
    assert (run.rc, run.hung) == (7, False)


def test_an_exit_marker_split_between_two_reads_is_found() -> None:
    marker = __import__("re").compile(rb"guest command exited (\d+)")
    code = ("import sys, time; w = sys.stdout.buffer; w.write(b'guest command ex'); w.flush();"
            " time.sleep(0.5); w.write(b'ited 9\\n'); w.flush(); time.sleep(60)")  # fmt: skip
    run = run_watched(_python(code), quiet_limit=30, out=io.BytesIO(), poll=0.05,
                      exit_marker=marker, exit_grace=0.1)  # fmt: skip
    assert (run.rc, run.hung) == (9, False)
