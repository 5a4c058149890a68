"""Seeded frames for the socket fuzzer: ``frames(seed) -> Iterator[Frame]`` and the oracle
``outcome(frame)`` that says what the helper must do with each.

A ``Frame`` is what one client does on one connection: how it opens (handshake or not), the
parts it writes (each one ``sendmsg``, with the kinds of fds to attach), and how it ends. It
holds no fds, only their kinds, so a frame is plain data: reproducible from the seed, printable,
and runnable by ``scsi_pr.helper.fuzz`` against any helper (the soak runs millions).

Why an oracle of its own rather than the codec: the fuzzer must judge the codec, so the rules
are restated here from the protocol (qemu-pr-helper's reads): the fds of a ``sendmsg`` belong to
the frame part where its first byte falls, and only those on the 16 CDB bytes count; more than
one is refused at once; then no fd, an opcode other than 5Eh/5Fh, or a transfer length over
8192 are refused; PR OUT waits for its parameter list. Everything else is answered.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum

from scsi_pr.sim.cdb import persistent_reserve_in, persistent_reserve_out, pr_out_parameters

CDB_SIZE = 16
MAX_DATA = 8192
PR_IN, PR_OUT = 0x5E, 0x5F


class FdKind(Enum):
    """What a passed fd is; the runner opens a fresh one per part (or shares the fixed ones)."""

    IMAGE = "image"  # the fuzzer's simulated LU, read-write
    IMAGE_RO = "image-ro"  # the same file opened read-only: PR OUT gets 05/20/00
    DEVNULL = "/dev/null"
    PIPE = "pipe"
    SOCKET = "socket"
    DIRECTORY = "directory"
    STDIN = "fd0"
    STDOUT = "fd1"
    STDERR = "fd2"


NOT_DEVICES = (FdKind.DEVNULL, FdKind.PIPE, FdKind.SOCKET, FdKind.DIRECTORY)
STDIO = (FdKind.STDIN, FdKind.STDOUT, FdKind.STDERR)


class Opening(Enum):
    HANDSHAKE = "handshake"  # read the features word, answer 0 (an open connection is reused)
    UNREAD = "unread"  # answer 0 without reading the word: closing is then a reset
    BAD_FEATURES = "bad-features"  # answer a non-zero word
    RAW = "raw"  # no handshake of ours: the parts start with the features word


class Ending(Enum):
    KEEP = "keep"  # read the answer, keep the connection for the next frame
    ANSWER_CLOSE = "answer-close"  # read the answer, then close
    READ_CLOSED = "read-closed"  # read until the helper closes
    HALF_CLOSE = "half-close"  # shutdown(SHUT_WR), read until the helper closes
    CLOSE = "close"  # close at once (EOF, or a reset when something is unread)


class Outcome(Enum):
    ANSWERED = "answered"  # exactly one request is complete: the helper answers it
    REFUSED = "refused"  # the helper closes without an answer
    INCOMPLETE = "incomplete"  # the helper waits for more bytes


@dataclass(frozen=True)
class Part:
    """One ``sendmsg``: at least one byte, and the kinds of the fds attached to it."""

    data: bytes
    fds: tuple[FdKind, ...] = ()


@dataclass(frozen=True)
class Frame:
    kind: str  # which generator made it (the report's rows)
    opening: Opening
    parts: tuple[Part, ...]
    ending: Ending
    features: int = 0  # the word sent for BAD_FEATURES

    @property
    def stream(self) -> bytes:
        return b"".join(p.data for p in self.parts)

    def summary(self, limit: int = 24) -> str:
        """One line for a report: the parts' first bytes in hex and their fds."""
        parts = " ".join(
            p.data[:limit].hex()
            + ("..." if len(p.data) > limit else "")
            + f"[{len(p.data)}]"
            + "".join(f"+{fd.value}" for fd in p.fds)
            for p in self.parts
        )
        return f"{self.kind} {self.opening.value} {parts} {self.ending.value}"


