"""``python -m scsi_pr.rig.guest_e2e``: run the end-to-end check, print and save its report."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from scsi_pr.rig import processes
from scsi_pr.rig.errors import RigError
from scsi_pr.rig.guest_e2e import __doc__ as OVERVIEW
from scsi_pr.rig.guest_e2e.booted import save_booted
from scsi_pr.rig.guest_e2e.checks import RunResult
from scsi_pr.rig.guest_e2e.driver import (
    ENV_SAVED_GUEST,
    GUEST_CPU_BUDGET,
    HELPERS,
    run,
    saved_guest_from_env,
)
from scsi_pr.rig.guest_e2e.sequence import SEQUENCE


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m scsi_pr.rig.guest_e2e", description=(OVERVIEW or "").split("\n")[0]
    )
    ap.add_argument(
        "--helper", action="append", choices=list(HELPERS),
        help="helper to test (repeatable; default: qemu-pr-helper then scsi-pr-helper; the "
        "first is the reference the others are compared with)",
    )  # fmt: skip
    ap.add_argument(
        "--save-booted", type=Path, metavar="DIR",
        help="only boot the guest for these helpers to its boot pause and save it in DIR, for "
        "a run elsewhere to resume (needs neither root nor LIO: scripts/vm-tier does this on "
        "the host, where TCG is not nested)",
    )  # fmt: skip
    ap.add_argument(
        "--saved", type=Path, metavar="DIR",
        help=f"resume the guest saved in DIR (waiting for it to appear) instead of booting one; "
        f"default: ${ENV_SAVED_GUEST} when set",
    )  # fmt: skip
    ap.add_argument("--json", type=Path, help="write all observations and problems here")
    ap.add_argument("--workdir", type=Path, help="keep the initramfs, sockets and helper logs here")
    ap.add_argument(
        "--cpu-budget", type=float, default=GUEST_CPU_BUDGET,
        help="CPU seconds QEMU may use before the guest is taken to spin (the guest's work "
        "under TCG, whatever the machine's load; default %(default)g)",
    )  # fmt: skip
    return ap


def report(runs: list[RunResult], differences: list[str]) -> dict[str, Any]:
    """The ``--json`` document: every observation and problem of every round."""
    return {
        "runs": [asdict(r) for r in runs],
        "differences": differences,
        "sequence": [s.name for s in SEQUENCE],
    }


def summary(runs: list[RunResult], differences: list[str]) -> tuple[bool, list[str]]:
    """Whether everything passed, and the lines that say what did not."""
    ok = not differences and all(not r.problems for r in runs)
    lines = []
    for r in runs:
        lines.append(f"{r.helper}: {len(r.observations)} steps, {len(r.problems)} problems")
        lines += [f"  {p}" for p in r.problems]
    lines += [f"  differs: {d}" for d in differences]
    lines.append("guest e2e: " + ("PASS" if ok else "FAIL"))
    return ok, lines


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    helpers = args.helper or list(HELPERS)
    if args.save_booted:
        processes.exit_on_sigterm()  # scripts/vm-tier's SIGTERM stops the booting QEMU too
        try:
            state = save_booted(args.save_booted, helpers, args.workdir)
        except RigError as e:
            print(f"guest e2e: could not save a booted guest: {e}", file=sys.stderr)
            return 1
        print(f"guest e2e: booted guest saved in {state}")
        return 0
    if os.geteuid() != 0:
        print("guest_e2e: needs root inside the LIO VM (scsi-pr vm run -- ...)", file=sys.stderr)
        return 2
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    try:
        saved = args.saved or saved_guest_from_env()
        runs, differences = run(helpers, args.workdir, args.cpu_budget, saved)
    except RigError as e:  # a tool, a helper, QEMU or the LU itself could not be set up
        print(f"guest e2e: FAIL: {e}")
        return 1
    if args.json:
        args.json.write_text(json.dumps(report(runs, differences), indent=2))
    ok, lines = summary(runs, differences)
    print("\n".join(lines))
    return 0 if ok else 1
