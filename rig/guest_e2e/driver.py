"""The host side of the end-to-end run: the LU, the helpers behind QEMU's socket, QEMU itself,
and initiator B's actions at the guest's pauses.

Runs inside the LIO VM as root; nothing here is imported by the host tier except for the
names (``HELPERS``), and ``scsi_pr.rig.lio`` only inside ``run``.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from pathlib import Path
from typing import IO

from scsi_pr.helper.executable import helper_executable
from scsi_pr.rig import processes
from scsi_pr.rig.errors import RigError
from scsi_pr.rig.guest import snapshot
from scsi_pr.rig.guest.console import Console, StepResult
from scsi_pr.rig.guest.init_script import BOOT_PAUSE
from scsi_pr.rig.guest.initramfs import Initramfs, build_initramfs, qemu_guest_args
from scsi_pr.rig.guest.steps import Command
from scsi_pr.rig.guest_e2e.checks import Port, RunResult, evaluate
from scsi_pr.rig.guest_e2e.observation import host_log_line
from scsi_pr.rig.guest_e2e.sequence import HOST_ACTIONS, guest_steps, parse_pause, round_prefix
from scsi_pr.rig.processes import NotListening, cpu_seconds
from scsi_pr.rig.qmp import Qmp, QmpError
from scsi_pr.rig.watchdog import heartbeat

LU_NAME = "e2e"
#: its own rig generation, recorded nowhere: an LU an earlier test process left behind (hung,
#: or with a PR reference count LIO broke: rig/kmsg.py) belongs to generation 0, 1, ..., and
#: removing it would block; this run builds and removes only its own
LU_GENERATION = 0xE2
LU_SIZE = 16 << 20
#: The guest's deadlines follow its progress: QEMU's CPU time is the guest's work under TCG,
#: whatever the machine's load (a fixed 1000 s for the whole guest failed the VM tier on a loaded
#: machine: 1,173 s, nothing wrong). A guest that spends GUEST_CPU_BUDGET of QEMU's CPU seconds
#: without finishing spins; one that goes GUEST_STALL_LIMIT wall seconds with neither a console
#: line nor CPU time waits for nothing. Two rounds measured ~510 s on a quiet machine, QEMU at
#: most one CPU busy: the budget is three times that.
GUEST_CPU_BUDGET = 1500.0
GUEST_STALL_LIMIT = 300.0
BEAT_INTERVAL = 30.0  # seconds between heartbeats while the guest runs silently
#: CPU time is progress when QEMU kept at least this share of a CPU busy since the last
#: progress: an idle TCG guest still costs QEMU a little (its timers), a working one far more
BUSY_FRACTION = 0.25
HELPER_START_TIMEOUT = 30.0
HOST_COMMAND_TIMEOUT = 60.0
QEMU_EXIT_TIMEOUT = 30.0
QEMU = "qemu-system-x86_64"
#: the environment variable naming a directory where a guest booted elsewhere is saved (or
#: will be: ``scripts/vm-tier`` boots it on the host beside the VM), to resume instead of booting
ENV_SAVED_GUEST = "SCSI_PR_E2E_SAVED_GUEST"
#: seconds the saved guest's directory may stay unchanged before its writer is taken as dead
SAVED_GUEST_QUIET_LIMIT = 300.0
#: the guest's disk, hot-plugged at its boot pause: a scsi-block on the LU, through the
#: pr-manager the command line creates
DISK_DEVICE = {"driver": "scsi-block", "drive": "lun0", "bus": "scsi0.0", "id": "disk0"}
#: name → argv before ``-k SOCKET``; the first is the reference the others are compared with
HELPERS: dict[str, Callable[[], list[str]]] = {
    "qemu-pr-helper": lambda: [shutil.which("qemu-pr-helper") or "/usr/bin/qemu-pr-helper"],
    "scsi-pr-helper": lambda: [helper_executable()],
}


class E2EError(RigError):
    """The end-to-end run could not be carried out (missing tool, helper died, timeout)."""


def machine_argv(initramfs: Initramfs) -> list[str]:
    """QEMU with the guest's machine: what a saved guest and the QEMU resuming it share
    (``snapshot.identity``). No disk: it is hot-plugged at the guest's boot pause."""
    return [QEMU, *qemu_guest_args(initramfs), "-device", "virtio-scsi-pci,id=scsi0"]


