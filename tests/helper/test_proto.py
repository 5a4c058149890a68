"""The sans-IO codec: frame tables both ways, a QEMU/helper pair joined by bytes, and
hypothesis splitting the stream at every boundary. No sockets."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scsi_pr.helper.proto import (
    NEED_DATA,
    PAUSED,
    Connection,
    ConnectionClosed,
    Features,
    LocalProtocolError,
    MissingFileDescriptor,
    RemoteProtocolError,
    Request,
    Response,
    ResponseTooLong,
    Role,
    ShortRead,
    State,
    TooManyFileDescriptors,
    TransferTooLong,
    UnsupportedFeatures,
    UnsupportedOpcode,
)
from scsi_pr.sim.cdb import persistent_reserve_in, persistent_reserve_out, pr_out_parameters

FD = 7
READ_KEYS = persistent_reserve_in(0, 0x2000).ljust(16, b"\0")
REGISTER = persistent_reserve_out(0, 24).ljust(16, b"\0")
PARAMS = pr_out_parameters(0, 0x1234)
READ_KEYS_8 = persistent_reserve_in(0, 8).ljust(16, b"\0")
KEY_1 = b"\0\0\0\x01\0\0\0\0"


def helper_after_handshake() -> Connection:
    conn = Connection(Role.HELPER)
    assert conn.send(Features(0)) == b"\0\0\0\0"
    conn.receive_data(b"\0\0\0\0")
    assert conn.next_event() == Features(0)
    assert conn.state is State.IDLE
    return conn


def feed(conn: Connection, chunks: list[tuple[bytes, list[int]]]) -> list[object]:
    events: list[object] = []
    for data, fds in chunks:
        conn.receive_data(data, fds)
        while True:
            ev = conn.next_event()
            if ev is NEED_DATA or ev is PAUSED:
                break
            events.append(ev)
            if isinstance(ev, ConnectionClosed):
                return events
    return events


# ((role, state), event, bytes): each event encodes to exactly these bytes, and parses back.
FRAMES = [
    (Features(0), b"\0\0\0\0"),
    (Features(0x80000001), b"\x80\0\0\x01"),
    (Request(READ_KEYS), READ_KEYS),
    (Request(REGISTER, PARAMS), REGISTER + PARAMS),
    (Response(0, bytes(96), KEY_1), struct.pack(">ii", 0, 8) + bytes(96) + KEY_1),
    (Response(0x18), struct.pack(">ii", 0x18, 0) + bytes(96)),
]


@pytest.mark.parametrize(("event", "wire"), FRAMES)
def test_frame_table_writers(event: object, wire: bytes) -> None:
    from scsi_pr.helper.proto import writers

    write = {
        Features: writers.write_features,
        Request: writers.write_request,
        Response: writers.write_response,
    }[type(event)]
    assert write(event) == wire


def test_helper_reads_pr_in_and_pr_out() -> None:
    conn = helper_after_handshake()
    events = feed(conn, [(READ_KEYS, [FD])])
    assert events == [Request(READ_KEYS, b"", FD)]
    assert conn.state is State.SEND_RESPONSE
    assert conn.next_event() is PAUSED
    wire = conn.send(Response(0, bytes(96), b"\0" * 8))
    assert wire[:8] == struct.pack(">ii", 0, 8)
    events = feed(conn, [(REGISTER, [FD + 1]), (PARAMS, [])])
    assert events == [Request(REGISTER, PARAMS, FD + 1)]
    conn.send(Response(0x18))
    assert feed(conn, [(b"", [])]) == [ConnectionClosed()]
    assert conn.state is State.CLOSED


def test_client_and_helper_pair_round_trip() -> None:
    helper, client = Connection(Role.HELPER), Connection(Role.CLIENT)
    client.receive_data(helper.send(Features(0)))
    assert client.next_event() == Features(0)
    helper.receive_data(client.send(Features(0)))
    assert helper.next_event() == Features(0)
    for request, reply in [
        (Request(REGISTER, PARAMS, FD), Response(0)),
        (Request(READ_KEYS, b"", FD), Response(0, bytes(96), bytes(range(16)))),
        (Request(READ_KEYS, b"", FD), Response(2, b"\x70" + bytes(95))),
    ]:
        wire = client.send(request)
        helper.receive_data(wire[:16], [FD])
        if wire[16:]:
            helper.receive_data(wire[16:])
        got = helper.next_event()
        assert got == request
        client.receive_data(helper.send(reply))
        assert client.next_event() == reply
        assert client.state is State.IDLE and helper.state is State.IDLE


@pytest.mark.parametrize(
    ("chunks", "error", "reason"),
    [
        ([(READ_KEYS, [])], MissingFileDescriptor, "^No file descriptor in request.$"),
        ([(READ_KEYS, [FD, FD + 1])], TooManyFileDescriptors, "2 file descriptors"),
        (
            [(READ_KEYS[:4], [FD]), (READ_KEYS[4:], [FD + 1])],
            TooManyFileDescriptors,
            "2 file descriptors",
        ),
        ([(b"\x12" + bytes(15), [FD])], UnsupportedOpcode, "^Invalid CDB, closing socket.$"),
        ([(b"\x5e" + bytes(6) + b"\x20\x01" + bytes(7), [FD])], TransferTooLong, "exceeds 8192"),
        ([(READ_KEYS[:10], [FD]), (b"", [])], ShortRead, "mid-frame"),
        ([(REGISTER, [FD]), (PARAMS[:23], []), (b"", [])], ShortRead, "mid-frame"),
    ],
)
def test_protocol_violations_close(
    chunks: list[tuple[bytes, list[int]]], error: type[RemoteProtocolError], reason: str
) -> None:
    conn = helper_after_handshake()
    with pytest.raises(error, match=reason):
        feed(conn, chunks)
    assert conn.state is State.ERROR
    with pytest.raises(error):  # the same error again: the connection stays failed
        conn.next_event()
    released = conn.release_fds()
    assert sorted(released) == sorted(fd for _, fds in chunks for fd in fds)


def test_fd_sent_with_handshake_or_data_is_dropped_not_used() -> None:
    conn = Connection(Role.HELPER)
    conn.send(Features(0))
    conn.receive_data(b"\0\0\0\0", [FD])
    conn.next_event()
    assert conn.release_fds() == [FD]
    with pytest.raises(MissingFileDescriptor):
        feed(conn, [(READ_KEYS, [])])
    conn = helper_after_handshake()
    assert feed(conn, [(REGISTER, [FD]), (PARAMS, [FD + 1])]) == [Request(REGISTER, PARAMS, FD)]
    assert conn.release_fds() == [FD + 1]


def test_only_cdb_bytes_are_read_with_a_control_buffer() -> None:
    """The edge reads fds only where the codec takes them; elsewhere it reads without a
    control buffer and the kernel drops them, as for qemu-pr-helper."""
    conn = Connection(Role.HELPER)
    assert not conn.accepts_fds  # its features word to send
    conn.send(Features(0))
    assert not conn.accepts_fds  # the client's features word
    conn.receive_data(b"\0\0\0\0")
    assert isinstance(conn.next_event(), Features) and conn.accepts_fds  # a CDB, fds with it
    conn.receive_data(REGISTER[:5], [FD])
    assert conn.next_event() is NEED_DATA and conn.accepts_fds  # the rest of the CDB
    conn.receive_data(REGISTER[5:])
    assert conn.next_event() is NEED_DATA and not conn.accepts_fds  # the parameter list
    conn.receive_data(PARAMS)
    assert conn.next_event() == Request(REGISTER, PARAMS, FD) and not conn.accepts_fds  # answer
    conn.send(Response(0, bytes(96), b""))
    assert conn.accepts_fds
    client = Connection(Role.CLIENT)
    assert not client.accepts_fds  # the helper never sends fds


@pytest.mark.parametrize("word", [1, 0x80000000, 0xFFFFFFFF])
def test_handshake_with_unsupported_features_closes(word: int) -> None:
    conn = Connection(Role.HELPER)
    conn.send(Features(0))
    conn.receive_data(word.to_bytes(4, "big"))
    with pytest.raises(UnsupportedFeatures, match="unsupported features"):
        conn.next_event()


def test_handshake_eof_is_a_short_read() -> None:
    conn = Connection(Role.HELPER)
    conn.send(Features(0))
    conn.receive_data(b"\0\0")
    conn.receive_data(b"")
    with pytest.raises(ShortRead, match="mid-frame"):
        conn.next_event()


def test_prout_length_uses_only_cdb_bytes_7_8() -> None:
    cdb = bytearray(REGISTER)
    cdb[5:9] = (0x00010018).to_bytes(4, "big")  # 65560: QEMU reads 0x0018 = 24
    conn = helper_after_handshake()
    assert feed(conn, [(bytes(cdb), [FD]), (PARAMS, [])]) == [Request(bytes(cdb), PARAMS, FD)]


@pytest.mark.parametrize(
    ("request_", "reply"),
    [
        (Request(REGISTER, PARAMS, FD), Response(0, bytes(96), b"x")),
        (Request(READ_KEYS_8, b"", FD), Response(0, bytes(96), b"x" * 9)),
        (Request(READ_KEYS, b"", FD), Response(2, bytes(96), b"x")),
    ],
)
def test_helper_refuses_replies_that_abort_qemu(request_: Request, reply: Response) -> None:
    conn = helper_after_handshake()
    chunks = [(request_.cdb, [FD])] + ([(request_.data, [])] if request_.data else [])
    assert feed(conn, chunks) == [request_]
    with pytest.raises(LocalProtocolError):
        conn.send(reply)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cdb": bytes(15)}, "16 bytes"),
        ({"cdb": b"\x12" + bytes(15)}, "not PERSISTENT"),
        ({"cdb": REGISTER, "data": b""}, "the CDB says 24"),
        ({"cdb": READ_KEYS, "data": b"x"}, "the CDB says 0"),
    ],
)
def test_request_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(LocalProtocolError, match=match):
        Request(**kwargs)


def test_events_repr_is_valid_python() -> None:
    for ev in [Features(3), Request(REGISTER, PARAMS, 5), Response(0x18)]:
        assert eval(repr(ev)) == ev


def test_client_refuses_oversized_sz() -> None:
    client = Connection(Role.CLIENT)
    client.receive_data(b"\0\0\0\0")
    client.next_event()
    client.send(Features(0))
    client.send(Request(REGISTER, PARAMS, FD))
    client.receive_data(struct.pack(">ii", 0, 4) + bytes(96) + b"abcd")
    with pytest.raises(ResponseTooLong, match="sz=4"):
        client.next_event()


# --- hypothesis: any split of a valid stream parses to the same events ---------------------

STREAM = [(REGISTER, PARAMS), (READ_KEYS, b""), (REGISTER, PARAMS[:8] + bytes(16))]


@settings(max_examples=300, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=200), max_size=40), fd_pos=st.data())
def test_any_chunking_gives_same_events(cuts: list[int], fd_pos: st.DataObject) -> None:
    wire = b"\0\0\0\0"
    cdb_ranges = []
    for cdb, data in STREAM:
        cdb_ranges.append((len(wire), len(wire) + 16))
        wire += cdb + data
    # Split points: the random cuts plus, for each CDB, one point inside it where its fd rides.
    points = set()
    pos = 0
    for c in cuts:
        pos += c
        if pos < len(wire):
            points.add(pos)
    fd_at = {}
    for i, (a, b) in enumerate(cdb_ranges):
        p = fd_pos.draw(st.integers(min_value=a, max_value=b - 1))
        points.add(p)
        fd_at[p] = 100 + i
    conn = Connection(Role.HELPER)
    conn.send(Features(0))
    events: list[object] = []
    bounds = sorted(points | {0, len(wire)})
    for a, b in itertools.pairwise(bounds):
        conn.receive_data(wire[a:b], [fd_at[a]] if a in fd_at else [])
        while (ev := conn.next_event()) not in (NEED_DATA, PAUSED):
            events.append(ev)
            if isinstance(ev, Request):
                conn.send(Response(0x18))
    assert events == [Features(0)] + [
        Request(cdb, data, 100 + i) for i, (cdb, data) in enumerate(STREAM)
    ]
    assert conn.release_fds() == []


@settings(max_examples=300, deadline=None)
@given(cut=st.integers(min_value=0, max_value=4 + 16 + 24 - 1).filter(lambda c: c != 4))
def test_truncation_at_every_boundary_is_an_error_never_an_event(cut: int) -> None:
    # Every cut except 4 (right after the handshake, a clean close) is mid-frame.
    wire = b"\0\0\0\0" + REGISTER + PARAMS
    conn = Connection(Role.HELPER)
    conn.send(Features(0))
    conn.receive_data(wire[:4])
    if cut > 4:
        conn.next_event()
        conn.receive_data(wire[4:cut], [FD])
    else:
        conn = Connection(Role.HELPER)
        conn.send(Features(0))
        conn.receive_data(wire[:cut])
    conn.receive_data(b"")
    with pytest.raises(ShortRead, match="mid-frame"):
        for _ in range(3):
            assert not isinstance(conn.next_event(), Request | ConnectionClosed)
    assert conn.state is State.ERROR


@settings(max_examples=500, deadline=None)
@given(blob=st.binary(max_size=300), fds=st.lists(st.integers(3, 50), max_size=3))
def test_garbage_never_raises_anything_but_protocol_errors(blob: bytes, fds: list[int]) -> None:
    conn = Connection(Role.HELPER)
    conn.send(Features(0))
    conn.receive_data(blob, fds)
    conn.receive_data(b"")
    try:
        while True:
            ev = conn.next_event()
            if isinstance(ev, Request):
                assert ev.cdb[0] in (0x5E, 0x5F) and ev.fd in fds
                conn.send(Response(0))
            elif ev is NEED_DATA or isinstance(ev, ConnectionClosed):
                break
    except RemoteProtocolError:
        assert conn.state is State.ERROR


@pytest.mark.parametrize(
    "chunks",
    [
        [(b"\0\0", [FD])],  # fds on a partial handshake
        [(b"\0\0\0\0", []), (READ_KEYS[:9], [FD])],  # a CDB cut short
        [(b"\0\0\0\0", []), (READ_KEYS[:9], []), (READ_KEYS[9:12], [FD])],
        [(b"\0\0\0\0", []), (REGISTER, [FD])],  # PR OUT without its parameter list
        [(b"\0\0\0\0", []), (REGISTER, [FD]), (PARAMS[:5], [FD + 1])],
    ],
)
def test_abandon_hands_back_every_fd_of_a_broken_frame(
    chunks: list[tuple[bytes, list[int]]],
) -> None:
    """A reset or I/O error mid-frame is no protocol error: only ``abandon`` returns these."""
    conn = Connection(Role.HELPER)
    conn.send(Features(0))
    assert feed(conn, chunks)[1:] == []  # no request (at most the handshake)
    held = {fd for _, fds in chunks for fd in fds} - set(conn.release_fds())
    assert held  # the codec holds fds for the frame being read
    assert set(conn.abandon()) == held
    assert conn.abandon() == [] and conn.state is State.ERROR
    with pytest.raises(LocalProtocolError, match="abandoned"):
        conn.next_event()


def test_abandon_after_a_clean_close_or_a_request_holds_nothing() -> None:
    conn = helper_after_handshake()
    assert feed(conn, [(READ_KEYS, [FD])]) == [Request(READ_KEYS, b"", FD)]
    assert conn.abandon() == []  # the request's fd is the edge's own
    conn = helper_after_handshake()
    conn.receive_data(b"")
    assert isinstance(conn.next_event(), ConnectionClosed)
    assert conn.abandon() == [] and conn.state is State.CLOSED


@settings(max_examples=200)
@given(st.lists(st.binary(min_size=0, max_size=64), max_size=40))
def test_an_edge_reading_bytes_needed_buffers_at_most_one_frame_part(blobs: list[bytes]) -> None:
    """What the daemon relies on to never buffer more than one frame: ``bytes_needed`` never
    asks for more than the largest frame part (8192 bytes of PR OUT data)."""
    conn = helper_after_handshake()
    stream = b"".join(blobs) + REGISTER[:7] + b"\x20\x00" + REGISTER[9:] + bytes(9000)
    pos = 0
    try:
        while pos < len(stream):
            event = conn.next_event()
            if event is NEED_DATA:
                n = conn.bytes_needed
                assert 0 < n <= 8192
                conn.receive_data(stream[pos : pos + n], [FD] if pos % 16 == 0 else [])
                pos += n
                assert conn.buffered <= 8192
            elif event is PAUSED:
                conn.send(Response(0))
    except RemoteProtocolError:
        pass


def test_every_fd_sent_with_parameter_data_is_dropped() -> None:
    """Parameter data in two pieces, an fd with each: both are released, neither used."""
    conn = helper_after_handshake()
    chunks = [(REGISTER, [FD]), (PARAMS[:8], [FD + 1]), (PARAMS[8:], [FD + 2])]
    assert feed(conn, chunks) == [Request(REGISTER, PARAMS, FD)]
    assert conn.release_fds() == [FD + 1, FD + 2]


@pytest.mark.parametrize(
    ("cdb", "data"),
    [
        (persistent_reserve_in(0, 300).ljust(16, b"\0"), b""),
        (persistent_reserve_out(6, 24).ljust(16, b"\0"), pr_out_parameters(0, 0x51)),
    ],
    ids=["PR IN", "PR OUT"],
)
def test_a_parsed_request_is_the_checked_one(cdb: bytes, data: bytes) -> None:
    """The codec builds requests without checking them again (``Request.parsed``): every field,
    those read from the CDB included, must be what the checked constructor gives."""
    checked = Request(cdb, data, 9)
    parsed = Request.parsed(cdb, data, 9, checked.transfer_length)

    def fields(r: Request) -> tuple[object, ...]:
        return (r.cdb, r.data, r.fd, r.is_pr_out, r.transfer_length, r.allocation_length)

    assert fields(parsed) == fields(checked)
    assert fields(checked)[3:] in ((False, 300, 300), (True, 24, 0))
