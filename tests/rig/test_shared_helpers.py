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


def test_a_new_multipath_map_retires_the_helper_that_read_the_old_ones_configuration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """libmpathpersist reads multipath.conf once, at the helper's start: after the map was
    removed (the multipath tests' module does) and another built, the old helper refused every
    PR OUT (measured in the VM: 184 of the mpath phase's tests). The same map keeps it."""
    from scsi_pr.rig import backend_paths, multipath

    built: list[tuple[str, ...]] = []

    def fake_up(paths: list[str]) -> multipath.MultipathMap:
        built.append(tuple(paths))
        names = tuple(sorted(p.rsplit("/", 1)[-1] for p in paths))
        return multipath.MultipathMap("mpatha", "/dev/mapper/mpatha", names)

    monkeypatch.setattr(multipath, "up", fake_up)
    monkeypatch.setattr(backend_paths.backend_lio, "mark_multipath_used", lambda: None)
    monkeypatch.setattr(backend_paths._SharedMap, "found", None)
    monkeypatch.setattr(backend_paths.atexit, "register", lambda f: f)
    kind = backend_paths.MULTIPATH_HELPER
    assert kind == backend_paths.HelperLioMpathBackend.helper_kind.fget(None)  # type: ignore[attr-defined]
    try:
        old = SharedHelpers.running(helper_executable(), "sim", kind)
        backend_paths._SharedMap.over(["/dev/sdb", "/dev/sdc"])
        assert old.proc is not None and old.proc.poll() is not None, "the old helper lives on"
        new = SharedHelpers.running(helper_executable(), "sim", kind)
        assert backend_paths._SharedMap.over(["/dev/sdc", "/dev/sdb"]).paths == ("sdb", "sdc")
        assert new.proc is not None and new.proc.poll() is None, "the same map's helper went"
        assert SharedHelpers.helpers[kind][0] is new
        assert built == [("/dev/sdb", "/dev/sdc")]
    finally:
        SharedHelpers.discard(kind)
