"""The helper-lio backends' shared helper processes (``backend_helper.SharedHelpers``), on the
host with the ``sim`` executor: one process per kind for the run, replaced once it is gone."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scsi_pr.rig.helper_processes import HelperPool, SharedHelpers, helper_executable


@pytest.fixture
def helpers() -> Iterator[type[SharedHelpers]]:
    yield SharedHelpers
    for kind in ("test-a", "test-b"):
        SharedHelpers.discard(kind)


def test_one_process_per_kind(helpers: type[SharedHelpers]) -> None:
    exe = helper_executable()
    first = helpers.running(exe, "sim", "test-a")
    assert helpers.running(exe, "sim", "test-a") is first
    other = helpers.running(exe, "sim", "test-b")
    assert other is not first and other.sock != first.sock
    assert first.proc is not None and first.proc.poll() is None


def test_a_helper_that_died_is_replaced(helpers: type[SharedHelpers]) -> None:
    exe = helper_executable()
    first = helpers.running(exe, "sim", "test-a")
    first.kill()
    again = helpers.running(exe, "sim", "test-a")
    assert again is not first
    assert again.proc is not None and again.proc.poll() is None


def test_discard_kills_it(helpers: type[SharedHelpers]) -> None:
    helper = helpers.running(helper_executable(), "sim", "test-a")
    helpers.discard("test-a")
    assert helper.proc is not None and helper.proc.poll() is not None
    assert "test-a" not in helpers.helpers


def test_the_pool_hands_out_running_helpers_again_and_starts_only_new_ones() -> None:
    """``HelperPool.helpers_for`` (the helper-sim backends'): a second call for the same
    initiators returns the same processes without waiting for a READY=1 they said before;
    a new name gets a process of its own, started and waited for."""
    pool = HelperPool()
    try:
        first = pool.helpers_for(["iqn.test:a"], ports=1)
        again = pool.helpers_for(["iqn.test:a", "iqn.test:b"], ports=1)
        assert again[0] is first[0] and again[1] is not first[0]
        assert all(h.proc is not None and h.proc.poll() is None for h in again)
        assert all(h.sock.is_socket() for h in again)  # each serves its socket
    finally:
        pool.close()
