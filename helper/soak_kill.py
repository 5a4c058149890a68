"""Kill -9 soak of helpers sharing a simulated LU: nothing acknowledged is ever lost.

``kill_rounds(state_dir, rounds, seed)`` runs ``rounds`` rounds. In each, one real
``scsi-pr-helper --backend sim`` per initiator serves a fresh image file from ``state_dir``
while one client per helper sends PR OUT commands with APTPL as fast as answers come. At a
random moment a random non-empty subset of the helpers gets SIGKILL; the other clients stop
after their current command. The killed helpers are started again (survivors keep running,
with whatever they cached), and the LU is checked twice: as the helpers find it (state dir,
and READ KEYS through every helper), and after a power cycle, which brings back only what
APTPL saved.

Every initiator works on its own registration (and initiator 1 also reserves and releases), so
the expected state per initiator follows from its own commands alone, whatever order the
helpers ran them in: the state after its last acknowledged command, or, if a command was in
flight when its helper died, possibly after that one. Anything older is *lost*; anything else
(after the power cycle: state the acknowledged commands had replaced, or a half-kept command)
is *resurrected*. ``scripts/soak`` runs 50 rounds; the host tests run a few.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from scsi_pr.helper.client import Client
from scsi_pr.helper.errors import HelperError
from scsi_pr.helper.executable import helper_executable
from scsi_pr.helper.simserve import SharedLUs
from scsi_pr.sim import cdb as C
from scsi_pr.sim.constants import PersistentReserveInAction as IN
from scsi_pr.sim.constants import PersistentReserveOutAction as SA
from scsi_pr.sim.constants import ReservationType, Status
from scsi_pr.sim.device import LogicalUnit
from scsi_pr.sim.nexus import ITNexus
from scsi_pr.sim.pr_in_data import parse_read_keys

START_TIMEOUT = 20.0
COMMAND_TIMEOUT = 20.0
KILL_AFTER = (0.05, 0.6)  # seconds of load before the kill, uniformly drawn
WE = ReservationType.WRITE_EXCLUSIVE

#: what an initiator holds: its reservation key (None: not registered) and its reservation
Holding = tuple[int | None, bool]


class SoakError(HelperError):
    """The soak itself could not run (a helper did not start); not a finding."""


@dataclass
class KillReport:
    """What ``kill_rounds`` tried and found; ``ok`` when nothing was lost, resurrected or
    refused (the workload never conflicts: a refusal means a helper saw some other LU state)."""

    rounds: int = 0
    kills: int = 0  # helpers killed with SIGKILL
    acknowledged: int = 0  # commands answered before the kills
    in_flight: int = 0  # commands whose helper died before answering
    refused: int = 0  # commands answered with other than GOOD (the model changed nothing)
    lost: list[str] = field(default_factory=list)
    resurrected: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.lost and not self.resurrected and not self.refused

    def lines(self) -> list[str]:
        """The report as a table, then one line per finding."""
        rows = [
            ("rounds", self.rounds),
            ("helpers killed (SIGKILL)", self.kills),
            ("commands acknowledged", self.acknowledged),
            ("commands in flight at a kill", self.in_flight),
            ("commands refused", self.refused),
            ("lost", len(self.lost)),
            ("resurrected", len(self.resurrected)),
        ]
        out = [f"{name:<30} {value:>8}" for name, value in rows]
        out += [f"lost: {x}" for x in self.lost]
        return out + [f"resurrected: {x}" for x in self.resurrected]


@dataclass
class _Initiator:
    """One host: its helper process and the history of its commands this round."""

    index: int
    name: str
    sock: Path
    log: Path
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    history: list[Holding] = field(default_factory=list)  # after each acknowledged command
    pending: Holding | None = None  # what the unanswered command would have made it
    answered: int = 0  # commands answered this round
    refused: int = 0  # of which answered with other than GOOD

    @property
    def nexus(self) -> ITNexus:
        return ITNexus.named(self.name, self.index + 1)

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SoakError(f"{self.name}: helper exited with {self.proc.returncode}")
            with socket.socket(socket.AF_UNIX) as s:
                try:
                    s.connect(str(self.sock))
                    return
                except OSError:
                    time.sleep(0.02)
        raise SoakError(f"{self.name}: helper did not listen on {self.sock}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def _commands(i: int, round_: int, n: int, held: Holding) -> tuple[tuple[bytes, bytes], Holding]:
    """The n-th command of initiator ``i`` and what it makes of ``held``: a new key with APTPL
    each time; initiator 0 also reserves and releases with its current key in turn."""
    key, reserved = held
    step = n % 3 if i == 0 else 0
    if step == 1 and key is not None:
        return C.prout(SA.RESERVE, key, 0, WE), (key, True)
    if step == 2 and key is not None:
        return C.prout(SA.RELEASE, key, 0, WE), (key, False)
    new = (round_ << 40) | (i << 32) | (n + 1)
    cdb = C.prout(SA.REGISTER_AND_IGNORE_EXISTING_KEY, 0, new, aptpl=True)
    return cdb, (new, reserved)


def _load(it: _Initiator, image: Path, round_: int, stop: threading.Event) -> None:
    """Send ``it``'s commands until ``stop`` or until its helper dies."""
    held: Holding = (None, False)
    fd = os.open(image, os.O_RDWR)
    try:
        with Client(str(it.sock), timeout=COMMAND_TIMEOUT) as client:
            n = 0
            while not stop.is_set():
                (cdb, data), after = _commands(it.index, round_, n, held)
                it.pending = after
                try:
                    reply = client.execute(fd, cdb, data)
                except (OSError, HelperError):
                    return  # the helper died: ``pending`` may or may not have happened
                it.pending = None
                it.answered += 1
                if reply.status == Status.GOOD:
                    held = after
                    it.history.append(held)
                else:
                    it.refused += 1
                n += 1
    finally:
        os.close(fd)


