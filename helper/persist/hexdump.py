"""sg3_utils' two hex dump layouts: ``hex2stdout``/``hex2stderr`` (dStrHexFp: offset column,
used for ``--hex`` and the ``-vv`` traces) and ``hex2str`` (dStrHexStr: a lead-in, used inside
sense and TransportID texts). Scripts parse these dumps, so the columns are kept exactly."""

from __future__ import annotations


def _printable(c: int) -> str:
    return chr(c) if 0x20 <= c < 0x7F else "."


def _hex_bytes(chunk: bytes) -> str:
    """Up to 16 bytes as ``xx xx ..`` with an extra space after the eighth."""
    hexes = " ".join(f"{c:02x}" for c in chunk[:8])
    if len(chunk) > 8:
        hexes += "  " + " ".join(f"{c:02x}" for c in chunk[8:])
    return hexes


def hex_dump(data: bytes, no_ascii: int) -> str:
    """hex2stdout/hex2stderr: > 0 offset + hex, 0 offset + hex + ASCII, < 0 hex only."""
    lines = []
    for start in range(0, len(data), 16):
        chunk = data[start : start + 16]
        hexes = _hex_bytes(chunk)
        if no_ascii < 0:
            lines.append(hexes)
            continue
        line = f" {start:02x}".ljust(8) + hexes
        if no_ascii > 0:
            lines.append(line.rstrip())
        else:
            ascii_ = "".join(_printable(c) for c in chunk)
            lines.append(line.ljust(60) + ascii_)
    return "".join(line + "\n" for line in lines)


def hex_text(data: bytes, leadin: str, fmt: int) -> str:
    """hex2str: 16 bytes a line after ``leadin``; ASCII column only when ``fmt`` is 0."""
    out = []
    for start in range(0, len(data), 16):
        chunk = data[start : start + 16]
        line = leadin + _hex_bytes(chunk)
        if fmt == 0:
            ascii_ = "".join(_printable(c) for c in chunk).ljust(16)
            line = line.ljust(len(leadin) + 49) + "   " + ascii_
        out.append(line + "\n")
    return "".join(out)