def outcome(frame: Frame) -> tuple[Outcome, bytes]:
    """What the helper must do with ``frame``, and the CDB of the request it answers (or b"")."""
    if frame.opening is Opening.BAD_FEATURES:
        return Outcome.REFUSED, b""
    stream = frame.stream
    pos = 0
    if frame.opening is Opening.RAW:
        if len(stream) < 4:
            return Outcome.INCOMPLETE, b""
        if stream[:4] != bytes(4):
            return Outcome.REFUSED, b""
        pos = 4
    offsets, at = [], 0
    for part in frame.parts:
        offsets.append((at, len(part.fds)))
        at += len(part.data)
    cdb_fds = sum(n for start, n in offsets if pos <= start < pos + CDB_SIZE)
    if cdb_fds > 1:
        return Outcome.REFUSED, b""  # refused as soon as the second fd arrives
    if len(stream) - pos < CDB_SIZE:
        return Outcome.INCOMPLETE, b""
    cdb = stream[pos : pos + CDB_SIZE]
    length = int.from_bytes(cdb[7:9], "big")
    if cdb_fds == 0 or cdb[0] not in (PR_IN, PR_OUT) or length > MAX_DATA:
        return Outcome.REFUSED, b""
    if cdb[0] == PR_OUT and len(stream) - pos - CDB_SIZE < length:
        return Outcome.INCOMPLETE, b""
    return Outcome.ANSWERED, cdb


def request_end(frame: Frame, cdb: bytes) -> int:
    """Where the answered request (``cdb``) ends in the frame's stream."""
    start = 4 if frame.opening is Opening.RAW else 0
    data = int.from_bytes(cdb[7:9], "big") if cdb[0] == PR_OUT else 0
    return start + CDB_SIZE + data


def request_fd(frame: Frame) -> FdKind | None:
    """The kind of the fd the answered request carries (the one on the CDB)."""
    pos = 4 if frame.opening is Opening.RAW else 0
    at = 0
    for part in frame.parts:
        if part.fds and pos <= at < pos + CDB_SIZE:
            return part.fds[0]
        at += len(part.data)
    return None


# -- generators: rng -> Frame ------------------------------------------------------------------
def _split(rng: random.Random, data: bytes, fd_at: int, fds: tuple[FdKind, ...]) -> list[Part]:
    """``data`` cut at 0-3 random places; ``fds`` ride on the part starting at ``fd_at``."""
    n = rng.randrange(4)  # drawn even for 1 byte (no place to cut), so seeds keep their frames
    cuts = sorted({rng.randrange(1, len(data)) for _ in range(n if len(data) > 1 else 0)} | {fd_at})
    cuts = [c for c in cuts if 0 < c < len(data)]
    bounds = [0, *cuts, len(data)]
    return [
        Part(data[a:b], fds if a == fd_at else ()) for a, b in itertools.pairwise(bounds) if b > a
    ]


def _alloc(rng: random.Random) -> int:
    return rng.choice([0, 8, 24, 256, rng.randrange(MAX_DATA + 1), MAX_DATA])


def _parameters(rng: random.Random) -> bytes:
    """A plausible or hostile PR OUT parameter list (any length up to 8192)."""
    choice = rng.randrange(6)
    if choice <= 2:
        key = rng.choice([0, 1, 2, rng.getrandbits(64)])
        sa_key = rng.choice([0, 1, 2, rng.getrandbits(64)])
        return pr_out_parameters(key, sa_key, aptpl=rng.random() < 0.2)
    if choice == 3:
        return rng.randbytes(rng.choice([0, 23, 25, 28, 100]))
    if choice == 4:  # a TransportID list whose text is hostile (newlines, quotes, escapes)
        tid = b'\x05\x00\x00\x20iqn.x\n2026 prh_command "\\\x1b' + bytes(12)
        return pr_out_parameters(1, 2, spec_i_pt=True)[:24] + len(tid).to_bytes(4, "big") + tid
    return rng.randbytes(rng.randrange(MAX_DATA + 1))


def _image(rng: random.Random) -> FdKind:
    return FdKind.IMAGE if rng.random() < 0.85 else FdKind.IMAGE_RO


