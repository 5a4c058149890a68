"""The multipath executor in-process, its collaborators replaced by recording fakes.

``MultipathExecutor`` only routes: the dm probe decides "multipath map or not", PR IN/OUT go to
libmpathpersist, REGISTER AND MOVE goes down the map's paths with SG_IO, swallowed senses are
recovered with TEST UNIT READY. Its real collaborators need a multipath map (tests/vm), so here
the dm probe, the library, the fallback executor and ``sg_io`` are fakes that record every
call: each test pins the exact calls made and the exact Reply returned. The TransportID parser
edge cases test_multipath.py leaves open are pinned here too (mutation testing pairs this
file with the module).
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from scsi_pr.helper.executors import multipath as mp
from scsi_pr.helper.executors import sg
from scsi_pr.helper.executors.base import Executor, Reply
from scsi_pr.helper.executors.mpath_lib import LibraryUnavailable
from scsi_pr.helper.executors.multipath import MultipathExecutor, ProutParams, validate_pr_out
from scsi_pr.helper.executors.status import (
    INVALID_FIELD,
    INVALID_PARAM,
    INVALID_PARAM_LEN,
    LUN_COMM_FAILURE,
    NOT_READY,
    SenseCode,
    check_condition,
)
from scsi_pr.sim.cdb import persistent_reserve_in, persistent_reserve_out

FD = 9999  # the fd QEMU passed: only ever handed to fakes
GOOD, CONFLICT = Reply(0x00), Reply(0x18)
UNIT_ATTENTION = Reply(0x02, bytes([0x70, 0, 0x06, 0, 0, 0, 0, 0x0A]) + bytes(4) + b"\x29\x00")


@dataclass
class FakeDm:
    """The dm probe: ``multipath`` answers is_multipath, ``nodes`` the map's path nodes."""

    multipath: bool = True
    nodes: list[str] = field(default_factory=list)
    calls: list[tuple[str, int]] = field(default_factory=list)

    def is_multipath(self, fd: int) -> bool:
        self.calls.append(("is_multipath", fd))
        return self.multipath

    def path_nodes(self, fd: int) -> list[str]:
        self.calls.append(("path_nodes", fd))
        return self.nodes

    def close(self) -> None:
        self.calls.append(("close", -1))


@dataclass
class FakeLibrary:
    """libmpathpersist: answers ``code`` (and ``data`` for PR IN), records each call."""

    code: int = 0
    data: bytes = b""
    calls: list[tuple[object, ...]] = field(default_factory=list)

    def pr_in(self, fd: int, action: int) -> tuple[int, bytes]:
        self.calls.append(("pr_in", fd, action))
        return self.code, self.data

    def pr_out(
        self,
        fd: int,
        action: int,
        scope: int,
        type_: int,
        fixed: tuple[bytes, bytes, int],
        transport_ids: list[bytes],
    ) -> int:
        self.calls.append(("pr_out", fd, action, scope, type_, fixed, transport_ids))
        return self.code

    def close(self) -> None:
        self.calls.append(("close",))


class FakeInner(Executor):
    """The SG_IO executor non-multipath fds fall back to."""

    name = "inner"

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []
        self.answer = Reply(0x02, b"\x70\x00\x05")

    def execute(self, fd: int, cdb: bytes, data_out: bytes, allocation_length: int) -> Reply:
        self.calls.append((fd, cdb, data_out, allocation_length))
        return self.answer

    def close(self) -> None:
        self.calls.append(("close",))


class FakeSg:
    """``sg_io`` (same defaults): records the call and, for a real fd, what it is open on."""

    def __init__(self, *answers: Reply) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[object, ...]] = []
        self.opened: list[tuple[int, str, int, int]] = []  # fd, node, status flags, fd flags

    def __call__(
        self,
        fd: int,
        cdb: bytes,
        data_out: bytes = b"",
        data_in_length: int = 0,
        timeout_ms: int = sg.DEFAULT_TIMEOUT_MS,
    ) -> FakeSg:
        self.calls.append((fd, cdb, data_out, data_in_length, timeout_ms))
        if isinstance(fd, int) and fd != FD:
            node = os.readlink(f"/proc/self/fd/{fd}")
            self.opened.append(
                (fd, node, fcntl.fcntl(fd, fcntl.F_GETFL), fcntl.fcntl(fd, fcntl.F_GETFD))
            )
        return self

    def reply(self, allocation_length: int = 0) -> Reply:
        self.calls.append(("reply", allocation_length))
        return self.answers.pop(0)


