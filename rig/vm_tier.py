"""The VM tier's driver, run inside the VM by ``scripts/vm-tier``: pytest runs, one summary.

1. Every backend-independent test (``uses_backend``) and every ``vm`` test, on ``lio`` and
   ``helper-lio``, except those marked ``lio_hangs``, ``guest_e2e`` or ``multipath``.
2. The conformance suite on ``helper-lio-ioctl`` (the helper's block-layer ioctl backend).
3. The nested-guest end-to-end test (``guest_e2e``: minutes under TCG), once, on its own.
4. The conformance suite through a dm-multipath map (``helper-lio-mpath``), and the
   ``multipath`` tests: the one multipathd is theirs.
5. In a second VM, every backend-independent test on ``iscsi``: the model behind the kernel's
   iSCSI initiator (``scsi-pr target serve``), ``lio_hangs`` tests included.
6. Beside it in that VM, the ``lio_hangs`` tests (PREEMPT AND ABORT wedges the LUN on
   tcm_loop). The rig builds a fresh LU after each hang; should the process itself get stuck,
   it is abandoned and the tests it did not report are counted as hung.

Phases go to VMs (``PhaseSpec.vm``): ``scripts/vm-tier`` asks ``--vm-groups`` which VMs the
chosen phases need, boots them side by side, each running ``--vm N --results FILE``, and
prints one summary of the files with ``--merge``. Within a VM they run in two lanes (``Lane``,
``plan``), each lane's phases one after another. The first VM's rig lane holds main, which
takes over the rig (its recorded LIO LU; the iSCSI rig on port 3260 for its iSCSI tests);
beside it, from the start, run paths (generations 20h on, ``backend_lio.ENV_FIRST_GENERATION``:
it neither takes over nor records the shared rig), the nested guest (generation E2h) and mpath
(40h on). The VM has two CPUs and one pytest run keeps about one busy, so they overlap.

The hang phase may not share a kernel with LIO phases: measured, with it beside main, main
stopped in its udev test and the iSCSI phase's set-ups failed after it (likely: a udev probe of
a wedged LU never ends, and every later ``udevadm settle`` waits on it). Its VM has no udevd
(``PhaseSpec.udev``) and nothing else on LIO: the iscsi phase beside it is our target and the
kernel's iSCSI initiator, which need neither. Its minutes are mostly command timeouts waited
out, so the iscsi phase's work fills them instead of lengthening the first VM's lanes (issue
14). Choosing phases of two VMs without ``--vm`` is a usage error: one kernel would run them
side by side.

A phase is abandoned only when it is *hung*: no progress (a line of output, a test result, a
heartbeat of a long test) for its quiet limit, which is above the longest single step's own
deadline (``--lio-test-timeout``, the nested guest's pauses). A phase that keeps making progress
runs to its end however slow the machine is, and is reported "slow" when it overran its nominal
budget (``rig.watchdog``). The summary says which, truthfully.

Outcomes are read from the plugin's per-test JSON log (``SCSI_PR_RESULT_LOG``), written as each
test ends, so a wedged run still reports what it did. Exit status: 0 when nothing failed or
errored; "LIO hangs" and LIO deviations are known defects (xfail), shown but not failures.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import os
import resource
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from scsi_pr.rig import guest_cpu, udev
from scsi_pr.rig.backend_lio import ENV_FIRST_GENERATION
from scsi_pr.rig.guest_e2e.driver import GUEST_STALL_LIMIT
from scsi_pr.rig.progress import Tracker
from scsi_pr.rig.pytest_plugin import DEFAULT_LIO_TEST_TIMEOUT, ENV_RESULT_LOG
from scsi_pr.rig.vm_tier_results import (
    Phase,
    Reported,
    conclude,
    cpu_marks,
    merge,
    outcomes,
    read_log,
    report,
    write_results,
)
from scsi_pr.rig.watchdog import ENV_PROGRESS, run_watched

BACKENDS = tuple(os.environ.get("SCSI_PR_VM_BACKENDS", "lio,helper-lio").split(","))
# helper-iscsi is left to runs by hand (``--backend helper-iscsi``): its PR path is the helper's
# sg executor that helper-lio already takes through the whole suite in the main phase, and CI's
# 90 minutes do not hold the suite a fourth time under TCG
ISCSI_BACKENDS = ("iscsi",)
PATH_BACKENDS = ("helper-lio-ioctl",)
MPATH_BACKENDS = ("helper-lio-mpath",)
#: the first LU generation of the phases that build their own (``backend_lio.generations``):
#: beside the rig's (0 on) and the nested guest's (E2h)
PATHS_GENERATIONS, MPATH_GENERATIONS, HANG_GENERATIONS = 0x20, 0x40, 0x80


class Lane(enum.Enum):
    """When a phase runs: lanes run side by side, the phases of one lane in ``PHASES`` order."""

    RIG = "rig"  # in the foreground; in the first VM, main, which takes over the rig
    BESIDE = "beside"  # from the start, in a thread: nothing global, LUs of their own


@dataclass(frozen=True)
class PhaseSpec:
    """``budget``: the seconds the phase takes on a quiet machine, doubled (beyond it: "slow").
    ``quiet_limit``: seconds without any progress that make it hung; above the longest single
    step's own deadline, so a step is never cut off while it is still within its own."""

    marks: str
    extra: tuple[str, ...]
    budget: float
    quiet_limit: float
    hang_phase: bool = False
    #: before pytest prints or logs anything: interpreter start and collection under TCG
    startup_limit: float = 600.0
    #: the backends the phase runs on (None: ``BACKENDS``, the LIO pair unless overridden)
    backends: tuple[str, ...] | None = None
    #: the test paths it runs, where not the command line's (its default: tests)
    paths: tuple[str, ...] | None = None
    lane: Lane = Lane.RIG
    #: its own rig generations from this one on (0: the rig's, ``backend_lio.generations``)
    first_generation: int = 0
    #: the paths choose part of what the marks select (e.g. the conformance suite alone);
    #: otherwise they hold every test the marks select (tests/rig/test_vm_tier_paths.py)
    subset: bool = False
    #: the VM it runs in when ``scripts/vm-tier`` boots several side by side (``--vm``)
    vm: int = 0
    #: whether its tests need udevd (multipathd takes WWIDs from it; the udev tests): a VM
    #: none of whose phases does stops it before the first (``rig.udev.stop``)
    udev: bool = True


