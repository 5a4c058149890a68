"""PR TYPE and SCOPE in sg_persist's words, shared by the decoders that print a reservation
(READ RESERVATION, READ FULL STATUS) or the types a device supports (REPORT CAPABILITIES)."""

from __future__ import annotations

PR_TYPE_TEXT = (
    "obsolete [0]", "Write Exclusive", "obsolete [2]", "Exclusive Access", "obsolete [4]",
    "Write Exclusive, registrants only", "Exclusive Access, registrants only",
    "Write Exclusive, all registrants", "Exclusive Access, all registrants",
    "obsolete [9]", "obsolete [0xa]", "obsolete [0xb]", "obsolete [0xc]", "obsolete [0xd]",
    "obsolete [0xe]", "obsolete [0xf]",
)  # fmt: skip


def scope_type_text(byte: int) -> str:
    """The SCOPE/TYPE byte as one line (sg_persist's double space after the comma included)."""
    scope = (byte >> 4) & 0xF
    head = "scope: LU_SCOPE, " if scope == 0 else f"scope: {scope} "
    return f"{head} type: {PR_TYPE_TEXT[byte & 0xF]}\n"
