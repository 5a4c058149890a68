"""``scsi-pr persist`` against the real sg_persist, byte for byte, on the same device answers.

The real ``/usr/bin/sg_persist`` runs on the answers our front end got from a simulated LU
(``sg_persist_oracle``: an LD_PRELOAD shim answers its SG_IO from files). The two must print
the same stdout and stderr, exit with the same status and put the same bytes in the CDB and
parameter list. Steps run in sequence on one LU, so conflicts,
unit attentions and preemptions come from the model, not from hand-made bytes.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from sg_persist_oracle import A, B, Oracle, answering, fixed_sense, full_status_descriptor

from scsi_pr.sim.constants import Status
from scsi_pr.sim.result import CommandResult
from scsi_pr.sim.transportid import TransportId

PRIN_VIEWS = [
    ["-n", "-k"], ["-n", "-r"], ["-n", "-s"], ["-n", "-c"], ["-n", "-i", "-k", "-H"],
    ["-n", "-k", "-HH"], ["-n", "-k", "-HHH"], ["-n", "-r", "-H"], ["-n", "-s", "-H"],
    ["-n", "-c", "-H"], ["-n", "-s", "-v"], ["-n", "-k", "-v"], ["-n", "-k", "-vv"],
    ["-n", "-s", "-vvv"], ["-n", "--read-full-status"], ["--no-inquiry", "--read-keys"],
    ["-n", "-k", "-l", "1c"], ["-n", "-k", "-m", "64"], ["-n", "-s", "-l", "200"],
    ["-n", "-r", "-m", "0x18"], ["-n", "-k", "-y"], ["-nik"], ["-n", "-s", "-HH"],
    ["-n", "-r", "-HHH"], ["-n", "-c", "-HH"], ["-n", "-s", "-HHH", "-vvv"],
]  # fmt: skip
# Allocation lengths that cut a response short are left out: sg_persist then decodes past its
# buffer (heap bytes it never received); we decode zeros there (tests/helper/test_persist_sim.py).


def test_empty_lu_views(oracle: Oracle) -> None:
    for argv in PRIN_VIEWS:
        oracle.check(argv, code=0)


def test_fence_scsi_sequence_and_conflicts(oracle: Oracle) -> None:
    """fence_scsi's own command lines (agents/scsi/fence_scsi.py), then every view."""
    oracle.check(["-n", "-o", "-I", "-S", "123abc", "-d"], A, code=0)
    oracle.check(["-n", "-o", "-I", "-S", "0x456def", "-v", "-d"], B, code=0)
    oracle.check(["-n", "-o", "-R", "-T", "5", "-K", "123abc", "-d"], A, code=0)
    for argv in PRIN_VIEWS:
        oracle.check(argv, A, code=0)
    # B is registered but not the holder: RESERVE of another type conflicts
    oracle.check(["-n", "-o", "-R", "-T", "1", "-K", "456def", "-d"], B, code=24)
    oracle.check(["-n", "-o", "-R", "-T", "1", "-K", "456def", "-v", "-d"], B, code=24)
    # a key B does not hold: RESERVATION CONFLICT too
    oracle.check(["-n", "-o", "-G", "-K", "999", "-S", "1", "-d"], B, code=24)
    # fence A off: PREEMPT AND ABORT its key
    oracle.check(["-n", "-o", "-A", "-T", "5", "-K", "456def", "-S", "123abc", "-d"], B, code=0)
    # A's next command reports REGISTRATIONS PREEMPTED (noisy, exit 6), then A is gone
    oracle.check(["-n", "-i", "-k", "-d"], A, code=6)
    oracle.check(["-n", "-i", "-r", "-d"], A, code=0)
    oracle.check(["-n", "-o", "-R", "-T", "5", "-K", "123abc", "-d"], A, code=24)
    for argv in PRIN_VIEWS:
        oracle.check(argv, B, code=0)


