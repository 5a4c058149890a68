"""PERSISTENT RESERVE OUT parameter lists (SPC-5 6.17.3, 6.17.4): their layouts and parsers.

A parser checks what the list itself can tell (its length, SPEC_I_PT's service action, the
TransportIDs' encoding) and hands the fields to ``pr_out``'s handlers; the byte offsets are
named for the field pointers of the errors either reports.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from scsi_pr.sim.constants import (
    INVALID_FIELD_IN_PARAMETER_LIST,
    PARAMETER_LIST_LENGTH_ERROR,
    PR_OUT_BASIC_PARAMETER_LIST_LENGTH,
)
from scsi_pr.sim.constants import (
    PersistentReserveOutAction as SA,
)
from scsi_pr.sim.result import illegal_request
from scsi_pr.sim.transportid import TransportId, TransportIdError, decode_transport_id_list

# Byte offsets named for field pointers (SPC-5 6.17.1 CDB, 6.17.3 and 6.17.4 parameter lists).
CDB_SERVICE_ACTION, CDB_SCOPE_TYPE, CDB_PARAMETER_LIST_LENGTH = 1, 2, 5
PARAM_SA_KEY, PARAM_FLAGS, PARAM_TRANSPORTID_LENGTH = 8, 20, 24
MOVE_RTPI, MOVE_TRANSPORTID_LENGTH = 18, 20
BIT_SPEC_I_PT, BIT_ALL_TG_PT = 3, 2


class ParameterList(NamedTuple):
    """The basic PR OUT parameter list (SPC-5 6.17.3), or REGISTER AND MOVE's (6.17.4).

    A NamedTuple rather than a frozen dataclass: one is built per PR OUT, and a frozen
    dataclass's field-by-field ``object.__setattr__`` made that a visible share of the model's
    time."""

    key: int
    sa_key: int
    aptpl: bool = False
    all_tg_pt: bool = False
    spec_i_pt: bool = False
    transport_ids: tuple[TransportId, ...] = ()
    unreg: bool = False
    relative_target_port: int = 0


_BASIC = struct.Struct(">QQ4xB")  # RESERVATION KEY, SERVICE ACTION RESERVATION KEY, flags
_MOVE = struct.Struct(">QQxBHI")  # ... reserved, UNREG/APTPL, RTPI, TRANSPORTID LENGTH
_TRANSPORTID_LENGTH = struct.Struct(">I")


_new_list = tuple.__new__


def parse_basic(data: bytes, action: SA) -> ParameterList:
    length = len(data)
    if length < PR_OUT_BASIC_PARAMETER_LIST_LENGTH:
        raise illegal_request(PARAMETER_LIST_LENGTH_ERROR, cdb_byte=CDB_PARAMETER_LIST_LENGTH)
    key, sa_key, flags = _BASIC.unpack_from(data)
    if not flags & 0x08:  # no SPEC_I_PT: nearly every PR OUT
        if length != PR_OUT_BASIC_PARAMETER_LIST_LENGTH:
            raise illegal_request(PARAMETER_LIST_LENGTH_ERROR, cdb_byte=CDB_PARAMETER_LIST_LENGTH)
        # tuple.__new__ skips the NamedTuple's Python-level __new__ (a few % of a PR OUT)
        return _new_list(ParameterList, (key, sa_key, bool(flags & 0x01), bool(flags & 0x04),
                                         False, (), False, 0))  # fmt: skip
    if action != SA.REGISTER:
        # SPC-5 6.17.3: SPEC_I_PT is valid only for REGISTER.
        raise illegal_request(
            INVALID_FIELD_IN_PARAMETER_LIST, param_byte=PARAM_FLAGS, bit=BIT_SPEC_I_PT
        )
    if length < PR_OUT_BASIC_PARAMETER_LIST_LENGTH + 4:
        raise illegal_request(PARAMETER_LIST_LENGTH_ERROR, cdb_byte=CDB_PARAMETER_LIST_LENGTH)
    (tid_length,) = _TRANSPORTID_LENGTH.unpack_from(data, PARAM_TRANSPORTID_LENGTH)
    if PR_OUT_BASIC_PARAMETER_LIST_LENGTH + 4 + tid_length != length:
        raise illegal_request(PARAMETER_LIST_LENGTH_ERROR, cdb_byte=CDB_PARAMETER_LIST_LENGTH)
    try:
        tids = tuple(decode_transport_id_list(data[PR_OUT_BASIC_PARAMETER_LIST_LENGTH + 4 :]))
    except TransportIdError:
        raise illegal_request(
            INVALID_FIELD_IN_PARAMETER_LIST, param_byte=PARAM_TRANSPORTID_LENGTH + 4
        ) from None
    return ParameterList(key, sa_key, bool(flags & 0x01), bool(flags & 0x04), True, tids)


def parse_move(data: bytes, action: SA) -> ParameterList:
    if len(data) < PR_OUT_BASIC_PARAMETER_LIST_LENGTH:
        raise illegal_request(PARAMETER_LIST_LENGTH_ERROR, cdb_byte=CDB_PARAMETER_LIST_LENGTH)
    key, sa_key, flags, rtpi, tid_length = _MOVE.unpack_from(data)
    if PR_OUT_BASIC_PARAMETER_LIST_LENGTH + tid_length != len(data):
        raise illegal_request(PARAMETER_LIST_LENGTH_ERROR, cdb_byte=CDB_PARAMETER_LIST_LENGTH)
    try:
        tids = decode_transport_id_list(data[PR_OUT_BASIC_PARAMETER_LIST_LENGTH:])
    except TransportIdError:
        tids = []
    if len(tids) != 1:
        raise illegal_request(
            INVALID_FIELD_IN_PARAMETER_LIST, param_byte=PR_OUT_BASIC_PARAMETER_LIST_LENGTH
        )
    return ParameterList(
        key,
        sa_key,
        bool(flags & 0x01),
        transport_ids=(tids[0],),
        unreg=bool(flags & 0x02),
        relative_target_port=rtpi,
    )
