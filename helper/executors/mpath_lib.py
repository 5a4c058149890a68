"""libmpathpersist through ctypes: the library qemu-pr-helper's multipath build links.

Why the library and not the ``mpathpersist`` program (measured on Debian 12's multipath-tools
0.9.4, and read in its ``mpathpersist/main.c``): the program opens the device by path name
(the fd QEMU passed cannot be used, which breaks in containers), prints PR IN answers only as
decoded text (``--hex`` dumps raw bytes through the library's logger on stderr, mixed with log
lines), and parses ``--transport-id`` only in the ``fcp,``/``sas,``/``iqn.`` text forms. The
library takes the fd, returns the device's parameter data in a struct, and its return value is
the MPATH_PR_* result the C helper maps.

Layouts (``libmpathpersist/mpath_persist.h``, x86-64 and arm64 alike; the library fills the
PR IN structs with the device's bytes and turns the header fields to host order):

- READ KEYS ``{u32 prgeneration; u32 additional_length; u8 key_list[8192]}``;
- READ RESERVATION the same header, then the device's 16-byte reservation descriptor;
- REPORT CAPABILITIES ``{u16 length; u8 flags[2]; u16 pr_type_mask; u16 reserved}``;
- READ FULL STATUS ``{u32 prgeneration; u32 number_of_descriptor; u8 private_buffer[8192];
  struct prin_fulldescr *descriptors[]}``, the descriptors parsed into ``private_buffer`` as
  ``{u8 key[8]; u8 flag; u8 scope_type; u16 rtpi; struct transportid trnptid}`` (270 bytes);
- PR OUT ``struct prout_param_descriptor {u8 key[8]; u8 sa_key[8]; u32 obsolete; u8 sa_flags;
  u8 reserved; u16 obsolete1; u8 private_buffer[8192]; u32 num_transportid;
  struct transportid *trnptid_list[];}``, a ``struct transportid`` being
  ``{u8 format_code; u8 protocol_id; union {u8 n_port_name[8]; u8 sas_address[8];
  u8 iscsi_name[256];}}`` where ``iscsi_name`` holds the TransportID from its ADDITIONAL
  LENGTH on (the library copies ``iscsi_name[1] + 2`` bytes).

Everything above the ``Library`` class is pure, for tests without the library.
"""

from __future__ import annotations

import ctypes
import struct
import threading

from scsi_pr.helper.errors import HelperError
from scsi_pr.sim.constants import (
    PR_HELPER_DATA_SIZE,
    PersistentReserveInAction,
    ProtocolIdentifier,
)
from scsi_pr.sim.transportid import FIXED_TRANSPORT_ID_LENGTH, ISCSI_MIN_ADDITIONAL_LENGTH

IN = PersistentReserveInAction
MAX_PARAM_LEN = 8192  # MPATH_MAX_PARAM_LEN
MAX_TRANSPORT_IDS = 32  # MPATH_MX_TIDS
PR_IN_HEADER = struct.Struct("=II")
CAPABILITIES = struct.Struct("=H2sH2x")
FULL_DESCRIPTOR = struct.Struct("=8sBBH")  # then struct transportid
TRANSPORT_ID_SIZE = 2 + 256
FULL_DESCRIPTOR_SIZE = FULL_DESCRIPTOR.size + TRANSPORT_ID_SIZE  # 270, 2-aligned
#: full-status descriptors that fit the library's private buffer; beyond it the library writes
#: over its own pointer array, so only these are read back
MAX_FULL_DESCRIPTORS = MAX_PARAM_LEN // FULL_DESCRIPTOR_SIZE
#: PR IN answer buffer: the largest union member plus the descriptor pointers READ FULL STATUS
#: may write (one per 24 bytes of parameter data), rounded up generously
PR_IN_BUFFER_SIZE = 4 * MAX_PARAM_LEN
PROUT_FIXED = struct.Struct("=8s8s4xB3x")
NUM_TRANSPORT_IDS_OFFSET = PROUT_FIXED.size + MAX_PARAM_LEN  # 8216
TRANSPORT_ID_LIST_OFFSET = NUM_TRANSPORT_IDS_OFFSET + 8  # the pointer array is 8-aligned
PROUT_SIZE = TRANSPORT_ID_LIST_OFFSET + 8 * MAX_TRANSPORT_IDS


class TransportIdUnsupported(HelperError, ValueError):
    """A TransportID the library's struct cannot carry (protocol other than FC, SAS, iSCSI)."""


# -- PR OUT: our bytes -> the library's structs -------------------------------------------------
def library_transport_id(tid: bytes) -> bytes:
    """SPC TransportID bytes -> ``struct transportid`` (258 bytes)."""
    out = bytearray(TRANSPORT_ID_SIZE)
    out[0], out[1] = tid[0] & 0xC0, tid[0] & 0x0F
    protocol = tid[0] & 0x0F
    if protocol == ProtocolIdentifier.FIBRE_CHANNEL:
        out[2:10] = tid[8:16]
    elif protocol == ProtocolIdentifier.SAS:
        out[2:10] = tid[4:12]
    elif protocol == ProtocolIdentifier.ISCSI:
        body = tid[2 : 4 + int.from_bytes(tid[2:4], "big")]
        out[2 : 2 + len(body)] = body[:256]
    else:
        raise TransportIdUnsupported(f"protocol identifier {protocol:#x}")
    return bytes(out)


def prout_descriptor(key: bytes, sa_key: bytes, flags: int) -> bytearray:
    """A zeroed ``struct prout_param_descriptor`` with the fixed fields set; the caller adds
    the TransportID count and pointers (addresses exist only at the edge)."""
    buf = bytearray(PROUT_SIZE)
    PROUT_FIXED.pack_into(buf, 0, key, sa_key, flags)
    return buf


