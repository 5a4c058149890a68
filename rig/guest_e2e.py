"""End-to-end check with the real client: a QEMU guest's sg_persist, through a PR helper, on LIO.

Runs inside the LIO VM (root, LIO kernel, ``qemu-system-x86_64``). For each helper under test:

1. ``rig.lio.up``: a fresh ramdisk LU seen by two initiators, A and B (fresh, so PRgeneration
   starts at 0 and every run starts from the same state);
2. start the helper on a socket (``qemu-pr-helper -k SOCK``, the C reference, or ours,
   ``scsi-pr-helper -k SOCK``);
3. boot a nested TCG guest (``scsi_pr.rig.guest``) whose ``scsi-block`` disk is initiator A's
   ``/dev/sdX`` opened with ``file.pr-manager=`` pointing at that socket, so every PERSISTENT
   RESERVE IN/OUT the guest sends goes through the helper;
4. the guest runs ``SEQUENCE``; at each pause the host acts as initiator B with ``sg_persist``
   on B's ``/dev/sgN`` (a conflicting reserve, then a look at what the preempt left) and, at the
   end, stops the helper so the guest sees what a missing helper looks like;
5. ``scsi_pr.rig.lio.down``.

Then every guest- and host-visible result is checked against ``expected_problems`` (SPC values
for this sequence on this LU) and the helpers' results are compared with each other: ours must
equal the C helper's, byte for byte, for every step.

``python -m scsi_pr.rig.guest_e2e [--helper NAME]... [--json FILE]``; exit status 0 only if
every check
passed. A nested TCG guest boots in about a minute on two cores; budget several minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from scsi_pr.helper.executable import helper_executable
from scsi_pr.rig.errors import RigError
from scsi_pr.rig.guest import (
    Command,
    Console,
    Initramfs,
    Pause,
    Step,
    StepResult,
    build_initramfs,
    qemu_guest_args,
)

GUEST_KEY = 0xA1  # registered by the guest (initiator A, through the helper)
HOST_KEY = 0xB2  # registered by initiator B on the host side
WE_RO = 5  # WRITE EXCLUSIVE - REGISTRANTS ONLY
WE = 1  # WRITE EXCLUSIVE
LU_NAME = "e2e"
LU_SIZE = 16 << 20
#: whole-guest deadline (boot + sequence + power off), and helper start-up deadline
GUEST_TIMEOUT = 1000.0  # measured ~510 s for two rounds; below the VM tier phase deadline
HELPER_START_TIMEOUT = 30.0
HOST_COMMAND_TIMEOUT = 60.0
QEMU = "qemu-system-x86_64"

# sg_persist exit statuses (sg3_utils sg_lib.h SG_LIB_CAT_*)
RC_GOOD = 0
RC_ILLEGAL_REQUEST = 5
RC_UNIT_ATTENTION = 6
RC_RESERVATION_CONFLICT = 24


def _pr(*args: str) -> tuple[str, ...]:
    """sg_persist without its INQUIRY, on the step's device."""
    return ("sg_persist", "-n", *args, "{dev}")


#: What the guest runs. Key values are hex without 0x, as sg_persist takes them.
SEQUENCE: tuple[Step, ...] = (
    Command("tur", ("sg_turs", "{dev}")),
    Command("keys0", _pr("-H", "-k")),
    Command("register", _pr("-o", "-G", "-S", f"{GUEST_KEY:x}")),
    Command("keys1", _pr("-H", "-k")),
    Command("bad_register", _pr("-o", "-G", "-K", "dead", "-S", "beef")),
    Command("bad_type", _pr("-o", "-R", "-T", "2", "-K", f"{GUEST_KEY:x}")),
    Command("reserve", _pr("-o", "-R", "-T", str(WE_RO), "-K", f"{GUEST_KEY:x}")),
    Command("resv1", _pr("-H", "-r")),
    Command("caps", _pr("-H", "-c")),
    Pause("host_conflict"),
    Command("keys2", _pr("-H", "-k")),
    Command("status2", _pr("-H", "-s")),
    Command("preempt", _pr("-o", "-P", "-T", str(WE_RO), "-K", f"{GUEST_KEY:x}",
                           "-S", f"{HOST_KEY:x}")),
    Command("keys3", _pr("-H", "-k")),
    Command("resv3", _pr("-H", "-r")),
    Pause("host_after_preempt"),
    Command("release", _pr("-o", "-L", "-T", str(WE_RO), "-K", f"{GUEST_KEY:x}")),
    Command("resv4", _pr("-H", "-r")),
    Command("unregister", _pr("-o", "-G", "-K", f"{GUEST_KEY:x}", "-S", "0")),
    Command("keys5", _pr("-H", "-k")),
    Command("status5", _pr("-H", "-s")),
    Pause("stop_helper"),
    Command("keys_nohelper", _pr("-H", "-k")),
)  # fmt: skip