def test_preempt(oracle: Oracle) -> None:
    oracle.check(["-n", "-o", "-G", "-S", "aa"], A, code=0)
    oracle.check(["--no-inquiry", "--out", "--register", "--param-sark=bb"], B, code=0)
    oracle.check(["-n", "-o", "-R", "-T", "3", "-K", "aa"], A, code=0)
    oracle.check(["-n", "-k"], B, code=0)  # PR IN is allowed under EXCLUSIVE ACCESS
    oracle.check(["-n", "-o", "--preempt", "--prout-type=3", "--param-rk=bb", "--param-sark=aa"],
                 B, code=0)  # fmt: skip
    oracle.check(["-n", "-r"], A, code=6)
    oracle.check(["-n", "-r"], A, code=0)
    oracle.check(["-n", "-o", "-R", "-T", "3", "-K", "aa"], A, code=24)
    oracle.check(["-n", "-s"], B, code=0)


def test_unit_attention_after_power_cycle(oracle: Oracle) -> None:
    oracle.check(["-n", "-o", "-G", "-S", "1", "-Z"], A, code=0)
    oracle.lu.power_loss()
    oracle.lu.power_on()
    oracle.check(["-n", "-k"], A, code=6)
    oracle.check(["-n", "-k", "-vv"], B, code=6)
    oracle.check(["-n", "-c"], A, code=0)  # APTPL kept the registration: PTPL_A set
    oracle.check(["-n", "-s"], A, code=0)


def test_illegal_requests(oracle: Oracle) -> None:
    oracle.check(["-n", "-o", "-G", "-S", "aa"], A, code=0)
    for verbose in ([], ["-v"], ["-vv"]):
        oracle.check(["-n", "-o", "-R", "-T", "2", "-K", "aa", *verbose], A, code=5)
    oracle.check(["-n", "-o", "-R", "-K", "aa"], A)  # type 0: warning, then the device's answer
    oracle.check(["-n", "-o", "-z", "-S", "ab", "-T", "5"], A)
    oracle.check(["-n", "-o", "-L", "-T", "5", "-K", "aa"], A, code=0)


def test_release_clear_and_all_target_ports(oracle: Oracle) -> None:
    oracle.check(["-n", "-o", "-G", "-S", "aa", "-Y"], A, code=0)
    oracle.check(["-n", "-o", "-I", "-S", "bb"], B, code=0)
    oracle.check(["-n", "-o", "-R", "-T", "7", "-K", "aa"], A, code=0)
    oracle.check(["-n", "-s"], B, code=0)
    oracle.check(["-n", "-r"], B, code=0)
    oracle.check(["-n", "-o", "-L", "-T", "7", "-K", "bb"], B, code=0)
    # releasing an all-registrants reservation is a RESERVATIONS RELEASED unit attention for A
    oracle.check(["-n", "-o", "-C", "-K", "aa"], A, code=6)
    oracle.check(["-n", "-o", "-C", "-K", "aa"], A, code=0)
    oracle.check(["-n", "-k"], B, code=6)
    oracle.check(["-n", "-k"], B, code=0)


def test_transport_ids_and_register_and_move(oracle: Oracle) -> None:
    oracle.check(["-n", "-o", "-G", "-S", "aa", "-X", "sas,5001405000000002", "-vv"], A)
    oracle.check(["-n", "-s", "-vvv"], A)
    oracle.check(["-n", "-o", "-G", "-S", "cc", "-X", "iqn.2003-01.org.example:x,i,0x1234"], A)
    oracle.check(["-n", "-o", "-G", "-S", "dd", "-X", "fcp,10000000c9f3a571"], A)
    oracle.check(["-n", "-o", "-R", "-T", "1", "-K", "aa"], A)
    oracle.check(["-n", "-o", "-M", "-K", "aa", "-S", "ee", "-T", "1", "-Q", "2", "-X",
                  "sas,5001405000000002", "-vv"], A)  # fmt: skip
    oracle.check(["-n", "-s"], B, code=0)
    oracle.check(["-n", "-r", "-v"], B, code=0)


