"""rig/kmsg.py: telling LIO's broken PR reference count from the kernel log (the trace below is
the one measured in the VM on Debian 12's 6.1), without a kernel."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from scsi_pr.rig import kmsg

MEASURED = [
    "------------[ cut here ]------------",
    "refcount_t: addition on 0; use-after-free.",
    "WARNING: CPU: 1 PID: 22 at lib/refcount.c:25 refcount_warn_saturate+0x97/0x110",
    "Workqueue: target_submission target_queued_submit_work [target_core_mod]",
    "Call Trace:",
    " <TASK>",
    " core_get_se_deve_from_rtpi+0xa1/0xb0 [target_core_mod]",
    " core_scsi3_emulate_pro_register_and_move+0x32d/0x830 [target_core_mod]",
    " </TASK>",
]


def test_a_refcount_warning_in_lio_is_found_with_its_first_lio_frame() -> None:
    faults = kmsg.lio_refcount_faults(MEASURED)
    assert faults == [
        "refcount_t: addition on 0; use-after-free. in "
        "core_get_se_deve_from_rtpi+0xa1/0xb0 [target_core_mod]"
    ]


def test_a_refcount_warning_elsewhere_is_not_lios() -> None:
    other = [line.replace("[target_core_mod]", "[ext4]") for line in MEASURED]
    assert kmsg.lio_refcount_faults(other) == []
    far = MEASURED[:2] + ["x"] * kmsg.TRACE_RECORDS + MEASURED[6:]
    assert kmsg.lio_refcount_faults(far) == [], "a frame beyond the trace is not its own"


def test_records_parse_the_kmsg_format(tmp_path: Path) -> None:
    assert kmsg.parse(b"4,1234,5678,-;refcount_t: underflow\n SUBSYSTEM=x\n") == (
        "refcount_t: underflow"
    )
    assert kmsg.parse(b"garbage") is None
    assert kmsg.parse(b"4,x,5;text") is None


def test_records_read_a_file_to_its_end_and_tolerate_a_missing_log(tmp_path: Path) -> None:
    # a regular file gives one read of everything: the first record only, as kmsg gives one per
    # read; a missing log gives nothing
    path = tmp_path / "kmsg"
    path.write_bytes(b"6,7,0,-;hello")
    assert list(kmsg.records(str(path))) == ["hello"]
    assert list(kmsg.records(str(tmp_path / "missing"))) == []


def test_a_record_needs_a_header_of_three_fields_with_a_sequence_number() -> None:
    """``prio,seq,usec[,flags,...];text``: the flags field is optional (older kernels and
    fields added later), what is not a record is None, and bytes that are not UTF-8 (a driver's
    garbage) are replaced, not an error."""
    assert kmsg.parse(b"6,12,34;three fields") == "three fields"
    assert kmsg.parse(b"4,5,6,-;refcount_t: addition on 0; use-after-free.\n") == (
        "refcount_t: addition on 0; use-after-free."
    ), "the text is everything after the header's ';', its own ';' included"
    assert kmsg.parse(b"6,12,34,-,caller=T1;more fields") == "more fields"
    assert kmsg.parse(b"6,12;two fields") is None
    assert kmsg.parse(b"6,12,34,- no separator") is None
    assert kmsg.parse(b"6,12,34,-;") == ""
    assert kmsg.parse(b"4,7,0,-;sd 0:0:0:0: \xff\xfe\n DEVICE=+scsi:0:0:0:0\n") == (
        "sd 0:0:0:0: \ufffd\ufffd"
    )


class FakeKmsg:
    """/dev/kmsg as the kernel serves it, one record per read: ``script`` is what each read
    gives (bytes) or raises (an errno). A read past the script fails the test: a reader that
    did not stop where the kernel says "no more" would spin (or block) forever."""

    def __init__(self, script: list[bytes | int]) -> None:
        self.script = script
        self.opened: list[int] = []
        self.closed: list[int] = []
        self.reads = 0

    def install(self, monkeypatch: pytest.MonkeyPatch, path: str) -> None:
        """Serve ``path`` through ``kmsg``'s ``os``; every other file as it is."""
        real_open, real_read, real_close = os.open, os.read, os.close

        def fake_open(name: str, flags: int, *args: int) -> int:
            if name != path:
                return real_open(name, flags, *args)
            assert flags & os.O_NONBLOCK, "a blocking read would wait for the next record"
            fd = real_open(os.devnull, os.O_RDONLY)
            self.opened.append(fd)
            return fd

        def fake_read(fd: int, size: int) -> bytes:
            if fd not in self.opened:
                return real_read(fd, size)
            assert self.reads < len(self.script), "read on after the end of the log"
            step = self.script[self.reads]
            self.reads += 1
            if isinstance(step, int):
                raise OSError(step, os.strerror(step))
            return step

        def fake_close(fd: int) -> None:
            if fd in self.opened:
                self.closed.append(fd)
            real_close(fd)

        monkeypatch.setattr(kmsg.os, "open", fake_open)
        monkeypatch.setattr(kmsg.os, "read", fake_read)
        monkeypatch.setattr(kmsg.os, "close", fake_close)