#: What initiator B does on the host at each pause (``{dev}`` = B's /dev/sgN); the
#: ``stop_helper`` pause is handled by the runner itself.
HOST_ACTIONS: dict[str, tuple[Command, ...]] = {
    "host_conflict": (
        Command("host.register", _pr("-o", "-G", "-S", f"{HOST_KEY:x}")),
        Command("host.reserve", _pr("-o", "-R", "-T", str(WE), "-K", f"{HOST_KEY:x}")),
        Command("host.resv", _pr("-H", "-r")),
    ),
    "host_after_preempt": (
        Command("host.tur", ("sg_turs", "{dev}")),
        Command("host.keys", _pr("-H", "-k")),
        Command("host.register_old_key", _pr("-o", "-G", "-K", f"{HOST_KEY:x}", "-S", "c3")),
    ),
}


# -- decoding what sg_persist printed -------------------------------------------------------
_GENERATION = re.compile(r"PR generation=0x([0-9a-fA-F]+)")


@dataclass(frozen=True)
class Observation:
    """One step as the initiator saw it: exit status, PRgeneration and the response bytes that
    ``sg_persist --hex`` printed (descriptors only for READ KEYS/RESERVATION/FULL STATUS)."""

    rc: int | None
    generation: int | None
    data: str  # hex

    @classmethod
    def from_step(cls, result: StepResult | None) -> Observation:
        if result is None:
            return cls(None, None, "")
        gen = next((int(m.group(1), 16) for m in map(_GENERATION.search, result.out) if m), None)
        return cls(result.rc, gen, result.data.hex())


HOST_LOG_TAG = "host-result"


def host_log_line(result: StepResult) -> str:
    """A host step as one JSON log line, so a recorded run can be replayed (tests/rig)."""
    return f"{HOST_LOG_TAG} " + json.dumps(
        {"name": result.name, "rc": result.rc, "out": result.out, "err": result.err}
    )


def parse_host_log_line(line: str) -> StepResult | None:
    tag, _, payload = line.partition(" ")
    if tag != HOST_LOG_TAG:
        return None
    d = json.loads(payload)
    return StepResult(d["name"], d["rc"], d["out"], d["err"])


def decode_keys(data: bytes) -> list[int]:
    if len(data) % 8:
        raise ValueError(f"READ KEYS list of {len(data)} bytes is not a multiple of 8")
    return [int.from_bytes(data[i : i + 8], "big") for i in range(0, len(data), 8)]


def decode_reservation(data: bytes) -> tuple[int, int] | None:
    """(key, type) of the READ RESERVATION descriptor (SPC-5 table 163), None if no holder."""
    if not data:
        return None
    if len(data) != 16:
        raise ValueError(f"READ RESERVATION descriptor of {len(data)} bytes, expected 16")
    return int.from_bytes(data[:8], "big"), data[13] & 0x0F


@dataclass(frozen=True)
class FullStatusDescriptor:
    """SPC-5 table 166."""

    key: int
    all_tg_pt: bool
    holder: bool
    type: int
    relative_target_port: int
    transport_id: str  # hex


def decode_full_status(data: bytes) -> list[FullStatusDescriptor]:
    out = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 24:
            raise ValueError(f"truncated full status descriptor at {pos}")
        tid_len = int.from_bytes(data[pos + 20 : pos + 24], "big")
        out.append(
            FullStatusDescriptor(
                key=int.from_bytes(data[pos : pos + 8], "big"),
                all_tg_pt=bool(data[pos + 12] & 0x02),
                holder=bool(data[pos + 12] & 0x01),
                type=data[pos + 13] & 0x0F,
                relative_target_port=int.from_bytes(data[pos + 18 : pos + 20], "big"),
                transport_id=data[pos + 24 : pos + 24 + tid_len].hex(),
            )
        )
        pos += 24 + tid_len
    return out


# -- expectations ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Port:
    """What the checks need to know about one initiator of the LU."""

    relative_target_port: int
    transport_id: str  # hex, as LIO reports it


#: LIO does not increment PRgeneration when a REGISTER removes a registration (SPC-5 6.16.2
#: says every successful REGISTER does); see the SPC note's LIO deviation table, row 3.
UNREGISTER_INCREMENTS_GENERATION = False


