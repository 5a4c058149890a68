"""READ KEYS (SPC-5 6.16.2) as sg_persist prints it; fence_scsi reads keys with a regular
expression over these lines."""

from __future__ import annotations

from scsi_pr.helper.persist.numbers import field_at


def format_keys(generation: int, add_len: int, buf: bytes) -> str:
    """The generation and one ``0x<key>`` line per key in ADDITIONAL LENGTH."""
    text = f"  PR generation=0x{generation:x}, "
    num = int(add_len / 8)  # C division truncates toward zero
    if num <= 0:
        return text + "there are NO registered reservation keys\n"
    text += (
        "1 registered reservation key follows:\n"
        if num == 1
        else f"{num} registered reservation keys follow:\n"
    )
    return text + "".join(
        f"    0x{int.from_bytes(field_at(buf, k, 8), 'big'):x}\n" for k in range(8, 8 + 8 * num, 8)
    )