def make(
    monkeypatch: pytest.MonkeyPatch, *answers: Reply, **lib: object
) -> tuple[MultipathExecutor, FakeDm, FakeLibrary, FakeInner, FakeSg]:
    dm, library, inner, fake_sg = FakeDm(), FakeLibrary(**lib), FakeInner(), FakeSg(*answers)  # type: ignore[arg-type]
    monkeypatch.setattr(sg, "sg_io", fake_sg)
    return MultipathExecutor(inner, dm, library), dm, library, inner, fake_sg  # type: ignore[arg-type]


def pr_in(sa: int, allocation_length: int = 8192) -> bytes:
    return persistent_reserve_in(sa, allocation_length).ljust(16, b"\0")


def pr_out(sa: int, length: int, type_: int = 0, scope: int = 0) -> bytes:
    return persistent_reserve_out(sa, length, type_, scope).ljust(16, b"\0")


TUR = (FD, bytes(6), b"", 0, 1)  # TEST UNIT READY as the C helper sends it: 1 ms, no data


# -- routing -----------------------------------------------------------------------------------
def test_a_device_that_is_not_a_multipath_map_falls_back_to_the_inner_executor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ex, dm, library, inner, fake_sg = make(monkeypatch)
    dm.multipath = False
    cdb = pr_out(0, 24)
    assert ex.execute(FD, cdb, bytes(24), 99) is inner.answer
    assert inner.calls == [(FD, cdb, bytes(24), 99)]
    assert dm.calls == [("is_multipath", FD)]
    assert library.calls == [] and fake_sg.calls == []


def test_close_closes_every_collaborator(monkeypatch: pytest.MonkeyPatch) -> None:
    ex, dm, library, inner, _ = make(monkeypatch)
    ex.close()
    assert (dm.calls, library.calls, inner.calls) == ([("close", -1)], [("close",)], [("close",)])


