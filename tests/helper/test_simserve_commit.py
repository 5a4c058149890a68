"""One atomic commit per command on a shared simulated LU (issue 10, item 3 and 9d).

A child process runs one command on the LU and is killed (``os._exit``) at each file-system
call of its commit path in turn: before the first ``open``, before each ``write``, ``fsync``,
``rename`` ... The state a restarted helper then finds, and the state after a power cycle, must
be the state after the acknowledged prefix of commands, with the killed command either wholly
in or wholly out, never half (LU state without its APTPL image, or the other way round).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from scsi_pr.helper.simserve import SharedLUs
from scsi_pr.sim import cdb as C
from scsi_pr.sim.constants import PersistentReserveOutAction as SA
from scsi_pr.sim.constants import ReservationType
from scsi_pr.sim.device import LogicalUnit
from scsi_pr.sim.nexus import ITNexus
from scsi_pr.sim.store import MemoryAptplStore

I1 = ITNexus.named("naa.5001405000000001", 1)
I2 = ITNexus.named("naa.5001405000000002", 2)
A, B, K = 0xA, 0xB, 0xC
WE, EA_RO = ReservationType.WRITE_EXCLUSIVE, ReservationType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY
Command = tuple[ITNexus, tuple[bytes, bytes]]

#: APTPL on, changes under APTPL, a command that changes nothing, one that only clears a unit
#: attention, APTPL off, a change without it, APTPL on again
COMMANDS: list[Command] = [
    (I1, C.prout(SA.REGISTER, 0, A, aptpl=True)),
    (I2, C.prout(SA.REGISTER, 0, B, aptpl=True)),
    (I1, C.prout(SA.RESERVE, A, 0, WE)),
    (I2, (C.persistent_reserve_in(0, 64), b"")),
    (I2, C.prout(SA.PREEMPT, B, A, EA_RO)),
    (I1, (C.persistent_reserve_in(0, 64), b"")),  # reports and clears the preempted UA
    (I1, C.prout(SA.REGISTER_AND_IGNORE_EXISTING_KEY, 0, K, aptpl=False)),
    (I2, C.prout(SA.RELEASE, B, 0, EA_RO)),
    (I2, C.prout(SA.REGISTER_AND_IGNORE_EXISTING_KEY, 0, A, aptpl=True)),
]
#: the file-system calls a commit may make; the child dies just before the k-th of them
FS_CALLS = ("open", "write", "pwrite", "fsync", "fdatasync", "replace", "rename", "close",
            "ftruncate", "unlink")  # fmt: skip
KILLED = 77


def run_command(lus: SharedLUs, image: Path, command: Command) -> Any:
    nexus, (cdb, data) = command
    return lus.run_on_file(image, lambda lu: lu.execute(nexus, cdb, data))


def power_cycle(lu: LogicalUnit) -> dict[str, Any]:
    lu.power_loss()
    lu.power_on()
    return lu.snapshot()


def observed(state: Path, image: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """What a restarted helper finds, and what the LU holds after a power cycle."""
    restarted = SharedLUs(state).run_on_file(image, lambda lu: lu.snapshot())
    return restarted, SharedLUs(state).run_on_file(image, power_cycle)


def expected() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(state, state after a power cycle) after each prefix of COMMANDS, from the model."""
    out = []
    for n in range(len(COMMANDS) + 1):
        lu = LogicalUnit(store=MemoryAptplStore())
        for nexus, (cdb, data) in COMMANDS[:n]:
            lu.execute(nexus, cdb, data)
        state = lu.snapshot()
        out.append((state, power_cycle(lu)))
    return out


