"""PREEMPT AND ABORT in lockstep: the one PR OUT service action the main run leaves out.

On tcm_loop a PREEMPT AND ABORT that succeeds takes effect and never completes: the device
holds the command for good (docs/rig.md); the LIO profiles reproduce the stall. So each run here
is a fresh pair of its own: a generated prefix of ordinary steps, an arrangement that makes the
preempt likely to succeed (a CLEAR, two registrations, a reservation; always so in the first
run), then the PREEMPT AND ABORT, compared like any step. A command that never completes on both
sides is the same answer; after it the run ends, and the next gets a new LU generation
(``scsi_pr.rig.backend_lio``). Run it in a process of its own and last: the VM tier's
``lio_hangs`` phase does, and every stalled generation stays behind until the VM ends.

No minimisation: every replay of a failing program would wedge another LU; the run's steps are
the evidence.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from scsi_pr.rig.lockstep.compare import NO_ANSWER
from scsi_pr.rig.lockstep.machine import KEYS, steps
from scsi_pr.rig.lockstep.session import Opener, Session
from scsi_pr.rig.lockstep.steps import Step
from scsi_pr.sim import cdb as C
from scsi_pr.sim.constants import PersistentReserveOutAction as Out
from scsi_pr.sim.constants import ReservationType

PREFIX = 12  # most generated steps before the arrangement
UA_SWEEP = 3  # TEST UNIT READYs per arranged initiator before its PR commands
DEFAULT_RUNS = 3  # each successful PREEMPT AND ABORT leaves a wedged LU behind on LIO
ISSUER_KEY, VICTIM_KEY = 0xA1, 0xB2


@dataclass
class AbortReport:
    runs: int = 0
    compared: int = 0
    #: runs whose PREEMPT AND ABORT never completed, on both sides alike
    stalled: int = 0
    seconds: float = 0.0
    failed: Session | None = None

    def summary(self, model: str, device: str) -> str:
        found = "0 differences" if self.failed is None else "a difference"
        runs = f"{self.runs} run" + ("" if self.runs == 1 else "s")
        return (f"lockstep PREEMPT AND ABORT: {runs}, {self.compared} steps compared "
                f"(model {model} vs device {device}), {self.stalled} never completed on either "
                f"side, {found}, {self.seconds:.0f} s")  # fmt: skip


def arranged(issuer: int, victim: int, sa_key: int, held: int, taken: int) -> list[Step]:
    """Unit attentions a prefix left are reported first (TEST UNIT READY, compared too), the
    issuer registers and CLEARs, the victim registers and reserves ``held``, the issuer
    preempts and aborts ``sa_key`` with type ``taken``."""
    tur = C.test_unit_ready()
    return [
        *(Step(i, tur) for i in (issuer, victim) for _ in range(UA_SWEEP)),
        Step(issuer, *C.prout(Out.REGISTER_AND_IGNORE_EXISTING_KEY, 0, ISSUER_KEY)),
        Step(issuer, *C.prout(Out.CLEAR, ISSUER_KEY)),
        Step(issuer, *C.prout(Out.REGISTER, 0, ISSUER_KEY)),
        Step(victim, *C.prout(Out.REGISTER_AND_IGNORE_EXISTING_KEY, 0, VICTIM_KEY)),
        Step(victim, *C.prout(Out.RESERVE, VICTIM_KEY, 0, held)),
        Step(issuer, *C.prout(Out.PREEMPT_AND_ABORT, ISSUER_KEY, sa_key, taken)),
    ]


def arrangement(initiators: int) -> st.SearchStrategy[list[Step]]:
    """``arranged`` with drawn initiators and types; the victim's key most of the time, else
    a key that is nobody's, the issuer's own or zero (a conflict or an error, which must
    complete alike)."""
    types = st.sampled_from([int(t) for t in ReservationType])
    who = st.permutations(range(initiators)).map(lambda p: p[:2])
    sa_key = st.sampled_from((VICTIM_KEY,) * 4 + KEYS)
    return st.builds(lambda w, k, h, t: arranged(w[0], w[1], k, h, t), who, sa_key, types, types)


#: the run every call makes first, whatever is drawn: it must reach the stall
SURE = ([], arranged(0, 1, VICTIM_KEY, ReservationType.WRITE_EXCLUSIVE,
                     ReservationType.WRITE_EXCLUSIVE))  # fmt: skip


def run_preempt_and_abort(
    open_model: Opener, open_device: Opener, runs: int, initiators: int
) -> AbortReport:
    """``runs`` generated fresh pairs after ``SURE``, each ending in a PREEMPT AND ABORT; stop
    at the first difference."""
    started = time.monotonic()
    report = AbortReport()

    @settings(max_examples=runs, phases=[Phase.explicit, Phase.generate], database=None,
              deadline=None, suppress_health_check=[HealthCheck.too_slow],
              report_multiple_bugs=False, print_blob=False)  # fmt: skip
    @example(*SURE)
    @given(st.lists(steps(initiators), max_size=PREFIX), arrangement(initiators))
    def one_run(prefix: list[Step], tail: list[Step]) -> None:
        # A difference is recorded, not raised: hypothesis runs a failing example again to
        # report it, which on LIO wedged one more LU, counted its steps twice, and lost the
        # report (FlakyFailure) when the second run did not differ. After it, examples pass.
        if report.failed is not None:
            return
        session = Session.open(open_model, open_device)
        report.runs += 1
        try:
            for step in (*prefix, *tail):
                differs = session.send(step)
                report.compared += 1
                if differs is not None:
                    report.failed = session
                    return
                if session.history[-1].device.status == NO_ANSWER:
                    report.stalled += 1
                    return  # the device LU is wedged: nothing after this can be compared
        finally:
            session.close()

    one_run()
    report.seconds = time.monotonic() - started
    return report
