"""The hypothesis state machine of the lockstep differential: which steps it generates.

Small pools make the steps meet: four keys (0 among them), the six reservation types plus two
that do not exist, three initiators, eight blocks. Generated: every PR OUT service action but
PREEMPT AND ABORT (which wedges tcm_loop: the ``lio_hangs`` tests check it; REGISTER AND MOVE
names an initiator of the run and its own target port, the only I_T nexuses the LIO rig has),
every PR IN service action with short and long allocation lengths, TEST UNIT READY,
READ(10) and WRITE(10). APTPL is never set (it writes files under LIO's dbroot), nor is
ALL_TG_PT: LIO registers such an initiator on every target port it has an ACL on and then
refuses a REGISTER without ALL_TG_PT on that registration (INVALID FIELD IN CDB, seen when
the first lockstep run left one behind); the model does neither yet (a note in issue 12).
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

    @st.composite
    def pr_out(draw: st.DrawFn) -> Step:
        action = draw(st.sampled_from(OUT_ACTIONS))
        cdb, data = C.prout(action, draw(key), draw(key), draw(st.sampled_from(TYPES)))
        return Step(draw(who), cdb, data)

    @st.composite
    def move(draw: st.DrawFn) -> Step:
        dest = draw(who)
        tid = TransportId.from_name(initiator_name(dest))
        unreg = draw(st.booleans())
        cdb, data = C.register_and_move(draw(key), draw(key), port_of(dest), tid, unreg=unreg)
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
    return st.one_of(pr_out(), pr_out(), move(), pr_in(), media(), tur)


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