def _ending(rng: random.Random) -> Ending:
    return Ending.KEEP if rng.random() < 0.8 else Ending.HALF_CLOSE


def good_pr_in(rng: random.Random, fd: FdKind | None = None) -> Frame:
    action = rng.randrange(4) if rng.random() < 0.9 else rng.randrange(32)
    cdb = persistent_reserve_in(action, _alloc(rng)).ljust(CDB_SIZE, b"\0")
    parts = _split(rng, cdb, rng.randrange(CDB_SIZE), (fd or _image(rng),))
    return Frame("pr-in", Opening.HANDSHAKE, tuple(parts), _ending(rng))


def good_pr_out(rng: random.Random, fd: FdKind | None = None) -> Frame:
    data = _parameters(rng)
    action = rng.randrange(9) if rng.random() < 0.9 else rng.randrange(32)
    cdb = persistent_reserve_out(action, len(data), rng.randrange(16), rng.randrange(3))
    cdb = cdb.ljust(CDB_SIZE, b"\0")
    parts = _split(rng, cdb, rng.randrange(CDB_SIZE), (fd or _image(rng),))
    if data:  # fds on the parameter list are dropped, as the kernel drops them for QEMU
        extra = (rng.choice(NOT_DEVICES),) if rng.random() < 0.1 else ()
        parts += _split(rng, data, 0, extra)
    return Frame("pr-out", Opening.HANDSHAKE, tuple(parts), _ending(rng))


def not_a_device(rng: random.Random) -> Frame:
    make = good_pr_in if rng.random() < 0.5 else good_pr_out
    frame = make(rng, rng.choice(NOT_DEVICES + STDIO))
    return Frame("fd-kinds", frame.opening, frame.parts, frame.ending)


def random_cdb(rng: random.Random) -> Frame:
    cdb = bytearray(rng.randbytes(CDB_SIZE))
    if rng.random() < 0.3:
        cdb[0] = rng.choice([PR_IN, PR_OUT])
        cdb[7:9] = rng.randrange(MAX_DATA + 1).to_bytes(2, "big")
    frame = Frame(
        "random-cdb", Opening.HANDSHAKE, (Part(bytes(cdb), (FdKind.IMAGE,)),), Ending.KEEP
    )
    return _settle(rng, frame)


def wrong_opcode(rng: random.Random) -> Frame:
    opcode = rng.choice([0x00, 0x03, 0x12, 0x25, 0x28, 0x2A, 0x35, 0x5D, 0x60, 0xA0, 0xFF])
    cdb = bytes([opcode]) + rng.randbytes(CDB_SIZE - 1)
    parts = _split(rng, cdb, 0, (_image(rng),))
    return Frame("wrong-opcode", Opening.HANDSHAKE, tuple(parts), Ending.READ_CLOSED)


def long_transfer(rng: random.Random) -> Frame:
    opcode = rng.choice([PR_IN, PR_OUT])
    cdb = bytes([opcode]) + bytes(6) + rng.randrange(MAX_DATA + 1, 0x10000).to_bytes(2, "big")
    parts = (Part(cdb.ljust(CDB_SIZE, b"\0"), (FdKind.IMAGE,)),)
    return Frame("long-transfer", Opening.HANDSHAKE, parts, Ending.READ_CLOSED)


def fd_count(rng: random.Random) -> Frame:
    count = rng.choice([0, 2, 3, 8, 9, 12])
    fds = tuple(rng.choice(list(FdKind)) for _ in range(count))
    frame = good_pr_in(rng) if rng.random() < 0.5 else good_pr_out(rng)
    stripped = [Part(p.data) for p in frame.parts]
    stripped[0] = Part(stripped[0].data, fds)
    return Frame("fd-count", Opening.HANDSHAKE, tuple(stripped), Ending.READ_CLOSED)


