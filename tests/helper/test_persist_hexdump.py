"""sg3_utils' hex dumps (``helper.persist.hexdump``) against libsgutils2's ``hex2stdout`` and
``hex2str`` themselves: scripts parse these columns, so every byte value, every line length
and each layout is compared with what the C library prints."""

from __future__ import annotations

import ctypes

import pytest
from libsgutils import LIBC, load

from scsi_pr.helper.persist.hexdump import hex_dump, hex_text

SG = load()
ALL_BYTES = bytes(range(256))
LENGTHS = [0, 1, 7, 8, 9, 15, 16, 17, 40, 256]


@pytest.mark.parametrize("no_ascii", [-1, 0, 1])
@pytest.mark.parametrize("length", LENGTHS)
def test_hex_dump_is_hex2stdout(
    capfd: pytest.CaptureFixture[str], length: int, no_ascii: int
) -> None:
    data = ALL_BYTES[:length]
    SG.hex2stdout(data, length, no_ascii)
    LIBC.fflush(None)
    theirs = capfd.readouterr().out
    assert hex_dump(data, no_ascii) == theirs


@pytest.mark.parametrize("leadin", ["", "  ", "      "])
@pytest.mark.parametrize("fmt", [-1, 0, 1])
@pytest.mark.parametrize("length", LENGTHS)
def test_hex_text_is_hex2str(length: int, fmt: int, leadin: str) -> None:
    data = ALL_BYTES[:length]
    buffer = ctypes.create_string_buffer(8192)
    SG.hex2str(data, length, leadin.encode(), fmt, len(buffer), buffer)
    assert hex_text(data, leadin, fmt) == buffer.value.decode("latin-1")


def test_every_byte_value_has_its_printable_form() -> None:
    """Only 0x20..0x7e print as themselves (here through hex2str, whose ASCII column is the
    same rule as hex2stdout's)."""
    line = hex_text(bytes([0x1F, 0x20, 0x7E, 0x7F, 0x80]), "", 0)
    assert line.endswith("   . ~..           \n")
