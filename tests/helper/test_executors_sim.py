"""``SimExecutor`` driven in-process (``scsi_pr.helper.executors.sim``), exact to the byte.

What QEMU reads back from ``--backend sim`` must be what the C helper would send: the model's
status, its sense padded to 96 bytes, its data cut to QEMU's allocation length; for an fd that
is no simulated LU, the C helper's answer to a device rejecting SG_IO (CHECK CONDITION, ABORTED
COMMAND, I/O PROCESS TERMINATED: 0B/00/06) with a message naming the fd and its kind. Mutation
testing sees only code run inside the pytest process, hence no helper subprocess here: the
constructor's checks, ``lu_key`` per kind of fd, ``execute``'s replies, stalls and the profile's
never-completing command are checked directly.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from scsi_pr.helper.errors import HelperError
from scsi_pr.helper.executors import sim
from scsi_pr.helper.executors.base import CommandNeverCompletes, Reply
from scsi_pr.helper.executors.sim import (
    DEFAULT_INITIATOR,
    NotASimulatedLU,
    SimExecutor,
    reply_from_result,
)
from scsi_pr.helper.lu_identity import identify_path
from scsi_pr.sim import cdb as C
from scsi_pr.sim.constants import PersistentReserveInAction as SAI
from scsi_pr.sim.constants import PersistentReserveOutAction as SA
from scsi_pr.sim.constants import ReservationType as T
from scsi_pr.sim.constants import Status
from scsi_pr.sim.nexus import ITNexus
from scsi_pr.sim.result import CommandResult

A, B = 0xA, 0xB
SENSE = 96
NO_SENSE = bytes(SENSE)
# QEMU's scsi_build_sense for SENSE_CODE(IO_ERROR): fixed format, ABORTED COMMAND, 00h/06h.
IO_ERROR = bytes.fromhex("70000b000000000a000000000006").ljust(SENSE, b"\0")
NOT_A_DEVICE = Reply(Status.CHECK_CONDITION, IO_ERROR)
# ILLEGAL REQUEST, INVALID FIELD IN CDB, field pointer: CDB byte 1, bit 4 (SERVICE ACTION)
BAD_SERVICE_ACTION = bytes.fromhex("700005000000000a00000000240000cc0001").ljust(SENSE, b"\0")
READ_KEYS = C.persistent_reserve_in(SAI.READ_KEYS, 100)
READ_FULL_STATUS = C.persistent_reserve_in(SAI.READ_FULL_STATUS, 200)
FULL_STATUS_DESCRIPTOR = 48  # 24 bytes + an NAA TransportID (24 bytes)


@pytest.fixture
def fd(image: Path) -> Iterator[int]:
    fd = os.open(image, os.O_RDWR)
    yield fd
    os.close(fd)


def _register(ex: SimExecutor, fd: int, key: int, **flags: bool) -> None:
    cdb, data = C.prout(SA.REGISTER, 0, key, **flags)
    assert ex.execute(fd, cdb, data, 0) == Reply(Status.GOOD, NO_SENSE, b"")


# -- the constructor ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("port", "ports", "text"),
    [(3, None, "target port 3 is not one of the LU's 1..2"),
     (0, None, "target port 0 is not one of the LU's 1..2"),
     (5, 4, "target port 5 is not one of the LU's 1..4")],
)  # fmt: skip
def test_a_target_port_outside_the_lu_is_refused(port: int, ports: int | None, text: str) -> None:
    """``--target-port`` must be one of the LU's ports (two unless ``--target-ports``)."""
    kwargs = {} if ports is None else {"target_ports": ports}
    with pytest.raises(ValueError) as caught:
        SimExecutor(target_port=port, **kwargs)
    assert str(caught.value) == text


def test_the_nexus_is_the_initiator_through_its_target_port() -> None:
    """The last port of the LU is accepted, and is the port the nexus goes through."""
    assert SimExecutor().nexus == ITNexus.named(DEFAULT_INITIATOR, 1)
    assert SimExecutor(target_port=2).nexus == ITNexus.named(DEFAULT_INITIATOR, 2)
    ex = SimExecutor("naa.5001405000000002", target_port=4, target_ports=4)
    assert ex.nexus == ITNexus.named("naa.5001405000000002", 4)
    assert ex.lus.target_ports == (1, 2, 3, 4)
    assert SimExecutor(profile="lio-6.1").lus.profile.name == "lio-6.1"


