"""The frames of the qemu-pr-helper protocol as frozen, validated events.

Wire limits are QEMU's (``scsi/pr-helper.h``): a 16-byte CDB, a 96-byte sense buffer and at
most 8192 bytes of data either way. Events never hold sockets; a request's file descriptor is
an opaque int that only the I/O edge opens, passes or closes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from scsi_pr.helper.proto.errors import LocalProtocolError
from scsi_pr.sim.constants import PR_HELPER_DATA_SIZE, Opcode

# The wire limits, each defined once. The data limit is shared with the model and the CDB
# builders, so it lives in ``scsi_pr.sim.constants`` and is re-exported here.
PR_HELPER_CDB_SIZE = 16  # QEMU scsi/pr-helper.h PR_HELPER_CDB_SIZE: every CDB, zero padded
PR_HELPER_SENSE_SIZE = 96  # QEMU scsi/pr-helper.h PR_HELPER_SENSE_SIZE: every reply's sense
FEATURES_SIZE = 4  # u32 BE, each way, helper first
RESULT_AND_SIZE = struct.Struct(">ii")  # a response's result s32 and sz s32, big-endian
RESPONSE_HEADER_SIZE = RESULT_AND_SIZE.size + PR_HELPER_SENSE_SIZE  # then the sense

# The only opcodes the protocol carries; plain ints so the per-request membership test is cheap.
PR_OPCODES = frozenset({int(Opcode.PERSISTENT_RESERVE_IN), int(Opcode.PERSISTENT_RESERVE_OUT)})
_PR_OUT = int(Opcode.PERSISTENT_RESERVE_OUT)

S32_MIN, S32_MAX = -(2**31), 2**31 - 1


def transfer_length(cdb: bytes) -> int:
    """QEMU's ``scsi_cdb_xfer`` for 5Eh/5Fh (group 2): the 16-bit value at CDB bytes 7-8.

    For PR OUT the standard's 32-bit PARAMETER LIST LENGTH (bytes 5-8) is thus read only in its
    low 16 bits, exactly as QEMU reads it on both sides of the socket.
    """
    return int.from_bytes(cdb[7:9], "big")


@dataclass(frozen=True)
class Features:
    """The 4-byte feature word each side sends once (no feature is defined: both send 0)."""

    flags: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.flags <= 0xFFFFFFFF:
            raise LocalProtocolError(f"feature word {self.flags!r} is not a u32")


@dataclass(frozen=True)
class Request:
    """One PERSISTENT RESERVE IN/OUT: 16-byte CDB, the passed fd, and PR OUT's parameter list.

    ``data`` is empty for PR IN; for PR OUT it has exactly ``transfer_length(cdb)`` bytes.
    ``is_pr_out``, ``transfer_length`` and ``allocation_length`` (PR IN's ALLOCATION LENGTH, 0
    for PR OUT: the most data-in the reply may carry) are read from the CDB once, at
    construction: the helper reads them several times per request, and a ``cached_property``
    costs a lock per first read (Python 3.11).
    """

    cdb: bytes
    data: bytes = b""
    fd: int | None = None
    is_pr_out: bool = field(init=False, repr=False, compare=False)
    transfer_length: int = field(init=False, repr=False, compare=False)
    allocation_length: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        cdb = self.cdb
        if len(cdb) != PR_HELPER_CDB_SIZE:
            raise LocalProtocolError(f"CDB must be {PR_HELPER_CDB_SIZE} bytes, not {len(cdb)}")
        if cdb[0] not in PR_OPCODES:
            raise LocalProtocolError(f"opcode {cdb[0]:#04x} is not PERSISTENT RESERVE IN/OUT")
        length = transfer_length(cdb)
        if length > PR_HELPER_DATA_SIZE:
            raise LocalProtocolError(f"transfer length {length} exceeds {PR_HELPER_DATA_SIZE}")
        wanted = length if cdb[0] == _PR_OUT else 0
        if len(self.data) != wanted:
            raise LocalProtocolError(f"data is {len(self.data)} bytes, the CDB says {wanted}")
        self._derive(length)

    def _derive(self, length: int) -> None:
        """Set the fields read from the CDB (frozen: once, here); ``length`` is its transfer
        length."""
        setattr_ = object.__setattr__
        pr_out = self.cdb[0] == _PR_OUT
        setattr_(self, "is_pr_out", pr_out)
        setattr_(self, "transfer_length", length)
        setattr_(self, "allocation_length", 0 if pr_out else length)

    @classmethod
    def parsed(cls, cdb: bytes, data: bytes, fd: int, transfer: int) -> Request:
        """A request the codec has read and checked as ``__post_init__`` checks (16-byte CDB,
        a PR opcode, ``transfer`` = ``transfer_length(cdb)`` within the limit, PR OUT data of
        that length), built without checking it twice: this runs for every request, and under
        TCG every Python step of the helper's request path shows in its round trip."""
        self = object.__new__(cls)
        setattr_ = object.__setattr__
        setattr_(self, "cdb", cdb)
        setattr_(self, "data", data)
        setattr_(self, "fd", fd)
        self._derive(transfer)
        return self

    @classmethod
    def build(cls, cdb: bytes, data: bytes = b"", fd: int | None = None) -> Request:
        """Pad a 10-byte PR CDB to 16 bytes as QEMU does before sending it."""
        if not 1 <= len(cdb) <= PR_HELPER_CDB_SIZE:
            raise LocalProtocolError(f"CDB length {len(cdb)} is not 1..{PR_HELPER_CDB_SIZE}")
        return cls(cdb.ljust(PR_HELPER_CDB_SIZE, b"\0"), data, fd)


@dataclass(frozen=True)
class Response:
    """``result`` (the SCSI status QEMU uses verbatim), 96 bytes of sense, PR IN data-in."""

    status: int
    sense: bytes = bytes(PR_HELPER_SENSE_SIZE)
    data: bytes = b""

    def __post_init__(self) -> None:
        if not S32_MIN <= self.status <= S32_MAX:
            raise LocalProtocolError(f"result {self.status!r} is not an s32")
        if len(self.sense) != PR_HELPER_SENSE_SIZE:
            raise LocalProtocolError(f"sense must be {PR_HELPER_SENSE_SIZE} bytes")
        if len(self.data) > PR_HELPER_DATA_SIZE:
            raise LocalProtocolError(f"data-in exceeds {PR_HELPER_DATA_SIZE} bytes")


@dataclass(frozen=True)
class ConnectionClosed:
    """The peer closed at a frame boundary (after a handshake or a complete exchange)."""


Event = Features | Request | Response | ConnectionClosed