def _holdings(lu: LogicalUnit, initiators: list[_Initiator]) -> dict[int, Holding]:
    res = lu.pr.reservation
    out: dict[int, Holding] = {}
    for it in initiators:
        reg = lu.pr.registrations.get(it.nexus)
        out[it.index] = (
            None if reg is None else reg.key,
            res is not None and res.holder == it.nexus,
        )
    return out


def _power_cycle(lu: LogicalUnit) -> None:
    lu.power_loss()
    lu.power_on()


def _older(it: _Initiator, seen: Holding, than: Holding) -> bool:
    """Whether ``seen`` is what ``it`` held before ``than``: an acknowledged command lost."""
    if seen == (None, False):
        return bool(it.history)
    earlier = it.history[: it.history.index(than)] if than in it.history else it.history
    return seen in earlier


def _judge(it: _Initiator, seen: Holding, round_: int, report: KillReport) -> None:
    """After the restart: the state after the last acknowledged command or the pending one."""
    acked = it.history[-1] if it.history else (None, False)
    if seen in (acked, it.pending):
        return
    where = f"round {round_}, {it.name} after the restart: {seen}, acknowledged {acked}"
    (report.lost if _older(it, seen, acked) else report.resurrected).append(where)


def _check(
    state_dir: Path, image: Path, initiators: list[_Initiator], round_: int, report: KillReport
) -> None:
    """The LU as the restarted helpers find it, then after a power cycle: with APTPL on for
    every registration, the power cycle must change none of it."""
    lus = SharedLUs(state_dir, len(initiators))
    before = lus.run_on_file(image, lambda lu: _holdings(lu, initiators))
    keys = sorted(k for k, _ in before.values() if k is not None)
    fd = os.open(image, os.O_RDWR)
    try:
        for it in initiators:
            with Client(str(it.sock), timeout=COMMAND_TIMEOUT) as client:
                reply = client.execute(fd, C.persistent_reserve_in(IN.READ_KEYS, 8192), b"")
            seen = sorted(parse_read_keys(reply.data).keys) if reply.status == 0 else None
            if seen != keys:
                report.lost.append(f"round {round_}: {it.name}'s helper reads {seen}, not {keys}")
    finally:
        os.close(fd)
    lus.run_on_file(image, _power_cycle)
    after = SharedLUs(state_dir, len(initiators)).run_on_file(
        image, lambda lu: _holdings(lu, initiators)
    )
    for it in initiators:
        was, now = before[it.index], after[it.index]
        _judge(it, was, round_, report)
        if now != was:
            where = f"round {round_}, {it.name} after a power cycle: {now}, before it {was}"
            (report.lost if _older(it, now, was) else report.resurrected).append(where)


def kill_rounds(
    state_dir: str | os.PathLike[str],
    rounds: int,
    seed: int,
    *,
    initiators: int = 3,
    kill_after: tuple[float, float] = KILL_AFTER,
) -> KillReport:
    """Run ``rounds`` kill -9 rounds on helpers sharing ``state_dir`` (created; it also holds
    the images, sockets and helper logs); ``seed`` makes the kill times and victims
    repeatable. Raises SoakError only when the soak cannot run; findings are in the report."""
    root = Path(state_dir)
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    exe = helper_executable()
    hosts = []
    for i in range(initiators):
        name = f"naa.50014050000000{i + 1:02x}"
        sock, log = root / f"soak{i + 1}.sock", root / f"soak{i + 1}.log"
        argv = [exe, "-q", "--backend", "sim", "--initiator", name, "--state-dir", str(root)]
        argv += ["--target-port", str(i + 1), "--target-ports", str(initiators), "-k", str(sock)]
        hosts.append(_Initiator(i, name, sock, log, argv))
    report = KillReport()
    try:
        for it in hosts:
            it.start()
        for round_ in range(1, rounds + 1):
            _round(root, hosts, round_, rng, kill_after, report)
    finally:
        for it in hosts:
            it.stop()
    return report


def _round(
    root: Path,
    hosts: list[_Initiator],
    round_: int,
    rng: random.Random,
    kill_after: tuple[float, float],
    report: KillReport,
) -> None:
    image = root / f"round{round_}.img"
    image.write_bytes(bytes(4096))
    stop = threading.Event()
    for it in hosts:
        it.history, it.pending, it.answered, it.refused = [], None, 0, 0
    load = [
        threading.Thread(target=_load, args=(it, image, round_, stop), daemon=True) for it in hosts
    ]
    for thread in load:
        thread.start()
    time.sleep(rng.uniform(*kill_after))
    victims = rng.sample(hosts, rng.randint(1, len(hosts)))
    for it in victims:
        it.kill()
    stop.set()
    for thread in load:
        thread.join(COMMAND_TIMEOUT * 2)
    report.kills += len(victims)
    report.in_flight += sum(it.pending is not None for it in hosts)
    report.acknowledged += sum(it.answered for it in hosts)
    report.refused += sum(it.refused for it in hosts)
    for it in victims:
        it.start()
    _check(root, image, hosts, round_, report)
    report.rounds += 1
    image.unlink()