def short_frame(rng: random.Random) -> Frame:
    """A request cut anywhere; the client half-closes (EOF) or closes (EOF or reset)."""
    frame = good_pr_in(rng) if rng.random() < 0.4 else good_pr_out(rng)
    stream = frame.stream
    cut = rng.randrange(1, len(stream))
    parts, at = [], 0
    for part in frame.parts:
        if at < cut:
            parts.append(Part(part.data[: cut - at], part.fds))
        at += len(part.data)
    opening = rng.choice([Opening.HANDSHAKE, Opening.UNREAD])
    ending = rng.choice([Ending.HALF_CLOSE, Ending.CLOSE])
    return Frame("short-frame", opening, tuple(parts), ending)


def extra_data(rng: random.Random) -> Frame:
    """A PR OUT followed by more bytes than its parameter list: answered, then the rest is a
    new (broken) frame; the client reads its answer and leaves."""
    frame = good_pr_out(rng)
    parts = (*frame.parts, Part(rng.randbytes(rng.randrange(1, 64))))
    return Frame("extra-data", Opening.HANDSHAKE, parts, Ending.ANSWER_CLOSE)


def bad_features(rng: random.Random) -> Frame:
    word = rng.choice([1, 2, 0x80000000, rng.getrandbits(32) | 1])
    parts = good_pr_in(rng).parts
    return Frame("bad-features", Opening.BAD_FEATURES, parts, Ending.READ_CLOSED, word)


def raw_handshake(rng: random.Random) -> Frame:
    """The features word as part of the client's first write, fds sometimes on it."""
    frame = good_pr_in(rng) if rng.random() < 0.5 else good_pr_out(rng)
    word = bytes(4) if rng.random() < 0.8 else rng.randbytes(4)
    head = Part(word, (FdKind.IMAGE,) if rng.random() < 0.3 else ())
    return _settle(rng, Frame("raw-handshake", Opening.RAW, (head, *frame.parts), Ending.KEEP))


def reset(rng: random.Random) -> Frame:
    """Whatever was sent, the client closes with the helper's features word unread."""
    frame = rng.choice([good_pr_in, good_pr_out, short_frame, fd_count, random_cdb])(rng)
    return Frame("reset", Opening.UNREAD, frame.parts, Ending.CLOSE)


def garbage(rng: random.Random) -> Frame:
    def part() -> Part:
        fds = tuple(rng.choice(list(FdKind)) for _ in range(rng.choice([0, 0, 1, 2])))
        return Part(rng.randbytes(rng.randrange(1, 40)), fds)

    parts = tuple(part() for _ in range(rng.randrange(1, 5)))
    opening = rng.choice(list(Opening))
    frame = Frame("garbage", opening, parts, Ending.KEEP, rng.getrandbits(32) | 1)
    return _settle(rng, frame)


def _settle(rng: random.Random, frame: Frame) -> Frame:
    """An ending that fits what the oracle says the helper will do."""
    result, cdb = outcome(frame)
    if result is Outcome.ANSWERED:
        ending = frame.ending if frame.ending is not Ending.READ_CLOSED else Ending.KEEP
        if ending is Ending.KEEP and len(frame.stream) > request_end(frame, cdb):
            ending = Ending.ANSWER_CLOSE  # the rest would start the next frame's request
    elif result is Outcome.REFUSED:
        ending = Ending.READ_CLOSED
    else:
        ending = rng.choice([Ending.HALF_CLOSE, Ending.CLOSE])
    return Frame(frame.kind, frame.opening, frame.parts, ending, frame.features)


# generator -> weight: about half the frames are well formed
GENERATORS: dict[Callable[[random.Random], Frame], int] = {
    good_pr_in: 25,
    good_pr_out: 20,
    not_a_device: 8,
    random_cdb: 8,
    wrong_opcode: 5,
    long_transfer: 4,
    fd_count: 6,
    short_frame: 8,
    extra_data: 3,
    bad_features: 3,
    raw_handshake: 4,
    reset: 4,
    garbage: 2,
}


def frames(seed: int) -> Iterator[Frame]:
    """An endless, reproducible stream of frames; every one's ending fits its outcome."""
    rng = random.Random(seed)
    makers, weights = list(GENERATORS), list(GENERATORS.values())
    while True:
        frame = rng.choices(makers, weights)[0](rng)
        yield _settle(rng, frame) if frame.ending is not Ending.CLOSE else frame
