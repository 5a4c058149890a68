"""One lockstep session: the model and the device opened fresh, each step sent to both.

Each side is a ``scsi_pr.rig.backends.Backend`` with the same number of initiators; initiator
i of one side is initiator i of the other (same TransportID and relative target port: the
``sim`` backend mirrors the LIO rig's one-target-per-initiator layout). Before the first
compared step each side is brought to the same start, uncompared: unit attentions drained,
blocks 0..BLOCKS-1 zeroed, PRGENERATION read as the base of the run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from scsi_pr.rig.backends import Backend, Initiator, drain, initiator_name
from scsi_pr.rig.errors import RigError
from scsi_pr.rig.lockstep.compare import View, difference, view
from scsi_pr.rig.lockstep.steps import Step, replay_text
from scsi_pr.sim import cdb as C
from scsi_pr.sim.constants import PersistentReserveInAction, Status

BLOCKS = 8  # the LBAs steps read and write; zeroed at the start of every session
BLOCK_SIZE = 512

Opener = Callable[[], Backend]


class LockstepError(RigError):
    """A side could not be brought to the common start (not a difference of answers)."""


@dataclass
class Record:
    step: Step
    model: View
    device: View

    @property
    def differs(self) -> str | None:
        """What differs between the two answers (None: nothing compared)."""
        return difference(self.model, self.device)

    def answers(self) -> str:
        return f"model:  {self.model}\ndevice: {self.device}"


def port_of(initiator: int) -> int:
    """The relative target port initiator ``initiator`` reaches the LU through, on both sides
    (one target port per initiator, numbered from 1): REGISTER AND MOVE steps name it."""
    return initiator + 1


def _start(side: Backend) -> int:
    """Bring ``side`` to the common start; its PRGENERATION."""
    for index, it in enumerate(side.initiators):
        if (it.name, it.relative_target_port) != (initiator_name(index), port_of(index)):
            raise LockstepError(
                f"{side.name} initiator {index} is {it.name} on target port "
                f"{it.relative_target_port}, not {initiator_name(index)} on {port_of(index)}: "
                "the steps' TransportIDs and ports would not name the same I_T nexus"
            )
    for it in side.initiators:
        drain(it, LockstepError)
    first = side.initiators[0]
    zero = first.execute(C.write_10(0, BLOCKS), bytes(BLOCKS * BLOCK_SIZE))
    keys = first.execute(C.persistent_reserve_in(PersistentReserveInAction.READ_KEYS, 8))
    if zero.status != Status.GOOD or keys.status != Status.GOOD or len(keys.data) < 4:
        raise LockstepError(f"{first.name}: start: WRITE answered {zero}, READ KEYS {keys}")
    return int.from_bytes(keys.data[:4], "big")


def _answer(it: Initiator, step: Step, base: int) -> View:
    """The side's answer, or why there is none (a timeout: the LU hung)."""
    try:
        result = it.execute(step.cdb, step.data)
    except TimeoutError as e:
        return View.no_answer(str(e))
    return view(result, step.cdb, base)


@dataclass
class Session:
    model: Backend
    device: Backend
    bases: tuple[int, int]
    history: list[Record] = field(default_factory=list)

    @classmethod
    def open(cls, open_model: Opener, open_device: Opener) -> Session:
        model = open_model()
        try:
            device = open_device()
        except BaseException:
            model.__exit__(None, None, None)
            raise
        try:
            if len(model.initiators) != len(device.initiators):
                raise LockstepError("the two sides have different numbers of initiators")
            return cls(model, device, (_start(model), _start(device)))
        except BaseException:
            cls.close_sides(model, device)
            raise

    @staticmethod
    def close_sides(model: Backend, device: Backend) -> None:
        try:
            device.__exit__(None, None, None)
        finally:
            model.__exit__(None, None, None)

    def close(self) -> None:
        self.close_sides(self.model, self.device)

    def send(self, step: Step) -> str | None:
        """Send ``step`` to both sides; what differs (None: the same answer)."""
        if step.initiator >= len(self.model.initiators):
            raise LockstepError(f"step names initiator {step.initiator}: the sides have "
                                f"{len(self.model.initiators)}")  # fmt: skip
        model, device = (
            _answer(side.initiators[step.initiator], step, base)
            for side, base in zip((self.model, self.device), self.bases, strict=True)
        )
        record = Record(step, model, device)
        self.history.append(record)
        return record.differs

    def replay(self, header: list[str]) -> str:
        return replay_text(((r.step, r.answers()) for r in self.history), header)


def replay(open_model: Opener, open_device: Opener, steps: list[Step]) -> Session:
    """Run ``steps`` on a fresh pair until the first difference (closed session returned)."""
    session = Session.open(open_model, open_device)
    try:
        for step in steps:
            if session.send(step) is not None:
                break
    finally:
        session.close()
    return session


def minimise(open_model: Opener, open_device: Opener, steps: list[Step]) -> Session:
    """Drop steps, one at a time, while a difference still shows at the end; the session of
    the shortest program found (each try is a fresh pair: O(n²) commands for n steps)."""
    best = replay(open_model, open_device, steps)
    if best.history[-1].differs is None:
        return best  # does not reproduce: the original run is the evidence
    index = 0
    while index < len(best.history) - 1:  # candidates keep at least the last step
        candidate = [r.step for i, r in enumerate(best.history) if i != index]
        tried = replay(open_model, open_device, candidate)
        if tried.history[-1].differs is not None:
            best = tried
        else:
            index += 1
    return best
