"""REPORT CAPABILITIES (SPC-5 6.16.4) as sg_persist prints it: the capability bits and, when
TMV is set, the PR TYPE mask."""

from __future__ import annotations

from scsi_pr.helper.persist.pr_type import PR_TYPE_TEXT

# (PR type, byte, bit) of the PERSISTENT RESERVATION TYPE MASK, in sg_persist's order.
TYPE_MASK = ((7, 4, 0x80), (6, 4, 0x40), (5, 4, 0x20), (3, 4, 0x08), (1, 4, 0x02), (8, 5, 0x01))


def format_capabilities(buf: bytes) -> str:
    """The 8-byte parameter data, one line per field."""
    lines = [
        "Report capabilities response:\n",
        f"  Replace Lost Reservation Capable(RLR_C): {int(bool(buf[2] & 0x80))}\n",
        f"  Compatible Reservation Handling(CRH): {int(bool(buf[2] & 0x10))}\n",
        f"  Specify Initiator Ports Capable(SIP_C): {int(bool(buf[2] & 0x08))}\n",
        f"  All Target Ports Capable(ATP_C): {int(bool(buf[2] & 0x04))}\n",
        f"  Persist Through Power Loss Capable(PTPL_C): {int(bool(buf[2] & 0x01))}\n",
        f"  Type Mask Valid(TMV): {int(bool(buf[3] & 0x80))}\n",
        f"  Allow Commands: {(buf[3] >> 4) & 0x7}\n",
        f"  Persist Through Power Loss Active(PTPL_A): {int(bool(buf[3] & 0x01))}\n",
    ]
    if buf[3] & 0x80:
        lines.append("    Support indicated in Type mask:\n")
        for pr_type, byte, bit in TYPE_MASK:
            lines.append(f"      {PR_TYPE_TEXT[pr_type]}: {int(bool(buf[byte] & bit))}\n")
    return "".join(lines)
