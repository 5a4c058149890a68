"""libiscsi's ``iscsi-test-cu`` (Debian libiscsi-bin) against an iSCSI target, read through its
CUnit XML report; and a *record* of a run against ``scsi-pr target serve`` that another machine
(the VM) reads.

``iscsi-test-cu`` is a user-space initiator: the host tier runs it against our target with no VM
(tests/target/test_libiscsi.py), and the VM tier runs it against LIO's own iSCSI target for the
reference count (tests/vm/test_iscsi_initiators.py). That count needs a run of ours to compare
with, and ours under TCG took 120 s of a quiet main phase and 294 s of a busy one (a Python
process 25x slower there, docs/performance.md). ``scripts/vm-tier`` therefore starts
``python -m scsi_pr.rig.libiscsi record DIR`` on the host beside the VM, in a directory the guest
sees (``scsi-pr vm run --share``); the guest's test reads the record with ``wait_record``.
The code that runs ours is the same either way, only the machine differs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from scsi_pr.rig.errors import RigError
from scsi_pr.rig.processes import exit_on_sigterm, free_port, log_tail, start_target, stop
from scsi_pr.rig.watchdog import heartbeat, run_watched, wait_for_result

ISCSI_TEST_CU = Path("/usr/bin/iscsi-test-cu")
START_QUIET = 30.0  # seconds the starting target may go without using CPU
PR_SUITES = ("PrinReadKeys", "PrinServiceactionRange", "PrinReportCapabilities", "ProutRegister",
             "ProutReserve", "ProutClear", "ProutPreempt", "Reserve6")  # fmt: skip
#: SBC/SPC suites of the commands in sim/commands.py, and the iSCSI-level suites
SBC_SUITES = ("Inquiry", "Mandatory", "ModeSense6", "Read6", "Read10", "Read16",
              "ReadCapacity10", "ReadCapacity16", "StartStopUnit", "TestUnitReady", "Verify10",
              "Write10", "Write16", "iSCSIResiduals", "iSCSITMF", "iSCSIcmdsn",
              "iSCSIdatasn")  # fmt: skip
SUITES = PR_SUITES + SBC_SUITES
OURS_IQN = "iqn.2024-01.org.scsi-pr:libiscsi"
REPORT = "CUnitAutomated-Results.xml"  # what iscsi-test-cu --xml writes in its working directory
#: a record's files in its directory: written whole (renamed into place), one or the other
RECORD, RECORD_ERROR = "outcomes.json", "error.txt"
#: the environment variable naming the record directory the VM's test reads
ENV_RECORD = "SCSI_PR_LIBISCSI_RECORD"

#: test (ALL.<suite>.<name>) -> its failed assertions; empty: it passed
Outcomes = dict[str, list[str]]


class LibiscsiError(RigError):
    """A run of iscsi-test-cu, or of the target under it, did not give outcomes; says why."""


@dataclass(frozen=True)
class OursRun:
    """A run against ``scsi-pr target serve``: the suites' outcomes and how the target ended."""

    outcomes: Outcomes
    target_exit: int
    target_log: str


def run_suites(
    url: str, workdir: Path, quiet_limit: float, suites: Sequence[str] = SUITES
) -> Outcomes:
    """Run ``suites`` against ``url``; each test's failed assertions (empty: passed).

    The deadline follows progress: CUnit writes each test's record to its XML report as the test
    ends, so the run is hung only when the report stops growing for ``quiet_limit`` seconds. Each
    growth is also a heartbeat for the VM tier's watchdog, which would otherwise see a test
    that is silent for the minutes the suites take under TCG on a busy machine."""
    workdir.mkdir(parents=True, exist_ok=True)
    report = workdir / REPORT
    log = workdir / "iscsi-test-cu.log"
    argv = [str(ISCSI_TEST_CU), "--dataloss", "--xml", "--test",
            ",".join(f"ALL.{s}" for s in suites), url]  # fmt: skip
    with log.open("wb") as out:
        run = run_watched(
            argv, quiet_limit=quiet_limit, progress_files=[report], out=out, cwd=workdir,
            on_progress=lambda what: heartbeat(f"libiscsi: {what}"),
        )  # fmt: skip
    if run.hung:
        raise LibiscsiError(f"iscsi-test-cu {run.verdict} against {url}: {log_tail(log)}")
    if not report.exists():
        raise LibiscsiError(f"iscsi-test-cu left no CUnit report: {log_tail(log)}")
    return outcomes(report)