def test_records_skip_what_was_overwritten_and_stop_at_the_newest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EPIPE: the kernel overwrote records while we read (its ring is small); reading on gives
    the next one still there. EAGAIN: nothing newer; the reader stops rather than waiting for
    the kernel's next line. The log is closed either way."""
    path = str(tmp_path / "kmsg")
    fake = FakeKmsg(
        [
            b"4,1,0,-;first",
            errno.EPIPE,
            b"4,9,0,-;after the gap",
            b"not a record",
            b"4,10,0,-;newest\n SUBSYSTEM=scsi",
            errno.EAGAIN,
        ]
    )
    fake.install(monkeypatch, path)
    assert list(kmsg.records(path)) == ["first", "after the gap", "newest"]
    assert fake.reads == 6 and fake.closed == fake.opened and len(fake.opened) == 1


def test_records_end_at_the_end_of_a_file_and_close_it_when_left_early(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty read is the end (a file, not the kernel's log): no further read. A reader that
    stops early (the first fault found) still closes the log."""
    path = str(tmp_path / "kmsg")
    fake = FakeKmsg([b"4,1,0,-;only", b""])
    fake.install(monkeypatch, path)
    assert list(kmsg.records(path)) == ["only"]
    assert fake.reads == 2 and fake.closed == fake.opened
    early = FakeKmsg([b"4,1,0,-;one", b"4,2,0,-;two"])
    early.install(monkeypatch, path)
    reader = kmsg.records(path)
    assert next(reader) == "one"
    reader.close()
    assert early.reads == 1 and early.closed == early.opened and len(early.opened) == 1


def test_records_of_a_log_that_stays_open_end_at_the_newest(tmp_path: Path) -> None:
    """A real non-blocking read: a pipe whose writer stays open (as the kernel's log does)
    gives what is there, then EAGAIN, and the reader ends instead of waiting. The guard join
    is generous; a blocking reader is let go by closing the writer."""
    fifo = tmp_path / "kmsg"
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR)  # the writer end, held open like the kernel's
    got: list[list[str]] = []
    try:
        os.write(writer, b"6,1,0,-;guest up")
        reader = threading.Thread(target=lambda: got.append(list(kmsg.records(str(fifo)))))
        reader.start()
        reader.join(timeout=60)
        blocked = reader.is_alive()
    finally:
        os.close(writer)
    reader.join(timeout=60)
    assert not blocked and got == [["guest up"]]


def test_a_trace_spans_sixty_records_after_its_warning() -> None:
    """The 60th record after the warning is still its trace (a long one: registers, modules
    linked in); the 61st is not, and a new warning starts its own count."""
    assert kmsg.TRACE_RECORDS == 60
    frame = MEASURED[6]
    warning = MEASURED[1]
    within = [warning] + ["x"] * 59 + [frame]
    assert kmsg.lio_refcount_faults(within) == [f"{warning} in {frame.strip()}"]
    beyond = [warning] + ["x"] * 60 + [frame]
    assert kmsg.lio_refcount_faults(beyond) == []
    second = "refcount_t: underflow; use-after-free."
    again = [warning] + ["x"] * 50 + [second] + ["x"] * 30 + [frame, " " + warning]
    assert kmsg.lio_refcount_faults(again) == [f"{second} in {frame.strip()}"]


def test_every_lio_fault_is_reported_once_with_its_first_frame() -> None:
    """Two warnings, each with LIO frames: two faults, each with its own first LIO frame (the
    later frames of a trace add nothing); text outside a trace is ignored."""
    move = " core_scsi3_emulate_pro_register_and_move+0x32d/0x830 [target_core_mod]"
    stray = [" core_get_se_deve_from_rtpi+0xa1/0xb0 [target_core_mod]"]
    log = stray + MEASURED + MEASURED[:2] + [move] + MEASURED[6:]
    assert kmsg.lio_refcount_faults(log) == [
        "refcount_t: addition on 0; use-after-free. in "
        "core_get_se_deve_from_rtpi+0xa1/0xb0 [target_core_mod]",
        "refcount_t: addition on 0; use-after-free. in "
        "core_scsi3_emulate_pro_register_and_move+0x32d/0x830 [target_core_mod]",
    ]
