"""Bytes -> frame parts. Pure functions over the receive buffer; ``None`` = need more bytes.

Only framing lives here; what a complete frame *means* (fd count, opcode, length checks, in
qemu-pr-helper's order) is decided by ``Connection``.
"""

from __future__ import annotations

from scsi_pr.helper.proto.events import (
    FEATURES_SIZE,
    PR_HELPER_CDB_SIZE,
    PR_HELPER_SENSE_SIZE,
    RESPONSE_HEADER_SIZE,
    RESULT_AND_SIZE,
)


def take(buf: bytearray, n: int) -> bytes | None:
    """Remove and return the first ``n`` bytes of ``buf`` once it holds that many."""
    if len(buf) < n:
        return None
    part = bytes(buf[:n])
    del buf[:n]
    return part


def read_features(buf: bytearray) -> int | None:
    raw = take(buf, FEATURES_SIZE)
    return None if raw is None else int.from_bytes(raw, "big")


def read_cdb(buf: bytearray) -> bytes | None:
    return take(buf, PR_HELPER_CDB_SIZE)


def read_response_header(buf: bytearray) -> tuple[int, int, bytes] | None:
    """(result, sz, sense) of a response, without consuming it until the data-in is known."""
    if len(buf) < RESPONSE_HEADER_SIZE:
        return None
    status, sz = RESULT_AND_SIZE.unpack_from(buf)
    head = RESULT_AND_SIZE.size
    return status, sz, bytes(buf[head : head + PR_HELPER_SENSE_SIZE])
