"""The daemon's worker threads: a concurrent.futures executor that never keeps the process
alive (a stuck call must not turn SIGTERM into a hang; the process test is in test_hostile)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time

import pytest

from scsi_pr.helper.worker_pool import WorkerPool


def test_calls_results_and_exceptions_come_back_through_futures() -> None:
    pool = WorkerPool(2, "t")
    assert pool.submit(lambda a, b=0: a + b, 1, b=2).result(5) == 3
    with pytest.raises(ZeroDivisionError):
        pool.submit(lambda: 1 / 0).result(5)
    pool.shutdown()


def test_threads_are_daemons_started_on_demand_up_to_the_limit() -> None:
    pool = WorkerPool(3, "cap")
    gate = threading.Event()
    names: set[str] = set()

    def hold() -> None:
        names.add(threading.current_thread().name)
        assert threading.current_thread().daemon
        gate.wait(5)

    futures = [pool.submit(hold) for _ in range(6)]
    time.sleep(0.2)
    assert len(names) == 3 and all(n.startswith("cap_") for n in names)
    gate.set()
    for f in futures:
        f.result(5)
    assert len(names) == 3  # idle threads were reused, never more than 3
    pool.shutdown()


def test_shutdown_cancels_queued_calls_and_refuses_new_ones() -> None:
    pool = WorkerPool(1)
    gate = threading.Event()
    running = pool.submit(gate.wait, 5)
    queued = pool.submit(lambda: "never")
    time.sleep(0.1)
    pool.shutdown(wait=False, cancel_futures=True)
    assert queued.cancelled()
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(print)
    gate.set()
    assert running.result(5) is True


def test_asyncio_runs_blocking_calls_in_it() -> None:
    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        return await asyncio.gather(*(loop.run_in_executor(pool, pow, 2, n) for n in range(5)))

    pool = WorkerPool(2)
    assert asyncio.run(main()) == [1, 2, 4, 8, 16]
    pool.shutdown()


def test_a_stuck_call_does_not_keep_the_process_alive() -> None:
    script = (
        "import threading; from scsi_pr.helper.worker_pool import WorkerPool\n"
        "WorkerPool(1).submit(threading.Event().wait)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], timeout=20, check=False)
    assert result.returncode == 0
