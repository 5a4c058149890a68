"""``scope_type_text``: the SCOPE nibble sg_persist prints as a number when it is not
LU_SCOPE, in READ RESERVATION and READ FULL STATUS, held to the real sg_persist on the same
answers (``sg_persist_oracle``) and to the exact line."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from sg_persist_oracle import answering, full_status_descriptor

from scsi_pr.helper.persist.pr_type import scope_type_text
from scsi_pr.sim.constants import Status
from scsi_pr.sim.result import CommandResult
from scsi_pr.sim.transportid import TransportId

SCOPE_TYPES = [0x01, 0x05, 0x13, 0x35, 0xF8, 0x2F]


@pytest.mark.parametrize(
    ("byte", "line"),
    [
        (0x01, "scope: LU_SCOPE,  type: Write Exclusive\n"),
        (0x13, "scope: 1  type: Exclusive Access\n"),
        (0x35, "scope: 3  type: Write Exclusive, registrants only\n"),
        (0xF8, "scope: 15  type: Exclusive Access, all registrants\n"),
        (0x2F, "scope: 2  type: obsolete [0xf]\n"),
    ],
)
def test_scope_type_line(byte: int, line: str) -> None:
    """SCOPE is the high nibble, TYPE the low one; only SCOPE 0 has a name."""
    assert scope_type_text(byte) == line


def reservation(scope_type: int) -> bytes:
    """READ RESERVATION data with one reservation of key 0xabc."""
    return struct.pack(">IIQ4xBB2x", 3, 16, 0xABC, 0, scope_type)


def full_status(scope_type: int) -> bytes:
    """READ FULL STATUS data: one holder (R_HOLDER) with a SAS TransportID."""
    tid = TransportId.sas(0x5001405000000009).encode()
    body = full_status_descriptor(0xABC, 0x01, scope_type, 1, tid)
    return struct.pack(">II", 4, len(body)) + body


@pytest.mark.parametrize("scope_type", SCOPE_TYPES, ids=hex)
@pytest.mark.parametrize(
    ("argv", "answer"),
    [(["-n", "-r"], reservation), (["-n", "-s"], full_status)],
    ids=["read-reservation", "read-full-status"],
)
def test_scope_in_decoded_responses(
    shim: Path, tmp_path: Path, argv: list[str], answer: Callable[[int], bytes], scope_type: int
) -> None:
    """Both decoders print the SCOPE/TYPE byte as sg_persist does, whatever the scope."""
    data = answer(scope_type)
    run = answering(shim, tmp_path, CommandResult(Status.GOOD, b"", data)).check(argv, code=0)
    assert scope_type_text(scope_type).rstrip("\n") in run.stdout
