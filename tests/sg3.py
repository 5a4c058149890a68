"""Real sg3-utils commands for the VM tests, their output lowercased for matching."""

from __future__ import annotations

import subprocess

TIMEOUT = 60  # seconds per command: a PR command answers at once unless the LU is wedged


def sg_persist(*args: str) -> str:
    """``sg_persist ARGS``; the test fails with its output unless it exits 0."""
    done = subprocess.run(["sg_persist", *args], capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, f"sg_persist {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout.lower()
