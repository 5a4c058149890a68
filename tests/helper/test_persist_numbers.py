"""sg_persist's numbers (``helper.persist.numbers``) against sg3_utils' and glibc's own readers.

``-m`` goes through libsgutils2's ``sg_get_num``; keys, types, ports and ``-l`` through
``sscanf("%x")``. Both are called here through ctypes, for chosen strings (one per rule: a
prefix, a suffix, a terminator, the 16-byte buffer, a value a C ``int`` wraps) and for
generated ones, so every answer is the C library's, not a value written down by hand. The
experimental ``2x33`` and ``3+1k`` forms are left out: docs/persist.md says why.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from libsgutils import load, sscanf_hex

from scsi_pr.helper.persist.numbers import get_num, scan_hex, signed32

SG = load()

#: one string per rule of sscanf("%x")
HEX_CASES = [
    "", " ", "1f", "  1F", "\t\n\v\f\r7", "+10", "-1", "-0x10", "0x", "0x1g", "0X", "0xg",
    "0x0x5", "x5", "g", "10g", "ffffffff", "100000005", "ffffffffffffffff",
    "10000000000000000", "-10000000000000000", "fedcba9876543210", "-ffffffffffffffff",
    "+-5", "- 5", "0x+5", "0X1f", " -0Xa", "\x1c5", "\x1f1", "\x855", "\xa05",
]  # fmt: skip
#: one string per rule of sg_get_num
NUM_CASES = [
    "", " ", "\t", "0", "12", "  12", "\t12", "\n12", "\r\n 12", "+12", "+", "-5", "-",
    "12,34", "12#", "12 34", "12\t", "12-3", ",12",
    "1234567890123,1", "12345678901234567,1", "123456789012345678901234",
    "2147483647", "2147483648", "4294967295", "4294967296", "99999999999999999999",
    "0x10", "0X10", "0x", "0xg", "0x10g", "0x+10", "0xffffffff", "0x80000000", "0x1f1",
    "10h", "1fH", "ffffffffh", "h", "zh", " 10h",
    "5c", "5C", "5w", "5b", "5k", "5K", "5kb", "5kB", "5kd", "5kib", "5KiB", "5ki", "5kx",
    "5m", "5mb", "5md", "5mib", "5g", "5gb", "5gd", "5gib", "3g", "8g", "2g", "5t", "5z",
    "5 k", "12x", "12X", "X5", "XX12", "12h3", "5kibz", "5kiBx", "\x1c12", "\x8512",
]  # fmt: skip


@pytest.mark.parametrize("bits", [32, 64])
@pytest.mark.parametrize("text", HEX_CASES)
def test_scan_hex_is_glibcs_sscanf(text: str, bits: int) -> None:
    assert scan_hex(text, bits) == sscanf_hex(text, bits)


def test_scan_hex_reads_64_bits_by_default() -> None:
    assert scan_hex("fedcba9876543210") == 0xFEDC_BA98_7654_3210
    assert scan_hex("-1") == (1 << 64) - 1


@settings(max_examples=300)
@given(st.text(st.sampled_from(" \t\n+-0123456789abcdefABCDEFxXgh"), max_size=24))
@example("10000000000000000ff")
def test_scan_hex_of_any_text_is_glibcs_sscanf(text: str) -> None:
    assert scan_hex(text, 32) == sscanf_hex(text, 32)
    assert scan_hex(text, 64) == sscanf_hex(text, 64)


@pytest.mark.parametrize("text", NUM_CASES)
def test_get_num_is_sg_get_num(text: str) -> None:
    assert get_num(text) == SG.sg_get_num(text.encode())


#: generated sg_get_num arguments: any mix of digits, suffix letters and terminators after an
#: optional prefix, without an ``x`` or ``+`` inside (the arithmetic forms)
NUMBERS = st.builds(
    str.__add__,
    st.sampled_from(["", " ", "\t", "\n", "+", "0x", "0X", "0x+"]),
    st.text(st.sampled_from(" \t\r,#-0123456789abcdefABCDEFhHkKmMgGbBdDiIcCwWz"), max_size=20),
)


@settings(max_examples=300)
@given(NUMBERS)
def test_get_num_of_any_text_is_sg_get_num(text: str) -> None:
    assert get_num(text) == SG.sg_get_num(text.encode())


def test_the_arithmetic_forms_are_refused() -> None:
    """sg_get_num's experimental forms, which scsi-pr persist reads as a bad argument."""
    assert (SG.sg_get_num(b"2x33"), SG.sg_get_num(b"3+1k")) == (66, 1027)
    assert (get_num("2x33"), get_num("3+1k")) == (-1, -1)


@pytest.mark.parametrize(
    ("data", "value"),
    [("00000000", 0), ("7fffffff", 0x7FFF_FFFF), ("80000000", -(1 << 31)), ("fffffffe", -2)],
)
def test_signed32_is_a_big_endian_c_int(data: str, value: int) -> None:
    assert signed32(bytes.fromhex(data)) == value
