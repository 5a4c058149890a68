"""What a test does when something it needs is missing: skip with the reason on a developer's
machine, fail in CI (CI=true), where every tier must really run."""

from __future__ import annotations

import pytest

from scsi_pr.rig.ci import in_ci

__all__ = ["in_ci", "unavailable"]


def unavailable(reason: str) -> None:
    if in_ci():
        pytest.fail(f"{reason} (CI=true: this check must run in CI)", pytrace=False)
    pytest.skip(reason)
