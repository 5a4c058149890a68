"""The codec's client side (QEMU's end of the qemu-pr-helper socket) and the request builder,
which the mutation run found reached by one round trip only: how many bytes a reply still
needs, what an idle client does with bytes or EOF, replies that would trip QEMU's assertions,
and ``Request.build``/``Request``'s checks. No sockets."""

from __future__ import annotations

import struct

import pytest

from scsi_pr.helper.proto import (
    NEED_DATA,
    Connection,
    ConnectionClosed,
    Features,
    LocalProtocolError,
    RemoteProtocolError,
    Request,
    Response,
    ResponseTooLong,
    Role,
    State,
)
from scsi_pr.helper.proto.errors import UnsolicitedData
from scsi_pr.sim.cdb import persistent_reserve_in, persistent_reserve_out, pr_out_parameters

HEADER = 8 + 96  # result, sz, sense
READ_KEYS_16 = persistent_reserve_in(0, 16)
REGISTER = persistent_reserve_out(0, 24)


def idle_client() -> Connection:
    client = Connection(Role.CLIENT)
    client.receive_data(b"\0\0\0\0")
    assert client.next_event() == Features(0)
    client.send(Features(0))
    assert client.state is State.IDLE
    return client


def reply(status: int, data: bytes = b"") -> bytes:
    return struct.pack(">ii", status, len(data)) + bytes(96) + data


def test_bytes_needed_follows_the_reply_header() -> None:
    client = idle_client()
    assert client.bytes_needed == 0  # an idle client reads nothing
    client.send(Request.build(READ_KEYS_16))
    assert client.bytes_needed == HEADER
    wire = reply(0, bytes(range(16)))
    client.receive_data(wire[:5])
    assert client.bytes_needed == HEADER - 5
    client.receive_data(wire[5:HEADER])
    assert client.bytes_needed == 16  # the header says 16 bytes of data-in follow
    assert client.next_event() is NEED_DATA
    client.receive_data(wire[HEADER:])
    assert client.bytes_needed == 0
    assert client.next_event() == Response(0, bytes(96), bytes(range(16)))
    assert client.pending is None and client.state is State.IDLE


def test_a_negative_size_needs_no_data_and_is_refused() -> None:
    client = idle_client()
    client.send(Request.build(READ_KEYS_16))
    client.receive_data(struct.pack(">ii", 0, -4) + bytes(96))
    assert client.bytes_needed == 0
    with pytest.raises(ResponseTooLong, match=r"sz=-4 outside 0\.\.16"):
        client.next_event()


def test_a_reply_longer_than_the_allocation_length_is_refused() -> None:
    client = idle_client()
    client.send(Request.build(READ_KEYS_16))
    client.receive_data(reply(0, bytes(17)))
    with pytest.raises(ResponseTooLong):
        client.next_event()
    assert client.state is State.ERROR


def test_idle_client_waits_then_sees_the_close() -> None:
    client = idle_client()
    assert client.next_event() is NEED_DATA
    client.receive_data(b"")
    assert client.next_event() == ConnectionClosed()


def test_bytes_from_the_helper_without_a_request_are_refused() -> None:
    client = idle_client()
    client.receive_data(b"\0")
    with pytest.raises(UnsolicitedData, match=r"^helper sent bytes without a request$"):
        client.next_event()
    assert isinstance(UnsolicitedData("x"), RemoteProtocolError)


def test_helper_refuses_replies_qemu_would_assert_on() -> None:
    helper = Connection(Role.HELPER)
    helper.send(Features(0))
    helper.receive_data(b"\0\0\0\0")
    helper.next_event()
    helper.receive_data(REGISTER.ljust(16, b"\0") + pr_out_parameters(0, 1), [5])
    assert helper.next_event() == Request(REGISTER.ljust(16, b"\0"), pr_out_parameters(0, 1), 5)
    only_good = r"^only a GOOD PR IN reply may carry data \(QEMU asserts\)$"
    with pytest.raises(LocalProtocolError, match=only_good):
        helper.send(Response(0, bytes(96), b"x"))
    helper.send(Response(0))
    helper.receive_data(READ_KEYS_16.ljust(16, b"\0"), [6])
    helper.next_event()
    with pytest.raises(LocalProtocolError, match="17 bytes of data-in exceed ALLOCATION LENGTH 16"):
        helper.send(Response(0, bytes(96), bytes(17)))
    with pytest.raises(LocalProtocolError, match=only_good):
        helper.send(Response(2, bytes(96), bytes(1)))
    assert helper.send(Response(0, bytes(96), bytes(16)))[:8] == struct.pack(">ii", 0, 16)


def test_request_build_pads_to_sixteen_bytes() -> None:
    request = Request.build(READ_KEYS_16, fd=3)
    assert request == Request(READ_KEYS_16 + bytes(6), b"", 3)
    assert Request.build(READ_KEYS_16.ljust(16, b"\0")).cdb == READ_KEYS_16 + bytes(6)
    data = pr_out_parameters(0, 1)
    assert Request.build(REGISTER, data).data == data
    assert (request.is_pr_out, request.transfer_length, request.allocation_length) == (
        False,
        16,
        16,
    )
    out = Request.build(REGISTER, data)
    assert (out.is_pr_out, out.transfer_length, out.allocation_length) == (True, 24, 0)


@pytest.mark.parametrize(
    ("cdb", "data", "message"),
    [
        (b"", b"", "CDB length 0 is not 1..16"),
        (bytes(17), b"", "CDB length 17 is not 1..16"),
        (bytes([0x12]), b"", "opcode 0x12 is not PERSISTENT RESERVE IN/OUT"),
        (persistent_reserve_in(0, 8193), b"", "transfer length 8193 exceeds 8192"),
        (REGISTER, bytes(23), "data is 23 bytes, the CDB says 24"),
        (READ_KEYS_16, b"x", "data is 1 bytes, the CDB says 0"),
    ],
)
def test_request_checks(cdb: bytes, data: bytes, message: str) -> None:
    with pytest.raises(LocalProtocolError, match=message):
        Request.build(cdb, data)


