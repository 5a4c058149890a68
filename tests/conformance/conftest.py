"""Conformance suite: backend-independent SPC-5 PR tests.

Tests here reach the device only through the plugin's ``initiators`` fixture (``.execute``,
``.transport_id``, ``.relative_target_port``) and build bytes with ``sim.cdb``, so the same test
runs on the model, through the helper, and against LIO.

Known LIO deviations are marked ``@pytest.mark.lio_deviation(reason=..., clause=...)`` (or as a
``pytest.param`` mark); this conftest turns that into the plugin's ``deviates("lio",
"helper-lio", ...)``, a strict xfail on LIO backends only, so a fixed kernel shows up as a
failure we notice.
"""

from __future__ import annotations

# prtest (here) is importable as this conftest's directory is on sys.path; pr_machine (tests/)
# through pyproject's pytest pythonpath.
import pytest
from prtest import drain

from scsi_pr.rig.pytest_plugin import LIO_BACKENDS


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "lio_deviation(reason, clause): LIO answers differently from SPC-5 here "
        "(spc-persistent-reservations.md §11, lio-rig.md 'Measured'); strict xfail on LIO only",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Translate ``lio_deviation`` into the plugin's ``deviates`` before the plugin reads it."""
    for item in items:
        mark = item.get_closest_marker("lio_deviation")
        if mark is not None:
            item.add_marker(pytest.mark.deviates(*sorted(LIO_BACKENDS), **mark.kwargs))


@pytest.fixture
def nexuses(initiators: list) -> list:
    """The plugin's initiators, each with its pending unit attentions (power on, LUN data
    changed) reported away by TEST UNIT READY so a test starts from a quiet LU."""
    assert len(initiators) >= 3, "the conformance suite needs three initiators"
    for it in initiators:
        drain(it)
    return initiators
