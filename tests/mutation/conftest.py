"""The mutation tests' marker: ``mutation`` runs mutmut over a sample (minutes of CPU), so it is
kept whole on one worker and can be left out with ``-m "not mutation"``."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "mutation: runs mutmut on a seeded sample of mutants (minutes); never split, one run",
    )