def killed_at(k: int, state: Path, image: Path, command: Command) -> bool:
    """Run ``command`` in a child that dies before its k-th file-system call; True if it
    finished (and acknowledged) the command before reaching call k."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest machinery beyond this point, only os._exit
        try:
            os.close(read)
            lus = SharedLUs(state)
            calls = 0
            real = {name: getattr(os, name) for name in FS_CALLS if hasattr(os, name)}

            def dying(fn: Callable[..., Any]) -> Callable[..., Any]:
                def call(*args: Any, **kwargs: Any) -> Any:
                    nonlocal calls
                    calls += 1
                    if calls == k:
                        os._exit(KILLED)
                    return fn(*args, **kwargs)

                return call

            for name, fn in real.items():
                setattr(os, name, dying(fn))
            run_command(lus, image, command)
            for name, fn in real.items():
                setattr(os, name, fn)
            os.write(write, b"ack")
            os._exit(0)
        except BaseException:
            os._exit(1)
    os.close(write)
    with os.fdopen(read, "rb") as r:
        acked = r.read() == b"ack"
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    assert code == (0 if acked else KILLED), f"child failed at call {k} (exit {code})"
    return acked


def kill_points(
    golden: Path, image: Path, tmp: Path, index: int
) -> Iterator[tuple[int, Path, bool]]:
    """For each k, a copy of the state dir after ``COMMANDS[:index]`` in which the child was
    killed before call k of ``COMMANDS[index]``; the last k is the one the child survived."""
    for k in range(1, 200):
        state = tmp / f"cmd{index}-k{k}"
        shutil.copytree(golden, state)
        acked = killed_at(k, state, image, COMMANDS[index])
        yield k, state, acked
        if acked:
            return
    raise AssertionError("the commit path never ended")


def test_a_kill_anywhere_in_the_commit_keeps_the_acknowledged_prefix(tmp_path: Path) -> None:
    image = tmp_path / "lu.img"
    image.write_bytes(bytes(4096))
    golden = tmp_path / "golden"
    golden.mkdir()
    want = expected()
    killed_with_aptpl_write = 0
    for index in range(len(COMMANDS)):
        before, after = want[index], want[index + 1]
        for k, state, acked in kill_points(golden, image, tmp_path, index):
            got = observed(state, image)
            where = f"command {index}, killed before file-system call {k}"
            if acked:
                assert got == after, f"{where}: an acknowledged command was lost"
            else:
                assert got in (before, after), f"{where}: the command is half there"
                killed_with_aptpl_write += before[1] != after[1]
            shutil.rmtree(state)
        run_command(SharedLUs(golden), image, COMMANDS[index])
    assert killed_with_aptpl_write > 0, "no kill landed in a commit that changed APTPL state"


def test_a_killed_writer_leaves_no_temp_file_behind(tmp_path: Path) -> None:
    """9d: after a kill at any point and one later command, the state dir holds no temp file;
    in between there is at most one per LU."""
    image = tmp_path / "lu.img"
    image.write_bytes(bytes(4096))
    golden = tmp_path / "golden"
    golden.mkdir()
    run_command(SharedLUs(golden), image, COMMANDS[0])
    for _, state, _ in kill_points(golden, image, tmp_path, 1):
        assert len(list(state.glob("*tmp*"))) <= 1
        run_command(SharedLUs(state), image, COMMANDS[2])
        assert not list(state.glob("*tmp*")), sorted(p.name for p in state.iterdir())
        shutil.rmtree(state)


@pytest.mark.parametrize(
    ("prefix", "command", "durable"),
    [
        pytest.param(0, COMMANDS[0], True, id="APTPL registration: file and directory synced"),
        pytest.param(6, COMMANDS[6], True, id="APTPL turned off: synced"),
        pytest.param(0, (I1, C.prout(SA.REGISTER, 0, A)), False, id="no APTPL: no sync"),
    ],
)
def test_only_a_change_of_the_aptpl_image_is_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefix: int, command: Command, durable: bool
) -> None:
    image = tmp_path / "lu.img"
    image.write_bytes(bytes(4096))
    lus = SharedLUs(tmp_path / "state")
    for earlier in COMMANDS[:prefix]:
        run_command(lus, image, earlier)
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    run_command(lus, image, command)
    assert (len(synced) >= 2) if durable else not synced, synced