def run_ours(workdir: Path, quiet_limit: float, suites: Sequence[str] = SUITES) -> OursRun:
    """``suites`` against a fresh ``scsi-pr target serve`` of its own (state in ``workdir``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port, log = free_port(), workdir / "target.log"
    proc = start_target(("127.0.0.1", port), OURS_IQN, workdir / "state", "64M", log, START_QUIET)
    try:
        results = run_suites(f"iscsi://127.0.0.1:{port}/{OURS_IQN}/0", workdir, quiet_limit, suites)
    finally:
        code = stop(proc, timeout=60)
    return OursRun(results, code, log_tail(log, 4000))


def outcomes(report: Path) -> Outcomes:
    """ALL.<suite>.<test> -> its failed assertions (empty: passed), from CUnit's XML."""
    out: Outcomes = {}
    for suite in ET.parse(report).getroot().iter("CUNIT_RUN_SUITE"):
        suite_name = (suite.findtext(".//SUITE_NAME") or "").strip()
        for record in suite.iter("CUNIT_RUN_TEST_RECORD"):
            for result in record:
                test = f"ALL.{suite_name}.{(result.findtext('TEST_NAME') or '').strip()}"
                failures = out.setdefault(test, [])
                if result.tag == "CUNIT_RUN_TEST_FAILURE":
                    where = f"{result.findtext('FILE_NAME')}:{result.findtext('LINE_NUMBER')}"
                    failures.append(f"{where.replace(' ', '')} {result.findtext('CONDITION')}")
    return out


def listed_tests() -> set[str]:
    """The tests of ``SUITES`` that ``iscsi-test-cu --list`` names."""
    listing = subprocess.run([str(ISCSI_TEST_CU), "--list"], capture_output=True, text=True,
                             check=True).stdout.split()  # fmt: skip
    tests = (t.split(".") for t in listing if t.startswith("ALL."))
    return {".".join(parts) for parts in tests if len(parts) == 3 and parts[1] in SUITES}


def _write_whole(path: Path, text: str) -> None:
    """Readers poll for ``path``: they see all of it or nothing (rename is atomic)."""
    part = path.with_name(path.name + ".part")
    part.write_text(text)
    os.replace(part, path)


def record(directory: Path, quiet_limit: float) -> int:
    """Run ours and leave ``outcomes.json`` in ``directory``, or ``error.txt`` saying why not.

    The target's exit status and a traceback in its log are part of the record: the reader
    holds ours to a clean run, as the host test does."""
    directory.mkdir(parents=True, exist_ok=True)
    try:
        if not ISCSI_TEST_CU.exists():
            raise LibiscsiError(f"{ISCSI_TEST_CU} is missing: apt-get install libiscsi-bin")
        run = run_ours(directory / "work", quiet_limit)
    except (RigError, OSError, ET.ParseError) as e:
        _write_whole(directory / RECORD_ERROR, f"{type(e).__name__}: {e}\n")
        return 1
    body = {"outcomes": run.outcomes, "target_exit": run.target_exit,
            "target_log": run.target_log}  # fmt: skip
    _write_whole(directory / RECORD, json.dumps(body, indent=1) + "\n")
    return 0


def wait_record(
    directory: Path,
    quiet_limit: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> OursRun:
    """The record that ``record`` leaves in ``directory``, once it is there.

    Hung only when nothing in the directory grows for ``quiet_limit`` seconds (the suites'
    report grows as each test ends), so a slow host is waited for and a dead one is not."""
    path = wait_for_result(
        directory, RECORD, RECORD_ERROR, quiet_limit, "libiscsi record", LibiscsiError,
        clock=clock, sleep=sleep,
    )  # fmt: skip
    body = json.loads(path.read_text())
    return OursRun(body["outcomes"], body["target_exit"], body["target_log"])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m scsi_pr.rig.libiscsi",
        description="run libiscsi's suites against scsi-pr target serve, for another machine",
    )
    sub = p.add_subparsers(dest="action", required=True)
    r = sub.add_parser("record", help="leave outcomes.json (or error.txt) in DIR")
    r.add_argument("directory", type=Path, metavar="DIR")
    r.add_argument("--quiet-limit", type=float, default=120.0,
                   help="seconds without a test ending that make the run hung")  # fmt: skip
    args = p.parse_args(argv)
    exit_on_sigterm()  # scripts/vm-tier's SIGTERM stops iscsi-test-cu and the target too
    return record(args.directory, args.quiet_limit)


if __name__ == "__main__":
    sys.exit(main())
