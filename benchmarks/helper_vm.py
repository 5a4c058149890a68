"""``scripts/bench --vm``: our helper's round trip on a real LUN beside direct SG_IO and the C
``qemu-pr-helper``, in one VM run, on one LIO LUN (tcm_loop, ramdisk).

Paths, all on the same /dev/sdX (the fd QEMU's ``scsi-block`` passes is the disk's):

* ``direct``: SG_IO from this Python process (``executors.sg.sg_io``): the floor.
* ``C``: the C ``qemu-pr-helper`` over its socket, the fd passed with every request.
* ``sg``, ``ioctl``: ``scsi-pr-helper --backend sg`` / ``--backend ioctl``, the same way.
* ``sg --cpus all``: ``--backend sg`` with its threads on every CPU instead of one (the
  default, ``scsi_pr.helper.cpus``): what that choice is worth, side by side.

Operations: READ KEYS (PR IN) and REGISTER AND IGNORE EXISTING KEY of one fixed key (PR OUT: the
same answer every time, GOOD). The paths take turns in rounds (the order rotating each round) so
that every path sees the same machine load; each answer's status is checked. Then 64 clients
(two load processes, ``helper.loadgen``) drive READ KEYS through ours (``sg``, both CPU
choices) and the C helper in turns, twice each. Printed: a table of median and p99 per path and
operation, the ratios ours/C and ours/direct against the issue's aims, and one JSON document
(also written to ``out/bench/helper-vm.json`` by the host). Aims are reported, never enforced:
the exit status says only whether the measurement ran.

The client side is the leanest we can write (one ``sendmsg``, one ``recv_into``) so that the
ratio is of the helpers, not of the client. ``SCSI_PR_BENCH_ROUNDS`` overrides the rounds.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks import in_vm
from scsi_pr.helper.executable import helper_executable
from scsi_pr.helper.executors.sg import sg_io
from scsi_pr.helper.loadgen import run_load
from scsi_pr.helper.unix_io import recv_exactly
from scsi_pr.rig import lio
from scsi_pr.rig.processes import NotListening, wait_listening
from scsi_pr.sim.cdb import persistent_reserve_in, prout
from scsi_pr.sim.constants import PersistentReserveInAction as InSA
from scsi_pr.sim.constants import PersistentReserveOutAction as OutSA

ROUNDS = 20
PER_ROUND = 25  # operations of one kind per path per round
LOAD_CLIENTS = 64
LOAD_SECONDS = 5.0
LOAD_TURNS = 2  # each helper this many times, alternating
AIM_VS_C = 1.10  # issue 14: ours / C helper, median round trip
AIM_VS_DIRECT = 1.5  # issue 14: ours / direct SG_IO, median round trip
KEY = 0xBE7C4
ALLOCATION = 256
HEADER = 8 + 96  # status, data length, sense
JSON_MARKER = "scsi-pr-bench-json: "
JSON_FILE = Path(__file__).resolve().parents[1] / "out" / "bench" / "helper-vm.json"
#: a LUN of its own: never the suites' rig (its name and generation are the benchmark's)
LUN = lio.LunSpec(initiators=1, name="scsi_pr_bench", generation=0xBE)
DIRECT, C_HELPER = "direct", "C"
#: our helper's paths and the options each is started with: the backends, and ``sg`` with its
#: threads free to use every CPU (``--cpus all``) beside the default (one CPU)
OUR_ARGV = {
    "sg": ("--backend", "sg"),
    "ioctl": ("--backend", "ioctl"),
    "sg --cpus all": ("--backend", "sg", "--cpus", "all"),
}
OURS = tuple(OUR_ARGV)
SG_ALL_CPUS = "sg --cpus all"


@dataclass(frozen=True)
class Operation:
    name: str
    cdb: bytes  # 16 bytes, as the helper protocol carries it
    data: bytes  # PR OUT parameter list
    allocation: int  # PR IN ALLOCATION LENGTH (0 for PR OUT)


def operations() -> tuple[Operation, ...]:
    cdb, data = prout(OutSA.REGISTER_AND_IGNORE_EXISTING_KEY, 0, KEY)
    read_keys = persistent_reserve_in(InSA.READ_KEYS, ALLOCATION)
    return (
        Operation("READ KEYS", read_keys.ljust(16, b"\0"), b"", ALLOCATION),
        Operation("REGISTER AND IGNORE", cdb.ljust(16, b"\0"), data, 0),
    )


class BadAnswer(RuntimeError):
    """A path answered something but GOOD: the numbers would not be of the same work."""


# -- the pure part: statistics, ratios, the report ----------------------------------------------
def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile of an ascending sequence."""
    index = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values)) - 1))
    return sorted_values[index]


@dataclass(frozen=True)
class Latency:
    median_us: float
    p99_us: float
    count: int

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        values = sorted(seconds)
        return cls(statistics.median(values) * 1e6, quantile(values, 0.99) * 1e6, len(values))


