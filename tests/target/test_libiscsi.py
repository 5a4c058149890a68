"""libiscsi's conformance suite (``iscsi-test-cu``, Debian libiscsi-bin) against ``scsi-pr target
serve``: a user-space initiator, so it runs on the host.

The PR suites of issue 11 and the SBC/iSCSI suites for the commands the model implements run
in one ``iscsi-test-cu -x`` call (``tests/libiscsi.py``); its CUnit XML report gives each test's
outcome. Every test must pass, except those in ``KNOWN_FAILURES`` (``tests/libiscsi.py``), each
with the clause that explains it; a known failure that starts passing fails this test too (take
it off the list), so the table stays true.
"""

from __future__ import annotations

import signal
from pathlib import Path

from libiscsi import (
    ISCSI_TEST_CU,
    KNOWN_FAILURES,
    free_port,
    listed_tests,
    run_suites,
    serve_model,
)
from needs import unavailable

TARGET = "iqn.2024-01.test.scsi-pr:libiscsi"
QUIET_LIMIT = 120  # seconds without a test ending (the whole run: about 30 s idle)


def test_libiscsi_pr_and_sbc_suites(tmp_path: Path) -> None:
    if not ISCSI_TEST_CU.exists():
        unavailable("iscsi-test-cu is missing: apt-get install libiscsi-bin")
    port = free_port()
    log = tmp_path / "target.log"
    proc = serve_model(tmp_path / "state", TARGET, port, log)
    try:
        results = run_suites(f"iscsi://127.0.0.1:{port}/{TARGET}/0", tmp_path, QUIET_LIMIT)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    target_log = log.read_text()
    assert code == 0 and "Traceback" not in target_log, target_log[-4000:]
    failed = {t: why for t, why in results.items() if why}
    unexpected = {t: why[:3] for t, why in failed.items() if t not in KNOWN_FAILURES}
    assert not unexpected, f"libiscsi tests failing: {unexpected}"
    fixed = sorted(set(KNOWN_FAILURES) - set(failed))
    assert not fixed, f"known failures now pass, take them off KNOWN_FAILURES: {fixed}"
    missing = sorted(listed_tests() - set(results))
    assert not missing, f"tests that did not run: {missing}"
    passed = sum(1 for why in results.values() if not why)
    assert passed >= 90 and any(t.startswith("ALL.Prout") for t in results), passed
