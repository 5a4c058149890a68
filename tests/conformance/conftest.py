"""Conformance suite: backend-independent SPC-5 PR tests.

Tests here reach the device only through the plugin's ``initiators`` fixture (``.execute``,
``.transport_id``, ``.relative_target_port``) and build bytes with ``sim.cdb``, so the same test
runs on the model, through the helper, and against LIO.

Where the helper backend's way to the device cannot carry a command (the block layer's PR
ioctls have no READ FULL STATUS, say), the test is marked ``@pytest.mark.path_limit(NAME)``,
NAME an entry of ``scsi_pr.helper.executors.limits.LIMITS``, and asserts that entry's answer
on backends whose ``path_limits`` have it.

Where LIO answers differently, the test is marked ``@pytest.mark.lio_deviation(NAME)`` with the
name of the deviation's entry in ``scsi_pr.sim.deviations.REGISTRY`` (the entry lists the test
back), and asserts one answer or the other by the plugin's ``device_profile``: LIO's measured
answer where the device's profile has the deviation (lio and helper-lio, or the model under
``--profile lio-6.1``), the standard's otherwise. A kernel whose LIO answers otherwise fails the
test, as a model that stopped following SPC-5 does.
"""

from __future__ import annotations

# prtest (here) is importable as this conftest's directory is on sys.path; pr_machine (tests/)
# through pyproject's pytest pythonpath.
import functools
from pathlib import Path

import pytest
from prtest import drain

from scsi_pr.helper.executors.limits import LIMITS, PathLimit
from scsi_pr.sim.deviations import DEVIATIONS, Deviation


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "lio_deviation(name): LIO answers differently from SPC-5 here; NAME is the entry of "
        "scsi_pr.sim.deviations.REGISTRY whose answer the test asserts where the device has it",
    )
    config.addinivalue_line(
        "markers",
        "path_limit(name): the helper backend's way to the device cannot carry this; NAME is "
        "the entry of scsi_pr.helper.executors.limits.LIMITS whose answer the test asserts on "
        "backends whose path has it (the path_limits fixture)",
    )


@functools.cache
def _entries(tests: tuple[str, ...]) -> tuple[tuple[str, str, str], ...]:
    """(file name, function, parameter id part) of each ``file::function[param]``: parsed once,
    as collection checks every item against every entry (under TCG that took tens of seconds)."""
    out = []
    for test in tests:
        path, _, rest = test.partition("::")
        function, _, param = rest.partition("[")
        out.append((Path(path).name, function, param.rstrip("]")))
    return tuple(out)


def listed(item: pytest.Item, deviation: Deviation | PathLimit) -> bool:
    """Does ``deviation`` list ``item`` among its tests (``file::function`` or
    ``file::function[param]``, the param a part of the item's parameter id)?"""
    callspec = getattr(item, "callspec", None)
    file, function = item.path.name, getattr(item, "originalname", "")
    for entry_file, entry_function, param in _entries(deviation.tests):
        if entry_file != file or entry_function != function:
            continue
        if not param or (callspec is not None and param in callspec.id):
            return True
    return False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every ``lio_deviation`` and ``path_limit`` mark names one registry entry, by its name
    alone, and that entry lists the test (a path limit's tests carry its mark): the registries
    and the suite cannot drift apart."""
    registries: dict[str, tuple[str, dict[str, Deviation] | dict[str, PathLimit]]] = {
        "lio_deviation": ("scsi_pr.sim.deviations.REGISTRY", DEVIATIONS),
        "path_limit": ("scsi_pr.helper.executors.limits.LIMITS", LIMITS),
    }
    for item in items:
        for marker, (where, registry) in registries.items():
            for mark in item.iter_markers(marker):
                if len(mark.args) != 1 or mark.kwargs or mark.args[0] not in registry:
                    raise pytest.UsageError(
                        f"{item.nodeid}: {marker} takes one name of {where}, "
                        f"got {mark.args} {mark.kwargs}"
                    )
                if not listed(item, registry[mark.args[0]]):
                    raise pytest.UsageError(
                        f"{item.nodeid}: entry {mark.args[0]!r} of {where} does not list this test"
                    )
    # and back: a path limit's listed tests carry its mark (they assert its answer)
    for item in items:
        marked = {m.args[0] for m in item.iter_markers("path_limit") if m.args}
        for limit in LIMITS.values():
            if listed(item, limit) and limit.name not in marked:
                raise pytest.UsageError(f"{item.nodeid}: listed by {limit.name!r}, not marked")


@pytest.fixture
def nexuses(initiators: list) -> list:
    """The plugin's initiators, each with its pending unit attentions (power on, LUN data
    changed) reported away by TEST UNIT READY so a test starts from a quiet LU."""
    assert len(initiators) >= 3, "the conformance suite needs three initiators"
    for it in initiators:
        drain(it)
    return initiators