def test_a_registration_names_the_initiator_and_its_port(fd: int) -> None:
    """READ FULL STATUS shows the registration as made: the initiator's TransportID through
    RELATIVE TARGET PORT 2."""
    ex = SimExecutor("naa.5001405000000002", target_port=2)
    _register(ex, fd, A)
    reply = ex.execute(fd, READ_FULL_STATUS, b"", 200)
    descriptor = b"".join([
        A.to_bytes(8, "big"), bytes(10),  # key; no ALL_TG_PT, no R_HOLDER, no scope or type
        (2).to_bytes(2, "big"),  # RELATIVE TARGET PORT IDENTIFIER
        (24).to_bytes(4, "big"), bytes.fromhex("06000000" "5001405000000002"), bytes(12),
    ])  # fmt: skip
    header = (1).to_bytes(4, "big") + FULL_STATUS_DESCRIPTOR.to_bytes(4, "big")
    assert reply.data == header + descriptor


def test_all_target_ports_are_the_lus_ports(fd: int) -> None:
    """An ALL_TG_PT registration covers every port of the LU: four with ``target_ports=4``."""
    ex = SimExecutor(target_ports=4)
    _register(ex, fd, A, all_tg_pt=True)
    data = ex.execute(fd, READ_FULL_STATUS, b"", 200).data
    assert data[4:8] == (4 * FULL_STATUS_DESCRIPTOR).to_bytes(4, "big")
    ports = [data[8 + 48 * i + 18 : 8 + 48 * i + 20] for i in range(4)]
    assert ports == [p.to_bytes(2, "big") for p in (1, 2, 3, 4)]


# -- which fds are simulated LUs ---------------------------------------------------------------
@pytest.mark.parametrize("flags", [os.O_RDWR, os.O_RDONLY, os.O_WRONLY])
def test_a_regular_file_is_an_lu_named_by_its_identity(image: Path, flags: int) -> None:
    fd = os.open(image, flags)
    try:
        assert SimExecutor.lu_key(fd) == (identify_path(image)[0], 1 << 16)
    finally:
        os.close(fd)


def _fds(kind: str, tmp_path: Path) -> tuple[int, ...]:
    """Open fds of ``kind``; the first is the one to pass."""
    if kind == "pipe":
        return os.pipe()
    if kind == "socket":
        a, b = socket.socketpair()
        return a.detach(), b.detach()
    if kind == "directory":
        return (os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY),)
    if kind == "character device":
        return (os.open(os.devnull, os.O_RDWR),)
    image = tmp_path / "lu.img"
    image.write_bytes(bytes(512))
    return (os.open(image if kind == "O_PATH file" else tmp_path, os.O_PATH),)


NOT_FILES = [("pipe", "p"), ("socket", "s"), ("directory", "d"), ("character device", "c")]


@pytest.mark.parametrize(("kind", "mode"), NOT_FILES)
def test_what_is_not_a_regular_file_is_no_lu(tmp_path: Path, kind: str, mode: str) -> None:
    """SG_IO on such an fd fails with ENOTTY; the message names the fd and its file type."""
    fds = _fds(kind, tmp_path)
    try:
        with pytest.raises(NotASimulatedLU) as caught:
            SimExecutor.lu_key(fds[0])
        assert str(caught.value) == f"fd {fds[0]} is not a regular file (mode {mode!r})"
        assert caught.value.errno == errno.ENOTTY and isinstance(caught.value, HelperError)
        ex = SimExecutor(state_dir=tmp_path / "state")
        assert ex.execute(fds[0], READ_KEYS, b"", 100) == NOT_A_DEVICE
    finally:
        for fd in fds:
            os.close(fd)


@pytest.mark.parametrize("kind", ["O_PATH file", "O_PATH directory"])
def test_an_o_path_fd_is_no_lu(tmp_path: Path, kind: str) -> None:
    """An O_PATH fd allows no I/O, so SG_IO fails with EBADF, whatever it names."""
    (fd,) = _fds(kind, tmp_path)
    try:
        with pytest.raises(NotASimulatedLU) as caught:
            SimExecutor.lu_key(fd)
        assert str(caught.value) == f"fd {fd} is an O_PATH fd"
        assert caught.value.errno == errno.EBADF
        assert SimExecutor().execute(fd, READ_KEYS, b"", 100) == NOT_A_DEVICE
    finally:
        os.close(fd)


