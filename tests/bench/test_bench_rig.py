"""``scripts/bench --rig`` (benchmarks/rig_vm.py) without LIO: its ways of sending, its rounds
and its check of every answer. The measurement itself needs LIO (the VM)."""

from __future__ import annotations

import threading

import pytest
from rich.console import Console

from benchmarks import rig_vm
from benchmarks.__main__ import BENCHMARKS, ON_REQUEST
from scsi_pr.helper.executors.sg import SgIoResult
from scsi_pr.rig.backend_lio import GRACE_SECONDS
from scsi_pr.rig.command_thread import CommandThread

GOOD = SgIoResult(0, 0, 0, b"", b"", 0)


def test_the_rig_benchmark_runs_only_when_named() -> None:
    assert BENCHMARKS["rig"] == "benchmarks.rig_vm" and "rig" in ON_REQUEST


def test_each_way_sends_on_the_thread_it_names() -> None:
    kept_thread = CommandThread("test")
    ways = rig_vm.ways(kept_thread)
    here = threading.current_thread()
    assert ways["direct"](threading.current_thread) is here
    kept = {ways["kept thread"](threading.current_thread) for _ in range(3)}
    assert len(kept) == 1 and here not in kept
    one_off = [ways["thread per command"](threading.current_thread) for _ in range(2)]
    assert one_off[0] is not one_off[1] and here not in one_off
    for thread in one_off:  # a thread per command ends with its command, as the rig's did
        thread.join(60)
        assert not thread.is_alive()
    kept_thread.close()
    assert rig_vm.WAIT == rig_vm.TIMEOUT_MS / 1000 + GRACE_SECONDS


def test_every_way_sends_every_command_per_round_and_the_table_has_a_row_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[bytes] = []

    def fake_sg_io(fd: int, cdb: bytes, *args: object) -> SgIoResult:
        sent.append(cdb)
        return GOOD

    monkeypatch.setattr(rig_vm, "sg_io", fake_sg_io)
    latency = rig_vm.measure(-1, rounds=2)
    assert set(latency) == {"direct", "thread per command", "kept thread"}
    for per in latency.values():
        assert set(per) == set(rig_vm.COMMANDS)
        assert all(lat.count == 2 * rig_vm.PER_ROUND for lat in per.values())
    assert len(sent) == 3 * 2 * len(rig_vm.COMMANDS) * rig_vm.PER_ROUND
    console = Console(record=True, width=200)
    monkeypatch.setattr(rig_vm, "Console", lambda width: console)
    rig_vm.report(latency)
    text = console.export_text()
    assert all(way in text for way in latency) and "1.00" in text


def test_an_answer_other_than_good_stops_the_measurement(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rig_vm, "sg_io", lambda *args: GOOD._replace(status=2))
    with pytest.raises(RuntimeError, match="TEST UNIT READY"):
        rig_vm.measure(-1, rounds=1)
