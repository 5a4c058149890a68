"""The real client end to end: a nested QEMU guest's sg_persist through each helper, on LIO.

Runs inside the LIO VM (``scsi-pr vm run``), once per CI run: the nested TCG guest takes a minute
to boot, so one guest runs the whole sequence once per helper (``scsi_pr.rig.guest_e2e``), and the
VM tier boots it on the host and saves it for this test to resume (``SCSI_PR_E2E_SAVED_GUEST``,
``rig/guest/snapshot.py``); without that variable the test boots its own. The C
``qemu-pr-helper`` goes first as the reference; ours must give the guest exactly the same
results, and both must match the values SPC-5 (with LIO's known deviations) gives for the
sequence. See docs/guest-e2e.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from needs import unavailable

from scsi_pr.rig.guest_e2e.driver import HELPERS, run, saved_guest_from_env
from scsi_pr.rig.guest_e2e.sequence import step_names

pytestmark = [pytest.mark.vm, pytest.mark.guest_e2e]


def test_guest_sees_the_same_through_both_helpers(tmp_path: Path) -> None:
    from scsi_pr.rig import lio

    try:
        lio.check_available()
    except lio.LioUnavailable as e:
        unavailable(f"needs the LIO VM: {e}")
    helpers = ["qemu-pr-helper", "scsi-pr-helper"]
    assert list(HELPERS) == helpers  # the reference first
    runs, differences = run(helpers, tmp_path, saved=saved_guest_from_env())
    assert [r.helper for r in runs] == helpers
    for r in runs:
        # every step of the round produced an exit status (guest steps and host steps)
        missing = [n for n in step_names() if r.observations[n].rc is None]
        assert not missing, f"{r.helper}: no result for {missing}; problems: {r.problems}"
        assert r.problems == [], f"{r.helper}:\n  " + "\n  ".join(r.problems)
    assert differences == [], "ours differs from qemu-pr-helper:\n  " + "\n  ".join(differences)