def turn_order(paths: Sequence[str], round_index: int) -> list[str]:
    """The paths rotated by the round: each goes first as often as the others."""
    shift = round_index % len(paths)
    return [*paths[shift:], *paths[:shift]]


def ratios(latency: dict[str, dict[str, Latency]]) -> dict[str, dict[str, dict[str, float]]]:
    """ours/C and ours/direct (medians) per ours backend and operation."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for path in OURS:
        if path not in latency:
            continue
        out[path] = {
            op: {
                "vs_c": ours.median_us / latency[C_HELPER][op].median_us,
                "vs_direct": ours.median_us / latency[DIRECT][op].median_us,
            }
            for op, ours in latency[path].items()
        }
    return out


def verdicts(table_of_ratios: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """Information, not a test: each aim, met or not, with the numbers."""
    lines = []
    for path, by_op in table_of_ratios.items():
        for op, r in by_op.items():
            c = "met" if r["vs_c"] <= AIM_VS_C else "not met"
            d = "met" if r["vs_direct"] <= AIM_VS_DIRECT else "not met"
            lines.append(
                f"{path} {op}: ours/C {r['vs_c']:.2f} (aim <= {AIM_VS_C}: {c}), "
                f"ours/direct {r['vs_direct']:.2f} (aim <= {AIM_VS_DIRECT}: {d})"
            )
    return lines


def table(latency: dict[str, dict[str, Latency]], ops: Sequence[str]) -> Table:
    out = Table(title="PR round trips on one LIO LUN (tcm_loop ramdisk), one client")
    out.add_column("path")
    for op in ops:
        out.add_column(f"{op} median us", justify="right")
        out.add_column(f"{op} p99 us", justify="right")
        out.add_column(f"{op} /direct", justify="right")
    for path, by_op in latency.items():
        cells = [path]
        for op in ops:
            lat = by_op.get(op)
            if lat is None:
                cells += ["-", "-", "-"]
                continue
            ratio = lat.median_us / latency[DIRECT][op].median_us
            cells += [f"{lat.median_us:,.0f}", f"{lat.p99_us:,.0f}", f"{ratio:.2f}x"]
        out.add_row(*cells)
    return out


def load_ratio(load: dict[str, float]) -> float | None:
    """Ours (sg) over the C helper, 64 clients' requests/s; None if C served none."""
    return load["sg"] / load[C_HELPER] if load.get(C_HELPER) else None


def _numbers(v: Latency) -> dict[str, float]:
    return {"median": v.median_us, "p99": v.p99_us, "count": v.count}


def document(
    latency: dict[str, dict[str, Latency]], load: dict[str, float], meta: dict[str, str]
) -> dict[str, object]:
    """The JSON report: every number the table and the verdicts show."""
    table_of_ratios = ratios(latency)
    return {
        "meta": meta,
        "latency_us": {
            path: {op: _numbers(v) for op, v in by_op.items()} for path, by_op in latency.items()
        },
        "ratios": table_of_ratios,
        "load_requests_per_second": load,
        "load_ratio_ours_to_c": load_ratio(load),
        "aims": {"vs_c": AIM_VS_C, "vs_direct": AIM_VS_DIRECT},
    }


# -- in the VM ------------------------------------------------------------------------------
class HelperPath:
    """One connection to a helper, speaking as QEMU does: CDB with the fd, then the PR OUT
    parameter list, then the answer (header, then data)."""

    def __init__(self, sock: Path, fd: int) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(sock))
        if recv_exactly(self.sock, 4) != b"\0\0\0\0":
            raise BadAnswer("unexpected features word (or the helper closed)")
        self.sock.sendall(b"\0\0\0\0")
        self.rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fd.to_bytes(4, sys.byteorder))]
        self.buf = bytearray(HEADER + ALLOCATION)

    def __call__(self, op: Operation) -> None:
        self.sock.sendmsg([op.cdb], self.rights)
        if op.data:
            self.sock.sendall(op.data)
        view, got = memoryview(self.buf), 0
        while got < HEADER or got < HEADER + int.from_bytes(self.buf[4:8], "big", signed=True):
            n = self.sock.recv_into(view[got:])
            if not n:
                raise BadAnswer("the helper closed the connection")
            got += n
        status = int.from_bytes(self.buf[0:4], "big", signed=True)
        if status != 0:
            raise BadAnswer(f"{op.name}: status {status:#x}, sense {self.buf[8:26].hex()}")

    def close(self) -> None:
        self.sock.close()


def direct_path(fd: int) -> Callable[[Operation], None]:
    def call(op: Operation) -> None:
        r = sg_io(fd, op.cdb, op.data, op.allocation, 30_000)
        if not r.ok:
            raise BadAnswer(f"{op.name}: direct SG_IO status {r.status:#x} errno {r.errno}")

    return call