#: where the tests that take a backend live: collecting only these (and not the ~2,000 host
#: tests beside them) saves each phase's pytest ~25x its host collection time under TCG. A host
#: test (tests/rig/test_vm_tier_paths.py) fails when a phase's tests live elsewhere.
BACKEND_TESTS = ("tests/conformance", "tests/scenarios/test_vm.py")
VM_TESTS = (*BACKEND_TESTS, "tests/vm", "tests/rig/test_lio_vm.py")
PATHS_PHASE = PhaseSpec(
    "uses_backend and not lio_hangs",
    ("--durations=10",),
    budget=1500.0,
    quiet_limit=DEFAULT_LIO_TEST_TIMEOUT + 60.0,
    backends=PATH_BACKENDS,
    paths=("tests/conformance",),
    subset=True,
    lane=Lane.BESIDE,
    first_generation=PATHS_GENERATIONS,
)
PHASES: dict[str, PhaseSpec] = {
    "main": PhaseSpec(
        "(uses_backend or vm) and not lio_hangs and not guest_e2e and not multipath",
        ("--durations=15",),
        budget=900.0,
        quiet_limit=DEFAULT_LIO_TEST_TIMEOUT + 60.0,
        paths=VM_TESTS,
    ),
    # the conformance suite through the helper's other ways to the device: the block layer's PR
    # ioctls on /dev/sdX (what the path cannot carry is marked, each asserting its answer)
    "paths": PATHS_PHASE,
    # one test; its driver logs (and heartbeats) every step, the longest guest pause included;
    # its LU is a generation of its own (rig/guest_e2e/driver.py), so it runs beside the rig's
    "guest-e2e": PhaseSpec(
        "guest_e2e",
        (),
        budget=1200.0,
        quiet_limit=GUEST_STALL_LIMIT + 60.0,
        lane=Lane.BESIDE,
        paths=("tests/vm/test_guest_e2e.py",),
    ),
    # the conformance suite through a dm-multipath map, and the multipath tests: its own process,
    # so that multipathd's path checker (its TEST UNIT READYs take unit attentions) runs only
    # while the map's tests do; its own LUs, which it may leave behind (LIO breaks a PR
    # reference count on them: rig/kmsg.py) and nobody takes over. multipathd sees only the
    # disks its configuration names, so main's beside it do not reach it. Not in the hang
    # phase's VM: measured there, it ran beside main, paths and the nested guest's start and
    # took 362 s instead of ~150 s, main 50 % longer (the host's two cores were the limit).
    "mpath": replace(
        PATHS_PHASE,
        budget=600.0,
        backends=MPATH_BACKENDS,
        marks="(uses_backend and not lio_hangs) or multipath",
        paths=("tests/conformance", "tests/vm/test_multipath_vm.py"),
        first_generation=MPATH_GENERATIONS,
    ),
    # the same backend-independent suite on the model behind the kernel's iSCSI initiator; the
    # lio_hangs tests included: PREEMPT AND ABORT completes there. In the hang VM, beside the
    # hangs: neither LIO nor udev, and in a kernel of its own the iSCSI rig (port 3260) is its
    # alone. Measured in the first VM's rig lane after main instead, it was the critical path.
    "iscsi": PhaseSpec(
        "uses_backend and not guest_e2e",
        ("--durations=10",),
        budget=900.0,
        quiet_limit=DEFAULT_LIO_TEST_TIMEOUT + 60.0,
        backends=ISCSI_BACKENDS,
        paths=BACKEND_TESTS,
        lane=Lane.BESIDE,
        vm=1,
        udev=False,
    ),
    # PREEMPT AND ABORT wedges tcm_loop: here a test that hangs is the expected outcome. A VM
    # of its own (scripts/vm-tier boots it beside the first): the LUs it wedges meet no other
    # LIO test, and its minutes are mostly command timeouts waited out, which need no CPU.
    "lio-hangs": PhaseSpec(
        "lio_hangs",
        ("--run-lio-hangs", "--durations=12"),
        budget=180.0,
        quiet_limit=300.0,
        hang_phase=True,
        paths=VM_TESTS,
        first_generation=HANG_GENERATIONS,
        vm=1,
        # the LUs it builds and wedges were probed by udev for nothing: measured in that VM,
        # udevd and its workers used more CPU (152 s) than the phase's pytest (114 s)
        udev=False,
    ),
}
DEFAULT_PATHS = ["tests"]
#: the vCPUs of each VM ``scripts/vm-tier`` boots (``--vm-cpus``). The first runs two lanes. The
#: hang VM runs one pytest, mostly waiting out command timeouts: its second vCPU only spun (a
#: TCG guest has no paravirtual spinlocks, and beside the first VM on the host's two cores a
#: vCPU waits for its preempted sibling in lock, IPI and RCU loops). Measured in full tiers: the
#: hang VM used 127-141 s of the host's CPU with two, 53-74 s with one (docs/performance.md).
VM_CPUS: dict[int, int] = {0: 2, 1: 1}


