"""Running libiscsi's ``iscsi-test-cu`` (Debian libiscsi-bin) and reading its CUnit XML report.

Shared by the host test against ``scsi-pr target serve`` (tests/target/test_libiscsi.py) and
the VM test that runs the same suites against LIO's own iSCSI target for the reference count
(tests/vm/test_iscsi_initiators.py).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from scsi_pr.rig.processes import tcp_listening, wait_ready
from scsi_pr.rig.watchdog import heartbeat, run_watched

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
#: test -> why the model fails it, by the clause that says the model is right or what it lacks
KNOWN_FAILURES = {
    "ALL.Inquiry.Standard": "SPC-5 6.7.2: VERSION 07h claims SPC-5; libiscsi 1.19 accepts only "
    "04h-06h (SPC-2..SPC-4)",
    "ALL.Inquiry.BlockLimits": "SBC-4 6.6.4: the model has no Block Limits VPD page (B0h) and "
    "lists no SBC version descriptor",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_model(state_dir: Path, iqn: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    """``scsi-pr target serve`` on 127.0.0.1:``port``, listening when this returns."""
    argv = [sys.executable, "-m", "scsi_pr", "target", "serve", "--iqn", iqn, "--portal",
            f"127.0.0.1:{port}", "--state-dir", str(state_dir), "--size", "64M"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    wait_ready(proc, lambda: tcp_listening("127.0.0.1", port), START_QUIET,
               name="scsi-pr target serve", what=f"listen on port {port}",
               output=lambda: log.read_text()[-2000:])  # fmt: skip
    return proc


def run_suites(
    url: str, workdir: Path, quiet_limit: float, suites: Sequence[str] = SUITES
) -> dict[str, list[str]]:
    """Run ``suites`` against ``url``; each test's failed assertions (empty: passed).

    The deadline follows progress: CUnit writes each test's record to its XML report as the test
    ends, so the run is hung only when the report stops growing for ``quiet_limit`` seconds. Each
    growth is also a heartbeat for the VM tier's watchdog, which would otherwise see a test
    that is silent for the minutes the suites take under TCG on a busy machine."""
    workdir.mkdir(parents=True, exist_ok=True)
    report = workdir / "CUnitAutomated-Results.xml"
    log = workdir / "iscsi-test-cu.log"
    argv = [str(ISCSI_TEST_CU), "--dataloss", "--xml", "--test",
            ",".join(f"ALL.{s}" for s in suites), url]  # fmt: skip
    with log.open("wb") as out:
        run = run_watched(
            argv, quiet_limit=quiet_limit, progress_files=[report], out=out, cwd=workdir,
            on_progress=lambda what: heartbeat(f"libiscsi: {what}"),
        )  # fmt: skip
    tail = log.read_text(errors="replace")[-2000:]
    assert not run.hung, f"iscsi-test-cu {run.verdict} against {url}: {tail}"
    assert report.exists(), f"no CUnit report: {tail}"
    return outcomes(report)


def outcomes(report: Path) -> dict[str, list[str]]:
    """ALL.<suite>.<test> -> its failed assertions (empty: passed), from CUnit's XML."""
    out: dict[str, list[str]] = {}
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
