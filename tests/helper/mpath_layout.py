"""libmpathpersist's C structs (mpath_persist.h), written out here on their own so the tests
can hold ``helper.executors.mpath_lib``'s offsets and sizes to them."""

from __future__ import annotations

import ctypes

#: the pointer array's length the caller sizes ``struct prout_param_descriptor`` for
MAX_TRANSPORT_IDS = 32


class TransportIdStruct(ctypes.Structure):
    """``struct transportid``: format code, protocol id, 256 bytes of name or address."""

    _fields_ = [("format_code", ctypes.c_uint8), ("protocol_id", ctypes.c_uint8),
                ("name", ctypes.c_uint8 * 256)]  # fmt: skip


class ProutParamDescriptor(ctypes.Structure):
    """``struct prout_param_descriptor`` with its pointer array sized for 32 TransportIDs."""

    _fields_ = [
        ("key", ctypes.c_uint8 * 8), ("sa_key", ctypes.c_uint8 * 8), ("_obsolete", ctypes.c_uint32),
        ("sa_flags", ctypes.c_uint8), ("_reserved", ctypes.c_uint8),
        ("_obsolete1", ctypes.c_uint16), ("private_buffer", ctypes.c_uint8 * 8192),
        ("num_transportid", ctypes.c_uint32),
        ("trnptid_list", ctypes.POINTER(TransportIdStruct) * MAX_TRANSPORT_IDS),
    ]  # fmt: skip