# -- PR IN -------------------------------------------------------------------------------------
def test_pr_in_goes_to_the_library_and_is_cut_to_the_allocation_length(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ex, dm, library, inner, fake_sg = make(monkeypatch, data=bytes(range(40)))
    assert ex.execute(FD, pr_in(1, 32), b"", 32) == Reply(0x00, data=bytes(range(32)))
    assert library.calls == [("pr_in", FD, 1)]
    assert dm.calls == [("is_multipath", FD)]
    assert inner.calls == [] and fake_sg.calls == []


def test_pr_in_service_action_the_c_helper_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    ex, _, library, _, fake_sg = make(monkeypatch)
    assert ex.execute(FD, pr_in(4), b"", 8192) == check_condition(INVALID_FIELD)
    assert library.calls == [] and fake_sg.calls == []


def test_pr_in_conflict_from_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    ex, _, library, _, fake_sg = make(monkeypatch, code=mp.MPATH_PR_RESERV_CONFLICT, data=b"x")
    assert ex.execute(FD, pr_in(0), b"", 8192) == CONFLICT
    assert library.calls == [("pr_in", FD, 0)] and fake_sg.calls == []


def test_pr_in_swallowed_sense_is_asked_of_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    ex, _, library, _, fake_sg = make(monkeypatch, UNIT_ATTENTION, code=mp.MPATH_PR_SENSE_NOT_READY)
    assert ex.execute(FD, pr_in(2), b"", 8192) == UNIT_ATTENTION
    assert library.calls == [("pr_in", FD, 2)]
    assert fake_sg.calls == [TUR, ("reply", 0)]


# -- PR OUT through the library ----------------------------------------------------------------
def register_param(flags: int = 0) -> bytes:
    return (1).to_bytes(8, "big") + (2).to_bytes(8, "big") + bytes(4) + bytes([flags]) + bytes(3)


@pytest.mark.parametrize(("code", "reply"), [(0, GOOD), (mp.MPATH_PR_RESERV_CONFLICT, CONFLICT)])
def test_pr_out_goes_to_the_library_with_every_field(
    monkeypatch: pytest.MonkeyPatch, code: int, reply: Reply
) -> None:
    ex, _, library, inner, fake_sg = make(monkeypatch, code=code)
    assert ex.execute(FD, pr_out(1, 24, type_=5, scope=2), register_param(0x05), 0) == reply
    fixed = ((1).to_bytes(8, "big"), (2).to_bytes(8, "big"), 0x05)
    assert library.calls == [("pr_out", FD, 1, 2, 5, fixed, [])]
    assert inner.calls == [] and fake_sg.calls == []


def test_pr_out_swallowed_sense_with_a_good_test_unit_ready(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ex, _, library, _, fake_sg = make(monkeypatch, GOOD, code=mp.MPATH_PR_SENSE_NOT_READY)
    assert ex.execute(FD, pr_out(0, 24), register_param(), 0) == check_condition(NOT_READY)
    assert len(library.calls) == 1
    assert fake_sg.calls == [TUR, ("reply", 0)]


@pytest.mark.parametrize(
    ("cdb", "param", "sense"),
    [
        (pr_out(0, 23), bytes(23), INVALID_PARAM_LEN),
        (pr_out(7, 23), bytes(23), INVALID_PARAM_LEN),  # too short for the paths: validated
        (pr_out(8, 24), bytes(24), INVALID_FIELD),
    ],
)
def test_pr_out_refused_before_the_library(
    monkeypatch: pytest.MonkeyPatch, cdb: bytes, param: bytes, sense: SenseCode
) -> None:
    ex, dm, library, _, fake_sg = make(monkeypatch)
    assert ex.execute(FD, cdb, param, 0) == check_condition(sense)
    assert library.calls == [] and fake_sg.calls == [] and dm.calls == [("is_multipath", FD)]


# -- REGISTER AND MOVE down the paths ----------------------------------------------------------
@pytest.fixture
def nodes(tmp_path: Path) -> list[str]:
    """Three path nodes (regular files: SG_IO itself is faked)."""
    out = []
    for name in ("sda", "sdb", "sdc"):
        (tmp_path / name).write_bytes(b"")
        out.append(str(tmp_path / name))
    return out


MOVE = pr_out(7, 24, type_=1)  # byte 2 is not 7: the test is on the service action
MOVE_PARAM = register_param()  # exactly the fixed 24 bytes: still ours, not validate_pr_out's


def move(
    monkeypatch: pytest.MonkeyPatch, nodes: list[str], *answers: Reply
) -> tuple[Reply, FakeDm, FakeLibrary, FakeSg]:
    ex, dm, library, _, fake_sg = make(monkeypatch, *answers)
    dm.nodes = nodes
    return ex.execute(FD, MOVE, MOVE_PARAM, 0), dm, library, fake_sg


def sent(fake_sg: FakeSg) -> list[tuple[object, ...]]:
    """The SG_IO calls with the fd replaced by the node it was open on."""
    by_fd = iter(fake_sg.opened)
    return [c if c[0] == "reply" else (next(by_fd)[1], *c[1:]) for c in fake_sg.calls]


def per_path(*nodes: str) -> list[tuple[object, ...]]:
    sgio = (MOVE, MOVE_PARAM, 0, sg.HELPER_TIMEOUT_MS)
    return [c for n in nodes for c in ((n, *sgio), ("reply", 0))]


def test_register_and_move_stops_at_the_holders_path(
    monkeypatch: pytest.MonkeyPatch, nodes: list[str]
) -> None:
    reply, dm, library, fake_sg = move(monkeypatch, nodes, CONFLICT, GOOD, GOOD)
    assert reply == GOOD
    assert dm.calls == [("is_multipath", FD), ("path_nodes", FD)]
    assert library.calls == []
    assert sent(fake_sg) == per_path(nodes[0], nodes[1])


def test_register_and_move_paths_opened_read_only_nonblocking_and_closed(
    monkeypatch: pytest.MonkeyPatch, nodes: list[str]
) -> None:
    _, _, _, fake_sg = move(monkeypatch, nodes, CONFLICT, CONFLICT, GOOD)
    assert len(fake_sg.opened) == 3
    for fd, _, status_flags, fd_flags in fake_sg.opened:
        assert status_flags & os.O_ACCMODE == os.O_RDONLY
        assert status_flags & os.O_NONBLOCK
        assert fd_flags & fcntl.FD_CLOEXEC
        with pytest.raises(OSError):
            os.fstat(fd)  # closed again


def test_register_and_move_answer_other_than_conflict_is_returned(
    monkeypatch: pytest.MonkeyPatch, nodes: list[str]
) -> None:
    reply, _, _, fake_sg = move(monkeypatch, nodes, UNIT_ATTENTION, GOOD)
    assert reply == UNIT_ATTENTION
    assert sent(fake_sg) == per_path(nodes[0])


def test_register_and_move_refused_on_every_path_is_a_conflict(
    monkeypatch: pytest.MonkeyPatch, nodes: list[str]
) -> None:
    reply, _, _, fake_sg = move(monkeypatch, nodes, CONFLICT, CONFLICT, CONFLICT)
    assert reply == CONFLICT
    assert sent(fake_sg) == per_path(*nodes)


def test_register_and_move_skips_a_path_gone_since_the_table_was_read(
    monkeypatch: pytest.MonkeyPatch, nodes: list[str]
) -> None:
    os.unlink(nodes[0])
    reply, _, _, fake_sg = move(monkeypatch, nodes, CONFLICT, GOOD)
    assert reply == GOOD
    assert sent(fake_sg) == per_path(nodes[1], nodes[2])


@pytest.mark.parametrize("gone", [False, True])
def test_register_and_move_without_a_usable_path_is_the_librarys_no_path_answer(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, gone: bool
) -> None:
    reply, _, _, fake_sg = move(monkeypatch, [str(tmp_path / "gone")] if gone else [])
    assert reply == check_condition(LUN_COMM_FAILURE)
    assert reply == mp.reply_for_result(mp.MPATH_PR_OTHER, lambda: GOOD)
    assert fake_sg.calls == []


# -- with_multipath ----------------------------------------------------------------------------
@dataclass
class Built:
    """What with_multipath constructed (the dm handle, the library's arguments); ``dm_fails``
    and ``library_fails`` make either unavailable."""

    dm_fails: bool = False
    library_fails: bool = False
    dm: FakeDm | None = None
    library: FakeLibrary | None = None
    library_args: dict[str, object] | None = None

    def open_dm(self) -> FakeDm:
        if self.dm_fails:
            raise OSError(2, "no /dev/mapper/control")
        self.dm = FakeDm()
        return self.dm

    def load_library(self, **kwargs: object) -> FakeLibrary:
        self.library_args = kwargs
        if self.library_fails:
            raise LibraryUnavailable("no libmpathpersist")
        self.library = FakeLibrary()
        return self.library


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> Built:
    out = Built()

    class Dm:
        open = staticmethod(out.open_dm)

    monkeypatch.setattr(mp, "DeviceMapper", Dm)
    monkeypatch.setattr(mp, "Library", out.load_library)
    return out


def test_with_multipath_builds_the_executor(built: Built) -> None:
    inner = FakeInner()
    ex = mp.with_multipath(inner)
    assert isinstance(ex, MultipathExecutor)
    assert (ex.inner, ex.dm, ex.library) == (inner, built.dm, built.library)
    assert built.dm is not None and built.library is not None
    assert built.library_args == {"noisy": False, "verbose": 1}


@pytest.mark.parametrize(
    ("verbose", "quiet", "noisy", "level"),
    [(2, False, False, 2), (3, False, True, 3), (4, False, True, 4), (3, True, False, 0)],
)
def test_with_multipath_verbosity_as_the_c_helper(
    built: Built, verbose: int, quiet: bool, noisy: bool, level: int
) -> None:
    mp.with_multipath(FakeInner(), verbose, quiet)
    assert built.library_args == {"noisy": noisy, "verbose": level}


def test_with_multipath_without_device_mapper_is_the_inner_executor(built: Built) -> None:
    built.dm_fails = True
    inner = FakeInner()
    assert mp.with_multipath(inner) is inner
    assert built.library_args is None


def test_with_multipath_without_the_library_closes_dm(built: Built) -> None:
    built.library_fails = True
    inner = FakeInner()
    assert mp.with_multipath(inner) is inner
    assert built.dm is not None and built.dm.calls == [("close", -1)]


# -- TransportID parsing edge cases ------------------------------------------------------------
def tids(*body: bytes, declared: int | None = None) -> bytes:
    data = b"".join(body)
    n = len(data) if declared is None else declared
    return register_param(0x08) + n.to_bytes(4, "big") + data


def iscsi(name: bytes, code: int = 0x05, length: int | None = None) -> bytes:
    n = len(name) if length is None else length
    return bytes([code, 0]) + n.to_bytes(2, "big") + name


NAME = b"iqn.2020-01.example:node1\0\0\0"  # 28 bytes
FC = bytes(24)  # FC TransportID: format code 0x00, 24 bytes


@pytest.mark.parametrize(
    "tid",
    [
        iscsi(NAME),  # last TransportID, exactly filling the list
        iscsi(NAME, code=0x45),  # iSCSI initiator port format
        iscsi(b"\0" + b"a" * 27),  # the NUL may be the name's first byte
        iscsi(b"a" * 251 + b"\0"),  # ADDITIONAL LENGTH 252: the largest
    ],
)
def test_iscsi_transport_ids_accepted(tid: bytes) -> None:
    got = validate_pr_out(pr_out(0, 0), tids(tid))
    assert isinstance(got, ProutParams) and got.transport_ids == [tid]


@pytest.mark.parametrize(
    "param",
    [
        tids(iscsi(NAME, length=0x011C)),  # ADDITIONAL LENGTH 284, low byte 28
        tids(iscsi(b"a" * 20 + bytes(4), length=28)),  # the name runs past the list
        tids(iscsi(b"a" * 28), FC),  # no NUL in the name, only after it
        tids(FC, declared=0x01000018),  # the list length's high byte counts
    ],
)
def test_transport_id_lists_refused(param: bytes) -> None:
    assert validate_pr_out(pr_out(0, 0), param) == INVALID_PARAM


def test_fixed_parameter_list_alone_carries_no_transport_ids() -> None:
    cdb = pr_out(6, 24, type_=3, scope=2)
    assert validate_pr_out(cdb, register_param(0x01)) == ProutParams(
        6, 2, 3, (1).to_bytes(8, "big"), (2).to_bytes(8, "big"), 0x01, []
    )
