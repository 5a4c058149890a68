"""The host side: ``scsi-pr target serve``, two QEMU guests on its LUN 0, their pauses, and the
host's looks at the model.

No root and no VM: QEMU runs as a user process under TCG, its iscsi block driver (libiscsi,
Debian's qemu-block-extra) logs in to the target over TCP with the initiator name given on the
``-drive``, so each QEMU is its own I_T nexus. ``qemu_argv`` is pure; ``run`` does the rest.
"""

from __future__ import annotations

import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from scsi_pr.helper.simserve import SharedLUs
from scsi_pr.rig import processes
from scsi_pr.rig.errors import RigError
from scsi_pr.rig.guest.console import RESUME, Console
from scsi_pr.rig.guest.initramfs import Initramfs, build_initramfs, qemu_guest_args
from scsi_pr.rig.iscsi_guests.checks import (
    HostView,
    Observed,
    logins,
    target_problems,
    view_of,
)
from scsi_pr.rig.iscsi_guests.choreography import Choreography
from scsi_pr.rig.iscsi_guests.scenario import HOST_LOOKS, RELEASES, A, B, Event, steps_of
from scsi_pr.rig.watchdog import Watchdog, heartbeat

QEMU = "qemu-system-x86_64"
#: QEMU's iscsi block driver, a module of Debian's qemu-block-extra
BLOCK_ISCSI = Path("/usr/lib/x86_64-linux-gnu/qemu/block-iscsi.so")
GUEST_PROGRAMS = ("sg_persist", "sg_turs", "sg_raw")
TARGET_IQN = "iqn.2026-01.org.scsi-pr:guests"
INITIATORS = {A: "iqn.2026-01.org.scsi-pr:node-a", B: "iqn.2026-01.org.scsi-pr:node-b"}
#: SCSI devices that pass a guest's CDBs to the iscsi driver unchanged (both work, see docs)
DEVICES = ("scsi-block", "scsi-generic")
LU_SIZE = "64M"
START_QUIET = 60.0  # seconds the starting target may go without using CPU
#: seconds a running guest may print nothing: before its first line (kernel boot and module
#: loading are silent with ``quiet``; the guest itself gives up on its disk after 600 s), and
#: between two lines once it runs its steps (one sg3-utils command each)
STARTUP_LIMIT = 900.0
QUIET_LIMIT = 300.0
QEMU_EXIT_TIMEOUT = 60.0
POLL_SECONDS = 1.0


class GuestsError(RigError):
    """The run could not be carried out: a tool, the target or a guest failed or hung."""


def missing_tools() -> list[str]:
    """What this machine lacks for a run (busybox-static is checked when the guest is built)."""
    missing = [f"{t} (apt-get install sg3-utils)" for t in GUEST_PROGRAMS if not shutil.which(t)]
    if shutil.which(QEMU) is None:
        missing.append(f"{QEMU} (apt-get install qemu-system-x86)")
    if not BLOCK_ISCSI.exists():
        missing.append(f"{BLOCK_ISCSI} (apt-get install qemu-block-extra)")
    return missing


def iscsi_drive(node: str, host: str, port: int, target: str, initiator: str) -> str:
    """The ``-drive`` value for LUN 0 of ``target`` through QEMU's iscsi block driver, logging
    in as ``initiator`` (the driver's own option: ``-iscsi initiator-name=`` would name every
    iscsi drive of the process alike)."""
    values = {"host": host, "target": target, "initiator": initiator, "node": node}
    if bad := [k for k, v in values.items() if "," in v or "=" in v or not v]:
        raise GuestsError(f"cannot put {bad} in a -drive option: {values}")
    return (f"driver=iscsi,transport=tcp,portal={host}:{port},target={target},lun=0,"
            f"initiator-name={initiator},if=none,id={node}")  # fmt: skip


def qemu_argv(initramfs: Initramfs, drive: str, device: str, node: str = "lun0") -> list[str]:
    """One guest: the initramfs guest, a virtio-scsi HBA and the iSCSI LU as ``device``."""
    if device not in DEVICES:
        raise GuestsError(f"device {device!r}: use one of {', '.join(DEVICES)}")
    return [
        QEMU, *qemu_guest_args(initramfs),
        "-drive", drive,
        "-device", "virtio-scsi-pci,id=scsi0",
        "-device", f"{device},drive={node},bus=scsi0.0",
    ]  # fmt: skip


def host_look(state_dir: Path) -> HostView:
    """The model's view of LUN 0, read from the state dir the target keeps (under its lock)."""
    return SharedLUs(state_dir).run_on_file(state_dir / "lun0.img", view_of)


@dataclass
class Options:
    workdir: Path
    devices: dict[str, str] = field(default_factory=lambda: {A: DEVICES[0], B: DEVICES[0]})
    host: str = "127.0.0.1"
    port: int | None = None
    startup_limit: float = STARTUP_LIMIT
    quiet_limit: float = QUIET_LIMIT
    log: Callable[[str], None] = lambda text: print(text, file=sys.stderr, flush=True)


@dataclass
class _Guest:
    label: str
    proc: subprocess.Popen[bytes]
    dog: Watchdog
    console: Console = field(default_factory=Console)
    paused: str | None = None
    ended: bool = False


def _pump(label: str, stream: IO[bytes], lines: queue.Queue[tuple[str, bytes | None]]) -> None:
    """One guest's console lines onto the shared queue; None marks its end."""

    def pump() -> None:
        for raw in stream:
            lines.put((label, raw))
        lines.put((label, None))

    threading.Thread(target=pump, daemon=True).start()


