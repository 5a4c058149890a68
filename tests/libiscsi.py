"""What the libiscsi tests share beyond the runner (``scsi_pr.rig.libiscsi``): the tests the
model is known to fail, each with the clause that says why.

Used by the host test against ``scsi-pr target serve`` (tests/target/test_libiscsi.py) and the
VM test that compares LIO's own iSCSI target with ours (tests/vm/test_iscsi_initiators.py).
"""

from __future__ import annotations

#: test -> why the model fails it, by the clause that says the model is right or what it lacks
KNOWN_FAILURES = {
    "ALL.Inquiry.Standard": "SPC-5 6.7.2: VERSION 07h claims SPC-5; libiscsi 1.19 accepts only "
    "04h-06h (SPC-2..SPC-4)",
    "ALL.Inquiry.BlockLimits": "SBC-4 6.6.4: the model has no Block Limits VPD page (B0h) and "
    "lists no SBC version descriptor",
}
