"""sg_persist's PR IN printing (``helper.persist.prin`` and the service actions' printers) on
device answers the model never gives: lengths that are zero, negative, too large for the
allocation length or cut short, odd REPORT CAPABILITIES lengths, every ``-H`` depth. Each is
answered to both programs by the same bytes; the real sg_persist is the authority."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from sg_persist_oracle import Oracle

from scsi_pr.sim.constants import Status
from scsi_pr.sim.device import LogicalUnit
from scsi_pr.sim.faults import Fail
from scsi_pr.sim.result import CommandResult


def answered(data: bytes, shim: Path, tmp_path: Path) -> Oracle:
    """An oracle whose LU answers every command GOOD with ``data``."""
    lu = LogicalUnit(fault=lambda nexus, cdb: Fail(CommandResult(Status.GOOD, b"", data)))
    return Oracle(shim, tmp_path, lu)


#: forty keys after the header: every length below that is inside what the device sends
KEYS = b"".join(struct.pack(">Q", 0x1111 * k + ((k % 16) << 60)) for k in range(40))
COMMON = ["-k", "-r", "-s", "-k -H", "-k -HH", "-k -HHH", "-r -H", "-s -H", "-k -v", "-s -v"]
#: (ADDITIONAL LENGTH, command lines): zero, within the keys, all of them, negative to
#: sg_persist's int, larger than the allocation length. sg_persist never reads past the bytes
#: it received in these (where it does, it prints its heap; docs/persist.md), so ``-HH`` with
#: ``-l`` only where the header and the length fit in the allocation length.
HEADERS = [
    (0, [*COMMON, "-k -H -l 8", "-k -HH -l 8", "-k -HHH -l 20"]),
    (8, [*COMMON, "-k -H -l 20", "-k -HH -l 20", "-k -H -l 8"]),
    (24, [*COMMON, "-k -H -l 20", "-r -H -l 18"]),
    (320, [*COMMON, "-k -H -l 20", "-s -H -l 200"]),
    (0xFFFF_FFF0, [*COMMON, "-k -H -l 20", "-k -HH -l 20", "-k -HHH -l 8"]),
    (0x8000_0000, [*COMMON, "-k -H -l 20"]),
    (5000, ["-k -H -l 20", "-k -H -l 8", "-r -H -l 20", "-s -H -l 200"]),
]


@pytest.mark.parametrize("generation", [7, 0xFFFF_FFFF])
@pytest.mark.parametrize(("length", "argvs"), HEADERS)
def test_pr_in_headers_print_as_sg_persist_prints_them(
    shim: Path, tmp_path: Path, generation: int, length: int, argvs: list[str]
) -> None:
    oracle = answered(struct.pack(">II", generation, length) + KEYS, shim, tmp_path)
    for argv in argvs:
        oracle.check(["-n", *argv.split()], code=0)


#: REPORT CAPABILITIES answers: a length other than 8 (short, long, zero), every flag set
CAPABILITIES = [
    "0008ffffffff0000", "00089d91ea010000", "0008000000000000", "0006ffff00000000",
    "000c8d01ffffffff0000", "0000", "00ff", "0008",
]  # fmt: skip


@pytest.mark.parametrize("data", CAPABILITIES)
def test_report_capabilities_answers_print_as_sg_persist_prints_them(
    shim: Path, tmp_path: Path, data: str
) -> None:
    oracle = answered(bytes.fromhex(data), shim, tmp_path)
    for argv in (["-n", "-c"], ["-n", "-c", "-H"], ["-n", "-c", "-v"], ["-n", "-c", "-HH"]):
        oracle.check(argv)


def reservation(key: int, scope_type: int) -> bytes:
    """A READ RESERVATION descriptor (SPC-5 6.16.3): key, obsolete, reserved, SCOPE/TYPE."""
    return struct.pack(">Q4xxBxx", key, scope_type)


@pytest.mark.parametrize("scope_type", [0x01, 0x03, 0x05, 0x06, 0x07, 0x08, 0x00, 0x0F, 0x15])
def test_read_reservation_scopes_and_types_print_as_sg_persist_prints_them(
    shim: Path, tmp_path: Path, scope_type: int
) -> None:
    descriptor = reservation(0xABCD, scope_type)
    oracle = answered(struct.pack(">II", 3, len(descriptor)) + descriptor, shim, tmp_path)
    for argv in (["-n", "-r"], ["-n", "-r", "-v"], ["-n", "-r", "-H"]):
        oracle.check(argv)