class _Run:
    """Two guests' consoles read from one queue; pauses released by the choreography."""

    def __init__(self, opts: Options, state_dir: Path) -> None:
        self.opts, self.state_dir = opts, state_dir
        self.start = time.monotonic()
        self.guests: dict[str, _Guest] = {}
        self.lines: queue.Queue[tuple[str, bytes | None]] = queue.Queue()
        self.chor = Choreography(RELEASES)
        self.looks: dict[str, HostView] = {}

    def log(self, who: str, text: str) -> None:
        self.opts.log(f"[{who} {time.monotonic() - self.start:7.1f}s] {text}")
        heartbeat(f"iscsi guests: {who}: {text[:100]}")

    def boot(self, label: str, argv: list[str]) -> None:
        self.log(label, " ".join(argv))
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)  # fmt: skip
        assert proc.stdout is not None
        dog = Watchdog(self.opts.quiet_limit, time.monotonic(), self.opts.startup_limit)
        self.guests[label] = _Guest(label, proc, dog)
        _pump(label, proc.stdout, self.lines)

    def follow(self) -> None:
        """Read both consoles to their end, releasing pauses as the scenario says."""
        while not all(g.ended for g in self.guests.values()):
            try:
                label, raw = self.lines.get(timeout=POLL_SECONDS)
            except queue.Empty:
                self._check_hung()
                continue
            guest = self.guests[label]
            if raw is None:
                guest.ended = True
                self.chor.end(label)
                self.log(label, f"console ended (QEMU exit {guest.proc.poll()})")
                if stuck := self.chor.stuck():
                    raise GuestsError("; ".join(stuck))
                continue
            self._line(guest, raw.decode(errors="replace").rstrip("\r\n"))
            self._check_hung()

    def _line(self, guest: _Guest, line: str) -> None:
        self.log(guest.label, line)
        guest.dog.progress(time.monotonic(), line[:120])
        was_done = guest.console.done
        pause = guest.console.feed(line)
        ready: list[Event] = []
        if pause is not None:
            guest.paused = pause
            ready = self.chor.paused(guest.label, pause)
        elif guest.console.done and not was_done:
            ready = self.chor.done(guest.label)
        for label, name in ready:
            self._release(label, name)

    def _release(self, label: str, pause: str) -> None:
        look = HOST_LOOKS.get((label, pause))
        if look is not None:
            self.looks[look] = view = host_look(self.state_dir)
            self.log("host", f"look {look!r}: {view}")
        guest = self.guests[label]
        self.log("host", f"releasing {label} at {pause!r}")
        guest.paused = None
        guest.dog.progress(time.monotonic(), f"released at {pause}")
        assert guest.proc.stdin is not None
        with suppress(BrokenPipeError):  # a guest that died is seen when its console ends
            guest.proc.stdin.write(RESUME)
            guest.proc.stdin.flush()

    def _check_hung(self) -> None:
        now = time.monotonic()
        for g in self.guests.values():
            if not g.ended and g.paused is None and g.dog.hung(now):
                last = g.dog.last_what or "nothing yet"
                raise GuestsError(f"guest {g.label} printed nothing for {g.dog.limit:.0f}s "
                                  f"(last: {last!r})")  # fmt: skip

    def stop(self) -> None:
        for g in self.guests.values():
            with suppress(subprocess.TimeoutExpired):
                g.proc.wait(QEMU_EXIT_TIMEOUT if g.ended else 0)
            processes.kill(g.proc)


def run(opts: Options) -> Observed:
    """Build both guests, serve the LU, boot both at once, follow them to the end."""
    if missing := missing_tools():
        raise GuestsError("missing: " + "; ".join(missing))
    work = opts.workdir
    state_dir = work / "state"
    if state_dir.exists() and any(state_dir.iterdir()):
        raise GuestsError(f"{state_dir} is not empty: every run starts from a fresh LU")
    state_dir.mkdir(parents=True, exist_ok=True)
    images = {
        g: build_initramfs(steps_of(g), work / f"guest-{g}.gz", programs=GUEST_PROGRAMS)
        for g in INITIATORS
    }
    port = opts.port or processes.free_port(opts.host)
    target_log = work / "target.log"
    try:
        target = processes.start_target((opts.host, port), TARGET_IQN, state_dir, LU_SIZE,
                                        target_log, START_QUIET)  # fmt: skip
    except processes.NotListening as e:
        raise GuestsError(str(e)) from e
    obs = Observed(dict(INITIATORS))
    state = _Run(opts, state_dir)
    state.log("host", f"target {TARGET_IQN} on {opts.host}:{port}, state {state_dir}")
    try:
        for g, name in INITIATORS.items():
            drive = iscsi_drive("lun0", opts.host, port, TARGET_IQN, name)
            state.boot(g, qemu_argv(images[g], drive, opts.devices[g]))
        state.follow()
    except RigError as e:  # a guest hung, died or broke the console protocol: report it all
        obs.aborted = str(e)
        state.log("host", f"run aborted: {e}")
    finally:
        state.stop()
        target_exit = processes.stop(target)
        state.log("host", f"target stopped: exit {target_exit}")
    for g, guest in state.guests.items():
        obs.steps[g] = guest.console.steps
        obs.finished[g] = guest.console.done and not guest.console.errors
        if guest.console.errors:
            state.log(g, f"guest errors: {guest.console.errors}")
    obs.looks = state.looks
    text = target_log.read_text(errors="replace")
    obs.logins = logins(text)
    obs.target = target_problems(target_exit, text)
    return obs