def saved_guest_from_env() -> Path | None:
    """The directory ``ENV_SAVED_GUEST`` names, if it is set."""
    value = os.environ.get(ENV_SAVED_GUEST)
    return Path(value) if value else None


def start_helper(name: str, sock: Path, log: Path) -> subprocess.Popen[bytes]:
    """Helper ``name`` listening on ``sock``, its output in ``log``."""
    argv = [*HELPERS[name](), "-k", str(sock)]
    if not Path(argv[0]).exists():
        raise E2EError(f"{name}: {argv[0]} not found")
    return processes.spawn_listening(argv, sock, log, HELPER_START_TIMEOUT, name=name)


def run_host_command(cmd: Command, device: str) -> StepResult:
    argv = [a.replace("{dev}", device) for a in cmd.argv]
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=HOST_COMMAND_TIMEOUT)
    except subprocess.TimeoutExpired:
        return StepResult(cmd.name, None, [], [f"timed out after {HOST_COMMAND_TIMEOUT}s"])
    return StepResult(cmd.name, p.returncode, p.stdout.splitlines(), p.stderr.splitlines())


class Runner:
    """Drives one guest boot: starts and stops helpers, answers pauses, collects results."""

    def __init__(self, helpers: Sequence[str], workdir: Path, guest_disk: str, host_sg: str):
        self.helpers, self.workdir = list(helpers), workdir
        self.guest_disk, self.host_sg = guest_disk, host_sg
        self.sock = workdir / "pr-helper.sock"
        self.qmp_path = workdir / "qmp.sock"
        self.start = time.monotonic()
        self.results = [RunResult(h) for h in self.helpers]
        self.host_steps: dict[str, StepResult] = {}
        #: the helper now behind QEMU's socket, with its name
        self.helper: tuple[str, subprocess.Popen[bytes]] | None = None
        self.qmp: Qmp | None = None

    def log(self, text: str) -> None:
        print(f"[e2e {time.monotonic() - self.start:7.1f}s] {text}", file=sys.stderr, flush=True)
        heartbeat(f"e2e: {text}")  # a long test's sign of life for the VM tier's watchdog

    def start_helper(self, index: int) -> None:
        """Start helper ``index`` on the shared socket path, removing a stale socket file the
        previous helper may have left (libvirt does the same before it starts a helper)."""
        with suppress(FileNotFoundError):
            self.sock.unlink()
        name = self.helpers[index]
        try:
            self.helper = name, start_helper(name, self.sock, self.workdir / f"{name}.log")
            self.log(f"{name} listening on {self.sock}")
        except (E2EError, NotListening) as e:
            self.helper = None
            self.results[index].problems.append(f"could not start: {e}")
            self.log(f"{name}: {e}")

    def stop_helper(self, index: int) -> None:
        assert self.qmp is not None
        self.results[index].pr_managers = self.qmp.execute("query-pr-managers")
        self.log(f"query-pr-managers: {self.results[index].pr_managers}")
        if self.helper is not None:
            name, proc = self.helper
            self.log(f"{name} stopped: exit {processes.stop(proc)}")
            self.helper = None

    def attach_disk(self) -> None:
        """Hot-plug the guest's disk (``DISK_DEVICE``), as libvirt attaches one to a running
        guest."""
        assert self.qmp is not None
        self.qmp.execute("device_add", **DISK_DEVICE)
        self.log(f"disk attached: {DISK_DEVICE['driver']} on {self.guest_disk}")

    def on_pause(self, name: str) -> None:
        if name == BOOT_PAUSE:
            self.attach_disk()
            return
        index, what = parse_pause(name)
        if what == "start":
            self.start_helper(index)
        elif what == "stop_helper":
            self.stop_helper(index)
        for cmd in HOST_ACTIONS.get(what, ()):
            r = run_host_command(cmd, self.host_sg)
            r.name = round_prefix(index) + cmd.name
            self.log(host_log_line(r))
            self.host_steps[r.name] = r

    def qemu_argv(self, initramfs: Initramfs) -> list[str]:
        """The machine, and the disk's back end (the pr-manager and the block node are no part
        of a saved guest's state, so a resumed guest may have them where its saver had none)."""
        return [
            *machine_argv(initramfs),
            "-object", f"pr-manager-helper,id=pr0,path={self.sock}",
            "-blockdev",
            f"node-name=lun0,driver=raw,file.driver=host_device,file.filename={self.guest_disk},"
            "file.pr-manager=pr0",
        ]  # fmt: skip

    def resume(self, qemu: subprocess.Popen[bytes], saved: Path, initramfs: Initramfs) -> None:
        """Load the guest saved at its boot pause, attach its disk, and let it go on."""
        assert self.qmp is not None
        ident = snapshot.identity(machine_argv(initramfs), initramfs)
        snapshot.resume(self.qmp, qemu, saved, ident, DISK_DEVICE)
        self.log(f"resumed the guest saved in {saved}, disk attached: {self.guest_disk}")

    def boot(self, initramfs: Initramfs, cpu_budget: float, saved: Path | None = None) -> Console:
        """Run the guest to the end; every pause is answered after the host has acted.
        ``saved``: resume the guest saved there (``snapshot``) instead of booting one."""
        self.start_helper(0)
        if self.helper is None:
            raise E2EError(f"{self.helpers[0]} did not start: {self.results[0].problems}")
        incoming = ["-incoming", "defer"] if saved is not None else []
        qemu: subprocess.Popen[bytes] | None = None
        try:
            qemu, lines, self.qmp = start_qemu(
                [*self.qemu_argv(initramfs), *incoming], self.qmp_path
            )
            assert qemu.stdin is not None
            if saved is not None:
                self.resume(qemu, saved, initramfs)
            console = Console().follow(
                until_finished(lines, qemu.pid, cpu_budget),
                qemu.stdin,
                on_pause=self.on_pause,
                on_line=self.log,
            )
            qemu.wait(QEMU_EXIT_TIMEOUT)
        finally:
            if qemu is not None:
                processes.kill(qemu)
            if self.qmp is not None:
                self.qmp.close()
            if self.helper is not None:
                processes.stop(self.helper[1])
        return console


