"""The seeded socket fuzzer against one real ``scsi-pr-helper --backend sim`` (issue 10).

20,000 frames (well-formed and malformed: random CDB bytes, wrong opcodes, long transfers, no fd
or many, fds of every kind, partial frames, resets, skipped or bad handshakes) from 4 clients at
once, with a well-behaved client alongside that must see every answer right. Afterwards the
helper is alive, its fd count is back at the baseline, and its audit log parses line by line
and shows only PR commands reaching the executor. ``SCSI_PR_FUZZ_SEED`` / ``SCSI_PR_FUZZ_FRAMES``
change the seed and the amount (``scripts/soak`` runs millions).
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from pathlib import Path

import pytest
from prh_process import Helper

from scsi_pr.helper.fuzz import check_answer, run_fuzz
from scsi_pr.helper.fuzz_frames import (
    GENERATORS,
    Ending,
    FdKind,
    Frame,
    Opening,
    Outcome,
    frames,
    outcome,
)
from scsi_pr.helper.proto import (
    NEED_DATA,
    Connection,
    Features,
    ProtocolError,
    Request,
    Role,
)

SEED = int(os.environ.get("SCSI_PR_FUZZ_SEED", "20261201"))
FRAMES = int(os.environ.get("SCSI_PR_FUZZ_FRAMES", "20000"))


def test_socket_fuzz(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    helper = Helper(tmp_path, "fuzz")
    try:
        report = run_fuzz(
            helper.sock,
            itertools.islice(frames(SEED), FRAMES),
            clients=4,
            workdir=tmp_path,
            helper_pid=helper.proc.pid,
        )
        with capsys.disabled():
            print(f"\nsocket fuzz, seed {SEED}: {report.frames} frames tried\n{report.table()}")
        assert report.frames == FRAMES
        assert report.anomaly_count == 0, report.table()
        assert report.good_errors == [] and report.good_requests > 100, report.table()
        assert report.helper_alive, helper.output()
        assert report.fds_after == report.fds_before, report.table()
        assert len(report.by_kind) == len(GENERATORS)  # every generator had frames played
    finally:
        assert helper.stop() == 0, helper.output()
    commands = [fields["command"] for event, fields in helper.audit() if event == "prh_command"]
    assert len(commands) >= report.answers + report.good_requests
    not_pr = [c for c in commands if not c.startswith(("PR IN ", "PR OUT "))]
    assert not_pr == [], "a non-PR CDB reached the executor"


# -- the oracle against the codec --------------------------------------------------------------
class _Kernel:
    """A Unix stream socket's receive queue as the helper sees it: a read takes bytes across
    the senders' messages, picks up the fds of each message it touches, and stops after one
    that carried fds."""

    def __init__(self, frame: Frame) -> None:
        self.queue = [[bytearray(p.data), len(p.fds), False] for p in frame.parts]

    def read(self, n: int) -> tuple[bytes, list[int]]:
        data, fds = bytearray(), []
        while self.queue and len(data) < n:
            message = self.queue[0]
            take = min(n - len(data), len(message[0]))
            data += message[0][:take]
            del message[0][:take]
            stop = False
            if not message[2] and message[1]:
                fds += range(100, 100 + min(message[1], 8))  # MSG_CTRUNC drops the rest
                message[2] = stop = True
            if not message[0]:
                self.queue.pop(0)
            if stop:
                break
        return bytes(data), fds


def codec_outcome(frame: Frame) -> Outcome:
    """What the helper's codec does with ``frame``, read the way the daemon reads."""
    conn = Connection(Role.HELPER)
    conn.send(Features(0))
    kernel = _Kernel(frame)
    if frame.opening is Opening.BAD_FEATURES:
        conn.receive_data(frame.features.to_bytes(4, "big"))
    elif frame.opening is not Opening.RAW:
        conn.receive_data(bytes(4))
    try:
        while True:
            event = conn.next_event()
            if isinstance(event, Request):
                return Outcome.ANSWERED
            if event is NEED_DATA:
                if not kernel.queue:
                    return Outcome.INCOMPLETE
                conn.receive_data(*kernel.read(conn.bytes_needed))
    except ProtocolError:
        return Outcome.REFUSED


def test_the_oracle_agrees_with_the_codec() -> None:
    seen: Counter[tuple[str, Outcome]] = Counter()
    for frame in itertools.islice(frames(7), 5000):
        expected, _cdb = outcome(frame)
        assert codec_outcome(frame) is expected, frame.summary()
        seen[(frame.kind, expected)] += 1
    outcomes = {result for _kind, result in seen}
    assert outcomes == set(Outcome)  # every outcome is exercised


def test_frames_are_reproducible_and_endings_fit_their_outcome() -> None:
    first = list(itertools.islice(frames(3), 500))
    assert first == list(itertools.islice(frames(3), 500))
    assert first != list(itertools.islice(frames(4), 500))
    for frame in first:
        result, _ = outcome(frame)
        assert all(part.data for part in frame.parts)  # an empty sendmsg carries no fds
        if result is Outcome.INCOMPLETE:
            assert frame.ending in (Ending.CLOSE, Ending.HALF_CLOSE), frame.summary()
        if result is Outcome.REFUSED:
            assert frame.ending in (Ending.CLOSE, Ending.READ_CLOSED), frame.summary()


@pytest.mark.parametrize(
    ("cdb", "fd", "answer", "problem"),
    [
        (b"\x5e" + bytes(6) + b"\x00\x08" + bytes(7), FdKind.IMAGE, b"", "short answer"),
        (b"\x5f" + bytes(15), FdKind.IMAGE, bytes(4) + (4).to_bytes(4, "big") + bytes(100), "sz=4"),
        (b"\x5f" + bytes(15), FdKind.IMAGE_RO, bytes(104), "read-only"),
        (b"\x5e" + bytes(15), FdKind.PIPE, bytes(104), "failed SG_IO"),
        (b"\x5e" + bytes(15), FdKind.IMAGE, (0x99).to_bytes(4, "big") + bytes(100), "status"),
    ],
)
def test_wrong_answers_are_caught(cdb: bytes, fd: FdKind, answer: bytes, problem: str) -> None:
    found = check_answer(cdb, fd, answer)
    assert found is not None and problem in found


def test_right_answers_pass() -> None:
    sense = bytearray(96)
    sense[0], sense[2], sense[7], sense[13] = 0x70, 0x0B, 0x0A, 0x06
    failed_sg_io = (2).to_bytes(4, "big") + bytes(4) + bytes(sense)
    assert check_answer(b"\x5e" + bytes(15), FdKind.SOCKET, failed_sg_io) is None
    good = bytes(4) + (8).to_bytes(4, "big") + bytes(96) + bytes(8)
    assert check_answer(b"\x5e" + bytes(6) + b"\x00\x08" + bytes(7), FdKind.IMAGE, good) is None