def expected_problems(
    obs: dict[str, Observation], guest: Port, host: Port, base: int = 0
) -> list[str]:
    """Every way ``obs`` differs from what SPC-5 (with LIO's known deviations) gives for one
    round of ``SEQUENCE``/``HOST_ACTIONS`` on an LU with no registrations and PRgeneration
    ``base``. Empty list = all as expected."""
    problems: list[str] = []
    unreg = int(UNREGISTER_INCREMENTS_GENERATION)

    def want(name: str, rc: int | None = RC_GOOD, gen: int | None = None) -> Observation | None:
        o = obs.get(name)
        if o is None or o.rc is None:
            problems.append(f"{name}: no result")
            return None
        if rc is not None and o.rc != rc:
            problems.append(f"{name}: exit status {o.rc}, expected {rc}")
        if gen is not None and o.generation != gen:
            problems.append(f"{name}: PRgeneration {o.generation}, expected {gen}")
        return o

    def keys(name: str, gen: int, expected: list[int]) -> None:
        o = want(name, gen=gen)
        if o and sorted(decode_keys(bytes.fromhex(o.data))) != sorted(expected):
            problems.append(f"{name}: keys {_hexes(decode_keys(bytes.fromhex(o.data)))}, "
                            f"expected {_hexes(expected)}")  # fmt: skip

    def reservation(name: str, gen: int, expected: tuple[int, int] | None) -> None:
        o = want(name, gen=gen)
        if o and decode_reservation(bytes.fromhex(o.data)) != expected:
            problems.append(
                f"{name}: reservation {decode_reservation(bytes.fromhex(o.data))}, "
                f"expected {expected}"
            )

    def holder(key: int, port: Port, is_holder: bool) -> FullStatusDescriptor:
        return FullStatusDescriptor(
            key, False, is_holder, WE_RO if is_holder else 0,
            port.relative_target_port, port.transport_id,
        )  # fmt: skip

    want("tur")
    keys("keys0", base + 0, [])
    want("register")
    keys("keys1", base + 1, [GUEST_KEY])
    want("bad_register", RC_RESERVATION_CONFLICT)
    want("bad_type", RC_ILLEGAL_REQUEST)
    want("reserve")
    reservation("resv1", base + 1, (GUEST_KEY, WE_RO))
    caps = want("caps")
    if caps:
        data = bytes.fromhex(caps.data)
        # SPC-5 table 167: LENGTH 8; PERSISTENT RESERVATION TYPE MASK with WE-RO supported
        if len(data) != 8 or int.from_bytes(data[:2], "big") != 8 or not data[4] & 0x20:
            problems.append(f"caps: unexpected REPORT CAPABILITIES data {caps.data}")
    want("host.register")
    want("host.reserve", RC_RESERVATION_CONFLICT)
    reservation("host.resv", base + 2, (GUEST_KEY, WE_RO))
    keys("keys2", base + 2, [GUEST_KEY, HOST_KEY])
    status = want("status2", gen=base + 2)
    if status:
        got = sorted(decode_full_status(bytes.fromhex(status.data)), key=lambda d: d.key)
        exp = [holder(GUEST_KEY, guest, True), holder(HOST_KEY, host, False)]
        if got != exp:
            problems.append(f"status2: {got}, expected {exp}")
    want("preempt")
    keys("keys3", base + 3, [GUEST_KEY])
    reservation("resv3", base + 3, (GUEST_KEY, WE_RO))
    # B's registration was preempted: its next command reports REGISTRATIONS PREEMPTED (UA)
    want("host.tur", RC_UNIT_ATTENTION)
    keys("host.keys", base + 3, [GUEST_KEY])
    # an unregistered nexus that REGISTERs with a non-zero key gets RESERVATION CONFLICT
    want("host.register_old_key", RC_RESERVATION_CONFLICT)
    want("release")
    reservation("resv4", base + 3, None)
    want("unregister")
    keys("keys5", base + 3 + unreg, [])
    status = want("status5", gen=base + 3 + unreg)
    if status and status.data:
        problems.append(f"status5: descriptors left: {status.data}")
    # With the helper gone the guest's PR command must fail (QEMU gives up after its retries);
    # a pass here would mean PR commands were not going through the helper at all.
    gone = want("keys_nohelper", rc=None)
    if gone and gone.rc == RC_GOOD:
        problems.append("keys_nohelper: succeeded without a helper: PR bypassed the helper")
    return problems