def test_request_needs_exactly_sixteen_bytes() -> None:
    with pytest.raises(LocalProtocolError, match="CDB must be 16 bytes, not 10"):
        Request(READ_KEYS_16)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"status": 2**31}, "is not an s32"),
        ({"status": -(2**31) - 1}, "is not an s32"),
        ({"status": 0, "sense": bytes(95)}, "sense must be 96 bytes"),
        ({"status": 0, "data": bytes(8193)}, "data-in exceeds 8192 bytes"),
    ],
)
def test_response_checks(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(LocalProtocolError, match=message):
        Response(**kwargs)  # type: ignore[arg-type]
    assert Response(2**31 - 1).status == 2**31 - 1 and Response(-(2**31)).status == -(2**31)


def test_response_may_carry_exactly_the_largest_data_in() -> None:
    assert len(Response(0, bytes(96), bytes(8192)).data) == 8192


def test_error_releases_every_fd_the_codec_holds() -> None:
    """Once the connection is in ERROR, ``release_fds`` hands back the fds pinned to a partial
    CDB and the ones queued behind it, and nothing twice."""
    helper = Connection(Role.HELPER)
    helper.send(Features(0))
    helper.receive_data(b"\0\0\0\0")
    helper.next_event()
    helper.receive_data(READ_KEYS_16[:4], [5])  # a CDB cut short holds fd 5
    assert helper.next_event() is NEED_DATA
    helper.receive_data(b"", [])  # EOF mid-CDB: ShortRead, ERROR
    helper._fd_queue.append((99, [6, 7]))  # fds that arrived behind the CDB
    with pytest.raises(RemoteProtocolError):
        helper.next_event()
    assert sorted(helper.release_fds()) == [5, 6, 7]
    assert helper.release_fds() == []


def test_features_must_be_a_u32() -> None:
    assert Features(0xFFFFFFFF).flags == 0xFFFFFFFF
    for flags in (-1, 2**32):
        with pytest.raises(LocalProtocolError, match="is not a u32"):
            Features(flags)


def test_markers_read_as_their_names() -> None:
    from scsi_pr.helper.proto import PAUSED

    assert (repr(NEED_DATA), repr(PAUSED)) == ("NEED_DATA", "PAUSED")


# -- state a connection keeps, and file descriptors ------------------------------------------
def test_peer_features_and_the_pending_request() -> None:
    client = Connection(Role.CLIENT)
    assert (client.peer_features, client.pending) == (None, None)
    client.receive_data(b"\x80\0\0\x01")
    assert client.next_event() == Features(0x80000001)
    assert client.peer_features == 0x80000001
    client.send(Features(0))
    request = Request.build(READ_KEYS_16)
    client.send(request)
    assert client.pending == request
    helper = Connection(Role.HELPER)
    helper.send(Features(0))
    helper.receive_data(b"\0\0\0\0")
    helper.next_event()
    assert helper.pending is None
    helper.receive_data(request.cdb, [4])
    got = helper.next_event()
    assert helper.pending == got
    helper.send(Response(0))
    assert helper.pending is None


def test_nothing_may_arrive_after_eof() -> None:
    for data, fds in ((b"\0", []), (b"", [9])):
        conn = Connection(Role.HELPER)
        conn.receive_data(b"")
        with pytest.raises(LocalProtocolError, match=r"^data received after EOF$"):
            conn.receive_data(data, fds)
        assert conn.release_fds() == fds


def test_an_errored_connection_refuses_to_send() -> None:
    client = idle_client()
    client.receive_data(b"\0")
    with pytest.raises(UnsolicitedData):
        client.next_event()
    with pytest.raises(
        LocalProtocolError, match=r"^connection is in ERROR: helper sent bytes without a request$"
    ):
        client.send(Request.build(READ_KEYS_16))


def test_fds_are_pinned_to_the_bytes_they_came_with() -> None:
    """An fd sent with the features word is dropped (released), one sent with the CDB that
    follows belongs to that request, even when both arrive before either is parsed."""
    helper = Connection(Role.HELPER)
    helper.send(Features(0))
    helper.receive_data(b"\0\0\0\0", [3])
    helper.receive_data(READ_KEYS_16.ljust(16, b"\0"), [4])
    assert helper.next_event() == Features(0)
    assert helper.peer_features == 0
    assert helper.next_event() == Request(READ_KEYS_16.ljust(16, b"\0"), b"", 4)
    assert helper.release_fds() == [3]
    helper.send(Response(0, bytes(96), bytes(16)))
    helper.receive_data(b"\0" * 4, [5])  # fds in the middle of a CDB: the first one counts
    helper.receive_data(READ_KEYS_16[4:10], [6])
    with pytest.raises(RemoteProtocolError):
        helper.next_event()  # two fds in one request
    assert sorted(helper.release_fds()) == [5, 6]


def test_fds_sent_with_the_close_are_released() -> None:
    helper = Connection(Role.HELPER)
    helper.send(Features(0))
    helper.receive_data(b"\0\0\0\0")
    helper.next_event()
    helper.receive_data(b"", [8])
    assert helper.next_event() == ConnectionClosed()
    assert helper.release_fds() == [8]


def test_a_send_the_state_forbids_names_role_event_and_state() -> None:
    with pytest.raises(
        LocalProtocolError, match=r"^helper cannot send Request in state SEND_FEATURES$"
    ):
        Connection(Role.HELPER).send(Request.build(READ_KEYS_16))