# -- PR IN: the library's structs -> the device's parameter data --------------------------------
def parameter_data(action: int, resp: bytes) -> bytes:
    """The PR IN parameter data the device sent, rebuilt from what the library left in
    ``resp`` (READ FULL STATUS: from its parsed descriptors)."""
    if action == IN.REPORT_CAPABILITIES:
        length, flags, mask = CAPABILITIES.unpack_from(resp)
        return struct.pack(">H2sH2x", length, flags, mask)
    generation, length = PR_IN_HEADER.unpack_from(resp)
    if action == IN.READ_FULL_STATUS:
        return full_status_data(generation, length, resp)
    length = min(length, MAX_PARAM_LEN)
    return struct.pack(">II", generation, length) + resp[8 : 8 + length]


def full_status_data(generation: int, count: int, resp: bytes) -> bytes:
    """READ FULL STATUS parameter data (SPC-5 6.16.5) from the library's descriptors."""
    body = bytearray()
    for i in range(min(count, MAX_FULL_DESCRIPTORS)):
        at = PR_IN_HEADER.size + i * FULL_DESCRIPTOR_SIZE
        key, flag, scope_type, rtpi = FULL_DESCRIPTOR.unpack_from(resp, at)
        tid = spc_transport_id(resp[at + FULL_DESCRIPTOR.size : at + FULL_DESCRIPTOR_SIZE])
        body += struct.pack(">8s4xBB4xHI", key, flag, scope_type, rtpi, len(tid)) + tid
    return struct.pack(">II", generation, len(body)) + bytes(body)


def spc_transport_id(lib: bytes) -> bytes:
    """``struct transportid`` (as the library decoded it) -> SPC TransportID bytes."""
    format_code, protocol = lib[0] & 0x03, lib[1] & 0x0F
    out = bytearray(FIXED_TRANSPORT_ID_LENGTH)
    out[0] = format_code << 6 | protocol
    if protocol == ProtocolIdentifier.FIBRE_CHANNEL:
        out[8:16] = lib[2:10]
    elif protocol == ProtocolIdentifier.SAS:
        out[4:12] = lib[2:10]
    elif protocol == ProtocolIdentifier.ISCSI:
        # the library kept the name (NUL-terminated, ISID included for format 01b), not its
        # length: padded again as devices pad it (a multiple of 4, at least 20)
        name = lib[2:].split(b"\0", 1)[0] + b"\0"
        length = max(ISCSI_MIN_ADDITIONAL_LENGTH, -(-len(name) // 4) * 4)
        return bytes(out[:2]) + length.to_bytes(2, "big") + name.ljust(length, b"\0")
    return bytes(out)


# -- the edge --------------------------------------------------------------------------------
SONAME = "libmpathpersist.so.0"


class LibraryUnavailable(HelperError, OSError):
    """libmpathpersist cannot be loaded or initialised on this host."""


class Library:
    """The loaded library, initialised once (``libmpathpersist_init``: reads multipath.conf).

    Calls are serialised: the library keeps its configuration and verbosity in globals.
    """

    def __init__(self, noisy: bool = False, verbose: int = 0) -> None:
        try:
            self._lib = ctypes.CDLL(SONAME, use_errno=True)
        except OSError as e:
            raise LibraryUnavailable(f"{SONAME}: {e}") from e
        if self._lib.libmpathpersist_init() != 0:
            raise LibraryUnavailable("libmpathpersist_init failed (multipath configuration)")
        # as the C helper: PR IN asks for the helper's whole data buffer
        ctypes.c_uint.in_dll(self._lib, "mpath_mx_alloc_len").value = PR_HELPER_DATA_SIZE
        self.noisy, self.verbose = int(noisy), min(verbose, 3)
        self._lock = threading.Lock()

    def pr_in(self, fd: int, action: int) -> tuple[int, bytes]:
        """(MPATH_PR_* result, the PR IN parameter data)."""
        resp = ctypes.create_string_buffer(PR_IN_BUFFER_SIZE)
        with self._lock:
            rc = self._lib.mpath_persistent_reserve_in(fd, action, resp, self.noisy, self.verbose)
        return rc, parameter_data(action, resp.raw) if rc == 0 else b""

    def pr_out(
        self,
        fd: int,
        action: int,
        scope: int,
        type_: int,
        fixed: tuple[bytes, bytes, int],
        transport_ids: list[bytes],
    ) -> int:
        """MPATH_PR_* result of a PR OUT; ``fixed`` = (RESERVATION KEY, SERVICE ACTION
        RESERVATION KEY, byte 20 flags). TransportIDs beyond the library's 32 are refused by
        the caller."""
        descriptor = ctypes.create_string_buffer(bytes(prout_descriptor(*fixed)), PROUT_SIZE)
        tids = [ctypes.create_string_buffer(library_transport_id(t)) for t in transport_ids]
        struct.pack_into("=I", descriptor, NUM_TRANSPORT_IDS_OFFSET, len(tids))
        for i, tid in enumerate(tids):
            at = TRANSPORT_ID_LIST_OFFSET + 8 * i
            struct.pack_into("=Q", descriptor, at, ctypes.addressof(tid))
        with self._lock:
            return int(
                self._lib.mpath_persistent_reserve_out(
                    fd, action, scope, type_, descriptor, self.noisy, self.verbose
                )
            )

    def close(self) -> None:
        with self._lock:
            self._lib.libmpathpersist_exit()
