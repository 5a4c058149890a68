"""What a test does when something it needs is missing: skip with the reason on a developer's
machine, fail in CI (CI=true), where every tier must really run."""

from __future__ import annotations

import shutil

import pytest

from scsi_pr.rig.ci import in_ci

__all__ = ["in_ci", "tool", "unavailable"]


def unavailable(reason: str) -> None:
    if in_ci():
        pytest.fail(f"{reason} (CI=true: this check must run in CI)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)  # also where a module loads what it needs


def tool(name: str, package: str) -> str:
    """The path of the executable ``name``, or ``unavailable`` naming the Debian package."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"needs {name} (apt-get install {package})")
    assert path is not None
    return path
