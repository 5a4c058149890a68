"""``--cpus``: which CPUs the helper's threads run on (``scsi_pr.helper.cpus``).

The choice itself is pure and checked case by case; then a real ``scsi-pr-helper`` is asked,
through /proc, where its threads may run, including a connection's thread started after the
choice was made.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from scsi_pr.helper import cpus
from scsi_pr.helper.cpus import ALL, AUTO, CpuListError, choose, confine, current_cpu
from scsi_pr.helper.executable import helper_executable
from scsi_pr.helper.options import Exit, InvalidOption, parse
from scsi_pr.rig.processes import wait_listening

ALLOWED = frozenset({0, 1, 2, 3})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("auto", AUTO),
        ("all", ALL),
        ("0", frozenset({0})),
        ("3,1", frozenset({1, 3})),
        ("0-2", frozenset({0, 1, 2})),
        ("1,4-5,7", frozenset({1, 4, 5, 7})),
        ("2-2", frozenset({2})),
        ("12", frozenset({12})),
        ("65535", frozenset({65535})),
    ],
)
def test_cpu_lists_read_as_taskset_writes_them(text: str, expected: object) -> None:
    assert cpus.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "'' is not auto, all or a CPU list such as 0,2-3"),
        ("x", "'x' is not auto, all or a CPU list such as 0,2-3"),
        ("0,", "'0,' is not auto, all or a CPU list such as 0,2-3"),
        ("-1", "'-1' is not auto, all or a CPU list such as 0,2-3"),
        ("1-", "'1-' is not auto, all or a CPU list such as 0,2-3"),
        ("1-x", "'1-x' is not auto, all or a CPU list such as 0,2-3"),
        ("Auto", "'Auto' is not auto, all or a CPU list such as 0,2-3"),
        ("3-1", "'3-1' is an empty CPU range"),
        ("0,5-4", "'5-4' is an empty CPU range"),
        ("0-99999999", "'0-99999999': CPU numbers go up to 65535"),
        ("65536", "'65536': CPU numbers go up to 65535"),
    ],
)
def test_bad_cpu_lists_are_clear_errors(text: str, message: str) -> None:
    with pytest.raises(CpuListError) as caught:
        cpus.parse(text)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("cpu_set", "text"),
    [({0}, "0"), ({0, 1}, "0-1"), ({0, 2, 3}, "0,2-3"), ({5, 1, 2, 3, 9}, "1-3,5,9"), (set(), "")],
)
def test_cpu_sets_are_named_as_lists(cpu_set: set[int], text: str) -> None:
    assert cpus.format_list(cpu_set) == text


def test_the_current_cpu_is_counted_after_the_name() -> None:
    # proc(5): field 39 is the processor; a name may hold spaces and parentheses
    fields = [str(n) for n in range(3, 53)]  # fields 3.. hold their own number
    assert current_cpu("1234 (a b) (c)) " + " ".join(fields)) == 39
    with open("/proc/self/stat") as f:
        assert current_cpu(f.read()) in os.sched_getaffinity(0)


@pytest.mark.parametrize(
    ("spec", "running_on", "kept"),
    [
        (AUTO, 2, {2}),  # the CPU it started on
        (AUTO, 0, {0}),
        (AUTO, 7, {0}),  # started outside its set (the set changed since): the lowest allowed
        (ALL, 2, ALLOWED),
        (frozenset({1, 3}), 0, {1, 3}),
        (ALLOWED, 0, ALLOWED),
    ],
)
def test_what_each_choice_keeps(spec: frozenset[int] | str, running_on: int, kept: set) -> None:
    assert choose(spec, ALLOWED, running_on) == kept


def test_cpus_the_helper_may_not_use_are_refused() -> None:
    with pytest.raises(CpuListError) as caught:
        choose(frozenset({1, 4, 6, 7}), ALLOWED, 0)
    assert str(caught.value) == "CPU 4,6-7 not available to the helper (it may use 0-3)"


@pytest.fixture
def restored_affinity() -> Iterator[frozenset[int]]:
    """``confine`` changes this process: every thread gets its mask back afterwards."""
    before = frozenset(os.sched_getaffinity(0))
    yield before
    for task in _thread_masks():
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(task, before)


def _thread_masks(pid: int | str = "self") -> dict[int, frozenset[int]]:
    """Each thread's CPU mask, of this process or of ``pid``."""
    masks = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):  # it ended since the listing
            masks[int(task)] = frozenset(os.sched_getaffinity(int(task)))
    return masks


