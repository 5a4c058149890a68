"""READ FULL STATUS (SPC-5 6.16.5) as sg_persist prints it: one block per registered I_T
nexus, with its TransportID decoded."""

from __future__ import annotations

from scsi_pr.helper.persist.numbers import field_at, signed32
from scsi_pr.helper.persist.pr_type import scope_type_text
from scsi_pr.helper.persist.transport_id import transport_id_text


def format_full_status(generation: int, add_len: int, buf: bytes, verbose: int) -> str:
    """The generation, then each full status descriptor within ADDITIONAL LENGTH."""
    out = [f"  PR generation=0x{generation:x}\n"]
    if add_len == 0:
        out.append("  No full status descriptors\n")
        if verbose:
            out.append("  So there are no registered IT nexuses\n")
    k, offset = 0, 8
    while k < add_len:
        d = field_at(buf, offset, 24)
        desc_len = signed32(d[20:])
        num = 24 + desc_len
        out.append(f"    Key=0x{int.from_bytes(d[:8], 'big'):x}\n")
        if d[12] & 0x02:
            out.append("      All target ports bit set\n")
        else:
            out.append("      All target ports bit clear\n")
            out.append(f"      Relative port address: 0x{int.from_bytes(d[18:20], 'big'):x}\n")
        if d[12] & 0x01:
            out.append("      << Reservation holder >>\n")
            out.append(f"      {scope_type_text(d[13])}")
        else:
            out.append("      not reservation holder\n")
        if desc_len < 0:  # sg_persist loops for ever or crashes on these: the list ends here
            break
        out.append(transport_id_text("      ", buf[offset + 24 : offset + num], desc_len))
        k += num
        offset += num
    return "".join(out)
