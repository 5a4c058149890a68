"""The LIO rig itself on a real kernel (VM tier): devices, names, teardown, stale APTPL state.

Uses its own backstore name and rig generation, so it never touches the rig the ``lio`` backend
shares with the conformance tests in the same process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from needs import unavailable

from scsi_pr.rig import lio
from scsi_pr.rig.backend_lio import execute_with_timeout
from scsi_pr.rig.backends import initiator_name
from scsi_pr.sim import cdb as C
from scsi_pr.sim.constants import PersistentReserveInAction as IN
from scsi_pr.sim.constants import PersistentReserveOutAction as SA
from scsi_pr.sim.constants import Status
from scsi_pr.sim.transportid import decode_transport_id

pytestmark = pytest.mark.vm

NAME, GENERATION = "scsiprtest", 200


@pytest.fixture
def spec(tmp_path: Path) -> lio.LunSpec:
    try:
        lio.check_available()
    except lio.LioUnavailable as e:
        unavailable(str(e))
    return lio.LunSpec(2, 8 << 20, "fileio", NAME, str(tmp_path / "lu.img"), GENERATION)


@pytest.fixture
def rig(spec: lio.LunSpec) -> Iterator[lio.RigDescription]:
    desc = lio.up(spec, record=False)
    yield desc
    lio.down(NAME, GENERATION)


def run(sg: str, cdb: bytes, data: bytes = b"") -> tuple[int, bytes]:
    fd = os.open(sg, os.O_RDWR | os.O_NONBLOCK)
    try:
        r = execute_with_timeout(fd, cdb, data, sg)
    finally:
        os.close(fd)
    assert r.errno == 0 and r.host_status == 0, r
    return r.status, r.data


def test_each_initiator_gets_its_own_devices_and_target_port(rig: lio.RigDescription) -> None:
    ports = rig.initiators
    assert [p.wwn for p in ports] == [initiator_name(0), initiator_name(1)]
    assert len({p.sg for p in ports}) == len({p.sd for p in ports}) == 2
    assert all(os.path.exists(p.sg) and os.path.exists(p.sd) for p in ports)
    assert len({p.relative_target_port for p in ports}) == 2
    assert all(p.target_wwn.startswith(f"naa.5001405f{GENERATION:02x}") for p in ports)
    for p in ports:  # the rig cleared the start-up unit attentions
        assert run(p.sg, C.test_unit_ready())[0] == Status.GOOD


def test_read_full_status_names_the_rig_transport_ids(rig: lio.RigDescription) -> None:
    for i, p in enumerate(rig.initiators):
        cdb, data = C.prout(SA.REGISTER, 0, 0x100 + i)
        assert run(p.sg, cdb, data)[0] == Status.GOOD
    status, data = run(rig.initiators[0].sg, C.persistent_reserve_in(IN.READ_FULL_STATUS))
    assert status == Status.GOOD
    seen: dict[int, tuple[str, int]] = {}
    offset = 8
    while offset < 8 + int.from_bytes(data[4:8], "big"):
        key = int.from_bytes(data[offset : offset + 8], "big")
        rtpi = int.from_bytes(data[offset + 18 : offset + 20], "big")
        length = int.from_bytes(data[offset + 20 : offset + 24], "big")
        tid, _ = decode_transport_id(data[offset + 24 : offset + 24 + length])
        seen[key] = (tid.encode().hex(), rtpi)
        offset += 24 + length
    assert seen == {
        0x100 + i: (p.transport_id, p.relative_target_port) for i, p in enumerate(rig.initiators)
    }


def test_down_is_idempotent_and_removes_stale_aptpl_state(spec: lio.LunSpec) -> None:
    desc = lio.up(spec, record=False)
    cdb, data = C.prout(SA.REGISTER, 0, 0xA9, aptpl=True)
    assert run(desc.initiators[0].sg, cdb, data)[0] == Status.GOOD
    aptpl = lio.dbroot() / "pr" / f"aptpl_{desc.unit_serial}"
    assert "PR_REG_START" in aptpl.read_text(), "LIO wrote the APTPL registration"
    removed = lio.down(NAME, GENERATION)
    assert f"aptpl_{desc.unit_serial}" in removed
    assert not aptpl.exists()
    assert not any(Path(lio.LOOPBACK).glob(f"naa.5001405f{GENERATION:02x}*"))
    assert lio.down(NAME, GENERATION) == []
    # Without the cleanup rtslib would replay the old registration into the new backstore.
    again = lio.up(spec, record=False)
    try:
        status, keys = run(again.initiators[0].sg, C.persistent_reserve_in(IN.READ_KEYS))
        assert status == Status.GOOD
        assert keys[4:8] == bytes(4), "no registrations survive a down/up cycle"
    finally:
        lio.down(NAME, GENERATION)


def test_the_vm_runs_without_address_randomisation() -> None:
    """``vm.NO_ASLR``: under TCG a program mapped at new addresses is translated anew."""
    assert Path("/proc/sys/kernel/randomize_va_space").read_text().strip() == "0"
