"""``scripts/bench --rig``: what the VM tier pays per command it sends to LIO, in one VM run.

Every command the rig sends (a test's, a PR reset's, a unit attention drained) runs off the
caller's thread, so that a wedged LUN cannot stall the test run (``rig.command_thread``). Three
ways to send TEST UNIT READY and READ KEYS on one initiator's /dev/sgN, in turns, the order
rotating each round:

* ``direct``: ``sg_io`` on the calling thread (the floor; what the rig cannot afford);
* ``thread per command``: a new thread started and joined for each (the rig before);
* ``kept thread``: the initiator's ``CommandThread`` (the rig now).

Printed: median and p99 per way and command, and each way's median over direct's. Under TCG a
thread's start and join is expensive, which is what this measures; the host has no LIO.
``SCSI_PR_BENCH_ROUNDS`` overrides the rounds.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

from rich.console import Console
from rich.table import Table

from benchmarks import in_vm
from benchmarks.helper_vm import Latency, turn_order
from scsi_pr.helper.executors.sg import sg_io
from scsi_pr.rig import lio
from scsi_pr.rig.backend_lio import GRACE_SECONDS
from scsi_pr.rig.command_thread import CommandThread, call_once
from scsi_pr.sim.cdb import data_in_length, persistent_reserve_in, test_unit_ready
from scsi_pr.sim.constants import PersistentReserveInAction as InSA

ROUNDS = 20
PER_ROUND = 25  # commands of one kind per way per round
TIMEOUT_MS = 8_000
LUN = lio.LunSpec(initiators=1, name="scsi_pr_bench_rig", generation=0xBD)
COMMANDS = {
    "TEST UNIT READY": test_unit_ready(),
    "READ KEYS": persistent_reserve_in(InSA.READ_KEYS),
}
Way = Callable[[Callable[[], object]], object]


#: how long a way waits for an answer: the rig's own deadline (SG_IO timeout plus grace)
WAIT = TIMEOUT_MS / 1000 + GRACE_SECONDS


def ways(kept: CommandThread) -> dict[str, Way]:
    return {
        "direct": lambda fn: fn(),
        "thread per command": lambda fn: call_once("bench one-off", fn, WAIT),
        "kept thread": lambda fn: kept.call(fn, WAIT),
    }


def measure(fd: int, rounds: int) -> dict[str, dict[str, Latency]]:
    kept = CommandThread("bench kept")
    try:
        return _measure(fd, rounds, ways(kept))
    finally:
        kept.close()


def _measure(fd: int, rounds: int, chosen: dict[str, Way]) -> dict[str, dict[str, Latency]]:
    seconds: dict[str, dict[str, list[float]]] = {w: {c: [] for c in COMMANDS} for w in chosen}
    for r in range(rounds):
        for way in turn_order(list(chosen), r):
            for name, cdb in COMMANDS.items():

                def send(cdb: bytes = cdb) -> object:
                    return sg_io(fd, cdb, b"", data_in_length(cdb), TIMEOUT_MS)

                for _ in range(PER_ROUND):
                    start = time.perf_counter()
                    answer = chosen[way](send)
                    seconds[way][name].append(time.perf_counter() - start)
                    if getattr(answer, "status", None) != 0:
                        raise RuntimeError(f"{way} {name}: {answer}")
    return {w: {c: Latency.of(v) for c, v in per.items()} for w, per in seconds.items()}


def report(latency: dict[str, dict[str, Latency]]) -> None:
    table = Table(title="one command through the rig's initiator (µs)")
    table.add_column("way")
    for name in COMMANDS:
        table.add_column(f"{name} median", justify="right")
        table.add_column("p99", justify="right")
        table.add_column("/ direct", justify="right")
    for way, per in latency.items():
        cells = []
        for name, lat in per.items():
            floor = latency["direct"][name].median_us
            cells += [f"{lat.median_us:,.0f}", f"{lat.p99_us:,.0f}", f"{lat.median_us / floor:.2f}"]
        table.add_row(way, *cells)
    Console(width=160).print(table)


def main() -> int:
    try:
        lio.check_available()
    except lio.LioUnavailable as e:
        rc, _ = in_vm.run_in_vm("--rig", str(e))
        return rc
    rig = lio.up(LUN, record=False)
    try:
        lio.clear_unit_attentions(rig.initiators[0].sg)
        fd = os.open(rig.initiators[0].sg, os.O_RDWR | os.O_NONBLOCK)
        try:
            rounds = int(os.environ.get("SCSI_PR_BENCH_ROUNDS", ROUNDS))
            print(f"{rig.initiators[0].sg}: {rounds} rounds x {PER_ROUND} of each command per way")
            report(measure(fd, rounds))
        finally:
            os.close(fd)
    finally:
        lio.down(LUN.name, LUN.generation)
    return 0


if __name__ == "__main__":
    sys.exit(main())
