"""READ RESERVATION (SPC-5 6.16.3) as sg_persist prints it: the holder's key, scope and type."""

from __future__ import annotations

from scsi_pr.helper.persist.numbers import field_at
from scsi_pr.helper.persist.pr_type import scope_type_text


def format_reservation(generation: int, add_len: int, buf: bytes) -> str:
    """The generation, then the reservation descriptor when ADDITIONAL LENGTH holds one."""
    text = f"  PR generation=0x{generation:x}, "
    if int(add_len / 16) <= 0:
        return text + "there is NO reservation held\n"
    d = field_at(buf, 8, 16)
    return (
        text + "Reservation follows:\n"
        f"    Key=0x{int.from_bytes(d[:8], 'big'):x}\n    {scope_type_text(d[13])}"
    )
