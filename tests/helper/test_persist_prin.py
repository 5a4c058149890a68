"""sg_persist's PR IN printing (``helper.persist.prin`` and the service actions' printers) on
device answers the model never gives: lengths that are zero, negative, too large for the
allocation length or cut short, odd REPORT CAPABILITIES lengths, every ``-H`` depth. Each is
answered to both programs by the same bytes; the real sg_persist is the authority."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from sg_persist_oracle import answering

from scsi_pr.helper.persist.read_full_status import format_full_status
from scsi_pr.sim.constants import Status
from scsi_pr.sim.result import CommandResult


def good(data: bytes) -> CommandResult:
    """GOOD with ``data``."""
    return CommandResult(Status.GOOD, b"", data)


#: forty keys after the header: every length below that is inside what the device sends
KEYS = b"".join(struct.pack(">Q", 0x1111 * k + ((k % 16) << 60)) for k in range(40))
COMMON = ["-k", "-r", "-s", "-k -H", "-k -HH", "-k -HHH", "-r -H", "-s -H", "-k -v", "-s -v"]
#: (ADDITIONAL LENGTH, command lines): zero, within the keys, all of them, negative to
#: sg_persist's int, larger than the allocation length. sg_persist never reads past the bytes
#: it received in these (where it does, it prints its heap; docs/persist.md), so ``-HH`` with
#: ``-l`` only where the header and the length fit in the allocation length (``-l`` is hex:
#: ``-l 20`` is 32 bytes).
HEADERS = [
    (0, [*COMMON, "-k -H -l 8", "-k -HH -l 8", "-k -HHH -l 20"]),
    (8, [*COMMON, "-k -H -l 20", "-k -HH -l 20", "-k -H -l 8"]),
    (1, ["-k -H", "-r -H", "-k", "-s"]),
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
    oracle = answering(shim, tmp_path, good(struct.pack(">II", generation, length) + KEYS))
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
    oracle = answering(shim, tmp_path, good(bytes.fromhex(data)))
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
    oracle = answering(shim, tmp_path, good(struct.pack(">II", 3, len(descriptor)) + descriptor))
    for argv in (["-n", "-r"], ["-n", "-r", "-v"], ["-n", "-r", "-H"]):
        oracle.check(argv)


#: REPORT CAPABILITIES with one bit of byte 2 or byte 3 set at a time: each flag is read from
#: its own bit of its own byte
SINGLE_BITS = [f"0008{1 << bit:02x}00" + "0000" for bit in range(8)] + [
    f"000800{1 << bit:02x}" + "0000" for bit in range(8)
]


@pytest.mark.parametrize("data", SINGLE_BITS)
def test_each_capability_bit_prints_alone(shim: Path, tmp_path: Path, data: str) -> None:
    oracle = answering(shim, tmp_path, good(bytes.fromhex(data)))
    for argv in (["-n", "-c"], ["-n", "-c", "-v"]):
        oracle.check(argv, code=0)


@pytest.mark.parametrize("argv", [["-k"], ["-r"], ["-s"], ["-c"], ["-k", "-HH"], ["-c", "-H"]])
def test_an_allocation_length_of_zero(shim: Path, tmp_path: Path, argv: list[str]) -> None:
    """``-l 0``: the device sends nothing; both programs decode an empty (zeroed) buffer."""
    oracle = answering(shim, tmp_path, good(struct.pack(">II", 7, 24) + KEYS))
    oracle.check(["-n", *argv, "-l", "0"])


def full_status(*descriptors: bytes, add_len: int | None = None) -> bytes:
    body = b"".join(descriptors)
    return struct.pack(">II", 9, len(body) if add_len is None else add_len) + body


def descriptor(
    flags: int, scope_type: int, port: int, tid: bytes, desc_len: int | None = None
) -> bytes:
    """A READ FULL STATUS descriptor (SPC-5 6.16.5) with a chosen ADDITIONAL DESCRIPTOR LENGTH."""
    length = len(tid) if desc_len is None else desc_len & 0xFFFF_FFFF
    return struct.pack(">Q4xBB4xHI", 0xABC0 + flags, flags, scope_type, port, length) + tid


SAS = bytes([0x06, 0, 0, 0]) + (0x5001405000000007).to_bytes(8, "big") + bytes(12)
FULL_STATUS = [
    full_status(descriptor(0x01, 0x05, 0x0102, SAS), descriptor(0x00, 0x01, 0x0201, SAS)),
    full_status(descriptor(0x02, 0x03, 7, SAS), descriptor(0x03, 0x18, 0x1234, b"")),
    full_status(descriptor(0x00, 0x01, 3, b""), descriptor(0x01, 0x06, 4, SAS)),
    full_status(descriptor(0x01, 0x00, 3, b"")),
    full_status(descriptor(0x01, 0x05, 9, SAS), add_len=1),  # one descriptor all the same
    full_status(descriptor(0x00, 0x01, 9, b"\x06", desc_len=1)),  # a 1-byte TransportID
]


@pytest.mark.parametrize("data", FULL_STATUS)
def test_full_status_descriptors_print_as_sg_persist_prints_them(
    shim: Path, tmp_path: Path, data: bytes
) -> None:
    oracle = answering(shim, tmp_path, good(data + bytes(64)))
    for argv in (["-n", "-s"], ["-n", "-s", "-v"]):
        oracle.check(argv, code=0)


@pytest.mark.parametrize("desc_len", [-1, -23, -24, -25, -(1 << 31)])
def test_a_descriptor_of_negative_length_ends_the_list(desc_len: int) -> None:
    """An ADDITIONAL DESCRIPTOR LENGTH below zero: sg_persist crashes (-23 measured: SIGSEGV)
    or loops for ever (-24: the next descriptor starts where this one does); scsi-pr persist
    prints that descriptor and stops."""
    data = full_status(descriptor(0x00, 0x01, 3, b"", desc_len), descriptor(1, 1, 4, b""))
    text = format_full_status(9, 48, data + bytes(64), 0)
    assert text.count("Key=0x") == 1 and "Key=0xabc0\n" in text


@pytest.mark.parametrize(
    ("argv", "add_len"), [(["-k"], 24), (["-r"], 16), (["-s"], 48), (["-k", "-HH"], 24)]
)
def test_bytes_the_device_did_not_send_read_as_zeros(
    shim: Path, tmp_path: Path, argv: list[str], add_len: int
) -> None:
    """A response cut by ``-l 14`` (hex: 20 bytes): what lies past them reads as zeros (sg_persist
    reads its heap there: docs/persist.md), so the text is sg_persist's own for a complete
    response whose missing bytes are zeros."""
    complete = struct.pack(">II", 7, add_len) + KEYS[:12] + bytes(add_len - 12)
    oracle = answering(shim, tmp_path, good(complete))
    expected = oracle.check(["-n", *argv], code=0).stdout
    mine, _ = oracle.both(["-n", *argv, "-l", "14"])
    assert (mine.code, mine.stdout) == (0, expected)