def start_qemu(
    argv: Sequence[str], qmp_path: Path
) -> tuple[subprocess.Popen[bytes], queue.Queue[bytes | None], Qmp]:
    """QEMU started with ``argv`` and its monitor on ``qmp_path``: the process (its stdin is the
    guest's console input), its output lines (``pump_output``) and the connected monitor. When
    the monitor cannot be reached (QEMU exited at once: no wait for the monitor's timeout),
    QEMU is ended and ``E2EError`` carries what it printed."""
    qemu = subprocess.Popen(
        [*argv, "-qmp", f"unix:{qmp_path},server=on,wait=off"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert qemu.stdout is not None
    lines = pump_output(qemu.stdout)
    try:
        return qemu, lines, Qmp(qmp_path, alive=lambda: qemu.poll() is None)
    except (OSError, QmpError) as e:
        with suppress(subprocess.TimeoutExpired):
            qemu.wait(5)
        said = drain_output(lines)
        processes.kill(qemu)
        raise E2EError(f"QEMU did not start (exit {qemu.poll()}): {e}: {said}") from e


def pump_output(stream: IO[bytes]) -> queue.Queue[bytes | None]:
    """QEMU's output lines, read by a thread so the reader can give up at a deadline; None
    marks the end."""
    lines: queue.Queue[bytes | None] = queue.Queue()

    def pump() -> None:
        for raw in stream:
            lines.put(raw)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def drain_output(lines: queue.Queue[bytes | None]) -> str:
    """What QEMU printed so far (it explains why it refused to start)."""
    out = []
    while True:
        try:
            item = lines.get(timeout=1)
        except queue.Empty:
            break
        if item is None:
            break
        out.append(item)
    return b"".join(out).decode(errors="replace")[-2000:]


def until_finished(
    lines: queue.Queue[bytes | None],
    pid: int,
    cpu_budget: float,
    stall_limit: float = GUEST_STALL_LIMIT,
    *,
    cpu: Callable[[int], float | None] = cpu_seconds,
    clock: Callable[[], float] = time.monotonic,
    poll: float = 1.0,
) -> Iterator[bytes]:
    """The lines to their end; E2EError once QEMU (``pid``) has used ``cpu_budget`` CPU seconds
    without getting there, or has gone ``stall_limit`` seconds with neither a line nor CPU time
    (less than ``BUSY_FRACTION`` of a CPU is idling, not work).
    While the guest runs silently (its boot is quiet) a heartbeat every ``BEAT_INTERVAL``
    seconds tells the VM tier's watchdog it is alive. Time spent by the consumer between
    lines (the host acting on a pause, with deadlines of its own) is not the guest's."""
    start = used = cpu(pid) or 0.0  # the budget counts all of it, idling included
    last = beat = clock()
    while True:
        try:
            raw = lines.get(timeout=poll)
        except queue.Empty:
            raw = b""  # QEMU's lines end in a newline: never empty
        if raw:
            yield raw
            last = beat = clock()
            continue
        if raw is None:
            return
        now, now_cpu = clock(), cpu(pid)
        if now_cpu is not None and now_cpu - used >= BUSY_FRACTION * (now - last):
            used, last = now_cpu, now
            if now - beat >= BEAT_INTERVAL:
                heartbeat(f"e2e: guest running silently, {used - start:.0f} CPU s")
                beat = now
        if used - start > cpu_budget:
            raise E2EError(f"guest did not finish in {cpu_budget:.0f} CPU seconds of QEMU")
        if now - last > stall_limit:
            raise E2EError(
                f"guest made no progress (no output, no CPU time) for {stall_limit:.0f}s"
            )


def run(
    helpers: Sequence[str],
    workdir: Path | None = None,
    cpu_budget: float = GUEST_CPU_BUDGET,
    saved: Path | None = None,
) -> tuple[list[RunResult], list[str]]:
    """One guest, one round per helper on one fresh LU; returns each helper's result and the
    steps where a helper differs from the first (the reference). ``saved``: a directory where
    a guest for these helpers is (or will be) saved at its boot pause (``booted.save_booted``),
    resumed instead of booting one here."""
    from scsi_pr.rig import lio  # root + LIO kernel only; never imported on the host tier

    for tool in (QEMU, "sg_persist", "sg_turs"):
        if shutil.which(tool) is None:
            raise E2EError(f"{tool} not found: apt-get install qemu-system-x86 sg3-utils")
    unknown = [h for h in helpers if h not in HELPERS]
    if not helpers or unknown:
        raise E2EError(f"helpers must be among {', '.join(HELPERS)}, got {list(helpers)}")
    work = workdir or Path(tempfile.mkdtemp(prefix="scsi-pr-e2e-"))
    if saved is not None:  # its directory holds the boot kernel the saver extracted, too
        snapshot.wait_saved(saved, SAVED_GUEST_QUIET_LIMIT)
    steps = guest_steps(len(helpers))
    initramfs = build_initramfs(steps, work / "initramfs.cpio", kernel_dir=saved)
    spec = lio.LunSpec(initiators=2, size=LU_SIZE, name=LU_NAME, generation=LU_GENERATION)
    desc = lio.up(spec, record=False)
    try:
        a, b = desc.initiators[0], desc.initiators[1]
        runner = Runner(helpers, work, a.sd, b.sg)
        runner.log(f"LU up: guest disk {a.sd} (rtpi {a.relative_target_port}), "
                   f"host {b.sg} (rtpi {b.relative_target_port})")  # fmt: skip
        console = runner.boot(initramfs, cpu_budget, saved)
    finally:
        lio.down(LU_NAME, desc.spec.generation)  # what this run built, nothing beside it
    guest = Port(a.relative_target_port, a.transport_id)
    host = Port(b.relative_target_port, b.transport_id)
    differences = evaluate(runner.results, {**console.steps, **runner.host_steps}, guest, host)
    if console.errors or not console.done:
        runner.results[-1].problems.append(f"guest did not finish: {console.errors}")
    return runner.results, differences
