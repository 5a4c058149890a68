"""VM-tier tests that need more than the LIO VM itself."""

from __future__ import annotations

import pytest
from run_summary import SUMMARY


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "guest_e2e: boots a nested QEMU guest inside the VM (about ten minutes under TCG); "
        "the VM tier runs it once, in a phase of its own",
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in SUMMARY:
        terminalreporter.write_line(line)
