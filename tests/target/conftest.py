"""Every live-target test ends with its initiators' sockets closed (``Initiator.close_all``):
one left open is finalised later, in whatever test the garbage collector runs in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from initiator import Initiator


@pytest.fixture(autouse=True)
def _initiators_closed() -> Iterator[None]:
    yield
    Initiator.close_all()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A socket left open fails the test that leaks it, not a later one (``-W error`` for
    ResourceWarning here; the fixture above closes the initiators, the tests what else they
    open)."""
    for item in items:
        if "tests/target/" in item.nodeid or item.nodeid.startswith("target/"):
            item.add_marker(pytest.mark.filterwarnings("error::ResourceWarning"))
            item.add_marker(
                pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
            )