def _hexes(values: Iterable[int]) -> str:
    return "[" + ", ".join(f"{v:#x}" for v in values) + "]"


def compare_runs(runs: Sequence[RunResult]) -> list[str]:
    """Steps where a helper's observation differs from the first (reference) run's; generations
    are compared relative to each round's start."""
    if len(runs) < 2:
        return []
    ref = runs[0].relative()
    problems = []
    for run in runs[1:]:
        mine = run.relative()
        for name in sorted(set(ref) | set(mine)):
            a, b = ref.get(name), mine.get(name)
            if a != b:
                problems.append(f"{name}: {runs[0].helper} gave {a}, {run.helper} gave {b}")
    return problems


# -- helpers under test ---------------------------------------------------------------------
def _ours() -> list[str]:
    return [helper_executable()]


#: name → argv before ``-k SOCKET``
HELPERS: dict[str, Callable[[], list[str]]] = {
    "qemu-pr-helper": lambda: [shutil.which("qemu-pr-helper") or "/usr/bin/qemu-pr-helper"],
    "scsi-pr-helper": _ours,
}


class E2EError(RigError):
    """The end-to-end run could not be carried out (missing tool, helper died, timeout)."""


class HelperProcess:
    """A helper listening on ``sock``; its stderr goes to ``log``."""

    def __init__(self, name: str, sock: Path, log: Path) -> None:
        argv = [*HELPERS[name](), "-k", str(sock)]
        if not Path(argv[0]).exists():
            raise E2EError(f"{name}: {argv[0]} not found")
        self.name, self.sock, self.log = name, sock, log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + HELPER_START_TIMEOUT
        while not _connectable(sock):
            if self.proc.poll() is not None:
                raise E2EError(f"{name} exited with {self.proc.returncode}: {self.output()}")
            if time.monotonic() > deadline:
                self.stop()
                raise E2EError(f"{name} did not listen on {sock} in {HELPER_START_TIMEOUT}s")
            time.sleep(0.1)

    def output(self) -> str:
        self._log.flush()
        return self.log.read_text(errors="replace")[-2000:]

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def _connectable(path: Path) -> bool:
    # Connecting would make the helper send its handshake to a client that leaves at once;
    # both helpers take that in stride, and it is the only proof the socket is listening.
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


# -- QMP (just enough to ask whether the pr-manager is connected) ---------------------------
class Qmp:
    """A minimal QMP client: greeting, ``qmp_capabilities``, then commands; events are kept."""

    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.settimeout(timeout)
            try:
                self.sock.connect(str(path))
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.file = self.sock.makefile("rwb")
        self.events: list[dict[str, Any]] = []
        greeting = self._read()
        if "QMP" not in greeting:
            raise E2EError(f"not a QMP greeting: {greeting}")
        self.execute("qmp_capabilities")

    def _read(self) -> dict[str, Any]:
        line = self.file.readline()
        if not line:
            raise E2EError("QMP connection closed")
        return json.loads(line)

    def execute(self, command: str, **arguments: Any) -> Any:
        msg: dict[str, Any] = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        self.file.write(json.dumps(msg).encode() + b"\n")
        self.file.flush()
        while True:
            reply = self._read()
            if "event" in reply:
                self.events.append(reply)
            elif "error" in reply:
                raise E2EError(f"QMP {command}: {reply['error']}")
            elif "return" in reply:
                return reply["return"]

    def close(self) -> None:
        self.file.close()
        self.sock.close()


# -- the run --------------------------------------------------------------------------------
@dataclass
class RunResult:
    """One helper's round: what every step observed and what was wrong with it."""

    helper: str
    observations: dict[str, Observation] = field(default_factory=dict)
    pr_managers: list[Any] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: PRgeneration when the round started (rounds after the first inherit the LU)
    base_generation: int = 0

    def relative(self) -> dict[str, Observation]:
        """Observations with PRgeneration counted from the round's start, for comparing
        rounds: the absolute value depends only on how many rounds ran before."""
        return {
            n: replace(
                o, generation=None if o.generation is None else o.generation - self.base_generation
            )
            for n, o in self.observations.items()
        }


def round_prefix(index: int) -> str:
    return f"r{index}."


