"""``helper/persist/sense.py`` in process: the text, exit category and length of sense data.

sg_persist reports a CHECK CONDITION with ``sg_get_sense_str`` and exits with the status
``sg_err_category_sense`` picks; ``scsi-pr persist`` must print and return exactly the same.
Where sg3_utils' own ``sg_decode_sense`` prints the same text (it is ``sg_get_sense_str`` plus
one trailing newline, and ``-v`` adds the raw dump), each buffer is compared with it; the exit
category, the header parse and the derived sense length have no such tool, so they are
asserted as exact values read from sg_lib.c. The buffers sit at the bounds the code tests
(lengths, bit masks, response codes), so that mutation testing sees each of them matter.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from scsi_pr.helper.persist.exit_codes import Exit
from scsi_pr.helper.persist.sense import (
    SENSE_KEY_TEXT,
    SenseHeader,
    asc_text,
    sense_category,
    sense_length,
    sense_text,
)

SG_DECODE_SENSE = shutil.which("sg_decode_sense")


def _fixed(key: int, asc: int = 0, ascq: int = 0, b15: int = 0, field: int = 0) -> str:
    """18 bytes of fixed current sense (ADDITIONAL SENSE LENGTH 10), as hex."""
    sense = bytes([0x70, 0, key, 0, 0, 0, 0, 10, 0, 0, 0, 0, asc, ascq, 0, b15])
    return (sense + field.to_bytes(2, "big")).hex()


# Buffers whose text sg_decode_sense prints identically (hex, no spaces).
ORACLE_CASES = [
    # every sense key, in fixed and descriptor layouts
    *(_fixed(key, 0x00, 0x00) for key in range(16)),
    *(f"72{key:02x}2400000000000000" for key in range(16)),
    # response codes: fixed/descriptor, current/deferred, VALID bit set
    "7100060000000000000000002900",
    "730629000000000000",
    "f0000500000000000a00000024000000000000",
    # ASC/ASCQ: known, unknown, vendor specific ASC, vendor specific ASCQ, at 0x7f/0x80
    _fixed(7, 0x80, 0x00),
    _fixed(7, 0x01, 0x80),
    _fixed(7, 0x7F, 0x7F),
    _fixed(7, 0x7F, 0x00),
    _fixed(5, 0x26, 0x04),
    # sense key specific: field pointer (command/data, bit pointer), byte 18 beyond it
    _fixed(5, 0x24, 0x00, 0x81, 0x0203) + "00",
    _fixed(5, 0x24, 0x00, 0xCB, 0x0203) + "00",
    _fixed(5, 0x24, 0x00, 0xC0, 0x0203) + "ff",
    _fixed(5, 0x24, 0x00, 0x80, 0x0203),
    # progress indication, retry count, segment pointer, unit attention queue overflow
    _fixed(2, 0x04, 0x00, 0x80, 0x028A),
    _fixed(0, 0x00, 0x00, 0x80, 0xFFFF),
    _fixed(0, 0x00, 0x00, 0x80, 0x0A3E),
    _fixed(3, 0x11, 0x00, 0x80, 0x0012),
    _fixed(4, 0x44, 0x00, 0x80, 0x0012),
    _fixed(1, 0x00, 0x00, 0x80, 0x0012),
    _fixed(10, 0x00, 0x00, 0x80, 0x0A3E),
    _fixed(10, 0x00, 0x00, 0x81, 0x0A3E),
    _fixed(10, 0x00, 0x00, 0xA1, 0x0A3E),
    _fixed(10, 0x00, 0x00, 0xAD, 0x0A3E),
    _fixed(10, 0x00, 0x00, 0x89, 0x0A3E),
    _fixed(6, 0x29, 0x00, 0x81),
    _fixed(6, 0x29, 0x00, 0x83),
    _fixed(6, 0x29, 0x00, 0x80),
    _fixed(6, 0x29, 0x00, 0x01),
    _fixed(11, 0x00, 0x00, 0x80),
    # not SPC sense: too short, SCSI-1 (with and without AdValid), vendor specific 7fh
    "010203",
    "0102030405",
    "e5ff123456",
    "7f0102030405060708090a0b0c0d0e0f101112",
    "017f0203",
    "740000000000000a",
    # descriptor: short buffers, SDAT_OVFL in byte 4, padded raw dump
    "720524000000000a",
    "7205240080",
    "7205240001",
    "7205240000",
    "72",
    "72052400",
    "7305",
    # fixed: lengths at 3, 5-7, 12-15 and the ADDITIONAL SENSE LENGTH bounds
    "700005",
    "700015",
    "7000e5",
    "7000050000",
    "700005000001",
    "70000500000001",
    "f0000500000000",
    "f0000500010203",
    "7000050000000001",
    "70000600000000",
    "700005000000000a00000000",
    "700005000000000a0000000024",
    "7000100000000000000000002400",
    "70000500000000040000000024010000",
    "70000500000000050000000024010000",
    "700005000000000600000000240003",
    # information field with VALID 0/1, FMK/EOM/ILI, FRU, SKSV
    "f0200500000000000a000000240000",
    "70200500000001000a000000240000",
    "7000200000000000",
    "70002500000000000a000000240000",
    "f000e5ffffffff000a000000240000",
    "7000450000000000",
    "7000850000000000",
    "7000050000000000000000002400",
    "700005000000000a00000000240000010000",
]


def _oracle(sense: bytes, raw: bool) -> str:
    assert SG_DECODE_SENSE is not None
    args = [SG_DECODE_SENSE, *(["-v"] if raw else []), "-n", sense.hex()]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    assert out.endswith("\n")
    return out[:-1]  # sg_decode_sense adds a newline after sg_get_sense_str's text


@pytest.mark.skipif(SG_DECODE_SENSE is None, reason="sg_decode_sense (sg3_utils) not installed")
@pytest.mark.parametrize("hex_sense", ORACLE_CASES)
def test_sense_text_matches_sg_decode_sense(hex_sense: str) -> None:
    """sg_get_sense_str's text, with and without the raw dump, byte for byte."""
    sense = bytes.fromhex(hex_sense)
    assert sense_text(sense, False) == _oracle(sense, False)
    assert sense_text(sense, True) == _oracle(sense, True)