def test_full_status_transport_id_decoding(shim: Path, tmp_path: Path) -> None:
    """Protocols the SAS-only model never reports, answered by the fault hook: FC, iSCSI in
    both formats, SAS with ALL_TG_PT, SOP, an unknown protocol and a short TransportID."""
    fc = TransportId.fibre_channel(0x10000000C9F3A571).encode()
    iscsi_device = TransportId.iscsi("iqn.2003-01.org.example:a").encode()
    iscsi_port = TransportId.iscsi("iqn.x", 0x23D000000001).encode()
    descriptors = [
        full_status_descriptor(0x11, 0x01, 0x05, 1, fc),
        full_status_descriptor(0x22, 0x00, 0x00, 2, iscsi_device),
        full_status_descriptor(0x33, 0x02, 0x00, 0, iscsi_port),
        full_status_descriptor(0x44, 0x02, 0x00, 0, TransportId.sas(0x5001405000000009).encode()),
        full_status_descriptor(0x55, 0x00, 0x00, 3, bytes([0x0A, 0, 0x12, 0x34]) + bytes(20)),
        full_status_descriptor(0x66, 0x00, 0x00, 4, bytes([0x4C]) + bytes(range(1, 24))),
        full_status_descriptor(0x77, 0x00, 0x00, 5, bytes([0x01, 0, 0, 7, 0, 0, 0, 9]) + bytes(16)),
        full_status_descriptor(0x88, 0x00, 0x00, 6, bytes([0x06]) + bytes(19)),
    ]
    body = b"".join(descriptors)
    data = struct.pack(">II", 7, len(body)) + body
    oracle = answering(shim, tmp_path, CommandResult(Status.GOOD, b"", data))
    for argv in (["-n", "-s"], ["-n", "-s", "-v"], ["-n", "-s", "-H"], ["-n", "-k"], ["-n", "-r"]):
        oracle.check(argv, code=0)
    decoded = oracle.check(["-n", "-s"]).stdout
    for text in (
        "FCP-2 World Wide Name:\n      10 00 00 00 c9 f3 a5 71\n",
        "iSCSI name: iqn.2003-01.org.example:a\n",
        "iSCSI world wide unique port id: iqn.x,i,0x23d000000001\n",
        "All target ports bit set",
        "SAS address: 0x5001405000000009",
        "SOP Routing ID: 0x1234",
        "unknown protocol id=0xc",
        "Transport Id short or not multiple of 4 [length=1024]",
        "Parallel SCSI initiator SCSI address: 0x7",
    ):
        assert text in decoded


@pytest.mark.parametrize(
    "result",
    [
        CommandResult(Status.BUSY),
        CommandResult(Status.TASK_SET_FULL),
        CommandResult(Status.TASK_ABORTED),
        CommandResult(Status.ACA_ACTIVE),
        CommandResult(0x10),  # an obsolete status sg3_utils does not map: it "succeeds"
        CommandResult(Status.CHECK_CONDITION),  # CHECK CONDITION without sense
        CommandResult(Status.CHECK_CONDITION, bytes([0x72, 0x06, 0x29, 0x07, 0, 0, 0, 0])),
        CommandResult(
            Status.CHECK_CONDITION,
            fixed_sense(0x03, 0x11, 0x00, code=0xF1, info=9, fru=4, specific=(0x80, 0, 2)),
        ),
        CommandResult(
            Status.CHECK_CONDITION, fixed_sense(0x02, 0x04, 0x01, specific=(0x80, 0x40, 0))
        ),
        CommandResult(Status.CHECK_CONDITION, fixed_sense(0x05, 0x20, 0x00, specific=(0xC0, 0, 0))),
        CommandResult(Status.CHECK_CONDITION, fixed_sense(0x0B, 0x08, 0x00)),
        CommandResult(Status.CHECK_CONDITION, fixed_sense(0x01, 0x0B, 0x00)),
        CommandResult(Status.CHECK_CONDITION, bytes([0x01, 2, 3, 4, 5])),
        CommandResult(Status.GOOD, b"", bytes(8)),  # REPORT CAPABILITIES with a bad length
    ],
    ids=lambda r: f"{int(r.status):02x}-{r.sense.hex()[:8]}",
)
@pytest.mark.parametrize("argv", [["-n", "-c"], ["-n", "-c", "-H"], ["-n", "-o", "-G", "-vv"]])
def test_device_failures(
    shim: Path, tmp_path: Path, result: CommandResult, argv: list[str]
) -> None:
    answering(shim, tmp_path, result).check(argv)