def guest_steps(rounds: int) -> tuple[Step, ...]:
    """``SEQUENCE`` once per helper, one boot for all: nested TCG boots take minutes, so the
    guest stays up and the host swaps the helper behind QEMU's socket between rounds, the way
    a helper restart looks to a running VM. Round r's steps are named ``r<r>.<name>``; before
    every round but the first the guest pauses at ``r<r>.start`` for the next helper."""
    steps: list[Step] = []
    for r in range(rounds):
        if r:
            steps.append(Pause(f"{round_prefix(r)}start"))
        steps += [replace(step, name=round_prefix(r) + step.name) for step in SEQUENCE]
    return tuple(steps)


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
        self.helper: HelperProcess | None = None
        self.qmp: Qmp | None = None

    def log(self, text: str) -> None:
        print(f"[e2e {time.monotonic() - self.start:7.1f}s] {text}", file=sys.stderr, flush=True)

    def start_helper(self, index: int) -> None:
        """Start helper ``index`` on the shared socket path, removing a stale socket file the
        previous helper may have left (libvirt does the same before it starts a helper)."""
        with suppress(FileNotFoundError):
            self.sock.unlink()
        name = self.helpers[index]
        try:
            self.helper = HelperProcess(name, self.sock, self.workdir / f"{name}.log")
            self.log(f"{name} listening on {self.sock}")
        except E2EError as e:
            self.helper = None
            self.results[index].problems.append(f"could not start: {e}")
            self.log(f"{name}: {e}")

    def stop_helper(self, index: int) -> None:
        assert self.qmp is not None
        self.results[index].pr_managers = self.qmp.execute("query-pr-managers")
        self.log(f"query-pr-managers: {self.results[index].pr_managers}")
        if self.helper is not None:
            self.log(f"{self.helper.name} stopped: exit {self.helper.stop()}")
            self.helper = None

    def on_pause(self, name: str) -> None:
        round_tag, _, what = name.partition(".")
        index = int(round_tag.removeprefix("r"))
        if what == "start":
            self.start_helper(index)
        elif what == "stop_helper":
            self.stop_helper(index)
        for cmd in HOST_ACTIONS.get(what, ()):
            r = run_host_command(cmd, self.host_sg)
            r.name = name.partition(".")[0] + "." + cmd.name
            self.log(host_log_line(r))
            self.host_steps[r.name] = r

    def qemu_argv(self, initramfs: Initramfs) -> list[str]:
        return [
            QEMU, *qemu_guest_args(initramfs),
            "-object", f"pr-manager-helper,id=pr0,path={self.sock}",
            "-blockdev",
            f"node-name=lun0,driver=raw,file.driver=host_device,file.filename={self.guest_disk},"
            "file.pr-manager=pr0",
            "-device", "virtio-scsi-pci,id=scsi0",
            "-device", "scsi-block,drive=lun0,bus=scsi0.0",
            "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
        ]  # fmt: skip

    def boot(self, initramfs: Initramfs, timeout: float) -> Console:
        """Run the guest to the end; every pause is answered after the host has acted."""
        self.start_helper(0)
        if self.helper is None:
            raise E2EError(f"{self.helpers[0]} did not start: {self.results[0].problems}")
        qemu = subprocess.Popen(
            self.qemu_argv(initramfs),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        console = Console()
        try:
            lines: queue.Queue[bytes | None] = queue.Queue()
            threading.Thread(target=_pump, args=(qemu.stdout, lines), daemon=True).start()
            try:
                self.qmp = Qmp(self.qmp_path)
            except (OSError, E2EError) as e:
                with suppress(subprocess.TimeoutExpired):
                    qemu.wait(5)
                said = _drain(lines)
                raise E2EError(f"QEMU did not start (exit {qemu.poll()}): {e}: {said}") from e
            deadline = time.monotonic() + timeout
            while (raw := _next_line(lines, deadline, timeout)) is not None:
                line = raw.decode(errors="replace").rstrip("\r\n")
                self.log(line)
                pause = console.feed(line)
                if pause is not None:
                    self.on_pause(pause)
                    assert qemu.stdin is not None
                    qemu.stdin.write(b"go\n")
                    qemu.stdin.flush()
            qemu.wait(30)
        finally:
            if qemu.poll() is None:
                qemu.kill()
                qemu.wait()
            if self.qmp is not None:
                self.qmp.close()
            if self.helper is not None:
                self.helper.stop()
        return console


def _pump(stream: Any, lines: queue.Queue[bytes | None]) -> None:
    for raw in stream:
        lines.put(raw)
    lines.put(None)


def _drain(lines: queue.Queue[bytes | None]) -> str:
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


def _next_line(lines: queue.Queue[bytes | None], deadline: float, timeout: float) -> bytes | None:
    try:
        return lines.get(timeout=max(0.0, deadline - time.monotonic()))
    except queue.Empty:
        raise E2EError(f"guest did not finish in {timeout:.0f}s") from None


def step_names() -> list[str]:
    names = [s.name for s in SEQUENCE if isinstance(s, Command)]
    return names + [c.name for cmds in HOST_ACTIONS.values() for c in cmds]


def run(
    helpers: Sequence[str], workdir: Path | None = None, timeout: float = GUEST_TIMEOUT
) -> tuple[list[RunResult], list[str]]:
    """One guest boot, one round per helper on one fresh LU; returns each helper's result and
    the steps where a helper differs from the first (the reference)."""
    from scsi_pr.rig import lio  # root + LIO kernel only; never imported on the host tier

    for tool in (QEMU, "sg_persist", "sg_turs"):
        if shutil.which(tool) is None:
            raise E2EError(f"{tool} not found: apt-get install qemu-system-x86 sg3-utils")
    unknown = [h for h in helpers if h not in HELPERS]
    if not helpers or unknown:
        raise E2EError(f"helpers must be among {', '.join(HELPERS)}, got {list(helpers)}")
    work = workdir or Path(tempfile.mkdtemp(prefix="scsi-pr-e2e-"))
    initramfs = build_initramfs(guest_steps(len(helpers)), work / "initramfs.gz")
    desc = lio.up(lio.LunSpec(initiators=2, size=LU_SIZE, name=LU_NAME))
    try:
        a, b = desc.initiators[0], desc.initiators[1]
        runner = Runner(helpers, work, a.sd, b.sg)
        runner.log(f"LU up: guest disk {a.sd} (rtpi {a.relative_target_port}), "
                   f"host {b.sg} (rtpi {b.relative_target_port})")  # fmt: skip
        console = runner.boot(initramfs, timeout)
    finally:
        lio.down(LU_NAME)
    guest = Port(a.relative_target_port, a.transport_id)
    host = Port(b.relative_target_port, b.transport_id)
    differences = evaluate(runner.results, {**console.steps, **runner.host_steps}, guest, host)
    if console.errors or not console.done:
        runner.results[-1].problems.append(f"guest did not finish: {console.errors}")
    return runner.results, differences


def evaluate(
    results: list[RunResult], steps: dict[str, StepResult], guest: Port, host: Port
) -> list[str]:
    """Fill each round's observations and problems from the steps of one boot (guest and host
    steps, keyed ``r<r>.<name>``); return the differences between helpers. Pure, so a recorded
    run can be checked again without a VM."""
    base = 0
    for r, result in enumerate(results):
        prefix = round_prefix(r)
        result.base_generation = base
        result.observations = {
            n: Observation.from_step(steps.get(prefix + n)) for n in step_names()
        }
        result.problems += expected_problems(result.observations, guest, host, base)
        if result.pr_managers != [{"id": "pr0", "connected": True}]:
            result.problems.append(f"query-pr-managers: {result.pr_managers}, expected connected")
        # the next round starts where this one left the LU
        base = result.observations["keys5"].generation or 0
    return compare_runs(results)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m scsi_pr.rig.guest_e2e", description=__doc__.split("\n")[0]
    )
    ap.add_argument(
        "--helper", action="append", choices=list(HELPERS),
        help="helper to test (repeatable; default: qemu-pr-helper then scsi-pr-helper; the "
        "first is the reference the others are compared with)",
    )  # fmt: skip
    ap.add_argument("--json", type=Path, help="write all observations and problems here")
    ap.add_argument("--workdir", type=Path, help="keep the initramfs, sockets and helper logs here")
    ap.add_argument(
        "--timeout", type=float, default=GUEST_TIMEOUT, help="seconds for the whole guest boot"
    )
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("guest_e2e: needs root inside the LIO VM (scsi-pr vm run -- ...)", file=sys.stderr)
        return 2
    helpers = args.helper or list(HELPERS)
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    try:
        runs, differences = run(helpers, args.workdir, args.timeout)
    except E2EError as e:
        print(f"guest e2e: FAIL: {e}")
        return 1
    report = {
        "runs": [asdict(r) for r in runs],
        "differences": differences,
        "sequence": [s.name for s in SEQUENCE],
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    ok = not differences and all(not r.problems for r in runs)
    for r in runs:
        print(f"{r.helper}: {len(r.observations)} steps, {len(r.problems)} problems")
        for p in r.problems:
            print(f"  {p}")
    for d in differences:
        print(f"  differs: {d}")
    print("guest e2e:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
