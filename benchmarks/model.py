"""PR OUT operations per second applied to the model in-process (one core).

A realistic mix from three initiators: key changes, reserve/release, preempt of another
initiator's key and re-registration, so every handler and the generation/UA bookkeeping run.
The unit attentions the preempt and the clear raise are consumed with TEST UNIT READY inside the
timed loop (as real initiators do); only PR OUT commands are counted.
"""

from __future__ import annotations

import time

from scsi_pr.sim.cdb import prout, test_unit_ready
from scsi_pr.sim.constants import PersistentReserveOutAction as SA
from scsi_pr.sim.constants import ReservationType as T
from scsi_pr.sim.device import LogicalUnit
from scsi_pr.sim.nexus import ITNexus

WE = T.WRITE_EXCLUSIVE  # releasing WE raises no unit attention


def _cycle(a: ITNexus, b: ITNexus, c: ITNexus) -> list[tuple[ITNexus, bytes, bytes]]:
    steps = [
        (a, *prout(SA.REGISTER_AND_IGNORE_EXISTING_KEY, 0, 0xA)),
        (b, *prout(SA.REGISTER_AND_IGNORE_EXISTING_KEY, 0, 0xB)),
        (c, *prout(SA.REGISTER, 0, 0xC)),
        (a, *prout(SA.RESERVE, 0xA, 0, WE)),
        (a, *prout(SA.RELEASE, 0xA, 0, WE)),
        (a, *prout(SA.RESERVE, 0xA, 0, WE)),
        (b, *prout(SA.PREEMPT, 0xB, 0xA, WE)),
        (a, test_unit_ready(), b""),  # reports REGISTRATIONS PREEMPTED
        (c, *prout(SA.REGISTER, 0xC, 0xCC)),
        (c, *prout(SA.REGISTER, 0xCC, 0)),
        (c, *prout(SA.REGISTER, 0, 0xC)),
        (b, *prout(SA.CLEAR, 0xB)),
        (c, test_unit_ready(), b""),  # reports RESERVATIONS PREEMPTED
    ]
    return steps


def measure(seconds: float = 2.0) -> tuple[float, int]:
    lu = LogicalUnit(target_ports=(1, 2, 3))
    nexuses = [ITNexus.named(f"naa.50014050000000{i:02x}", i) for i in (1, 2, 3)]
    steps = _cycle(*nexuses)
    pr_out_steps = sum(1 for _, cdb, _ in steps if cdb[0] == 0x5F)
    ops = failures = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(100):
            for nexus, cdb, data in steps:
                status = lu.execute(nexus, cdb, data).status
                if status and cdb[0] == 0x5F:
                    failures += 1
        ops += 100 * pr_out_steps
    return ops / (time.perf_counter() - start), failures


def main() -> int:
    rate, failures = measure()
    print(f"model: {rate:,.0f} PR OUT operations/s in-process (one core), {failures} non-GOOD")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
