"""The hypothesis state machine of the lockstep differential: which steps it generates.

Small pools make the steps meet: four keys (0 among them), the six reservation types plus two
that do not exist, three initiators, eight blocks. Generated: every PR OUT service action but
PREEMPT AND ABORT (which wedges tcm_loop: the ``lio_hangs`` tests check it), REGISTER with
SPEC_I_PT and REGISTER AND MOVE naming an initiator of the run (SPEC_I_PT: one or two
TransportIDs, the issuer's own and one twice among them) or one the LU has no I_T nexus of (a
move: through any target port of the run), every PR IN service action with short and long
allocation lengths, TEST UNIT READY, READ(10) and WRITE(10). ALL_TG_PT is set at random in the
basic parameter list. APTPL is never set (it writes files under LIO's dbroot).
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule

from scsi_pr.rig.backends import initiator_name
from scsi_pr.rig.lockstep.session import BLOCK_SIZE, BLOCKS, Session, port_of
from scsi_pr.rig.lockstep.steps import Step
from scsi_pr.sim import cdb as C
from scsi_pr.sim.constants import PersistentReserveInAction as In
from scsi_pr.sim.constants import PersistentReserveOutAction as Out
from scsi_pr.sim.transportid import TransportId

KEYS = (0, 0xA1, 0xB2, 0xC3)
TYPES = (1, 3, 5, 6, 7, 8, 0, 2)  # the six types of SPC-5 table 169, then two reserved codes
OUT_ACTIONS = (Out.REGISTER, Out.REGISTER_AND_IGNORE_EXISTING_KEY, Out.RESERVE, Out.RELEASE,
               Out.CLEAR, Out.PREEMPT)  # fmt: skip
IN_ACTIONS = tuple(In)
ALLOCATION_LENGTHS = (0, 4, 8, 16, 40, 512)


def steps(initiators: int) -> st.SearchStrategy[Step]:
    who = st.integers(0, initiators - 1)
    key = st.sampled_from(KEYS)
    # an initiator of the run, or one no I_T nexus of the LU has
    names = [initiator_name(i) for i in range(initiators + 1)]
    transport_id = st.sampled_from([TransportId.from_name(n) for n in names])

    @st.composite
    def pr_out(draw: st.DrawFn) -> Step:
        action = draw(st.sampled_from(OUT_ACTIONS))
        type_, all_tg_pt = draw(st.sampled_from(TYPES)), draw(st.booleans())
        cdb, data = C.prout(action, draw(key), draw(key), type_, all_tg_pt=all_tg_pt)
        return Step(draw(who), cdb, data)

    @st.composite
    def move(draw: st.DrawFn) -> Step:
        tid = draw(transport_id)
        unreg = draw(st.booleans())
        port = port_of(draw(who))
        cdb, data = C.register_and_move(draw(key), draw(key), port, tid, unreg=unreg)
        return Step(draw(who), cdb, data)

    @st.composite
    def spec_i_pt(draw: st.DrawFn) -> Step:
        # any initiator of the run, the issuer's own among them, one twice as well: LIO then
        # files a second registration of one I_T nexus (``spec-i-pt-registers-twice``)
        tids = draw(st.lists(transport_id, min_size=1, max_size=2))
        cdb, data = C.prout(Out.REGISTER, draw(key), draw(key), spec_i_pt=True, transport_ids=tids)
        return Step(draw(who), cdb, data)

    @st.composite
    def pr_in(draw: st.DrawFn) -> Step:
        action = draw(st.sampled_from(IN_ACTIONS))
        length = draw(st.sampled_from(ALLOCATION_LENGTHS))
        return Step(draw(who), C.persistent_reserve_in(action, length))

    @st.composite
    def media(draw: st.DrawFn) -> Step:
        lba = draw(st.integers(0, BLOCKS - 2))
        blocks = draw(st.integers(1, 2))
        if draw(st.booleans()):
            fill = draw(st.integers(1, 255))
            return Step(draw(who), C.write_10(lba, blocks), bytes([fill]) * BLOCK_SIZE * blocks)
        return Step(draw(who), C.read_10(lba, blocks))

    tur = who.map(lambda i: Step(i, C.test_unit_ready()))
    return st.one_of(pr_out(), pr_out(), move(), spec_i_pt(), pr_in(), media(), tur)


class StepCounter:
    """Steps compared so far, across machines (the run's budget)."""

    def __init__(self) -> None:
        self.compared = 0
        self.failed: Session | None = None


def machine_class(
    open_session: Callable[[], Session], counter: StepCounter, initiators: int
) -> type[RuleBasedStateMachine]:
    """A machine class whose every instance is a fresh session from ``open_session()``."""

    class LockstepMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.session = open_session()

        @rule(step=steps(initiators))
        def send(self, step: Step) -> None:
            differs = self.session.send(step)
            counter.compared += 1
            if differs is not None:
                counter.failed = self.session
                raise AssertionError(f"step {len(self.session.history)}: {differs}")

        def teardown(self) -> None:
            self.session.close()

    return LockstepMachine