def test_not_a_simulated_lu_defaults_to_enotty() -> None:
    e = NotASimulatedLU("why")
    assert (str(e), e.errno) == ("why", errno.ENOTTY)
    assert NotASimulatedLU("x", errno.EIO).errno == errno.EIO


# -- the model's answers -----------------------------------------------------------------------
def test_good_data_is_cut_to_the_allocation_length(fd: int) -> None:
    """QEMU's clamp, not the CDB's ALLOCATION LENGTH, bounds the data sent back."""
    ex = SimExecutor()
    _register(ex, fd, A)
    keys = (1).to_bytes(4, "big") + (8).to_bytes(4, "big") + A.to_bytes(8, "big")
    assert ex.execute(fd, READ_KEYS, b"", 100) == Reply(Status.GOOD, NO_SENSE, keys)
    assert ex.execute(fd, READ_KEYS, b"", 12) == Reply(Status.GOOD, NO_SENSE, keys[:12])
    assert ex.execute(fd, READ_KEYS, b"", 0) == Reply(Status.GOOD, NO_SENSE, b"")


def test_check_condition_passes_the_models_sense(fd: int) -> None:
    """An unknown PR IN service action: ILLEGAL REQUEST with its field pointer, and no data."""
    bad = C.persistent_reserve_in(7, 100)
    assert SimExecutor().execute(fd, bad, b"", 100) == Reply(
        Status.CHECK_CONDITION, BAD_SERVICE_ACTION, b""
    )


def test_reservation_conflict_has_no_sense(fd: int) -> None:
    """RESERVE from an unregistered nexus: RESERVATION CONFLICT, sense all zeroes."""
    cdb, data = C.prout(SA.RESERVE, B, 0, T.WRITE_EXCLUSIVE)
    assert SimExecutor().execute(fd, cdb, data, 0) == Reply(
        Status.RESERVATION_CONFLICT, NO_SENSE, b""
    )


def test_reply_from_result_drops_data_of_a_failed_command() -> None:
    result = CommandResult(Status.CHECK_CONDITION, b"\x70\x00\x05", b"data")
    assert reply_from_result(result, 4) == Reply(Status.CHECK_CONDITION, b"\x70\x00\x05", b"")
    assert reply_from_result(CommandResult.good(b"abcdef"), 4) == Reply(0, b"", b"abcd")


# -- stalls and commands never completed -------------------------------------------------------
@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every ``time.sleep`` the executor asks for, instead of sleeping."""
    seen: list[float] = []
    monkeypatch.setattr(sim.time, "sleep", seen.append)
    return seen


def test_a_stall_delays_the_answer_by_its_seconds(
    fd: int, state_dir: Path, sleeps: list[float]
) -> None:
    ex = SimExecutor(state_dir=state_dir)
    _register(ex, fd, A)
    assert sleeps == []
    ex.lus.set_stall(SimExecutor.lu_key(fd)[0], 0.25)
    keys = ex.execute(fd, READ_KEYS, b"", 12)
    assert sleeps == [0.25]
    assert keys == Reply(Status.GOOD, NO_SENSE, bytes.fromhex("000000010000000800000000"))


def test_a_command_the_profile_never_completes_is_never_answered(
    fd: int, state_dir: Path, sleeps: list[float]
) -> None:
    """LIO's PREEMPT AND ABORT: takes effect, and raises instead of sleeping for ever."""
    ex = SimExecutor(state_dir=state_dir, profile="lio-6.1")
    _register(ex, fd, A)
    cdb, data = C.prout(SA.RESERVE, A, 0, T.WRITE_EXCLUSIVE)
    assert ex.execute(fd, cdb, data, 0).status == Status.GOOD
    with pytest.raises(CommandNeverCompletes) as caught:
        ex.execute(fd, *C.prout(SA.PREEMPT_AND_ABORT, A, A, T.EXCLUSIVE_ACCESS), 0)
    assert str(caught.value) == "the LU's profile never completes this command"
    assert sleeps == []
    full = ex.execute(fd, C.persistent_reserve_in(SAI.READ_RESERVATION, 100), b"", 100)
    assert full.data[16 + 5] == T.EXCLUSIVE_ACCESS
