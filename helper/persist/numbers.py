"""Numbers as sg_persist reads them: ``sscanf("%x")`` for keys, types, ports and ``-l``,
``sg_get_num`` for ``-m``, and C's signed 32-bit reading of response length fields. The quirks
(``-T 100000005`` is type 5, a leading ``-`` negates a key) are what scripts already rely on."""

from __future__ import annotations

import ctypes
import struct

HEX_DIGITS = "0123456789abcdefABCDEF"
C_SPACE = " \t\n\v\f\r"  # isspace() in the C locale: what scanf skips


def scan_hex(text: str, bits: int = 64) -> int | None:
    """sscanf(text, "%x") as glibc does it: leading blanks, sign, optional 0x, stops at the
    first non-hex character, saturates on overflow, then keeps the low ``bits``."""
    value = scan_hex_prefix(text)[0]
    return None if value is None else value & ((1 << bits) - 1)


def scan_hex_prefix(text: str) -> tuple[int | None, str]:
    """glibc's hex reading into 64 bits (``strtoull``: a ``-`` negates, a value past 64 bits
    saturates), unmasked: -1 stands for all ones; and what it left of ``text`` unread (all of
    it when it read nothing)."""
    s = text.lstrip(C_SPACE)
    sign = s[:1]
    if sign in ("+", "-"):
        s = s[1:]
    if s[:2] in ("0x", "0X") and len(s) > 2 and s[2] in HEX_DIGITS:
        s = s[2:]
    digits = len(s) - len(s.lstrip(HEX_DIGITS))
    if digits == 0:
        return None, text
    value = int(s[:digits], 16)
    if value >> 64:
        value = -1
    elif sign == "-":
        value = -value
    return value, s[digits:]


_MULTIPLIERS = {"C": 1, "W": 2, "B": 512, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
_DECIMAL_MULTIPLIERS = {"K": 1000, "M": 1000_000, "G": 1000_000_000}
_LONG_MAX = (1 << 63) - 1


def _c_int(value: int) -> int:
    """``value`` stored in a C ``int``: its low 32 bits, signed (how sg_get_num's ``%d`` and
    its multiplications wrap: ``-m 4294967295`` is -1, ``-m 5g`` 1 GiB)."""
    return ctypes.c_int(value).value


def get_num(text: str) -> int:
    """sg_get_num: decimal by default, 0x.. or ..h hex, k/m/g (KiB) and kb/kd (1000) suffixes,
    each value as the C ``int`` it lands in.

    Returns -1 for anything it cannot read, as sg3_utils does. The experimental ``x``/``+``
    arithmetic forms are not supported (they return -1)."""
    s = text.lstrip(" \t")
    for i, c in enumerate(s):
        if c in " \t,#-":  # a terminator, so a '-' never starts a number: "-5" reads nothing
            s = s[: min(i, 15)]  # the part before it, in sg_get_num's 16-byte buffer
            break
    if not s:
        return -1
    if s[:2] in ("0x", "0X"):
        value, rest = scan_hex_prefix(s[2:])
        return -1 if value is None or rest else _c_int(value)  # all of it a hex number
    if s[-1] in "hH":
        value = scan_hex(s)
        return -1 if value is None else _c_int(value)
    body = s.lstrip(C_SPACE)  # "%d" skips what the terminators left of the white space
    body = body[1:] if body[:1] == "+" else body
    digits = len(body) - len(body.lstrip("0123456789"))
    if digits == 0:
        return -1
    num = _c_int(min(int(body[:digits]), _LONG_MAX))  # "%d" by strtol: saturates, then wraps
    suffix = body[digits:].upper()
    if not suffix:
        return num
    c, rest = suffix[0], suffix[1:]
    if c in "CWB":
        return _c_int(num * _MULTIPLIERS[c])
    if c in "KMG":
        if not rest:
            return _c_int(num * _MULTIPLIERS[c])
        if rest[0] in "BD":
            return _c_int(num * _DECIMAL_MULTIPLIERS[c])
        if rest[:2] == "IB":
            return _c_int(num * _MULTIPLIERS[c])
        return -1
    return -1


def field_at(buf: bytes, start: int, length: int) -> bytes:
    """``length`` bytes of a response from ``start``, zeros past its end: sg_persist decodes
    from a zeroed buffer, so what the device did not send reads as zeros."""
    return buf[start : start + length].ljust(length, b"\0")


def signed32(data: bytes) -> int:
    """A big-endian 4-byte field as sg_persist's ``int`` sees it (lengths can go negative)."""
    return struct.unpack(">i", data)[0]
