"""``scsi-pr guests`` (``python -m scsi_pr.rig.iscsi_guests``): run the two-guest fencing
scenario, print what every step showed and the verdict.

Exit status: 0 every check passed, 1 a check failed, 2 the run could not start (a missing tool,
a guest that cannot be built, a target that does not listen).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from scsi_pr.rig.errors import RigError
from scsi_pr.rig.iscsi_guests.checks import Observed, Verdict, evaluate, nexus_lines
from scsi_pr.rig.iscsi_guests.driver import (
    DEVICES,
    INITIATORS,
    QUIET_LIMIT,
    STARTUP_LIMIT,
    TARGET_IQN,
    Options,
    run,
)
from scsi_pr.rig.iscsi_guests.scenario import HOST_EXPECT

EXIT_PASS, EXIT_FAIL, EXIT_CANNOT_RUN = 0, 1, 2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scsi-pr guests",
        description="Two QEMU guests, each logged in to `scsi-pr target serve` with its own "
        "iSCSI initiator name (two I_T nexuses on one LU), play fence_scsi: A registers and "
        "reserves, B registers and fences A with PREEMPT AND ABORT. No root, no VM: QEMU "
        "runs under TCG and needs qemu-block-extra's iscsi driver.",
        epilog="exit status: 0 pass, 1 a check failed, 2 could not run",
    )
    for g in INITIATORS:
        p.add_argument(f"--device-{g.lower()}", choices=DEVICES, default=DEVICES[0],
                       help=f"guest {g}'s SCSI device over the iSCSI drive (default "
                       f"{DEVICES[0]})")  # fmt: skip
    p.add_argument("--workdir", type=Path, help="keep the initramfs, state dir and target log "
                   "here (default: a new temporary directory, kept)")  # fmt: skip
    p.add_argument("--port", type=int, help="the target's port on 127.0.0.1 (default: a free one)")
    p.add_argument("--startup-limit", type=float, default=STARTUP_LIMIT, metavar="SECONDS",
                   help=f"a guest may print nothing this long while it boots (default "
                   f"{STARTUP_LIMIT:g})")  # fmt: skip
    p.add_argument("--quiet-limit", type=float, default=QUIET_LIMIT, metavar="SECONDS",
                   help=f"then between two console lines (default {QUIET_LIMIT:g}); a guest "
                   "waiting at a pause is never hung")  # fmt: skip
    p.add_argument("--json", type=Path, metavar="FILE", help="write every result here")
    p.add_argument("-q", "--quiet", action="store_true", help="do not echo the consoles")
    return p


def summary(obs: Observed, verdict: Verdict, devices: dict[str, str]) -> list[str]:
    """What the run showed, one line per step, then the problems and the verdict."""
    lines = [f"target {TARGET_IQN} (scsi-pr target serve), LUN 0"]
    lines += [f"guest {g}: {name} on {devices[g]}" for g, name in obs.names.items()]
    lines += nexus_lines(verdict)
    for g, readings in verdict.readings.items():
        lines += [f"{g} {name:<20} {reading.text()}" for name, reading in readings.items()]
    for look in HOST_EXPECT:
        view = obs.looks.get(look)
        regs = "not taken" if view is None else ", ".join(
            f"{port} {key:#x}{' (holder)' if holder else ''}"
            for key, port, holder in view.registrations
        )  # fmt: skip
        lines.append(f"model at {look!r}: {regs}")
    lines += [f"  problem: {p}" for p in verdict.problems]
    lines.append("two QEMU guests on one iSCSI LU: " + ("PASS" if verdict.ok else "FAIL"))
    return lines


def report(obs: Observed, verdict: Verdict) -> dict[str, Any]:
    """The ``--json`` document."""
    return {
        "names": obs.names,
        "steps": {g: {n: asdict(r) for n, r in s.items()} for g, s in obs.steps.items()},
        "finished": obs.finished,
        "looks": {k: repr(v) for k, v in obs.looks.items()},
        "logins": [str(t) for t in obs.logins],
        "aborted": obs.aborted,
        "problems": verdict.problems,
        "ok": verdict.ok,
    }


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="scsi-pr-guests-"))
    workdir.mkdir(parents=True, exist_ok=True)
    devices = {g: getattr(args, f"device_{g.lower()}") for g in INITIATORS}
    opts = Options(workdir, devices, port=args.port, startup_limit=args.startup_limit,
                   quiet_limit=args.quiet_limit)  # fmt: skip
    if args.quiet:
        opts.log = lambda text: None
    try:
        obs = run(opts)
    except RigError as e:
        print(f"scsi-pr guests: cannot run: {e} (work dir {workdir})", file=sys.stderr)
        return EXIT_CANNOT_RUN
    verdict = evaluate(obs)
    if args.json:
        args.json.write_text(json.dumps(report(obs, verdict), indent=2))
    print("\n".join(summary(obs, verdict, devices)))
    print(f"work dir: {workdir}")
    return EXIT_PASS if verdict.ok else EXIT_FAIL