def test_sense_key_texts() -> None:
    """The sixteen sense key names of sg_lib_data.c, in order."""
    assert SENSE_KEY_TEXT[5] == "Illegal Request"
    assert SENSE_KEY_TEXT[9] == "Vendor specific(9)"
    assert SENSE_KEY_TEXT[15] == "Completed"
    assert len(SENSE_KEY_TEXT) == 16


@pytest.mark.parametrize(
    ("asc", "ascq", "text"),
    [
        (0x24, 0x00, "Additional sense: Invalid field in cdb"),
        (0x7F, 0x7F, "ASC=7f, ASCQ=7f (hex)"),
        (0x80, 0x00, "vendor specific ASC=80, ASCQ=00 (hex)"),
        (0x81, 0x80, "vendor specific ASC=81, ASCQ=80 (hex)"),
        (0x01, 0x80, "ASC=01, vendor specific qualification ASCQ=80 (hex)"),
        (0x01, 0x81, "ASC=01, vendor specific qualification ASCQ=81 (hex)"),
    ],
)
def test_asc_text(asc: int, ascq: int, text: str) -> None:
    """Known codes by name, unknown ones in hex, vendor specific from 80h up."""
    assert asc_text(asc, ascq) == text


def test_empty_and_fixed_too_short_texts() -> None:
    """An empty buffer, and fixed sense shorter than the key byte (no field lines)."""
    assert sense_text(b"", False) == " >>> sense buffer empty\n"
    head = "Fixed format, current; Sense key: No Sense\n"
    # sg3_utils adds " fixed descriptor length too short, len=2" here (reported, unreachable
    # through sense_length, which never yields fewer than 8 bytes of SPC sense)
    assert sense_text(b"\x70\x00", False).startswith(head)
    assert sense_text(b"\x70\x10", False).startswith(head)


@pytest.mark.parametrize("length", ["06", "0a"])
def test_fixed_sense_of_fourteen_bytes(length: str) -> None:
    """ADDITIONAL SENSE LENGTH 6 (a device's short sense, cut to 14 bytes by sense_length), or
    a buffer of 14 bytes whatever it says: no byte 14 to read a FRU code from (it raised
    IndexError before); sg3_utils prints the ASC line."""
    sense = bytes.fromhex(f"70000500000000{length}000000002400")
    assert sense_text(sense, False) == (
        "Fixed format, current; Sense key: Illegal Request\n"
        "Additional sense: Invalid field in cdb\n"
    )


PAD = bytes(96)


