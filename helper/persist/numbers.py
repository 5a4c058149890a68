"""Numbers as sg_persist reads them: ``sscanf("%x")`` for keys, types, ports and ``-l``,
``sg_get_num`` for ``-m``, and C's signed 32-bit reading of response length fields. The quirks
(``-T 100000005`` is type 5, a leading ``-`` negates a key) are what scripts already rely on."""

from __future__ import annotations

import struct

HEX_DIGITS = "0123456789abcdefABCDEF"


def scan_hex(text: str, bits: int = 64) -> int | None:
    """sscanf(text, "%x") as glibc does it: leading blanks, sign, optional 0x, stops at the
    first non-hex character, saturates on overflow, then keeps the low ``bits``."""
    s = text.lstrip(" \t\n\v\f\r")
    negative = False
    if s[:1] in ("+", "-"):
        negative = s[0] == "-"
        s = s[1:]
    if s[:2].lower() == "0x" and s[2:3] and s[2] in HEX_DIGITS:
        s = s[2:]
    digits = len(s) - len(s.lstrip(HEX_DIGITS))
    if digits == 0:
        return None
    value = int(s[:digits], 16)
    if value >= 1 << 64:
        value = (1 << 64) - 1
    elif negative:
        value = -value % (1 << 64)
    return value & ((1 << bits) - 1)


_MULTIPLIERS = {"C": 1, "W": 2, "B": 512, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
_DECIMAL_MULTIPLIERS = {"K": 1000, "M": 1000_000, "G": 1000_000_000}


def get_num(text: str) -> int:
    """sg_get_num: decimal by default, 0x.. or ..h hex, k/m/g (KiB) and kb/kd (1000) suffixes.

    Returns -1 for anything it cannot read, as sg3_utils does. The experimental ``x``/``+``
    arithmetic forms are not supported (they return -1)."""
    s = text.lstrip(" \t")
    if not s:
        return -1
    for i, c in enumerate(s):
        if c in " \t,#-":
            s = s[: min(i, 15)]
            break
    if not s:
        return -1
    if s[:2] in ("0x", "0X"):
        value = scan_hex(s[2:], 32)
        rest = s[2:].lstrip(" ").lstrip("+-")
        rest = rest[len(rest) - len(rest.lstrip(HEX_DIGITS)) :] if value is not None else ""
        return -1 if value is None or rest else value
    if s[-1] in "hH":
        value = scan_hex(s, 32)
        return -1 if value is None else value
    digits = len(s) - len(s.lstrip("0123456789"))
    sign = 1
    body = s
    if s[:1] in "+-":
        sign = -1 if s[0] == "-" else 1
        body = s[1:]
        digits = len(body) - len(body.lstrip("0123456789"))
    if digits == 0:
        return -1
    num = sign * int(body[:digits])
    suffix = body[digits:].upper()
    if not suffix:
        return num
    c, rest = suffix[0], suffix[1:]
    if c in "CWB":
        return num * _MULTIPLIERS[c]
    if c in "KMG":
        if not rest:
            return num * _MULTIPLIERS[c]
        if rest[0] in "BD":
            return num * _DECIMAL_MULTIPLIERS[c]
        if rest[:2] == "IB":
            return num * _MULTIPLIERS[c]
        return -1
    return -1


def signed32(data: bytes) -> int:
    """A big-endian 4-byte field as sg_persist's ``int`` sees it (lengths can go negative)."""
    return struct.unpack(">i", data)[0]