@contextmanager
def helper_process(argv: list[str], sock: Path) -> Iterator[None]:
    proc = subprocess.Popen([*argv, "-k", str(sock)], stderr=subprocess.DEVNULL)
    try:
        try:
            wait_listening(proc, sock, 60, name=Path(argv[0]).name)
        except NotListening as e:
            raise BadAnswer(str(e)) from None
        yield
    finally:
        proc.terminate()
        proc.wait(30)


def measure_latency(
    paths: dict[str, Callable[[Operation], None]], rounds: int
) -> dict[str, dict[str, Latency]]:
    ops = operations()
    samples: dict[str, dict[str, list[float]]] = {p: {op.name: [] for op in ops} for p in paths}
    names = list(paths)
    for op in ops:  # warm every path up (first opens, page faults, LIO's first PR file write)
        for name in names:
            paths[name](op)
    for index in range(rounds):
        for name in turn_order(names, index):
            call = paths[name]
            for op in ops:
                kept = samples[name][op.name]
                for _ in range(PER_ROUND):
                    start = time.perf_counter()
                    call(op)
                    kept.append(time.perf_counter() - start)
        print(f"  round {index + 1}/{rounds} done", flush=True)  # a sign of life for the VM
    return {p: {op: Latency.of(v) for op, v in by_op.items()} for p, by_op in samples.items()}


def measure_load(socks: dict[str, Path], device: str) -> dict[str, float]:
    totals = {name: 0.0 for name in socks}
    for turn in range(LOAD_TURNS):
        for name in turn_order(list(socks), turn):
            report = run_load(socks[name], device, LOAD_CLIENTS, LOAD_SECONDS)
            if report.errors:
                raise BadAnswer(f"{name} under load: {report.errors[:3]}")
            rate = report.total / LOAD_SECONDS
            totals[name] += rate / LOAD_TURNS
            print(f"  {LOAD_CLIENTS} clients, {name}: {rate:,.0f} requests/s", flush=True)
    return totals


@dataclass(frozen=True)
class Measured:
    latency: dict[str, dict[str, Latency]]
    load: dict[str, float]
    meta: dict[str, str]


def run(rounds: int) -> Measured:
    c_helper = shutil.which("qemu-pr-helper")
    if c_helper is None:
        raise BadAnswer("qemu-pr-helper is not installed (apt-get install qemu-system-common)")
    ours = helper_executable()
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="scsi-pr-bench-") as tmp:
        rig = lio.up(LUN, record=False)
        stack.callback(lio.down, LUN.name, LUN.generation)
        device = rig.initiators[0].sd
        lio.clear_unit_attentions(rig.initiators[0].sg)
        fd = os.open(device, os.O_RDWR)
        stack.callback(os.close, fd)
        socks = {C_HELPER: Path(tmp, "c.sock")}
        socks.update({name: Path(tmp, f"ours{i}.sock") for i, name in enumerate(OURS)})
        stack.enter_context(helper_process([c_helper], socks[C_HELPER]))
        for name, argv in OUR_ARGV.items():
            stack.enter_context(helper_process([ours, "-q", *argv], socks[name]))
        paths: dict[str, Callable[[Operation], None]] = {DIRECT: direct_path(fd)}
        for name, sock in socks.items():
            conn = HelperPath(sock, fd)
            stack.callback(conn.close)
            paths[name] = conn
        print(f"device {device}; {rounds} rounds x {PER_ROUND} of each operation per path")
        latency = measure_latency(paths, rounds)
        loaded = ("sg", SG_ALL_CPUS, C_HELPER)
        load = measure_load({name: socks[name] for name in loaded}, device)
    meta = {"kernel": os.uname().release, "cpus": str(os.cpu_count()), "device": device}
    return Measured(latency, load, meta)


def report(m: Measured) -> None:
    console = Console(width=160)
    console.print(table(m.latency, [op.name for op in operations()]))
    console.print(
        f"{LOAD_CLIENTS} clients, READ KEYS: "
        + ", ".join(f"{name} {rate:,.0f}/s" for name, rate in m.load.items())
        + f"; ours/C {load_ratio(m.load) or 0:.2f}",
        soft_wrap=True,
    )
    for line in verdicts(ratios(m.latency)):
        console.print(line, soft_wrap=True)


def main() -> int:
    try:
        lio.check_available()
    except lio.LioUnavailable as e:
        rc, output = in_vm.run_in_vm("--vm", str(e))
        found = in_vm.lines_after(output, JSON_MARKER)
        if found:
            JSON_FILE.parent.mkdir(parents=True, exist_ok=True)
            JSON_FILE.write_text(json.dumps(json.loads(found[-1]), indent=2) + "\n")
            print(f"vm: the numbers are in {JSON_FILE}")
        return rc if found else (rc or 2)
    try:
        measured = run(int(os.environ.get("SCSI_PR_BENCH_ROUNDS", ROUNDS)))
    except BadAnswer as e:
        print(f"vm: {e}", file=sys.stderr)
        return 2
    report(measured)
    doc = document(measured.latency, measured.load, measured.meta)
    print(JSON_MARKER + json.dumps(doc), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