def test_confine_moves_every_thread_and_skips_ended_ones(
    restored_affinity: frozenset[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_listdir = os.listdir
    # a thread id that no longer exists when its turn comes (it ended after the listing)
    monkeypatch.setattr(os, "listdir", lambda path: [*real_listdir(path), "2147483646"])
    kept = confine(AUTO)
    assert len(kept) == 1 and kept <= restored_affinity
    assert set(_thread_masks().values()) == {kept}
    assert confine(ALL) == kept  # "all" is what the process may use now: nothing moves


def test_auto_keeps_the_cpu_the_helper_runs_on(
    restored_affinity: frozenset[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    last = max(restored_affinity)
    for task in _thread_masks():  # now every thread runs on the last CPU...
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(task, {last})
    # ...while the process may use all of them: auto keeps the one it runs on, not the first
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(restored_affinity))
    assert confine(AUTO) == {last}


def test_a_refused_auto_leaves_the_mask_and_a_refused_list_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(pid: int, mask: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    # two CPUs allowed whatever this machine has, so that there is something to confine
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(os, "sched_setaffinity", refuse)
    assert confine(AUTO) == {0, 1}
    with pytest.raises(CpuListError) as caught:
        confine(frozenset({1}))
    assert str(caught.value) == "cannot keep the helper on CPU 1: Operation not permitted"


def test_options_take_the_choice_and_refuse_bad_lists() -> None:
    assert parse(["x"], io.StringIO(), io.StringIO()).cpus == AUTO
    assert parse(["x", "--cpus=0,2-3"], io.StringIO(), io.StringIO()).cpus == {0, 2, 3}
    assert parse(["x", "--cpus", "all"], io.StringIO(), io.StringIO()).cpus == ALL
    err = io.StringIO()
    with pytest.raises(Exit) as caught:
        parse(["qemu-pr-helper", "--cpus", "2-1"], io.StringIO(), err)
    assert caught.value.code == 1
    assert isinstance(caught.value.__cause__, InvalidOption)
    assert err.getvalue() == "qemu-pr-helper: invalid cpus: '2-1' is an empty CPU range\n"
    out = io.StringIO()
    with pytest.raises(Exit):
        parse(["x", "--help"], out, io.StringIO())
    assert "--cpus=auto|all|LIST" in out.getvalue()


@pytest.mark.parametrize("spec", ["auto", "all", "first"])
def test_a_running_helper_keeps_its_threads_where_asked(tmp_path: Path, spec: str) -> None:
    allowed = frozenset(os.sched_getaffinity(0))
    arg = str(min(allowed)) if spec == "first" else spec
    sock = tmp_path / "prh.sock"
    proc = subprocess.Popen(
        [helper_executable(), "-q", "--backend", "sim", "-k", str(sock), "--cpus", arg]
    )
    try:
        wait_listening(proc, sock, 30)
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(sock))
            assert client.recv(4) == b"\0\0\0\0"  # a connection thread serves it by now
            masks = _thread_masks(proc.pid)
        assert len(masks) >= 2  # the loop's thread and the connection's
        expected = {"auto": None, "all": allowed, "first": frozenset({min(allowed)})}[spec]
        if expected is None:  # the one CPU it started on, the same for every thread
            (expected,) = set(masks.values())
            assert len(expected) == 1 and expected <= allowed
        assert set(masks.values()) == {expected}
    finally:
        proc.terminate()
        proc.wait(30)


def test_a_helper_given_cpus_it_may_not_use_does_not_start(tmp_path: Path) -> None:
    beyond = max(os.sched_getaffinity(0)) + 1
    result = subprocess.run(
        [helper_executable(), "--backend", "sim", "-k", str(tmp_path / "s"), f"--cpus={beyond}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert f"CPU {beyond} not available to the helper" in result.stderr
    assert not (tmp_path / "s").exists()
