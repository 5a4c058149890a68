"""VM tier: PR through the helper on a real dm-multipath map (``helper-lio-mpath``).

The multipath host (initiator 0) is a map multipathd built over two of the LIO rig's tcm_loop
ports, its PR handed by ``scsi-pr-helper`` to libmpathpersist on the map's fd; the other
initiator is a plain single-path node. What the helper must get right is what a multipath
host means to the device: one key, registered on every path's I_T nexus; a PREEMPT of that key
removes every path's registration; READ FULL STATUS reports each path (the C helper refuses
it here); REGISTER AND MOVE goes out through the path that holds the reservation (the C helper
refuses it too). Cluster sequences: fence_mpath's (register on every path, reserve, preempt)
and the Windows validation sequence, with the multipath host as node A.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from conformance.prtest import (
    expect_conflict,
    expect_good,
    full_status,
    prout,
    read_keys,
    read_reservation,
    register,
    reserve,
)

from scsi_pr.rig.backend_paths import HelperLioMpathBackend, release_multipath
from scsi_pr.rig.backends import Initiator, open_backend
from scsi_pr.rig.lio import InitiatorPort
from scsi_pr.sim import cdb as C
from scsi_pr.sim.constants import Opcode, PersistentReserveInAction, ReservationType, Status
from scsi_pr.sim.constants import PersistentReserveOutAction as SA
from scsi_pr.sim.result import CommandResult
from scsi_pr.sim.transportid import TransportId

pytestmark = [pytest.mark.vm, pytest.mark.multipath]
WE_RO = ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY
HOST_KEY, OTHER_KEY = 0xA1, 0xB2


@pytest.fixture(scope="module", autouse=True)
def _no_map_after_this_module() -> Iterator[None]:
    yield
    release_multipath()


@dataclass
class Host:
    """The multipath host as the guest sees it. On a map the helper answers a PR IN with the
    parameter data's own length, cut to the ALLOCATION LENGTH, as a device does (the C helper
    zero-fills to the allocation length): checked here for every PR IN."""

    it: Initiator

    @property
    def name(self) -> str:
        return self.it.name

    @property
    def transport_id(self) -> TransportId:
        return self.it.transport_id

    @property
    def relative_target_port(self) -> int:
        return self.it.relative_target_port

    def execute(self, cdb: bytes, data: bytes = b"") -> CommandResult:
        r = self.it.execute(cdb, data)
        if cdb[0] != Opcode.PERSISTENT_RESERVE_IN or r.status != Status.GOOD:
            return r
        if cdb[1] & 0x1F == PersistentReserveInAction.REPORT_CAPABILITIES:
            whole = int.from_bytes(r.data[0:2], "big")
        else:
            whole = 8 + int.from_bytes(r.data[4:8], "big")
        assert len(r.data) == min(int.from_bytes(cdb[7:9], "big"), whole), r.data.hex()
        return r


@pytest.fixture
def mpath() -> Iterator[HelperLioMpathBackend]:
    with open_backend("helper-lio-mpath", initiators=2) as backend:
        assert isinstance(backend, HelperLioMpathBackend)
        yield backend


def nodes(backend: HelperLioMpathBackend) -> tuple[Host, Initiator]:
    """(the multipath host, the single-path node)."""
    host, other = backend.initiators
    return Host(host), other


def registered(it: Initiator) -> dict[tuple[int, bytes], int]:
    """(RELATIVE TARGET PORT IDENTIFIER, TransportID) -> key, by READ FULL STATUS."""
    return {(d.relative_target_port, d.transport_id): d.key for d in full_status(it).descriptors}


def nexus(port: InitiatorPort) -> tuple[int, bytes]:
    return port.relative_target_port, bytes.fromhex(port.transport_id)


def test_one_register_registers_every_path(mpath: HelperLioMpathBackend) -> None:
    host, other = nodes(mpath)
    register(host, HOST_KEY)
    _, keys = read_keys(other)
    assert keys == [HOST_KEY] * mpath.PATHS
    seen = registered(other)
    assert {seen[nexus(p)] for p in mpath.path_ports} == {HOST_KEY}


def test_read_full_status_over_the_map_is_the_device_s(mpath: HelperLioMpathBackend) -> None:
    host, other = nodes(mpath)
    register(host, HOST_KEY)
    register(other, OTHER_KEY)
    reserve(host, HOST_KEY, WE_RO)
    through_map = full_status(host)
    assert through_map == full_status(other)  # one path's nexus answers for all
    assert len(through_map.descriptors) == mpath.PATHS + 1
    holders = [d for d in through_map.descriptors if d.r_holder]
    assert [(d.key, d.type) for d in holders] == [(HOST_KEY, WE_RO)]


def test_fence_mpath_sequence(mpath: HelperLioMpathBackend) -> None:
    """fence_mpath (agents/mpath): every node registers its key (on every path), one node
    reserves WE_RO; fencing a node preempts its key. Here the plain node fences the multipath
    host: one PREEMPT removes both paths' registrations, and the host's PR OUT then conflicts.
    (fence_mpath preempts with PREEMPT AND ABORT, which wedges tcm_loop: docs/scenarios.md.)"""
    host, other = nodes(mpath)
    register(host, HOST_KEY)
    register(other, OTHER_KEY)
    reserve(host, HOST_KEY, WE_RO)
    expect_good(prout(other, SA.PREEMPT, OTHER_KEY, HOST_KEY, WE_RO))
    _, keys = read_keys(host)
    assert keys == [OTHER_KEY]
    assert read_reservation(host)[1] == (OTHER_KEY, WE_RO)
    expect_conflict(prout(host, SA.RESERVE, HOST_KEY, 0, WE_RO))


def test_the_multipath_host_fences_a_plain_node(mpath: HelperLioMpathBackend) -> None:
    host, other = nodes(mpath)
    register(host, HOST_KEY)
    register(other, OTHER_KEY)
    reserve(other, OTHER_KEY, WE_RO)
    expect_good(prout(host, SA.PREEMPT, HOST_KEY, OTHER_KEY, WE_RO))
    _, keys = read_keys(host)
    assert keys == [HOST_KEY] * mpath.PATHS
    assert read_reservation(host)[1] == (HOST_KEY, WE_RO)


def test_windows_validation_sequence(mpath: HelperLioMpathBackend) -> None:
    """'Validate SCSI-3 Persistent Reservation' (cluster-pr-sequences.md 2), node A the
    multipath host: register, reserve, read; an unregistered B's preempt fails; B registers,
    its reserve conflicts; B unregisters, A releases and unregisters."""
    a, b = nodes(mpath)
    expect_good(prout(a, SA.REGISTER_AND_IGNORE_EXISTING_KEY, 0, HOST_KEY))
    reserve(a, HOST_KEY, WE_RO)
    assert read_reservation(a)[1] == (HOST_KEY, WE_RO)
    expect_conflict(prout(b, SA.PREEMPT, OTHER_KEY, HOST_KEY, WE_RO))
    expect_good(prout(b, SA.REGISTER_AND_IGNORE_EXISTING_KEY, 0, OTHER_KEY))
    expect_conflict(prout(b, SA.RESERVE, OTHER_KEY, 0, WE_RO))
    assert read_reservation(b)[1] == (HOST_KEY, WE_RO)
    expect_good(prout(b, SA.REGISTER, OTHER_KEY, 0))
    expect_good(prout(a, SA.RELEASE, HOST_KEY, 0, WE_RO))
    expect_good(prout(a, SA.REGISTER, HOST_KEY, 0))
    assert read_keys(b)[1] == [] and read_reservation(b)[1] is None


def test_register_and_move_leaves_through_the_holding_path(mpath: HelperLioMpathBackend) -> None:
    host, other = nodes(mpath)
    register(host, HOST_KEY)
    reserve(host, HOST_KEY, WE_RO)
    cdb, data = C.register_and_move(
        HOST_KEY, OTHER_KEY, other.relative_target_port, other.transport_id, WE_RO
    )
    expect_good(host.execute(cdb, data))
    assert read_reservation(other)[1] == (OTHER_KEY, WE_RO)
    holders = [
        (d.relative_target_port, d.key) for d in full_status(other).descriptors if d.r_holder
    ]
    assert holders == [(other.relative_target_port, OTHER_KEY)]


def test_register_and_move_by_a_non_holder_conflicts_on_every_path(
    mpath: HelperLioMpathBackend,
) -> None:
    host, other = nodes(mpath)
    register(host, HOST_KEY)
    register(other, OTHER_KEY)
    reserve(other, OTHER_KEY, WE_RO)
    cdb, data = C.register_and_move(
        HOST_KEY, 0xC3, other.relative_target_port, other.transport_id, WE_RO
    )
    expect_conflict(host.execute(cdb, data))
    assert read_reservation(other)[1] == (OTHER_KEY, WE_RO)
