"""rig/kmsg.py: telling LIO's broken PR reference count from the kernel log (the trace below is
the one measured in the VM on Debian 12's 6.1), without a kernel."""

from __future__ import annotations

from pathlib import Path

from scsi_pr.rig import kmsg

MEASURED = [
    "------------[ cut here ]------------",
    "refcount_t: addition on 0; use-after-free.",
    "WARNING: CPU: 1 PID: 22 at lib/refcount.c:25 refcount_warn_saturate+0x97/0x110",
    "Workqueue: target_submission target_queued_submit_work [target_core_mod]",
    "Call Trace:",
    " <TASK>",
    " core_get_se_deve_from_rtpi+0xa1/0xb0 [target_core_mod]",
    " core_scsi3_emulate_pro_register_and_move+0x32d/0x830 [target_core_mod]",
    " </TASK>",
]


def test_a_refcount_warning_in_lio_is_found_with_its_first_lio_frame() -> None:
    faults = kmsg.lio_refcount_faults(MEASURED)
    assert faults == [
        "refcount_t: addition on 0; use-after-free. in "
        "core_get_se_deve_from_rtpi+0xa1/0xb0 [target_core_mod]"
    ]


def test_a_refcount_warning_elsewhere_is_not_lios() -> None:
    other = [line.replace("[target_core_mod]", "[ext4]") for line in MEASURED]
    assert kmsg.lio_refcount_faults(other) == []
    far = MEASURED[:2] + ["x"] * kmsg.TRACE_RECORDS + MEASURED[6:]
    assert kmsg.lio_refcount_faults(far) == [], "a frame beyond the trace is not its own"


def test_records_parse_the_kmsg_format(tmp_path: Path) -> None:
    assert kmsg.parse(b"4,1234,5678,-;refcount_t: underflow\n SUBSYSTEM=x\n") == (
        "refcount_t: underflow"
    )
    assert kmsg.parse(b"garbage") is None
    assert kmsg.parse(b"4,x,5;text") is None


def test_records_read_a_file_to_its_end_and_tolerate_a_missing_log(tmp_path: Path) -> None:
    # a regular file gives one read of everything: the first record only, as kmsg gives one per
    # read; a missing log gives nothing
    path = tmp_path / "kmsg"
    path.write_bytes(b"6,7,0,-;hello")
    assert list(kmsg.records(str(path))) == ["hello"]
    assert list(kmsg.records(str(tmp_path / "missing"))) == []
