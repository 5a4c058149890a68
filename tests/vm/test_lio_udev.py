"""udev must not probe the LIO rig's disks behind a test's back (``scsi_pr.rig.udev``).

Closing a disk opened for writing makes udev probe it (the watch of 60-block.rules), and the
probe's READ takes the unit attention pending on that disk's I_T nexus: the kernel retries the
READ and nobody sees it. The LIO rig installs ``udev.LIO_LOOPBACK_DISKS`` against that. Both
halves in one VM: without the rule a REGISTRATIONS PREEMPTED is gone after such a close, with
it the disk's own initiator still gets it.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conformance.prtest import SA, drain, expect_good, prout, register
from needs import unavailable

from scsi_pr.rig import udev
from scsi_pr.rig.backend_lio import LioBackend
from scsi_pr.rig.backends import BackendUnavailable, open_backend
from scsi_pr.sim.constants import ReservationType

pytestmark = pytest.mark.vm
REGISTRATIONS_PREEMPTED = (0x2A, 0x05)
A, B = 0xA1, 0xB2


@pytest.fixture
def lio() -> Iterator[LioBackend]:
    if not udev.running():
        unavailable("needs udevd running")
    try:
        opened = open_backend("lio", initiators=2)
    except BackendUnavailable as e:
        unavailable(f"needs the LIO rig: {e}")
    with opened as backend:
        assert isinstance(backend, LioBackend)
        yield backend


def udev_db(disk: str) -> Path:
    """udevd's database file for ``disk``: rewritten each time udevd handles an event for it."""
    rdev = os.stat(disk).st_rdev
    return Path(f"/run/udev/data/b{os.major(rdev)}:{os.minor(rdev)}")


def settle_rounds() -> None:
    for _ in range(3):  # a watch's change event is queued by udevd itself: settle, pause, again
        udev.settle()
        time.sleep(1)


def preempted_then_closed(backend: LioBackend, rule: bool) -> tuple[bool, list[tuple[int, int]]]:
    """With or without the rig's rule (a change event applies it to B's disk, as to a new one),
    B is preempted (a unit attention waits on its I_T nexus), B's disk is opened for writing
    and closed: whether udev handled an event for the disk, and the unit attentions B's
    initiator then gets."""
    a, b = backend.initiators
    disk = backend.lio_initiators[1].port.sd
    udev.LIO_LOOPBACK_DISKS.install(on=rule)
    subprocess.run(["udevadm", "trigger", "--action=change", disk], check=True, timeout=60)
    settle_rounds()
    drain(b)
    register(a, A)
    register(b, B)
    expect_good(prout(a, SA.PREEMPT, A, B, ReservationType.WRITE_EXCLUSIVE))
    before = udev_db(disk).stat().st_mtime_ns
    os.close(os.open(disk, os.O_RDWR))
    settle_rounds()
    handled = udev_db(disk).stat().st_mtime_ns != before
    seen = drain(b)
    expect_good(prout(a, SA.REGISTER, A, 0))
    return handled, seen


def test_closing_a_rig_disk_opened_for_writing_starts_no_probe(lio: LioBackend) -> None:
    try:
        handled, _seen = preempted_then_closed(lio, rule=False)
    finally:
        udev.LIO_LOOPBACK_DISKS.install()
    # measured on 6.1: the probe's READ took the REGISTRATIONS PREEMPTED (``_seen`` was empty)
    assert handled, "no udev event after closing a disk opened for writing: the rule is moot"
    assert preempted_then_closed(lio, rule=True) == (False, [REGISTRATIONS_PREEMPTED])