@pytest.mark.parametrize(
    ("sense", "length"),
    [
        (PAD, 0),
        (bytes.fromhex("700005000000000a") + PAD[8:], 18),
        (bytes.fromhex("700005000000000a"), 8),
        (bytes.fromhex("7000050000000000"), 8),
        (bytes.fromhex("70000500000001"), 7),
        (bytes.fromhex("70000500000000"), 3),
        (bytes.fromhex("700005000000000000000000240000"), 8),
        (bytes.fromhex("f10006000000000c") + PAD[8:], 20),
        (bytes.fromhex("7205240000000000") + PAD[8:], 8),
        (bytes.fromhex("7306290000000014") + PAD[8:], 28),
        (bytes.fromhex("74052400000000ff") + PAD[8:], 8),
        (bytes.fromhex("6f0524") + PAD[3:], 3),
        (bytes.fromhex("70000000000000ff") + PAD[8:], 96),
        (bytes.fromhex("0000000000010000"), 6),
    ],
)
def test_sense_length(sense: bytes, length: int) -> None:
    """SPC sense ends at ADDITIONAL SENSE LENGTH + 8; other sense only loses its padding."""
    assert sense_length(sense) == length


@pytest.mark.parametrize(
    ("hex_sense", "header"),
    [
        ("", None),
        ("74052400", None),
        ("6f052400", None),
        ("72", (0x72, 0, 0, 0)),
        ("72f5", (0x72, 5, 0, 0)),
        ("72f524", (0x72, 5, 0x24, 0)),
        ("72f52401", (0x72, 5, 0x24, 1)),
        ("f3f52401", (0x73, 5, 0x24, 1)),
        ("70", (0x70, 0, 0, 0)),
        ("70f1", (0x70, 0, 0, 0)),
        ("70f1f5", (0x70, 5, 0, 0)),
        ("70f1f5ffffffff", (0x70, 5, 0, 0)),
        ("f1f1f5ffffffff00ffffffff2401ff", (0x71, 5, 0, 0)),
        ("70f1f5ffffffff04ffffffff2401ff", (0x70, 5, 0, 0)),
        ("70f1f5ffffffff05ffffffff2401ff", (0x70, 5, 0x24, 0)),
        ("70f1f5ffffffff06ffffffff2401ff", (0x70, 5, 0x24, 1)),
        ("70f1f5ffffffff0affffffff2401", (0x70, 5, 0x24, 1)),
        ("70f1f5ffffffff0affffffff24", (0x70, 5, 0x24, 0)),
        ("70f1f5ffffffff0affffffff", (0x70, 5, 0, 0)),
    ],
)
def test_header_parse(hex_sense: str, header: tuple[int, int, int, int] | None) -> None:
    """sg_scsi_normalize_sense: fields past the buffer or the additional length read as 0."""
    parsed = SenseHeader.parse(bytes.fromhex(hex_sense))
    if header is None:
        assert parsed is None
    else:
        assert parsed == SenseHeader(*header)


@pytest.mark.parametrize(
    ("hex_sense", "category"),
    [
        ("", Exit.SENSE),
        ("7005", Exit.SENSE),
        ("700005", Exit.ILLEGAL_REQ),
        ("720524", Exit.ILLEGAL_REQ),
        ("7205", Exit.SENSE),
        ("0000050000000000", Exit.SENSE),
        (_fixed(0), Exit.NO_SENSE),
        (_fixed(1), Exit.RECOVERED),
        (_fixed(2), Exit.NOT_READY),
        (_fixed(3), Exit.MEDIUM_HARD),
        (_fixed(3, 0x10), Exit.MEDIUM_HARD),
        (_fixed(4), Exit.MEDIUM_HARD),
        (_fixed(5, 0x24), Exit.ILLEGAL_REQ),
        (_fixed(5, 0x20), Exit.INVALID_OP),
        (_fixed(5, 0x20, 0x01), Exit.ILLEGAL_REQ),
        (_fixed(5, 0x21), Exit.LBA_OUT_OF_RANGE),
        (_fixed(6), Exit.UNIT_ATTENTION),
        (_fixed(7), Exit.DATA_PROTECT),
        (_fixed(8), Exit.MEDIUM_HARD),
        (_fixed(9), Exit.SENSE),
        (_fixed(10), Exit.COPY_ABORTED),
        (_fixed(11), Exit.ABORTED_COMMAND),
        (_fixed(11, 0x11), Exit.ABORTED_COMMAND),
        (_fixed(11, 0x10, 0x01), Exit.PROTECTION),
        ("720b1003", Exit.PROTECTION),
        (_fixed(12), Exit.SENSE),
        (_fixed(13), Exit.SENSE),
        (_fixed(14), Exit.MISCOMPARE),
        (_fixed(15), Exit.SENSE),
    ],
)
def test_sense_category(hex_sense: str, category: int) -> None:
    """sg_err_category_sense: the exit status each sense key (and ASC refinement) yields."""
    assert sense_category(bytes.fromhex(hex_sense)) == category