def run_phase(
    name: str,
    args: list[str],
    spec: PhaseSpec,
    workdir: Path,
    *,
    backends: tuple[str, ...] = BACKENDS,
    out: BinaryIO | None = None,
) -> Phase:
    """Run one phase's pytest under the watchdog; its output goes to ``out`` (default: our
    stdout, as it comes)."""
    log = workdir / f"{name}.jsonl"
    beat = workdir / f"{name}.progress"
    for f in (log, beat):
        f.unlink(missing_ok=True)
    env = dict(
        os.environ, PYTHONUNBUFFERED="1", **{ENV_RESULT_LOG: str(log), ENV_PROGRESS: str(beat)}
    )
    if spec.first_generation:
        env[ENV_FIRST_GENERATION] = f"{spec.first_generation:#x}"
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfExX", *args]
    for b in backends:
        cmd += ["--backend", b]
    where = "" if out is None else " (beside the others; its output follows when done)"
    print(f"\n== VM tier, {name}{where}: {' '.join(cmd[2:])}", flush=True)
    reported = Reported(log)
    with Tracker(f"VM tier {name}: tests done") as tracker:

        def progressed(what: str) -> None:
            done, total = reported()
            tracker.update(done, what, total)

        run = run_watched(
            cmd,
            quiet_limit=spec.quiet_limit,
            startup_limit=spec.startup_limit,
            budget=spec.budget,
            env=env,
            progress_files=[log, beat],
            on_progress=progressed,
            out=out,
        )
    phase = Phase(name, rc=run.rc, seconds=run.seconds, abandoned=run.hung, verdict=run.verdict)
    if run.hung:
        print(f"== {name}: abandoned, {run.verdict}", flush=True)
    records = read_log(log)
    phase.results = outcomes(records, phase.abandoned, spec.hang_phase)
    phase.start_cpu, phase.cpu = cpu_marks(records)
    return phase


