"""TransportIDs (SPC-5 7.6.4): encode, parse, compare; and the human ``describe`` line."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scsi_pr.sim import cdb as C
from scsi_pr.sim.describe import describe
from scsi_pr.sim.transportid import (
    TransportId,
    TransportIdError,
    decode_transport_id,
    decode_transport_id_list,
)


def test_sas_bytes() -> None:
    tid = TransportId.from_name("naa.5001405000000001")
    assert tid.encode() == bytes([0x06, 0, 0, 0]) + bytes.fromhex("5001405000000001") + bytes(12)
    assert decode_transport_id(tid.encode()) == (tid, 24)


def test_fibre_channel_bytes() -> None:
    tid = TransportId.from_name("21:00:00:24:ff:00:00:01")
    assert tid.encode() == bytes(8) + bytes.fromhex("21000024ff000001") + bytes(8)
    assert str(tid) == "fc.21000024ff000001"
    assert decode_transport_id(tid.encode())[0] == tid


def test_iscsi_format_00_is_padded_to_at_least_20() -> None:
    tid = TransportId.iscsi("iqn.a")
    raw = tid.encode()
    assert raw[:4] == bytes([0x05, 0, 0, 20])
    assert raw[4:] == b"iqn.a".ljust(20, b"\0")


def test_iscsi_format_01_carries_the_isid() -> None:
    tid = TransportId.from_name("iqn.2026-01.org.example:node1,i,0x23d000000001")
    raw = tid.encode()
    body = b"iqn.2026-01.org.example:node1,i,0x23d000000001\0"
    assert raw[0] == 0x45 and int.from_bytes(raw[2:4], "big") == len(raw) - 4
    assert (len(raw) - 4) % 4 == 0 and raw[4 : 4 + len(body)] == body
    assert decode_transport_id(raw) == (tid, len(raw))


def test_iscsi_names_compare_case_insensitively_and_00_names_every_port() -> None:
    port = TransportId.iscsi("IQN.2026-01.Org.Example:N1", "23d000000001")
    device = TransportId.iscsi("iqn.2026-01.org.example:n1")
    assert device.matches(port)
    assert not port.matches(TransportId.iscsi("iqn.2026-01.org.example:n1", 1))
    assert not device.matches(TransportId.sas(1))


def test_list_decoding() -> None:
    tids = [TransportId.sas(1), TransportId.iscsi("iqn.x", 7), TransportId.fibre_channel(9)]
    assert decode_transport_id_list(b"".join(t.encode() for t in tids)) == tids


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x06\x00", "truncated"),
        (bytes([0x06]) + bytes(10), "fixed-length"),
        (bytes([0x0E]) + bytes(23), "unsupported"),
        (bytes([0x05, 0, 0, 6]) + b"iqn.ab", "ADDITIONAL LENGTH"),
        (bytes([0x05, 0, 0, 8]) + b"iqn.abcd", "NUL"),
        (bytes([0x45, 0, 0, 8]) + b"iqn.abc\0", "ISID"),
        (bytes([0x05, 0, 0, 8]) + b"iqn.\xff\0\0\0", "ASCII"),
    ],
)
def test_malformed_transport_ids(raw: bytes, message: str) -> None:
    with pytest.raises(TransportIdError, match=message):
        decode_transport_id(raw)


@pytest.mark.parametrize("name", ["", "host1", "naa.xyz", "fc.nothex", "iqn.a,b"])
def test_bad_names(name: str) -> None:
    with pytest.raises(ValueError):
        TransportId.from_name(name)


@given(st.binary(max_size=80))
def test_decoding_random_bytes_raises_only_transport_id_error(raw: bytes) -> None:
    try:
        tid, used = decode_transport_id(raw)
    except TransportIdError:
        return
    assert 0 < used <= len(raw)
    assert decode_transport_id(tid.encode())[0] == tid


@pytest.mark.parametrize(
    ("cdb_data", "text"),
    [
        (C.prout(4, 1, 2, 5), "PR OUT PREEMPT type=WE-RO key=0x1 sa_key=0x2"),
        (C.prout(0, 0, 0xABC, aptpl=True), "PR OUT REGISTER key=0x0 sa_key=0xabc aptpl"),
        (C.prout(3, 0x10), "PR OUT CLEAR key=0x10"),
        ((C.persistent_reserve_in(3), b""), "PR IN READ FULL STATUS alloc=8192"),
        ((C.read_10(5, 2), b""), "READ(10) lba=5 blocks=2"),
        ((b"", b""), "(empty CDB)"),
    ],
)
def test_describe(cdb_data: tuple[bytes, bytes], text: str) -> None:
    assert describe(*cdb_data) == text


@given(st.binary(max_size=20), st.binary(max_size=64))
def test_describe_never_raises(cdb: bytes, data: bytes) -> None:
    assert isinstance(describe(cdb, data), str)
