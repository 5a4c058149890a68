"""``prout_command``'s REGISTER AND MOVE parameter list: the UNREG and APTPL bits held byte
for byte to what the real sg_persist sends on the same device answers (``sg_persist_oracle``),
and the list for options without a TransportID."""

from __future__ import annotations

import struct

import pytest
from sg_persist_oracle import A, B, Oracle

from scsi_pr.helper.persist.build import prout_command
from scsi_pr.helper.persist.options import Options
from scsi_pr.sim.constants import PersistentReserveOutAction

SAS_B = "sas,5001405000000002"
SAS_B_TID = bytes([0x06, 0, 0, 0, 0x50, 0x01, 0x40, 0x50, 0, 0, 0, 0x02]) + bytes(12)


def move_list(flags: int, tid: bytes) -> bytes:
    """SPC-5 6.17.4: key 0xaa, service action key 0xee, relative target port 2."""
    return struct.pack(">QQxBHI", 0xAA, 0xEE, flags, 2, len(tid)) + tid


@pytest.mark.parametrize(
    ("extra", "params"),
    [
        (["-U", "-Z", "-X", SAS_B], move_list(0x03, SAS_B_TID)),
        (["-U", "-X", SAS_B], move_list(0x02, SAS_B_TID)),
        (["-Z", "-X", SAS_B], move_list(0x01, SAS_B_TID)),
        (["-X", SAS_B], move_list(0x00, SAS_B_TID)),
    ],
    ids=["unreg-aptpl", "unreg", "aptpl", "neither"],
)
def test_register_and_move_list(oracle: Oracle, extra: list[str], params: bytes) -> None:
    """-U and -Z set UNREG and APTPL of the list sg_persist sends (the CLI insists on one
    -X with -M)."""
    oracle.check(["-n", "-o", "-G", "-S", "aa"], A, code=0)
    oracle.check(["-n", "-o", "-R", "-T", "1", "-K", "aa"], A, code=0)
    argv = ["-n", "-o", "-M", "-K", "aa", "-S", "ee", "-Q", "2", "-T", "1", *extra]
    run = oracle.check(argv, A)
    cdb = bytes([0x5F, 0x07, 0x01, 0, 0, 0, 0, 0, len(params), 0])
    assert run.sent == cdb + params
    oracle.check(["-n", "-s"], B)


@pytest.mark.parametrize(
    ("unreg", "aptpl", "flags"),
    [(False, False, 0), (True, False, 2), (False, True, 1), (True, True, 3)],
)
def test_register_and_move_flags_in_process(unreg: bool, aptpl: bool, flags: int) -> None:
    """Options without a TransportID (the CLI never builds them; a caller of prout_command
    may): the list ends after its 24-byte header, TRANSPORTID PARAMETER DATA LENGTH 0."""
    op = Options(
        prout_sa=PersistentReserveOutAction.REGISTER_AND_MOVE,
        param_rk=0xAA,
        param_sark=0xEE,
        param_rtp=2,
        param_unreg=unreg,
        param_aptpl=aptpl,
    )
    assert prout_command(op)[1] == move_list(flags, b"")
