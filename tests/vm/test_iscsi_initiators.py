"""Real initiators against ``scsi-pr target serve`` in the VM (root, a kernel with iSCSI).

* The Linux kernel's initiator (open-iscsi, ``scsi_pr.rig.iscsi_rig``) logs in twice with two
  initiator names, and real ``sg_persist`` registers, reserves and reads through both sessions:
  two I_T nexuses of the model, named by iSCSI TransportIDs.
* libiscsi's ``iscsi-test-cu`` runs the PR and SBC suites against LIO's own iSCSI target on a
  ramdisk (the reference) and against ours: ours must pass at least as many, and every test LIO
  passes but the model's listed known failures. Ours runs on the host beside the VM when the VM
  tier recorded it there (``scsi_pr.rig.libiscsi``), else here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from libiscsi import KNOWN_FAILURES
from needs import unavailable
from sg3 import sg_persist

from scsi_pr.helper.lu_identity import identify_path
from scsi_pr.rig.libiscsi import (
    ENV_RECORD,
    ISCSI_TEST_CU,
    SUITES,
    OursRun,
    run_ours,
    run_suites,
    wait_record,
)
from scsi_pr.rig.lio_iscsi import IQN as LIO_IQN
from scsi_pr.rig.lio_iscsi import LioIscsiTarget
from scsi_pr.rig.processes import free_port

pytestmark = pytest.mark.vm
QUIET_LIMIT = 180  # seconds without a test ending; below the main phase's own quiet limit


def test_real_sg_persist_through_two_kernel_sessions() -> None:
    from scsi_pr.rig import iscsi_rig

    try:
        rig = iscsi_rig.shared(2)
    except iscsi_rig.IscsiUnavailable as e:
        unavailable(f"needs the VM's kernel initiator: {e}")
    if shutil.which("sg_persist") is None:
        unavailable("sg_persist is missing: apt-get install sg3-utils")
    rig.lus.forget(identify_path(rig.image)[0])
    log_start = rig.target_log_size()
    a, b = rig.ports[:2]
    sg_persist("--out", "--register", "--param-sark=a1", a.sg)
    sg_persist("--out", "--register", "--param-sark=b2", b.sg)
    sg_persist("--out", "--reserve", "--param-rk=a1", "--prout-type=1", a.sg)
    keys = sg_persist("--in", "--read-keys", b.sg)
    assert "0xa1" in keys and "0xb2" in keys
    reservation = sg_persist("--in", "--read-reservation", b.sg)
    assert "key=0xa1" in reservation and "write exclusive" in reservation
    status = sg_persist("--in", "--read-full-status", b.sg)
    for port in (a, b):  # each session is its own initiator port: name and ISID
        assert f"{port.name},i,0x{port.isid}" in status
    sg_persist("--out", "--clear", "--param-rk=a1", a.sg)
    preempted = subprocess.run(["sg_persist", "--in", "-k", b.sg], capture_output=True, text=True)
    answer = (preempted.stdout + preempted.stderr).lower()
    # SPC-5 5.14.11: the UA CLEAR leaves for b (the target's trace names any other taker)
    assert "reservations preempted" in answer, rig.target_log_since(log_start)
    assert "there are no registered reservation keys" in sg_persist("--in", "-k", b.sg)


def _ours(tmp_path: Path) -> OursRun:
    """Ours under the same suites: the host's record when the VM tier made one (scripts/vm-tier
    runs it beside the VM: 25x faster than under TCG), else a run here, in the VM."""
    shared = os.environ.get(ENV_RECORD)
    if shared:
        return wait_record(Path(shared), QUIET_LIMIT)
    return run_ours(tmp_path / "ours", QUIET_LIMIT)


def test_libiscsi_reference_count_lio_and_ours(tmp_path: Path) -> None:
    from scsi_pr.rig import lio

    try:
        lio.check_available()
    except lio.LioUnavailable as e:
        unavailable(f"needs the LIO VM: {e}")
    if not ISCSI_TEST_CU.exists():
        unavailable("iscsi-test-cu is missing: apt-get install libiscsi-bin")
    lio_port = free_port()
    subprocess.run(["ip", "link", "set", "lo", "up"], capture_output=True)
    reference_target = LioIscsiTarget(lio_port)
    try:
        url = f"iscsi://127.0.0.1:{lio_port}/{LIO_IQN}/0"
        reference = run_suites(url, tmp_path / "lio", QUIET_LIMIT, SUITES)
    finally:
        reference_target.delete()
    run = _ours(tmp_path)
    assert run.target_exit == 0 and "Traceback" not in run.target_log, run.target_log
    ours = run.outcomes
    assert sorted(ours) == sorted(reference), "ours ran other tests than LIO"
    passed = {name: {t for t, why in r.items() if not why} for name, r in
              (("lio", reference), ("ours", ours))}  # fmt: skip
    lines = [f"{name}: {len(p)} of {len(r)} passed" for (name, p), r in
             zip(passed.items(), (reference, ours), strict=True)]  # fmt: skip
    lines += [f"LIO fails {t}: {reference[t][:1]}" for t in sorted(reference) if reference[t]]
    (tmp_path / "reference.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    assert len(passed["ours"]) >= len(passed["lio"]), "\n".join(lines)
    behind = passed["lio"] - passed["ours"] - set(KNOWN_FAILURES)
    assert not behind, f"LIO passes, ours fails (and they are not known failures): {behind}"
