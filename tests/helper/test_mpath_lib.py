"""libmpathpersist's structs as ``mpath_lib`` packs and reads them, without the library.

The offsets are checked against ctypes' own layout of the header's structs (the C compiler's
rules, not our arithmetic), and every PR IN rebuild against the bytes a device sends: the model's
writers (``scsi_pr.sim.pr_in``) for the same state."""

from __future__ import annotations

import ctypes
import struct

import pytest
from mpath_layout import MAX_TRANSPORT_IDS, ProutParamDescriptor, TransportIdStruct

from scsi_pr.helper.executors import mpath_lib as M
from scsi_pr.sim import pr_in
from scsi_pr.sim.constants import ReservationType
from scsi_pr.sim.transportid import TransportId


class _FullDescriptor(ctypes.Structure):
    _fields_ = [("key", ctypes.c_uint8 * 8), ("flag", ctypes.c_uint8),
                ("scope_type", ctypes.c_uint8), ("rtpi", ctypes.c_uint16),
                ("trnptid", TransportIdStruct)]  # fmt: skip


def test_offsets_follow_the_c_layout() -> None:
    assert ctypes.sizeof(TransportIdStruct) == M.TRANSPORT_ID_SIZE == 258
    assert ctypes.sizeof(_FullDescriptor) == M.FULL_DESCRIPTOR_SIZE == 270
    assert ProutParamDescriptor.sa_flags.offset == 20
    assert ProutParamDescriptor.num_transportid.offset == M.NUM_TRANSPORT_IDS_OFFSET
    assert ProutParamDescriptor.trnptid_list.offset == M.TRANSPORT_ID_LIST_OFFSET
    assert ctypes.sizeof(ProutParamDescriptor) == M.PROUT_SIZE
    assert M.MAX_TRANSPORT_IDS == MAX_TRANSPORT_IDS
    assert M.MAX_FULL_DESCRIPTORS == 30


def test_prout_descriptor_fixed_fields() -> None:
    buf = M.prout_descriptor((1).to_bytes(8, "big"), (2).to_bytes(8, "big"), 0x0D)
    view = ProutParamDescriptor.from_buffer(buf)
    assert bytes(view.key) == (1).to_bytes(8, "big")
    assert bytes(view.sa_key) == (2).to_bytes(8, "big")
    assert view.sa_flags == 0x0D and view.num_transportid == 0
    assert len(buf) == M.PROUT_SIZE


ISCSI = TransportId.iscsi("iqn.2020-01.example:node1", 0x23D000000001)
FC = TransportId.fibre_channel(0x21000024FF123456)
SAS = TransportId.sas(0x5001405F00000001)


@pytest.mark.parametrize(
    ("tid", "format_code", "protocol", "name"),
    [
        (FC, 0, 0x00, (0x21000024FF123456).to_bytes(8, "big")),
        (SAS, 0, 0x06, (0x5001405F00000001).to_bytes(8, "big")),
        # iSCSI: from the ADDITIONAL LENGTH on, as the library copies iscsi_name[1] + 2 bytes
        (ISCSI, 0x40, 0x05, ISCSI.encode()[2:]),
    ],
)
def test_transport_ids_in_the_library_form(
    tid: TransportId, format_code: int, protocol: int, name: bytes
) -> None:
    lib = M.library_transport_id(tid.encode())
    assert (lib[0], lib[1]) == (format_code, protocol)
    assert lib[2 : 2 + len(name)] == name and not any(lib[2 + len(name) :])


def test_a_protocol_the_library_has_no_form_for_is_refused() -> None:
    with pytest.raises(M.TransportIdUnsupported):
        M.library_transport_id(b"\x01" + bytes(23))  # SCSI parallel


def host_header(generation: int, length: int) -> bytes:
    """What the library leaves: the header fields turned to host order."""
    return M.PR_IN_HEADER.pack(generation, length)


def test_read_keys_comes_back_as_the_device_sent_it() -> None:
    device = pr_in.keys_data(7, [0xA, 0xB])
    resp = host_header(7, 16) + device[8:] + bytes(100)
    assert M.parameter_data(0, resp) == device


def test_read_reservation_comes_back_as_the_device_sent_it() -> None:
    held = (0xA, pr_in.scope_type(0, ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY))
    device = pr_in.reservation_data(3, held)
    assert M.parameter_data(1, host_header(3, 16) + device[8:]) == device
    assert M.parameter_data(1, host_header(3, 0) + bytes(16)) == pr_in.reservation_data(3, None)


def test_report_capabilities_comes_back_as_the_device_sent_it() -> None:
    device = pr_in.capabilities_data(pr_in.PTPL_C, pr_in.TMV)
    length, flags, mask = struct.unpack_from(">H2sH", device)
    assert M.parameter_data(2, struct.pack("=H2sH2x", length, flags, mask)) == device


def decoded(tid: bytes) -> bytes:
    """A TransportID as the library's parser leaves it in ``struct transportid``."""
    out = bytearray(M.TRANSPORT_ID_SIZE)
    out[0], out[1] = tid[0] >> 6 & 3, tid[0] & 0x0F
    if out[1] == 0x05:
        length = int.from_bytes(tid[2:4], "big")
        out[2 : 2 + length] = tid[4 : 4 + length]
    else:
        out[2:10] = tid[8:16] if out[1] == 0 else tid[4:12]
    return bytes(out)


def test_read_full_status_is_rebuilt_from_the_library_s_descriptors() -> None:
    rows = [  # key, ALL_TG_PT/R_HOLDER, scope/type, RTPI, TransportID
        (0xA, 0x01, 0x05, 1, ISCSI.encode()),
        (0xA, 0x00, 0x00, 2, FC.encode()),
        (0xB, 0x02, 0x00, 3, SAS.encode()),
    ]
    device = b"".join(
        pr_in.FULL_STATUS_DESCRIPTOR.pack(key, flag, st, rtpi, len(tid)) + tid
        for key, flag, st, rtpi, tid in rows
    )
    resp = bytearray(host_header(9, len(rows)))
    for key, flag, st, rtpi, tid in rows:
        resp += M.FULL_DESCRIPTOR.pack(key.to_bytes(8, "big"), flag, st, rtpi) + decoded(tid)
    assert M.parameter_data(3, bytes(resp)) == struct.pack(">II", 9, len(device)) + device
    assert M.parameter_data(3, host_header(9, 0)) == struct.pack(">II", 9, 0)
