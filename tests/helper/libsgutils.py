"""sg3_utils' own library, called through ctypes: the authority the tests hold ``scsi-pr
persist``'s number reading and exit-status words to, function by function (libsgutils2 is
what sg_persist itself links; Debian's sg3-utils pulls it in)."""

from __future__ import annotations

import ctypes
import glob

from needs import unavailable

__all__ = ["LIBC", "load", "sscanf_hex"]

LIBC = ctypes.CDLL(None)


def load() -> ctypes.CDLL:
    """libsgutils2 with the signatures the tests call (sg_lib.h of 1.46)."""
    found = sorted(glob.glob("/lib/*/libsgutils2*.so*") + glob.glob("/usr/lib/*/libsgutils2*.so*"))
    if not found:
        unavailable("needs libsgutils2 (apt-get install sg3-utils)")
    lib = ctypes.CDLL(found[0])
    lib.sg_get_num.argtypes, lib.sg_get_num.restype = [ctypes.c_char_p], ctypes.c_int
    lib.sg_convert_errno.argtypes, lib.sg_convert_errno.restype = [ctypes.c_int], ctypes.c_int
    lib.sg_exit2str.argtypes = [ctypes.c_int, ctypes.c_bool, ctypes.c_int, ctypes.c_char_p]
    lib.sg_exit2str.restype = ctypes.c_bool
    lib.sg_get_category_sense_str.argtypes = [
        ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int
    ]  # fmt: skip
    lib.sg_get_category_sense_str.restype = ctypes.c_char_p
    # hex2str returns the length it wrote (the text is in the buffer); hex2stdout prints
    lib.hex2str.argtypes = [
        ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_char_p
    ]  # fmt: skip
    lib.hex2str.restype = ctypes.c_int
    lib.hex2stdout.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
    lib.hex2stdout.restype = None
    return lib


def sscanf_hex(text: str, bits: int) -> int | None:
    """glibc's ``sscanf(text, "%x")`` into an unsigned int (32) or ``"%llx"`` into an
    unsigned long long (64): the value, or None when nothing was converted."""
    value: ctypes.c_uint | ctypes.c_ulonglong
    if bits == 32:
        value, fmt = ctypes.c_uint(), b"%x"
    else:
        value, fmt = ctypes.c_ulonglong(), b"%llx"
    converted = LIBC.sscanf(text.encode(), fmt, ctypes.byref(value))
    return value.value if converted == 1 else None
