"""Hypothesis strategies for the iSCSI codec: any valid PDU of any type, any text pairs.

Built from each PDU class's own ``LAYOUT`` so a new field is covered without touching the tests;
field values come from the field's width, and code fields sometimes take their named constants
so reprs with enum members are exercised too.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from scsi_pr.target.proto.layout import PDU_CLASSES, Field, Pdu
from scsi_pr.target.proto.scsi_pdus import CDB_SIZE, MAX_CDB_SIZE, ScsiCommand

PDU_TYPES = sorted(PDU_CLASSES.values(), key=lambda c: c.OPCODE)


def field_values(field: Field) -> st.SearchStrategy[Any]:
    if field.kind is bool:
        return st.booleans()
    if field.kind is bytes:
        return st.binary(min_size=field.size, max_size=field.size)
    numbers = st.integers(0, field.limit)
    if field.enum is not None:
        return st.one_of(st.sampled_from(list(field.enum)), numbers)
    return numbers


@st.composite
def pdus(draw: st.DrawFn, pdu_type: type[Pdu] | None = None, max_data: int = 300) -> Pdu:
    cls = pdu_type or draw(st.sampled_from(PDU_TYPES))
    values = {f.name: draw(field_values(f)) for f in cls.LAYOUT}
    if cls.HAS_DATA:
        values["data"] = draw(st.binary(max_size=max_data))
    if cls is ScsiCommand:
        values["cdb"] = draw(st.binary(min_size=CDB_SIZE, max_size=MAX_CDB_SIZE))
        values["bidirectional_read_expected_data_transfer_length"] = draw(
            st.none() | st.integers(0, 0xFFFFFFFF)
        )
    pdu = _fix_exclusive(cls, values)
    return pdu


def _fix_exclusive(cls: type[Pdu], values: dict[str, Any]) -> Pdu:
    """Clear the flag combinations the RFC forbids (O with U, S without F)."""
    for over, under in (
        ("residual_overflow", "residual_underflow"),
        ("bidi_read_residual_overflow", "bidi_read_residual_underflow"),
    ):
        if values.get(over) and values.get(under):
            values[under] = False
    if values.get("status_present"):
        values["final"] = True
    return cls(**values)


KEY_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-+@_"
keys = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    st.text(KEY_CHARS, max_size=62),
)
values = st.text(
    st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=60
)
text_pairs = st.dictionaries(keys, values, max_size=12).map(lambda d: tuple(d.items()))