def plan(chosen: Iterable[str]) -> dict[Lane, list[str]]:
    """The chosen phases by lane, each lane in ``PHASES`` order."""
    lanes: dict[Lane, list[str]] = {lane: [] for lane in Lane}
    for name, spec in PHASES.items():
        if name in chosen:
            lanes[spec.lane].append(name)
    return lanes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scsi_pr.rig.vm_tier", description=__doc__)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/scsi-pr-vm-tier"))
    p.add_argument(
        "--phases", default=",".join(PHASES), help=f"comma separated, from {', '.join(PHASES)}"
    )
    p.add_argument("--vm", type=int, help="run only the chosen phases that go to this VM")
    p.add_argument(
        "--vm-groups",
        action="store_true",
        help="print the VMs the chosen phases go to, and exit (scripts/vm-tier boots one each)",
    )
    p.add_argument(
        "--vm-cpus",
        type=int,
        metavar="VM",
        help="print the vCPUs scripts/vm-tier gives this VM, and exit",
    )
    p.add_argument("--results", type=Path, help="also write the outcomes here, for --merge")
    p.add_argument(
        "--merge",
        type=Path,
        action="append",
        metavar="RESULTS",
        help="print one summary of these --results files (repeatable) and exit",
    )
    p.add_argument("pytest_args", nargs="*", default=DEFAULT_PATHS, help="paths (default: tests)")
    args = p.parse_args(argv)
    if args.merge:
        return merge(args.merge)
    if args.vm_cpus is not None:
        if args.vm_cpus not in VM_CPUS:
            p.error(
                f"--vm-cpus {args.vm_cpus}: no such VM (the VMs: {', '.join(map(str, VM_CPUS))})"
            )
        print(VM_CPUS[args.vm_cpus])
        return 0
    chosen = [n for n in args.phases.split(",") if n]
    unknown = sorted(set(chosen) - set(PHASES))
    if unknown:
        p.error(f"unknown phase(s) {', '.join(unknown)}")
    if args.vm is not None:
        chosen = [n for n in chosen if PHASES[n].vm == args.vm]
    vms = sorted({PHASES[n].vm for n in chosen})
    if args.vm_groups:  # after --vm: scripts/vm-tier boots only the VM a caller named
        print(" ".join(map(str, vms)))
        return 0
    if len(vms) > 1:
        p.error(
            f"phases of VMs {', '.join(map(str, vms))} chosen: each VM's run in a kernel of its "
            "own (--vm N, as scripts/vm-tier does)"
        )
    if chosen and not any(PHASES[n].udev for n in chosen) and udev.stop():
        print("VM tier: udevd stopped: no phase here needs it", flush=True)
    args.workdir.mkdir(parents=True, exist_ok=True)
    done: dict[str, Phase] = {}

    def run(name: str, output: Path | None = None) -> None:
        """Run phase ``name``, its output to the file ``output`` (default: our stdout)."""
        spec = PHASES[name]
        paths = spec.paths if spec.paths and args.pytest_args == DEFAULT_PATHS else None
        argv_ = [*(paths or args.pytest_args), "-m", spec.marks, *spec.extra]
        try:
            with output.open("wb") if output is not None else contextlib.nullcontext() as out:
                phase = run_phase(
                    name, argv_, spec, args.workdir, backends=spec.backends or BACKENDS, out=out
                )
        except Exception as e:  # a driver bug in one lane must not lose the others' summary
            phase = Phase(name, rc=-1, verdict=f"driver error: {type(e).__name__}: {e}")
        done[name] = phase
        report(phase, details=False)  # counts now: a later phase may take long

    lanes = plan(chosen)
    beside = _Lane(lanes[Lane.BESIDE], args.workdir, run)
    beside.start()
    for name in lanes[Lane.RIG]:
        run(name)
    beside.finish()
    phases = [done[n] for n in PHASES if n in done]
    if args.results is not None:
        write_results(args.results, phases)
    show_guest_cpu()
    return conclude(phases)


def show_guest_cpu() -> None:
    """Where this VM's CPU went since boot, the driver's own and its phases' share apart
    (``rig.guest_cpu``)."""
    try:
        totals, usages = guest_cpu.read()
    except (OSError, ValueError) as e:
        print(f"\n== guest CPU: unreadable ({e})")
        return
    own, reaped = (
        resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    print("\n== guest CPU since boot ==")
    print("\n".join(guest_cpu.report(totals, usages, uevents=guest_cpu.uevents())))
    print(
        f"  this driver: {own.ru_utime + own.ru_stime:.0f}s itself, "
        f"{reaped.ru_utime + reaped.ru_stime:.0f}s in the phases and what else it ran",
        flush=True,
    )


class _Lane(threading.Thread):
    """The phases beside the rig's, one after another in a thread; their output goes to a
    file each, shown when the lane is joined, so that two pytest runs never interleave."""

    def __init__(self, names: list[str], workdir: Path, run: Callable[..., None]) -> None:
        super().__init__(name=f"vm-tier-{'+'.join(names)}", daemon=True)
        self.names, self.workdir, self.run_one = names, workdir, run

    def output(self, name: str) -> Path:
        return self.workdir / f"{name}.out"

    def run(self) -> None:
        for name in self.names:
            self.run_one(name, self.output(name))

    def finish(self) -> None:
        """Wait for the lane, then show what its phases printed."""
        if self.names:
            self.join()
        for name in self.names:
            print(f"\n== VM tier, {name}: its output", flush=True)
            try:
                sys.stdout.buffer.write(self.output(name).read_bytes())
            except OSError as e:  # the phase is a driver error in the summary, with the cause
                sys.stdout.buffer.write(f"(not kept: {e})\n".encode())
            sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
